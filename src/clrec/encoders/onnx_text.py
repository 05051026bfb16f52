"""Fast CPU path of the text encoder: ONNX Runtime with per-channel int8 weights.

The transformer is exported once to ONNX (TorchScript exporter, dynamic batch and sequence
axes, eager attention so ONNX Runtime can fuse it), its attention / layer-norm / GELU
subgraphs are fused by ``onnxruntime.transformers``, and its weights are quantised to int8
per output channel (dynamic quantisation: activations are quantised on the fly). The
result is kept on disk under ``onnx_dir``, named by the model's content hash and this
recipe's version, so later runs load it directly; concurrent exports each write a private
temporary file and rename it into place.

Measured on ML-1M titles + DBpedia abstracts (see ``bench/text_encoder_speed.py``): about
2–3× the items/second of the fp32 torch path at a mean cosine of ~0.99 to it. Pooling and
normalisation run in numpy, the same maths as the torch path
(:func:`clrec.encoders.text_pooling.pool_numpy`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from clrec.encoders.runtime import default_onnx_dir
from clrec.encoders.text_model import (
    ModelFiles,
    TextEncoderConfig,
    load_tokenizer,
    load_transformer,
    missing_dependency,
)
from clrec.encoders.text_pooling import pool_numpy
from clrec.errors import ClrecError

ONNX_OPSET = 17
# Bump when the export / fusion / quantisation recipe changes: old files are then ignored.
EXPORT_VERSION = 1
# An export (before quantisation) must match torch this closely on a probe batch.
_EXPORT_TOLERANCE = 1e-3
_PROBE_TEXTS = (
    "A probe sentence for the export check.",
    "Short one",
    "A third, somewhat longer probe sentence, so the batch needs padding to its length.",
)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` (n, d) with the same row of ``b`` (n, d): (n,)."""
    dot = (a * b).sum(axis=1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosines: np.ndarray = dot / np.maximum(norms, 1e-12)
    return cosines


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean, min) row cosine between two encodings of the same texts."""
    cosines = row_cosines(a, b)
    return float(cosines.mean()), float(cosines.min())


def _import_ort() -> Any:
    try:
        import onnxruntime  # type: ignore[import-untyped]
    except ImportError as err:
        raise missing_dependency("onnxruntime", err) from err
    return onnxruntime


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide the exporter's and quantiser's advice (warnings and root-logger lines)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _session(path: Path, threads: int | None) -> Any:
    ort = _import_ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own untyped errors
        raise ClrecError(f"{path}: ONNX Runtime cannot load the model ({err})") from err


def _run_hidden(session: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Last hidden states (B, L, H) for a padded batch, cast to the graph's input types."""
    inputs: dict[str, np.ndarray] = {}
    for spec in session.get_inputs():
        value = feeds.get(spec.name)
        if value is None:  # e.g. token_type_ids that the tokenizer did not produce
            value = np.zeros_like(feeds["input_ids"])
        dtype = np.int32 if spec.type == "tensor(int32)" else np.int64
        inputs[spec.name] = value.astype(dtype, copy=False)
    hidden: np.ndarray = session.run(None, inputs)[0]
    return hidden


def _probe(directory: Path) -> dict[str, np.ndarray]:
    tokenizer = load_tokenizer(directory)
    encoded = tokenizer(list(_PROBE_TEXTS), padding=True, truncation=True, return_tensors="np")
    names = ("input_ids", "attention_mask", "token_type_ids")
    return {name: np.asarray(encoded[name], dtype=np.int64) for name in names if name in encoded}


