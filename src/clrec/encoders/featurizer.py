"""Item fields → model input: one featuriser, fitted on the training catalogue and saved.

:class:`ItemFeaturizer` is the single implementation of "an item's fields become the content
matrices a model reads". It is fitted once on the training catalogue (which modalities, the
text template, the encoder settings and identities, the tag vocabulary, the catalogue's
column types), saved with the model, and every later caller goes through it: training,
``clrec encode``, the serving artifact and ``PUT /v1/items``. Each modality becomes one
``(n, d)`` float32 matrix with NaN rows for items that lack it, so the fusion layer treats a
missing modality as missing rather than as zeros:

* ``text`` / ``image`` — the pretrained encoders of :mod:`clrec.encoders`, through the
  embedding cache (a second run encodes nothing);
* precomputed vectors (e.g. Amazon Scientific's ``text`` / ``image``) under their own names:
  a new item has none;
* ``tags`` — a multi-hot matrix over the vocabulary fitted on the catalogue: tag and category
  fields (genres, brand, category) plus the release year and decade read from a
  ``(1995)``-style title suffix. Values shared by fewer than ``min_tag_count`` items carry no
  signal for a new item and are dropped, as are id-like category fields (nearly one value
  per item); a new item's tags are read against the fitted vocabulary, never a new one.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict

from clrec.data.schema import Dataset, FieldKind
from clrec.encoders.modalities import (
    Encoders,
    EncodeSummary,
    ImageModality,
    Modality,
    PrecomputedModality,
    TextModality,
    dataset_modalities,
    encode_dataset,
)
from clrec.encoders.text import TextEncoderConfig, TextTemplate, default_template
from clrec.errors import ClrecError

YEAR = re.compile(r"\((\d{4})\)\s*$")
TAGS = "tags"
FEATURIZER_FILE = "featurizer.json"
EncoderKinds = Literal["text", "image", "all"]
# encoder settings that depend on the machine, not on the vectors: never saved
_LOCAL_SETTINGS = ("onnx_dir", "progress", "device")


@dataclass(frozen=True)
class ContentConfig:
    """Which content the model reads and how it is encoded.

    ``modalities``: names among ``text``, ``image``, ``tags`` and the data set's precomputed
    vector names; ``("auto",)`` takes every one the data set offers, ``()`` none (pure
    collaborative model). ``cache_dir`` keeps encoded vectors between runs (``None``: no
    cache). ``text_model`` is a local Hugging Face model folder (``None``: packaged MiniLM).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    modalities: tuple[str, ...] = ("auto",)
    cache_dir: str | None = "~/.cache/clrec/embeddings"
    text_backend: Literal["torch", "onnx-int8"] = "onnx-int8"
    text_model: str | None = None
    threads: int | None = None
    min_tag_count: int = 2
    max_tags: int = 512  # the most frequent tags only: a dense projection stays cheap
    exclude_fields: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.min_tag_count < 1:
            raise ClrecError(f"min_tag_count must be at least 1, got {self.min_tag_count}")
        if self.max_tags < 1:
            raise ClrecError(f"max_tags must be at least 1, got {self.max_tags}")
        if "auto" in self.modalities and len(self.modalities) > 1:
            raise ClrecError("content modalities: 'auto' cannot be combined with named ones")


# ---------------------------------------------------------------------- tags


