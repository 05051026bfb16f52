"""Pretrained language model: item / user text → one L2-normalised vector per text.

Two backends compute the same function: ``torch`` (fp32, CUDA when present) and
``onnx-int8`` (ONNX Runtime with per-channel int8 weights, about twice as fast on CPU at a
mean cosine of ~0.99 to fp32; see :mod:`clrec.encoders.onnx_text`).

Every text is passed through :class:`clrec.encoders.privacy.PrivacyMasker` before it is
tokenised, so personal data never reaches the model. Texts are tokenised once, sorted by
token length and batched, so each batch pads to a similar length; results come back in
input order.

The pieces live beside this module: :mod:`~clrec.encoders.text_template` (item fields →
text), :mod:`~clrec.encoders.text_model` (settings, model files, loading) and
:mod:`~clrec.encoders.text_pooling` (batching and pooling). Their public names are
re-exported here, so ``clrec.encoders.text`` stays the one import for text encoding.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from clrec.encoders.onnx_text import OnnxTextRunner
from clrec.encoders.runtime import torch_threads
from clrec.encoders.text_model import (
    ModelFiles,
    TextEncoderConfig,
    load_tokenizer,
    load_transformer,
    resolve_model,
    text_identity,
)
from clrec.encoders.text_pooling import length_sorted_batches, pad_batch, pool_numpy, pool_torch
from clrec.encoders.text_template import DEFAULT_TEMPLATES, TextTemplate, default_template
from clrec.errors import ClrecError

__all__ = [
    "DEFAULT_TEMPLATES",
    "ModelFiles",
    "TextEncoder",
    "TextEncoderConfig",
    "TextTemplate",
    "default_template",
    "encode_texts",
    "length_sorted_batches",
    "load_tokenizer",
    "load_transformer",
    "pad_batch",
    "pool_numpy",
    "pool_torch",
    "resolve_model",
    "text_identity",
    "torch_threads",
]


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
