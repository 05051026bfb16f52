"""The cross-encoder ranker: fit on (query text, item text, click), predict click odds,
evaluate, and save / load / quantise through :mod:`~clrec.ranking.cross_encoder.persistence`."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from clrec.encoders.text import length_sorted_batches, load_tokenizer, resolve_model, torch_threads
from clrec.errors import ClrecError
from clrec.evaluation.metrics import auc, classification_report
from clrec.ranking.cross_encoder.config import CrossEncoderConfig, config_from_dict
from clrec.ranking.cross_encoder.network import build_network, device_batch, pair_logits
from clrec.ranking.cross_encoder.persistence import (
    RANKER_FILE,
    adapter_folder,
    check_base_model,
    quantize_network,
    read_meta,
    read_weights,
    write_ranker,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

Pairs = tuple[list[str], list[str], np.ndarray]


class CrossEncoderRanker:
    """Fine-tunes a transformer on (query text, item text, click) and predicts click odds.

    After :meth:`fit`: ``history`` (one dict per validation, or per epoch without
    validation: ``step``, ``epoch`` (fractional), ``train_loss`` (mean since the previous
    entry), ``val_auc``, ``val_loss``, ``seconds`` since training began),
    ``best`` (``val_auc``, ``step``, ``epoch`` of the kept state; None without validation),
    ``stopped_early``, ``stopped_by_time`` and ``pos_weight``.
    """

    def __init__(self, config: CrossEncoderConfig | None = None) -> None:
        self.config = config or CrossEncoderConfig()
        self.files = resolve_model(self.config.model)
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] | None = None
        self.stopped_early = False
        self.stopped_by_time = False
        self.pos_weight = 1.0
        self.network: nn.ModuleDict | None = None
        self._tokenizer: Any = None
        self._fitted = False
        self._quantized = False

    # ------------------------------------------------------------------ plumbing
    @property
    def is_quantized(self) -> bool:
        """True for the int8 inference copy made by :meth:`quantized`."""
        return self._quantized

    def _device(self) -> torch.device:
        import torch

        if self._quantized:
            return torch.device("cpu")  # dynamic int8 kernels exist on CPU only
        from clrec.models.mf import resolve_device

        device: torch.device = resolve_device(self.config.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ClrecError(
                f"cross-encoder device {self.config.device!r} asked for, but CUDA is not available"
            )
        return device

    def _tokenize(self, queries: list[str], items: list[str]) -> dict[str, list[list[int]]]:
        """Pair-encode: name → token lists (input ids, attention mask, segment ids)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.files.directory)
        encoded = self._tokenizer(
            queries, items, truncation="longest_first", max_length=self.config.max_length
        )
        names = ("input_ids", "attention_mask", "token_type_ids")
        return {name: encoded[name] for name in names if name in encoded}

    def _pad_id(self) -> int:
        pad = self._tokenizer.pad_token_id
        return int(pad) if pad is not None else 0

    @contextlib.contextmanager
    def _seeded(self, device: torch.device) -> Iterator[None]:
        """Seed torch's RNGs (init, dropout) for a block; the caller's RNG state comes back."""
        import torch

        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed)
            yield

    def _require_fitted(self, action: str) -> nn.ModuleDict:
        if not self._fitted or self.network is None:
            raise ClrecError(f"cannot {action} a cross-encoder ranker before fit or load")
        return self.network

    def _require_float(self, action: str) -> None:
        if self._quantized:
            raise ClrecError(
                f"cannot {action} the quantised cross-encoder: it is an inference-only copy"
            )

    # ------------------------------------------------------------------ training
    def fit(
        self,
        queries: Sequence[str],
        items: Sequence[str],
        labels: np.ndarray | Sequence[float],
        val_queries: Sequence[str] | None = None,
        val_items: Sequence[str] | None = None,
        val_labels: np.ndarray | Sequence[float] | None = None,
        pos_weight: float | None = None,
    ) -> Self:
        """Train from a fresh copy of the base model on (query, item) pairs, label 1 = click.

        ``pos_weight`` multiplies the loss of clicks (default: negatives / positives of
        ``labels``, so both classes weigh the same). With a validation set, its AUC is
        checked every ``eval_every`` steps and at epoch ends, training stops after
        ``patience`` checks without improvement, and the best state is kept.
        """
        self._require_float("fit")
        q, i = _pair_lists(queries, items, "training pairs")
        y = _label_array(labels, len(q), "training pairs")
        if not q:
            raise ClrecError("training pairs: none given")
        positives = float(y.sum())
        if positives == 0 or positives == len(y):
            raise ClrecError("training pairs: labels need both clicks (1) and non-clicks (0)")
        if pos_weight is None:
            pos_weight = (len(y) - positives) / positives
        elif not (math.isfinite(pos_weight) and pos_weight > 0):
            raise ClrecError(f"pos_weight must be positive, got {pos_weight}")
        validation = self._validation_set(val_queries, val_items, val_labels)

        from clrec.ranking.cross_encoder.train import train_network  # imports torch

        config = self.config
        device = self._device()
        tokens = self._tokenize(q, i)
        pad_id = self._pad_id()
        self.pos_weight = float(pos_weight)
        self.history, self.best = [], None
        self.stopped_early = self.stopped_by_time = False
        self._fitted = False
        validate = (
            None if validation is None else partial(self.evaluate, *validation, progress=False)
        )
        with torch_threads(config.threads), self._seeded(device):
            network = build_network(config, self.files).to(device)
            self.network = network
            self._fitted = True  # validation predicts with the network being trained
            try:
                record = train_network(
                    network, config, tokens, pad_id, y, self.pos_weight, validate, device
                )
            except BaseException:
                self.network, self._fitted = None, False
                raise
        self.history, self.best = record.history, record.best
        self.stopped_early, self.stopped_by_time = record.stopped_early, record.stopped_by_time
        return self

    def _validation_set(
        self,
        queries: Sequence[str] | None,
        items: Sequence[str] | None,
        labels: np.ndarray | Sequence[float] | None,
    ) -> Pairs | None:
        given = [queries is not None, items is not None, labels is not None]
        if not any(given):
            return None
        if not all(given):
            raise ClrecError(
                "validation pairs: give val_queries, val_items and val_labels together"
            )
        assert queries is not None and items is not None and labels is not None
        q, i = _pair_lists(queries, items, "validation pairs")
        y = _label_array(labels, len(q), "validation pairs")
        if not 0 < y.sum() < len(y):
            raise ClrecError("validation pairs: AUC needs both clicks (1) and non-clicks (0)")
        return q, i, y

    # ------------------------------------------------------------------ inference
    def predict(
        self,
        queries: Sequence[str],
        items: Sequence[str],
        batch_size: int | None = None,
        *,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Click probabilities (N,) float32 of the (query, item) pairs, in input order."""
        return _sigmoid(self.predict_logits(queries, items, batch_size, progress=progress))

    def predict_logits(
        self,
        queries: Sequence[str],
        items: Sequence[str],
        batch_size: int | None = None,
        *,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Click logits (N,) float32; pairs are length-sorted into batches, then put back."""
        import torch

        network = self._require_fitted("predict with")
        q, i = _pair_lists(queries, items, "pairs to score")
        size = self.config.batch_size if batch_size is None else batch_size
        if size < 1:
            raise ClrecError(f"batch_size must be at least 1, got {size}")
        out = np.zeros(len(q), dtype=np.float32)  # (N,)
        if not q:
            return out
        tokens = self._tokenize(q, i)
        pad_id = self._pad_id()
        device = self._device()
        show = self.config.progress if progress is None else progress
        from tqdm.auto import tqdm

        was_training = network.training
        network.eval()
        try:
            with torch_threads(self.config.threads), torch.inference_mode():
                lengths = [len(ids) for ids in tokens["input_ids"]]
                batches = length_sorted_batches(lengths, size)
                for positions in tqdm(batches, desc="rank", unit="batch", disable=not show):
                    batch = device_batch(tokens, positions, pad_id, device)  # name → (B, L)
                    out[positions] = pair_logits(network, batch).float().cpu().numpy()  # (B,)
        finally:
            network.train(was_training)
        return out

    def evaluate(
        self,
        queries: Sequence[str],
        items: Sequence[str],
        labels: np.ndarray | Sequence[float],
        *,
        progress: bool | None = None,
    ) -> dict[str, float]:
        """AUC, pos-weighted BCE ``loss`` (the training loss) and the classification report
        at threshold 0.5 of the pairs' predicted probabilities."""
        q, i = _pair_lists(queries, items, "pairs to evaluate")
        y = _label_array(labels, len(q), "pairs to evaluate")
        logits = self.predict_logits(q, i, progress=progress)  # (N,)
        probabilities = _sigmoid(logits)  # (N,)
        return {
            "auc": auc(y, probabilities),
            "loss": _weighted_bce(logits, y, self.pos_weight),
            **classification_report(y, probabilities),
        }

    def trainable_parameters(self) -> tuple[int, int]:
        """(parameters that train, all parameters) of the network; builds it when needed."""
        self._require_float("count trainable parameters of")
        if self.network is None:
            with torch_threads(self.config.threads), self._seeded(self._device()):
                self.network = build_network(self.config, self.files)
        params = list(self.network.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def quantized(self) -> CrossEncoderRanker:
        """An int8 copy for CPU inference: LoRA merged into the base weights, then the
        encoder's ``nn.Linear`` layers dynamically quantised (the head stays fp32)."""
        self._require_float("quantise")
        network = self._require_fitted("quantise")
        twin = CrossEncoderRanker.__new__(CrossEncoderRanker)
        twin.__dict__.update(self.__dict__)
        twin.history = [dict(e) for e in self.history]
        twin.best = None if self.best is None else dict(self.best)
        twin.network = quantize_network(network, self.config.mode)
        twin._quantized = True
        return twin

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``ranker.json``, the head and what the mode trained; returns the folder.

        The base model's weights are not copied: :meth:`load` re-reads them from
        ``config.model`` and checks their digest.
        """
        self._require_float("save")
        network = self._require_fitted("save")
        out = Path(directory)
        record = {
            "model": {"label": self.files.label, "digest": self.files.digest},
            "pos_weight": self.pos_weight,
            "history": self.history,
            "best": self.best,
            "stopped_early": self.stopped_early,
            "stopped_by_time": self.stopped_by_time,
        }
        write_ranker(out, network, self.config, record)
        return out

    @classmethod
    def load(cls, directory: str | Path, *, model: str | None = None) -> CrossEncoderRanker:
        """Read a saved ranker. ``model`` overrides where the base model lives now (a moved
        folder); its files must match the saved digest either way."""
        folder = Path(directory)
        meta = read_meta(folder)
        config = config_from_dict(dict(meta["config"]), folder / RANKER_FILE)
        if model is not None:
            config = replace(config, model=model)
        ranker = cls(config)
        check_base_model(meta, ranker.files, config.model, folder)
        adapter = adapter_folder(folder, config.mode)
        device = ranker._device()
        with torch_threads(config.threads), ranker._seeded(device):
            network = build_network(config, ranker.files, adapter=adapter)
        read_weights(network, config, ranker.files.label, folder)
        ranker.network = network.to(device).eval()
        ranker.pos_weight = float(meta["pos_weight"])
        ranker.history = [dict(e) for e in meta["history"]]
        ranker.best = None if meta["best"] is None else dict(meta["best"])
        ranker.stopped_early = bool(meta["stopped_early"])
        ranker.stopped_by_time = bool(meta["stopped_by_time"])
        ranker._fitted = True
        return ranker


# --------------------------------------------------------------------------- inputs, maths


def _pair_lists(
    queries: Sequence[str], items: Sequence[str], what: str
) -> tuple[list[str], list[str]]:
    q, i = list(queries), list(items)
    if len(q) != len(i):
        raise ClrecError(f"{what}: {len(q)} query texts but {len(i)} item texts")
    bad = next((k for k, t in enumerate(q + i) if not isinstance(t, str)), None)
    if bad is not None:
        side, row = ("query", bad) if bad < len(q) else ("item", bad - len(q))
        raise ClrecError(f"{what}: {side} text at row {row} is not a string: {(q + i)[bad]!r}")
    return q, i


def _label_array(labels: np.ndarray | Sequence[float], n: int, what: str) -> np.ndarray:
    y = np.asarray(labels, dtype=np.float64).reshape(-1)  # (N,)
    if y.size != n:
        raise ClrecError(f"{what}: {y.size} labels for {n} pairs")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ClrecError(f"{what}: labels must be 0 (no click) or 1 (click)")
    return y.astype(np.float32)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities (N,) float32 of logits (N,), without overflow warnings."""
    z = logits.astype(np.float64)  # (N,)
    small = np.exp(-np.abs(z))  # (N,) in (0, 1]: never overflows
    return np.where(z >= 0, 1.0 / (1.0 + small), small / (1.0 + small)).astype(np.float32)


def _weighted_bce(logits: np.ndarray, labels: np.ndarray, pos_weight: float) -> float:
    """Mean of ``pos_weight·y·softplus(-z) + (1-y)·softplus(z)``: torch's BCEWithLogits."""
    z = logits.astype(np.float64)  # (N,)
    y = labels.astype(np.float64)  # (N,)
    losses = pos_weight * y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z)
    return float(losses.mean())