@dataclass(frozen=True)
class TagVocabulary:
    """The tag columns of a model: the fields they come from and the kept ``field:value``
    names, sorted (a column's position is its name's rank)."""

    fields: dict[str, FieldKind]
    tags: tuple[str, ...]

    @classmethod
    def fit(
        cls,
        items: pd.DataFrame,
        item_fields: Mapping[str, FieldKind],
        min_count: int = 2,
        max_tags: int = 512,
        exclude_fields: Sequence[str] = (),
    ) -> TagVocabulary | None:
        """The ``max_tags`` most frequent tags shared by at least ``min_count`` items of the
        catalogue ``items``; None when no tag survives."""
        items = items.reset_index(drop=True)
        fields: dict[str, FieldKind] = {}
        for column, kind in item_fields.items():
            if column in exclude_fields or column not in items.columns:
                continue
            if kind == "category":
                values = items[column]
                if values[values.notna()].nunique() > 0.5 * len(items):  # id-like (asin, imdb)
                    continue
            if kind in ("tags", "category") or (kind == "text" and column == "title"):
                fields[column] = kind
        pairs = _item_tags(items, fields)
        if pairs.empty:
            return None
        counts = pairs["tag"].value_counts()  # most frequent first
        kept = counts[counts >= min_count].index[:max_tags]
        if len(kept) == 0:
            return None
        return cls(fields, tuple(sorted(str(tag) for tag in kept)))

    def transform(self, items: pd.DataFrame) -> np.ndarray:
        """Multi-hot ``(n, T)`` float32 of ``items``' tags in the vocabulary; NaN rows for
        items with none of them."""
        items = items.reset_index(drop=True)
        pairs = _item_tags(items, self.fields)
        vocabulary = np.asarray(self.tags, dtype=object)  # (T,) sorted
        tags = pairs["tag"].to_numpy(dtype=object)  # (P,)
        position = np.searchsorted(vocabulary, tags)  # (P,)
        known = position < len(vocabulary)
        known[known] = vocabulary[position[known]] == tags[known]
        matrix = np.zeros((len(items), len(vocabulary)), dtype=np.float32)  # (n, T)
        matrix[pairs["row"].to_numpy()[known], position[known]] = 1.0
        matrix[matrix.sum(axis=1) == 0] = np.nan
        return matrix


