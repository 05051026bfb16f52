"""Pretrained image encoder: image references → L2-normalised pooled CNN features.

An item's image vector is the pooled feature vector of an image model (by default the
packaged EfficientNet-Lite0, see :mod:`clrec.encoders.image_model`) for its image, read and
preprocessed by :mod:`clrec.encoders.image_input`, then L2-normalised.

Two backends compute the same function: ``torch`` and ``onnx`` (ONNX Runtime, several times
faster on CPU). The ONNX graph is exported from the torch model once and kept on disk under
``onnx_dir``, keyed by the model's identity, so later runs load it directly.

:func:`encode_images` keys images by the hash of their bytes, reuses cached vectors, encodes
identical images once and counts missing or undecodable ones instead of stopping.
"""

from __future__ import annotations

import functools
import hashlib
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from clrec.encoders.image_input import (
    PREPROCESS_VERSION,
    MissingImageError,
    RefReader,
    ResizeMode,
    preprocess_image,
    require_pillow,
    split_ref,
)
from clrec.encoders.image_model import (
    PACKAGED_MODEL,
    ImageModelSpec,
    export_onnx,
    load_efficientnet,
    ort_session,
    pooled_features_module,
    resolve_model,
)
from clrec.encoders.runtime import default_onnx_dir, torch_threads
from clrec.errors import ClrecError

__all__ = [
    "MAX_EXAMPLES",
    "ImageBackend",
    "ImageEncoder",
    "ImageEncoderConfig",
    "ImageSummary",
    "VectorCache",
    "encode_images",
    "load_efficientnet",
    "preprocess_image",
    "split_ref",
]

ImageBackend = Literal["onnx", "torch"]

MAX_EXAMPLES = 5


class VectorCache(Protocol):
    """What the encoder needs from :class:`clrec.encoders.cache.EmbeddingCache`."""

    def get_many(self, identity: str, hashes: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, identity: str, vectors: dict[str, np.ndarray]) -> Any: ...


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Settings of the image encoder; ``identity`` names everything that changes its output.

    ``model`` is ``"efficientnet-lite0"`` (the packaged ImageNet weights) or a local path (see
    :mod:`clrec.encoders.image_model`). ``threads`` ``None`` keeps the runtime's default.
    ``device`` ``None`` uses CUDA when available. ``onnx_dir`` holds exported ONNX graphs
    (default ``~/.cache/clrec/onnx``).
    """

    model: str = PACKAGED_MODEL
    backend: ImageBackend = "onnx"
    batch_size: int = 32
    threads: int | None = None
    device: str | None = None
    resize: ResizeMode = "center_crop"
    onnx_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.backend not in ("onnx", "torch"):
            raise ClrecError(f"image backend must be 'onnx' or 'torch', got {self.backend!r}")
        if self.resize not in ("center_crop", "squash"):
            raise ClrecError(f"image resize must be 'center_crop' or 'squash', got {self.resize!r}")
        if self.batch_size < 1:
            raise ClrecError(f"image batch_size must be at least 1, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise ClrecError(f"image threads must be at least 1, got {self.threads}")

    @property
    def spec(self) -> ImageModelSpec:
        return resolve_model(self.model)

    @property
    def identity(self) -> str:
        """Cache key part: model files, input size, normalisation and preprocessing version.

        The backend is not part of it: torch and ONNX Runtime compute the same fp32 function
        (agreement is tested), so either may reuse the other's cached vectors.
        """
        spec = self.spec
        mean = ",".join(f"{v:g}" for v in spec.mean)
        std = ",".join(f"{v:g}" for v in spec.std)
        return (
            f"image:{spec.name}@{spec.digest}:s{spec.image_size}:{self.resize}"
            f":mean={mean}:std={std}:avgpool-l2:p{PREPROCESS_VERSION}"
        )


@dataclass
class ImageSummary:
    """What happened to each reference: every ref lands in exactly one count."""

    total: int = 0
    encoded: int = 0
    from_cache: int = 0
    missing: int = 0
    failed: int = 0
    examples: list[str] = field(default_factory=list)  # a few "ref: reason" lines

    def note(self, kind: Literal["missing", "failed"], ref: str | None, reason: str) -> None:
        if kind == "missing":
            self.missing += 1
        else:
            self.failed += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{kind}: {ref!s}: {reason}")

    def __str__(self) -> str:
        text = (
            f"{self.total} images: {self.encoded} encoded, {self.from_cache} from cache, "
            f"{self.missing} missing, {self.failed} failed"
        )
        if self.examples:
            text += " (e.g. " + "; ".join(self.examples) + ")"
        return text


class ImageEncoder:
    """A loaded image model: ``(N, 3, S, S)`` pixels → ``(N, F)`` pooled features.

    Loading costs seconds (and an ONNX export the first time), so keep one encoder and pass
    it to :func:`encode_images` when encoding several lists.
    """

    def __init__(self, config: ImageEncoderConfig) -> None:
        require_pillow()
        self.config = config
        self.spec = config.spec
        self._run: Callable[[np.ndarray], np.ndarray]
        if config.backend == "onnx":
            directory = Path(config.onnx_dir) if config.onnx_dir else default_onnx_dir()
            session = ort_session(
                export_onnx(self.spec, directory), threads=config.threads, device=config.device
            )
            input_name = session.get_inputs()[0].name

            def run_onnx(pixels: np.ndarray) -> np.ndarray:
                return np.asarray(session.run(None, {input_name: pixels})[0], dtype=np.float32)

            self._run = run_onnx
        else:
            self._run = self._torch_runner()

    def _torch_runner(self) -> Callable[[np.ndarray], np.ndarray]:
        import torch

        device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ClrecError(f"device {device!r} asked for, but torch sees no CUDA device")
        module = pooled_features_module(load_efficientnet(self.spec)).to(device)

        def run_torch(pixels: np.ndarray) -> np.ndarray:
            with torch_threads(self.config.threads), torch.inference_mode():
                out = module(torch.from_numpy(pixels).to(device))  # (N, F)
            features: np.ndarray = out.float().cpu().numpy()
            return features

        return run_torch

    def preprocess(self, data: bytes) -> np.ndarray:
        """Image bytes → ``(3, S, S)`` input for this model."""
        return preprocess_image(
            data,
            image_size=self.spec.image_size,
            resize=self.config.resize,
            mean=self.spec.mean,
            std=self.spec.std,
        )

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, 3, S, S)`` float32 → ``(N, F)`` float32 pooled features, not normalised."""
        return self._run(np.ascontiguousarray(pixels, dtype=np.float32))


