"""Encode a whole data set's items, one modality at a time, through the embedding cache.

A modality is a typed spec: :class:`TextModality` (item fields → text → language model),
:class:`ImageModality` (an image-reference field → image model) or
:class:`PrecomputedModality` (vectors that ship with the data, e.g. Amazon Scientific's
512-d text and image features). :func:`encode_dataset` returns one ``(n_items, d)`` float32
matrix per modality, NaN rows where an item has no such content, and a summary of what was
encoded, served from cache, skipped and failed.

Text is masked for personal data before it is hashed or encoded, so neither the cache key
nor the model sees it. Vectors are written to the cache chunk by chunk: a run that is killed
keeps what it finished, and the next run encodes only the rest.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clrec import distributed
from clrec.encoders.cache import EmbeddingCache, content_hash
from clrec.encoders.text import TextEncoder, TextEncoderConfig, TextTemplate, default_template
from clrec.errors import ClrecError

if TYPE_CHECKING:
    from clrec.data.schema import Dataset
    from clrec.encoders.image import ImageEncoder, ImageEncoderConfig

# Texts per cache write: small enough that a killed run loses little, large enough that
# length-sorted batching still groups similar lengths.
TEXT_CHUNK = 512


@dataclass(frozen=True)
class TextModality:
    """Item text from ``template`` (default: the data set's known template) → text vectors."""

    name: str = "text"
    template: TextTemplate | None = None
    encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)


@dataclass(frozen=True)
class ImageModality:
    """Images named by the item field ``field`` → image vectors (``clrec.encoders.image``).

    ``encoder`` ``None`` uses the image encoder's defaults (packaged EfficientNet-Lite0).
    """

    name: str = "image"
    field: str = "poster"
    encoder: ImageEncoderConfig | None = None


@dataclass(frozen=True)
class PrecomputedModality:
    """Vectors already in ``dataset.item_vectors[name]``, passed through unchanged."""

    name: str


Modality = TextModality | ImageModality | PrecomputedModality


class Encoders:
    """Encoders by their settings, so repeated calls load each model once.

    A text encoder loads its model on first use anyway. An image encoder loads when it is
    built, so it is kept only with ``keep_images`` (a service embedding one item per request);
    otherwise :func:`~clrec.encoders.image.encode_images` loads one only when some image is
    not in the cache (a run encoding its catalogue once).
    """

    def __init__(self, *, keep_images: bool = False) -> None:
        self.keep_images = keep_images
        self._text: dict[TextEncoderConfig, TextEncoder] = {}
        self._image: dict[ImageEncoderConfig, ImageEncoder] = {}

    def text(self, config: TextEncoderConfig) -> TextEncoder:
        """The text encoder for ``config``."""
        if config not in self._text:
            self._text[config] = TextEncoder(config)
        return self._text[config]

    def image(self, config: ImageEncoderConfig) -> ImageEncoder | None:
        """The kept image encoder for ``config`` (None unless ``keep_images``)."""
        if not self.keep_images:
            return None
        if config not in self._image:
            from clrec.encoders.image import ImageEncoder

            self._image[config] = ImageEncoder(config)
        return self._image[config]