def _item_tags(items: pd.DataFrame, fields: Mapping[str, FieldKind]) -> pd.DataFrame:
    """Distinct ``(row, tag)`` pairs of ``items`` from ``fields``: each ``|``-separated tag
    (lower-cased), each category value, and a title's year and decade."""
    rows: list[np.ndarray] = []
    names: list[np.ndarray] = []
    for column, kind in fields.items():
        if column not in items.columns:
            continue
        values = items[column]
        if kind == "tags":
            exploded = values.fillna("").astype(str).str.split("|").explode()
            tokens = exploded.str.strip().str.lower()
            keep = (tokens != "").to_numpy()
            rows.append(exploded.index.to_numpy()[keep])
            names.append((column + ":" + tokens[keep]).to_numpy(dtype=object))
        elif kind == "category":
            present = values.notna()
            rows.append(np.flatnonzero(present.to_numpy()))
            names.append((column + ":" + values[present].astype(str)).to_numpy(dtype=object))
        else:  # the title: its year and decade
            years = values.fillna("").astype(str).str.extract(YEAR, expand=False)
            present = years.notna()
            year = years[present].astype(int)
            index = np.flatnonzero(present.to_numpy())
            rows += [index, index]
            names.append(("year:" + year.astype(str)).to_numpy(dtype=object))
            names.append(("decade:" + (year // 10 * 10).astype(str)).to_numpy(dtype=object))
    if not rows:
        return pd.DataFrame({"row": np.zeros(0, dtype=np.int64), "tag": np.zeros(0, dtype=object)})
    frame = pd.DataFrame({"row": np.concatenate(rows), "tag": np.concatenate(names)})
    return frame.drop_duplicates()


# ---------------------------------------------------------------------- the featuriser


class ItemFeaturizer:
    """Fitted item featuriser: content matrices for any rows of the catalogue's shape.

    Build it with :meth:`fit` (or :meth:`fit_transform`) on the training data set, keep it
    with :meth:`save` / :meth:`load`. Loaded text / image encoders stay on the instance.
    """

    def __init__(
        self,
        modalities: Sequence[Modality],
        tags: TagVocabulary | None,
        item_fields: Mapping[str, FieldKind],
        columns: Mapping[str, str],
        *,
        identities: Mapping[str, str | None] | None = None,
        dims: Mapping[str, int] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.modalities = list(modalities)
        self.tags = tags
        self.item_fields: dict[str, FieldKind] = dict(item_fields)
        self.columns = dict(columns)  # catalogue column → dtype name (ids excluded)
        self.identities = dict(identities or {})  # encoder identity per encoded modality
        self.dims = dict(dims or {})  # width per modality, known once it has encoded
        self.cache_dir = cache_dir
        self._kept = Encoders(keep_images=True)  # new rows, one request at a time

    @property
    def names(self) -> list[str]:
        """The modality names it produces, sorted."""
        names = [spec.name for spec in self.modalities]
        return sorted([*names, TAGS] if self.tags is not None else names)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls, dataset: Dataset, config: ContentConfig, kinds: EncoderKinds | None = None
    ) -> ItemFeaturizer:
        """Choose the modalities ``config`` asks for among those ``dataset`` offers, fix
        their encoders and templates, and fit the tag vocabulary on its catalogue.

        ``kinds`` (``clrec encode``) takes the data set's encoded modalities of that kind
        instead: ``text``, ``image``, or ``all`` (text, image and precomputed; no tags)."""
        offered = offered_modalities(dataset)
        if kinds is not None:
            chosen = {spec.name for spec in _specs(dataset, kinds, config)}
        elif config.modalities == ("auto",):
            chosen = offered
        else:
            chosen = set(config.modalities)
            unknown = sorted(chosen - offered)
            if unknown:
                raise ClrecError(
                    f"data set {dataset.name!r} has no content modality {', '.join(unknown)}; "
                    f"it offers: {', '.join(sorted(offered)) or 'none'}"
                )
        specs: list[Modality] = []
        if chosen - {TAGS}:
            for spec in _specs(dataset, "all" if kinds is None else kinds, config):
                if spec.name not in chosen:
                    continue
                if isinstance(spec, TextModality) and spec.template is None:
                    spec = dataclasses.replace(spec, template=default_template(dataset))
                specs.append(spec)
        tags = None
        if TAGS in chosen:
            tags = TagVocabulary.fit(
                dataset.items,
                dataset.item_fields,
                config.min_tag_count,
                config.max_tags,
                config.exclude_fields,
            )
        columns = {str(c): str(dataset.items[c].dtype) for c in dataset.items.columns if c != "id"}
        return cls(
            specs,
            tags,
            dataset.item_fields,
            columns,
            identities={spec.name: _identity(spec) for spec in specs},
            cache_dir=config.cache_dir,
        )

    @classmethod
    def fit_transform(
        cls, dataset: Dataset, config: ContentConfig
    ) -> tuple[ItemFeaturizer, dict[str, np.ndarray]]:
        """:meth:`fit` on ``dataset``, then its content matrices (through the cache)."""
        featurizer = cls.fit(dataset, config)
        content, _ = featurizer.encode_dataset(dataset)
        return featurizer, content

    # ------------------------------------------------------------------ transforming
    def encode_dataset(
        self, dataset: Dataset, *, progress: bool = True
    ) -> tuple[dict[str, np.ndarray], EncodeSummary]:
        """Content matrices ``(n_items, d)`` of ``dataset``'s items (its precomputed vectors
        included) and what was encoded, read from the cache or skipped. An image model loads
        only if some image is not in the cache."""
        return self._encode(dataset, self._cache_root(), Encoders(), progress)

    def transform(self, rows: Sequence[Mapping[str, object]]) -> dict[str, np.ndarray]:
        """Content matrices ``(n, d)`` of new items given as field → value mappings (e.g.
        ``{"title": "Heat (1995)", "genres": "Action|Crime"}``), encoded without the cache.
        A modality a row has no field for counts as missing, as in training; a row with no
        content the model can read is refused."""
        frame = self.frame(rows)  # (n, fields)
        if frame.empty:
            return {name: np.zeros((0, self.dims.get(name, 0)), np.float32) for name in self.names}
        content, _ = self._encode(self._catalogue(frame), None, self._kept, progress=False)
        present = np.zeros(len(frame), dtype=bool)  # (n,)
        for matrix in content.values():
            present |= ~np.isnan(matrix).any(axis=1)
        if not present.all():
            first = int(np.flatnonzero(~present)[0])
            raise ClrecError(
                f"new item row {first} has no content the model can read; it reads "
                f"{', '.join(self.names)} from the fields {', '.join(self.columns) or 'none'}"
            )
        return content

    def frame(self, rows: Sequence[Mapping[str, object]]) -> pd.DataFrame:
        """New rows as a frame with the catalogue's columns (a missing field: None), numbers
        typed as the catalogue stores them so their tags read the same."""
        fields = list(self.columns)
        records: list[dict[str, object]] = []
        for number, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ClrecError(f"new item row {number} must be a mapping of field → text")
            unknown = sorted(str(k) for k in row if k not in self.columns and k != "id")
            if unknown:
                raise ClrecError(
                    f"new item row {number}: unknown field(s) {', '.join(unknown)}; the "
                    f"catalogue has {', '.join(fields)}"
                )
            records.append({f: row.get(f) for f in fields})
        frame = pd.DataFrame(records, columns=fields, dtype=object)
        for column, dtype in self.columns.items():
            if pd.api.types.is_numeric_dtype(pd.api.types.pandas_dtype(dtype)):
                try:
                    frame[column] = pd.to_numeric(frame[column]).astype(dtype)
                except (TypeError, ValueError) as error:
                    raise ClrecError(
                        f"new item field {column!r} must be a number: {error}"
                    ) from None
        return frame

    def _catalogue(self, items: pd.DataFrame) -> Dataset:
        """A catalogue-only Dataset over ``items`` (no interactions) for the encoders; a new
        item has no precomputed vectors (NaN rows)."""
        frame = items.copy()
        frame.insert(0, "id", [f"new:{k}" for k in range(len(items))])
        return Dataset(
            name="new-items",
            interactions=pd.DataFrame(
                {"user": np.zeros(0, dtype=np.int64), "item": np.zeros(0, dtype=np.int64)}
            ),
            items=frame,
            users=pd.DataFrame({"id": pd.Series([], dtype="string")}),
            item_fields=dict(self.item_fields),
            item_vectors={
                spec.name: np.full((len(items), self.dims.get(spec.name, 0)), np.nan, np.float32)
                for spec in self.modalities
                if isinstance(spec, PrecomputedModality)
            },
        )

    def _encode(
        self, dataset: Dataset, cache: Path | None, encoders: Encoders, progress: bool
    ) -> tuple[dict[str, np.ndarray], EncodeSummary]:
        specs = [self._runnable(spec, encoders, progress) for spec in self.modalities]
        vectors, summary = (
            encode_dataset(dataset, specs, cache, encoders)
            if specs
            else ({}, EncodeSummary(dataset.name))
        )
        content = {name: matrix.astype(np.float32) for name, matrix in vectors.items()}
        if self.tags is not None:
            content[TAGS] = self.tags.transform(dataset.items)
        for name, matrix in content.items():
            self.dims.setdefault(name, int(matrix.shape[1]))
        return dict(sorted(content.items())), summary

    def _runnable(self, spec: Modality, encoders: Encoders, progress: bool) -> Modality:
        """``spec`` with this machine's settings (ONNX folder, progress), its encoder checked
        against the identity it was fitted with."""
        root = self._cache_root()
        onnx = None if root is None else str(root / "onnx")
        if isinstance(spec, TextModality):
            config = dataclasses.replace(spec.encoder, progress=progress, onnx_dir=onnx)
            self._check_identity(spec.name, encoders.text(config).identity)
            return dataclasses.replace(spec, encoder=config)
        if isinstance(spec, ImageModality):
            from clrec.encoders.image import ImageEncoderConfig

            image = dataclasses.replace(
                spec.encoder or ImageEncoderConfig(), progress=progress, onnx_dir=onnx
            )
            self._check_identity(spec.name, image.identity)
            return dataclasses.replace(spec, encoder=image)
        return spec

    def _check_identity(self, name: str, identity: str) -> None:
        expected = self.identities.get(name)
        if expected is not None and identity != expected:
            raise ClrecError(
                f"the {name!r} encoder here ({identity}) is not the one the model was trained "
                f"with ({expected}); its vectors would not match the model's"
            )

    def _cache_root(self) -> Path | None:
        return None if self.cache_dir is None else Path(self.cache_dir).expanduser()

    # ------------------------------------------------------------------ persistence
    def used_fields(self) -> dict[str, list[str]]:
        """Which catalogue fields feed which modality (what a run's metrics record;
        precomputed vectors read none)."""
        used = {spec.name: _fields_of(spec) for spec in self.modalities}
        return used | ({TAGS: list(self.tags.fields)} if self.tags is not None else {})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form that :meth:`from_dict` reads back."""
        return {
            "modalities": [_spec_dict(spec) for spec in self.modalities],
            "tags": None
            if self.tags is None
            else {"fields": self.tags.fields, "tags": list(self.tags.tags)},
            "item_fields": self.item_fields,
            "columns": self.columns,
            "identities": self.identities,
            "dims": self.dims,
            "cache_dir": self.cache_dir,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemFeaturizer:
        tags = data.get("tags")
        return cls(
            [_spec_from_dict(spec) for spec in data["modalities"]],
            None if tags is None else TagVocabulary(dict(tags["fields"]), tuple(tags["tags"])),
            data["item_fields"],
            data["columns"],
            identities=data.get("identities"),
            dims=data.get("dims"),
            cache_dir=data.get("cache_dir"),
        )

    def save(self, directory: str | Path) -> Path:
        """Write ``featurizer.json`` into ``directory``; returns its path."""
        path = Path(directory) / FEATURIZER_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ItemFeaturizer:
        path = Path(directory) / FEATURIZER_FILE
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ClrecError(f"{path}: unreadable item featuriser: {error}") from error


def offered_modalities(dataset: Dataset) -> set[str]:
    """The modality names a featuriser can make for ``dataset``."""
    kinds = set(dataset.item_fields.values())
    offered = set(dataset.item_vectors)
    if kinds & {"text", "tags"}:
        offered.add("text" if "text" not in dataset.item_vectors else "text-encoded")
    if "image" in kinds:
        offered.add("image" if "image" not in dataset.item_vectors else "image-encoded")
    if kinds & {"tags", "category"} or dataset.item_fields.get("title") == "text":
        offered.add(TAGS)
    return offered


def _specs(dataset: Dataset, which: EncoderKinds, config: ContentConfig) -> list[Modality]:
    return dataset_modalities(
        dataset,
        which,
        backend=config.text_backend,
        model=config.text_model,
        threads=config.threads,
    )


def _fields_of(spec: Modality) -> list[str]:
    if isinstance(spec, TextModality):
        return [] if spec.template is None else list(spec.template.fields)
    return [spec.field] if isinstance(spec, ImageModality) else []


def _identity(spec: Modality) -> str | None:
    """The encoder identity of an encoded modality (None: precomputed, or the encoder is not
    installed here, so nothing can be checked later)."""
    try:
        if isinstance(spec, TextModality):
            return str(spec.encoder.identity)
        if isinstance(spec, ImageModality):
            from clrec.encoders.image import ImageEncoderConfig

            return str((spec.encoder or ImageEncoderConfig()).identity)
    except ClrecError:
        return None
    return None


def _settings(config: object) -> dict[str, Any]:
    """An encoder config's JSON-ready fields, less the machine-local ones."""
    plain = dataclasses.asdict(config)  # type: ignore[call-overload]
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in plain.items()
        if k not in _LOCAL_SETTINGS
    }


def _restored(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


def _spec_dict(spec: Modality) -> dict[str, Any]:
    if isinstance(spec, TextModality):
        assert spec.template is not None  # fit resolves the template
        return {
            "name": spec.name,
            "kind": "text",
            "template": spec.template.pattern,
            "encoder": _settings(spec.encoder),
        }
    if isinstance(spec, ImageModality):
        return {
            "name": spec.name,
            "kind": "image",
            "field": spec.field,
            "encoder": None if spec.encoder is None else _settings(spec.encoder),
        }
    return {"name": spec.name, "kind": "precomputed"}


def _spec_from_dict(data: Mapping[str, Any]) -> Modality:
    kind = data["kind"]
    if kind == "text":
        return TextModality(
            data["name"],
            TextTemplate(str(data["template"])),
            TextEncoderConfig(**_restored(data["encoder"])),
        )
    if kind == "image":
        from clrec.encoders.image import ImageEncoderConfig

        settings = data.get("encoder")
        return ImageModality(
            data["name"],
            str(data["field"]),
            None if settings is None else ImageEncoderConfig(**_restored(settings)),
        )
    if kind == "precomputed":
        return PrecomputedModality(data["name"])
    raise ClrecError(f"unknown modality kind {kind!r}")


__all__ = [
    "FEATURIZER_FILE",
    "TAGS",
    "ContentConfig",
    "ItemFeaturizer",
    "TagVocabulary",
    "offered_modalities",
]
