"""Item content matrices for the clrec model: encoded text / images, shipped vectors, tags.

Each modality becomes one ``(n_items, d)`` float32 matrix with NaN rows for items that lack
it, so the fusion layer can treat a missing modality as missing rather than as zeros.

* ``text`` / ``image`` — the pretrained encoders of :mod:`clrec.encoders`, through the
  embedding cache (a second run encodes nothing).
* precomputed vectors (e.g. Amazon Scientific's ``text`` / ``image``) under their own names.
* ``tags`` — a multi-hot matrix of the catalogue's tag and category fields (genres, brand,
  category) plus the release year and decade read from a ``(1995)``-style title suffix.
  Values shared by fewer than ``min_tag_count`` items carry no signal for a new item and
  are dropped, as are id-like category fields (nearly one value per item).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict

from clrec.data.schema import Dataset
from clrec.errors import ClrecError

YEAR = re.compile(r"\((\d{4})\)\s*$")
TAGS = "tags"


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


def build_content(dataset: Dataset, config: ContentConfig) -> dict[str, np.ndarray]:
    """One ``(n_items, d)`` float32 matrix per modality, NaN rows where an item lacks it."""
    from clrec.encoders.modalities import dataset_modalities, encode_dataset

    auto = config.modalities == ("auto",)
    wanted = set(config.modalities)
    offered = _offered(dataset)
    if not auto:
        unknown = sorted(wanted - offered)
        if unknown:
            raise ClrecError(
                f"data set {dataset.name!r} has no content modality {', '.join(unknown)}; "
                f"it offers: {', '.join(sorted(offered)) or 'none'}"
            )
    chosen = offered if auto else wanted
    content: dict[str, np.ndarray] = {}
    encoded = chosen - {TAGS}
    if encoded:
        specs = [
            spec
            for spec in dataset_modalities(
                dataset,
                "all",
                backend=config.text_backend,
                model=config.text_model,
                threads=config.threads,
            )
            if spec.name in encoded
        ]
        cache = None if config.cache_dir is None else Path(config.cache_dir).expanduser()
        vectors, _ = encode_dataset(dataset, specs, cache)
        content.update({name: matrix.astype(np.float32) for name, matrix in vectors.items()})
    if TAGS in chosen:
        tags = tag_matrix(dataset, config.min_tag_count, config.max_tags, config.exclude_fields)
        if tags is not None:
            content[TAGS] = tags
    return dict(sorted(content.items()))


def _offered(dataset: Dataset) -> set[str]:
    """The modality names :func:`build_content` can make for ``dataset``."""
    kinds = set(dataset.item_fields.values())
    offered = set(dataset.item_vectors)
    if kinds & {"text", "tags"}:
        offered.add("text" if "text" not in dataset.item_vectors else "text-encoded")
    if "image" in kinds:
        offered.add("image" if "image" not in dataset.item_vectors else "image-encoded")
    if kinds & {"tags", "category"} or dataset.item_fields.get("title") == "text":
        offered.add(TAGS)
    return offered


def tag_matrix(
    dataset: Dataset,
    min_count: int = 2,
    max_tags: int = 512,
    exclude_fields: tuple[str, ...] = (),
) -> np.ndarray | None:
    """Multi-hot ``(n_items, n_tags)`` of tag / category values and title years; NaN rows for
    items with none of the kept tags; ``None`` when no tag survives ``min_count``."""
    items = dataset.items.reset_index(drop=True)
    n_items = len(items)
    rows: list[np.ndarray] = []
    names: list[np.ndarray] = []
    for column, kind in dataset.item_fields.items():
        if column in exclude_fields or column not in items.columns:
            continue
        values = items[column]
        if kind == "tags":
            split = values.fillna("").astype(str).str.split("|")
            exploded = split.explode()
            tokens = exploded.str.strip().str.lower()
            keep = tokens != ""
            rows.append(exploded.index.to_numpy()[keep.to_numpy()])
            names.append((column + ":" + tokens[keep]).to_numpy(dtype=object))
        elif kind == "category":
            present = values.notna()
            if values[present].nunique() > 0.5 * n_items:  # id-like (asin, imdb id)
                continue
            rows.append(np.flatnonzero(present.to_numpy()))
            names.append((column + ":" + values[present].astype(str)).to_numpy(dtype=object))
        elif kind == "text" and column == "title":
            years = values.fillna("").astype(str).str.extract(YEAR, expand=False)
            present = years.notna()
            year = years[present].astype(int)
            index = np.flatnonzero(present.to_numpy())
            rows += [index, index]
            names.append(("year:" + year.astype(str)).to_numpy(dtype=object))
            names.append(("decade:" + (year // 10 * 10).astype(str)).to_numpy(dtype=object))
    if not rows:
        return None
    frame = pd.DataFrame({"row": np.concatenate(rows), "tag": np.concatenate(names)})
    frame = frame.drop_duplicates()
    counts = frame["tag"].value_counts()  # most frequent first
    kept = counts[counts >= min_count].index[:max_tags]
    frame = frame[frame["tag"].isin(kept)]
    if frame.empty:
        return None
    codes, _ = pd.factorize(frame["tag"], sort=True)
    matrix = np.zeros((n_items, int(codes.max()) + 1), dtype=np.float32)
    matrix[frame["row"].to_numpy(), codes] = 1.0
    matrix[matrix.sum(axis=1) == 0] = np.nan
    return matrix