@dataclass
class ModalitySummary:
    """What happened to each item for one modality: every item lands in exactly one count."""

    name: str
    kind: str  # "text" | "image" | "precomputed"
    items: int = 0
    encoded: int = 0
    cached: int = 0
    skipped: int = 0  # no content for this modality
    failed: int = 0  # content present but unusable (e.g. a corrupt image)
    precomputed: int = 0
    dim: int = 0
    seconds: float = 0.0
    identity: str = ""
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One human-readable line."""
        counts = (
            f"{self.precomputed:,} precomputed"
            if self.kind == "precomputed"
            else f"{self.encoded:,} encoded, {self.cached:,} cached"
        )
        text = (
            f"{self.name} ({self.kind}, {self.dim}-d): {self.items:,} items: {counts}, "
            f"{self.skipped:,} skipped, {self.failed:,} failed in {self.seconds:.1f}s"
        )
        if self.notes:
            text += " (e.g. " + "; ".join(self.notes) + ")"
        return text


@dataclass
class EncodeSummary:
    """Per-modality summaries of one :func:`encode_dataset` call."""

    dataset: str
    modalities: dict[str, ModalitySummary] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [summary.line() for summary in self.modalities.values()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "modalities": {
                name: {k: v for k, v in vars(s).items() if k != "name"}
                for name, s in self.modalities.items()
            },
        }


def dataset_modalities(
    dataset: Dataset,
    which: str = "all",
    *,
    backend: str = "torch",
    model: str | None = None,
    threads: int | None = None,
) -> list[Modality]:
    """The modalities a data set offers: ``which`` is ``text``, ``image`` or ``all``.

    ``all`` gives text (when the items have text or tag fields), image (the first field of
    kind ``image``) and every precomputed vector set. A computed modality whose name is
    taken by precomputed vectors gets an ``-encoded`` suffix so neither overwrites the other.
    """
    specs: list[Modality] = []
    taken = set(dataset.item_vectors)

    def fresh_name(base: str) -> str:
        return base if base not in taken else f"{base}-encoded"

    has_text = any(k in ("text", "tags") for k in dataset.item_fields.values())
    if which in ("text", "all") and (has_text or which == "text"):
        text_config = TextEncoderConfig(
            model=model or TextEncoderConfig.model,
            backend=backend,  # type: ignore[arg-type]  # validated by the config
            threads=threads,
        )
        specs.append(TextModality(fresh_name("text"), encoder=text_config))
    image_fields = [f for f, k in dataset.item_fields.items() if k == "image"]
    if which == "image" and not image_fields:
        raise ClrecError(f"data set {dataset.name!r} has no image field to encode")
    if which in ("image", "all") and image_fields:
        from clrec.encoders.image import ImageEncoderConfig

        image_config = ImageEncoderConfig(threads=threads)
        specs.append(ImageModality(fresh_name("image"), image_fields[0], encoder=image_config))
    if which == "all":
        specs.extend(PrecomputedModality(name) for name in sorted(dataset.item_vectors))
    if not specs:
        raise ClrecError(f"data set {dataset.name!r} has no content to encode")
    return specs


def encode_dataset(
    dataset: Dataset,
    modalities: Sequence[Modality],
    cache_dir: str | Path | None,
    encoders: Encoders | None = None,
) -> tuple[dict[str, np.ndarray], EncodeSummary]:
    """Item vectors ``(n_items, d)`` float32 per modality (NaN rows: no vector) and a summary.

    ``cache_dir`` holds the embedding cache and exported ONNX models (unless an encoder
    config names its own ``onnx_dir``); ``None`` encodes everything without a cache.
    ``encoders`` keeps loaded models between calls (default: load them for this call).
    """
    encoders = encoders or Encoders()
    names = [m.name for m in modalities]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ClrecError(f"modality name(s) given more than once: {', '.join(repeated)}")
    root = Path(cache_dir) if cache_dir is not None else None
    cache = EmbeddingCache(root) if root is not None else None
    vectors: dict[str, np.ndarray] = {}
    summary = EncodeSummary(dataset.name)
    try:
        for modality in modalities:
            start = time.perf_counter()
            if isinstance(modality, TextModality):
                matrix, part = _encode_text(dataset, modality, cache, root, encoders)
            elif isinstance(modality, ImageModality):
                matrix, part = _encode_image(dataset, modality, cache, root, encoders)
            else:
                matrix, part = _precomputed(dataset, modality)
            part.seconds = time.perf_counter() - start
            part.dim = int(matrix.shape[1])
            vectors[modality.name] = matrix
            summary.modalities[modality.name] = part
    finally:
        if cache is not None:
            cache.close()
    return vectors, summary


def _encode_text(
    dataset: Dataset,
    modality: TextModality,
    cache: EmbeddingCache | None,
    root: Path | None,
    encoders: Encoders,
) -> tuple[np.ndarray, ModalitySummary]:
    config = modality.encoder
    if config.backend == "onnx-int8" and config.onnx_dir is None and root is not None:
        config = replace(config, onnx_dir=str(root / "onnx"))
    template = modality.template or default_template(dataset)
    texts = template.render_table(dataset.items, dataset.item_fields)  # one per item
    encoder = encoders.text(config)
    summary = ModalitySummary(modality.name, "text", items=len(texts), identity=encoder.identity)

    present = [i for i, text in enumerate(texts) if text is not None]
    summary.skipped = len(texts) - len(present)
    # Mask before hashing: the cache key never depends on (or reveals) personal data.
    masked = encoder.mask([text for text in texts if text is not None])
    hashes = [content_hash(text) for text in masked]
    unique = dict(zip(hashes, masked, strict=True))  # hash → text, each text encoded once
    found = cache.get_many(encoder.identity, unique) if cache is not None else {}
    # Under torchrun every rank encodes its share of what rank 0 found missing; rank 0's list
    # is broadcast (so every rank takes the same chunks) before anyone writes to the cache.
    todo = distributed.broadcast_object([key for key in unique if key not in found])
    fresh = set(todo)
    if any(key not in found and key not in fresh for key in unique):
        raise ClrecError("the embedding cache changed while the ranks read it; run again")
    if todo:
        from tqdm.auto import tqdm

        rank, size = distributed.world()
        step = TEXT_CHUNK * size  # each rank encodes TEXT_CHUNK texts of every chunk
        with tqdm(
            total=len(todo),
            unit="text",
            desc=modality.name,
            disable=not config.progress or rank != 0,
        ) as bar:

            def encode_share(share: Sequence[str]) -> list[np.ndarray]:
                # rank 0's bar counts its own texts as they finish, the rest per chunk
                progress = bar.update if rank == 0 else _ignore
                return list(encoder.encode(share, on_progress=progress))  # (d,) each

            for start in range(0, len(todo), step):
                keys = todo[start : start + step]
                chunk = [unique[k] for k in keys]
                vectors: list[np.ndarray] = distributed.sharded_map(encode_share, chunk)
                bar.update(len(keys) - len(range(0, len(keys), size)))  # the other ranks' part
                new = dict(zip(keys, vectors, strict=True))  # hash → (d,)
                if cache is not None and rank == 0:
                    cache.put_many(encoder.identity, new)
                found.update(new)
    dim = next((len(v) for v in found.values()), None) or encoder.dim
    matrix = np.full((len(texts), dim), np.nan, dtype=np.float32)  # (n_items, d)
    for position, key in zip(present, hashes, strict=True):
        matrix[position] = found[key]
        # Items whose vector was computed in this call (several items may share one text)
        # count as encoded; those served by the cache as cached.
        if key in fresh:
            summary.encoded += 1
        else:
            summary.cached += 1
    return matrix, summary


def _ignore(_finished: int) -> None:
    """A progress callback that shows nothing (ranks other than 0)."""


def _encode_image(
    dataset: Dataset,
    modality: ImageModality,
    cache: EmbeddingCache | None,
    root: Path | None,
    encoders: Encoders,
) -> tuple[np.ndarray, ModalitySummary]:
    from clrec.encoders.image import ImageEncoderConfig, encode_images

    if modality.field not in dataset.items.columns:
        raise ClrecError(
            f"image field {modality.field!r} is not an item column of {dataset.name!r}; "
            f"available: {', '.join(map(str, dataset.items.columns))}"
        )
    config = modality.encoder or ImageEncoderConfig()
    if config.onnx_dir is None and root is not None:
        config = replace(config, onnx_dir=str(root / "onnx"))
    refs = [
        None if pd.isna(value) or not str(value).strip() else str(value)
        for value in dataset.items[modality.field].tolist()
    ]
    matrix, result = encode_images(refs, config, cache, encoder=encoders.image(config))
    summary = ModalitySummary(
        modality.name,
        "image",
        items=len(refs),
        encoded=result.encoded,
        cached=result.from_cache,
        skipped=result.missing,
        failed=result.failed,
        identity=config.identity,
        # Items without any reference are counted as skipped; their examples say nothing.
        notes=[note for note in result.examples if not note.startswith("missing: None:")],
    )
    return np.asarray(matrix, dtype=np.float32), summary


def _precomputed(
    dataset: Dataset, modality: PrecomputedModality
) -> tuple[np.ndarray, ModalitySummary]:
    matrix = dataset.item_vectors.get(modality.name)
    if matrix is None:
        available = ", ".join(sorted(dataset.item_vectors)) or "none"
        raise ClrecError(
            f"data set {dataset.name!r} has no precomputed {modality.name!r} vectors "
            f"(available: {available})"
        )
    matrix = np.asarray(matrix, dtype=np.float32)
    missing = int(np.isnan(matrix).any(axis=1).sum())
    summary = ModalitySummary(
        modality.name,
        "precomputed",
        items=len(matrix),
        precomputed=len(matrix) - missing,
        skipped=missing,
    )
    return matrix, summary