def _export_fp32(files: ModelFiles, target: Path, probe: dict[str, np.ndarray]) -> np.ndarray:
    """Export the transformer to ``target``; returns torch's hidden states on ``probe``."""
    import torch

    # Eager attention exports as plain MatMul/Softmax, which ONNX Runtime fuses into one
    # Attention op; the SDPA path does not fuse.
    model = load_transformer(files.directory, attn_implementation="eager")
    names = list(probe)

    class LastHidden(torch.nn.Module):
        """Positional inputs in ``names`` order → last hidden state (B, L, H)."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.inner(**dict(zip(names, tensors, strict=True)))[0]
            return out

    wrapper = LastHidden().eval()
    sample = tuple(torch.from_numpy(probe[name][:2, :-1]) for name in names)  # (2, L-1)
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "hidden"]}
    with _quiet(), torch.no_grad():
        try:
            torch.onnx.export(
                wrapper,
                sample,
                str(target),
                input_names=names,
                output_names=["hidden"],
                dynamic_axes=axes,
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        except Exception as err:  # the exporter raises many types
            raise ClrecError(f"{files.directory}: ONNX export failed ({err})") from err
        expected: np.ndarray = wrapper(*(torch.from_numpy(probe[n]) for n in names)).numpy()
    return expected


def _relative_gap(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / (np.abs(expected).max() + 1e-12))


def _fuse(source: Path, target: Path, model_dir: Path) -> bool:
    """Fuse attention / layer norm / GELU with onnxruntime.transformers; False if it failed."""
    config = json.loads((model_dir / "config.json").read_text())
    try:
        from onnxruntime.transformers import optimizer  # type: ignore[import-untyped]

        model_type = config.get("model_type", "bert")
        fused = optimizer.optimize_model(
            str(source),
            model_type=model_type if model_type in optimizer.MODEL_TYPES else "bert",
            num_heads=int(config.get("num_attention_heads", 0)),
            hidden_size=int(config.get("hidden_size", 0)),
        )
        fused.save_model_to_file(str(target))
    except Exception:  # fusion is an optimisation: any failure falls back to the plain graph
        return False
    return True


def export_int8(files: ModelFiles, directory: Path) -> Path:
    """The model's fused, per-channel int8 ONNX graph, exported once and reused.

    A fresh export is checked against torch on a probe batch of another shape than the one
    traced (so the dynamic axes are exercised); fusion that changes the output is dropped.
    """
    _import_ort()
    try:
        import onnx
        from onnxruntime.quantization import (  # type: ignore[import-untyped]
            QuantType,
            quantize_dynamic,
        )
    except ImportError as err:
        raise missing_dependency("onnx", err) from err

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in files.label)
    target = directory / f"text-{safe}-{files.digest}-opset{ONNX_OPSET}-int8-v{EXPORT_VERSION}.onnx"
    if target.is_file():
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ClrecError(f"{directory}: cannot create the ONNX folder ({err})") from err
    with tempfile.TemporaryDirectory(dir=directory, prefix=".export-") as work:
        plain, fused, quantised = (Path(work) / n for n in ("fp32.onnx", "fused.onnx", "q.onnx"))
        probe = _probe(files.directory)
        expected = _export_fp32(files, plain, probe)  # (B, L, H)
        gap = _relative_gap(_run_hidden(_session(plain, None), probe), expected)
        if gap > _EXPORT_TOLERANCE:
            raise ClrecError(
                f"{files.directory}: the ONNX export disagrees with torch (relative gap {gap:.2g})"
            )
        source = plain
        with _quiet():
            if _fuse(plain, fused, files.directory):
                fused_gap = _relative_gap(_run_hidden(_session(fused, None), probe), expected)
                if fused_gap <= _EXPORT_TOLERANCE:
                    source = fused
            try:
                quantize_dynamic(
                    str(source),
                    str(quantised),
                    per_channel=True,
                    weight_type=QuantType.QInt8,
                    # Fused ops have no inferred types; they compute in float.
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
            except Exception as err:  # the quantiser raises many types
                raise ClrecError(f"{files.directory}: int8 quantisation failed ({err})") from err
        os.replace(quantised, target)
    return target


class OnnxTextRunner:
    """Padded token batch → pooled vectors (B, H) through the int8 ONNX graph."""

    def __init__(self, files: ModelFiles, config: TextEncoderConfig) -> None:
        directory = Path(config.onnx_dir).expanduser() if config.onnx_dir else default_onnx_dir()
        self.path = export_int8(files, directory)
        self.config = config
        self.session = _session(self.path, config.threads)
        model_config = json.loads((files.directory / "config.json").read_text())
        self.dim = int(model_config["hidden_size"])

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        hidden = _run_hidden(self.session, batch)  # (B, L, H)
        return pool_numpy(
            hidden, batch["attention_mask"], self.config.pooling, self.config.normalize
        )  # (B, H)