# --------------------------------------------------------------------------- encoding


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (N, 1)
    unit: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def _hash_bytes(data: bytes, with_cache: bool) -> str:
    if with_cache:
        # The shared content hash, so image keys follow the cache's own convention.
        from clrec.encoders.cache import content_hash

        return content_hash(data)
    return hashlib.sha256(data).hexdigest()


def encode_images(
    refs: Sequence[str | None],
    config: ImageEncoderConfig,
    cache: VectorCache | None = None,
    *,
    encoder: ImageEncoder | None = None,
) -> tuple[np.ndarray, ImageSummary]:
    """Encode image references into ``(len(refs), F)`` float32 L2-normalised rows.

    A row is NaN where the reference is None / empty, names nothing, or cannot be read or
    decoded; the summary counts those (with a few reasons) and the run goes on. Images are
    keyed by the hash of their bytes: cached vectors are reused, identical images are encoded
    once, and the model is only loaded when something needs encoding. ``encoder`` reuses an
    already loaded model (it must come from an equivalent config).
    """
    from tqdm.auto import tqdm

    summary = ImageSummary(total=len(refs))
    identity = config.identity
    spec = config.spec
    require_pillow()
    prepare: Callable[[bytes], np.ndarray] = (
        encoder.preprocess
        if encoder is not None
        else functools.partial(
            preprocess_image,
            image_size=spec.image_size,
            resize=config.resize,
            mean=spec.mean,
            std=spec.std,
        )
    )
    rows: list[np.ndarray | None] = [None] * len(refs)  # each (F,) once known
    seen: dict[str, tuple[np.ndarray, bool]] = {}  # content hash → (vector, came from cache)
    bad: dict[str, str] = {}  # content hash → why it cannot be decoded
    reader = RefReader()
    step = config.batch_size
    try:
        with tqdm(total=len(refs), unit="img", desc="images", disable=not config.progress) as bar:
            for start in range(0, len(refs), step):
                chunk = range(start, min(start + step, len(refs)))
                hashes: dict[int, str] = {}  # ref position → content hash
                payload: dict[str, bytes] = {}  # content hash → bytes, still to resolve
                for position in chunk:
                    ref = refs[position]
                    if ref is None or not str(ref).strip():
                        summary.note("missing", ref, "no image reference")
                        continue
                    try:
                        data = reader.read(str(ref))
                    except MissingImageError as error:
                        summary.note("missing", ref, str(error))
                        continue
                    except (OSError, tarfile.TarError) as error:
                        summary.note("failed", ref, f"unreadable ({error})")
                        continue
                    key = _hash_bytes(data, cache is not None)
                    hashes[position] = key
                    if key not in seen and key not in bad:
                        payload[key] = data

                if cache is not None and payload:
                    for key, vector in cache.get_many(identity, list(payload)).items():
                        if key in payload:
                            seen[key] = (np.asarray(vector, dtype=np.float32), True)
                            del payload[key]

                pixels: list[np.ndarray] = []  # each (3, S, S)
                keys: list[str] = []
                for key, data in payload.items():
                    try:
                        pixels.append(prepare(data))
                        keys.append(key)
                    except Exception as error:  # Pillow raises many types on bad data
                        bad[key] = f"cannot decode ({type(error).__name__}: {error})"
                if pixels:
                    # Loaded only now: cached or undecodable images never need the model.
                    encoder = encoder or ImageEncoder(config)
                    fresh = _normalise(encoder.features(np.stack(pixels)))  # (n, F)
                    new = dict(zip(keys, fresh, strict=True))
                    seen.update({key: (vector, False) for key, vector in new.items()})
                    if cache is not None:
                        cache.put_many(identity, new)

                for position, key in hashes.items():
                    if key in bad:
                        summary.note("failed", refs[position], bad[key])
                        continue
                    vector, was_cached = seen[key]
                    rows[position] = vector
                    if was_cached:
                        summary.from_cache += 1
                    else:
                        summary.encoded += 1
                bar.update(len(chunk))
    finally:
        reader.close()

    dim = next((len(r) for r in rows if r is not None), None)
    if dim is None:  # nothing decoded: ask the model for its width
        dim = _feature_dim(config, encoder)
    out = np.full((len(refs), dim), np.nan, dtype=np.float32)  # (len(refs), F)
    for position, row in enumerate(rows):
        if row is not None:
            out[position] = row
    return out, summary


def _feature_dim(config: ImageEncoderConfig, encoder: ImageEncoder | None) -> int:
    """Feature width, without loading a model when the architecture tells it."""
    spec = config.spec
    if encoder is None and spec.architecture is not None:
        return 1280  # every EfficientNet-Lite variant keeps the 1280-wide head
    encoder = encoder or ImageEncoder(config)
    probe = np.zeros((1, 3, spec.image_size, spec.image_size), np.float32)  # (1, 3, S, S)
    return int(encoder.features(probe).shape[1])
