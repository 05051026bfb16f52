"""Cross-encoder ranker: (user-context text, item text) → click probability, tuned on clicks.

The ranking stage after retrieval. A pretrained transformer (the packaged all-MiniLM-L6-v2 by
default, or any local Hugging Face folder; never a hub) reads the two texts as one pair
(``[CLS] query [SEP] item [SEP]``, so attention crosses between them), the token states are
mean-pooled over the attention mask, and a dropout + ``Linear(hidden, 1)`` head gives a click
logit. Mean pooling, not [CLS]: MiniLM was trained as a sentence encoder with mean pooling, so
its pooled vector is already meaningful when the encoder is frozen (``mode="head"``).

Three ways to fine-tune, chosen by :attr:`CrossEncoderConfig.mode`:

* ``"lora"`` (default): low-rank adapters (peft) on the attention projections plus the head;
  about 0.3 % of MiniLM's weights train, the base weights stay untouched.
* ``"head"``: the encoder is a frozen feature extractor (run without gradients and without
  dropout); only the head trains. Cheapest, weakest.
* ``"last_n"``: the last ``last_n`` transformer layers and the head train.

Training: pos-weighted binary cross-entropy on logits (class balance), AdamW, linear warm-up
then linear decay, gradient clipping, seeded shuffling; validation AUC every ``eval_every``
steps and at each epoch end drives early stopping, and the best state is restored at the end.
Persistence writes only what training changed (head, adapter or unfrozen layers); the base
model is re-read from ``config.model`` at load and must have the same content digest.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np

from clrec.encoders.text import (
    ModelFiles,
    length_sorted_batches,
    load_tokenizer,
    load_transformer,
    pad_batch,
    pool_torch,
    resolve_model,
    torch_threads,
)
from clrec.errors import ClrecError
from clrec.evaluation.metrics import auc, classification_report

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

Mode = Literal["lora", "head", "last_n"]
MODES: tuple[Mode, ...] = ("lora", "head", "last_n")

# One learning rate per mode when none is given. The head alone is a small linear model on
# fixed features and takes a large step; LoRA adapters start at zero and the LoRA paper's
# RoBERTa-base runs used 4e-4–5e-4; unfreezing whole pretrained layers wants the usual BERT
# fine-tuning rate, or the pretrained weights are overwritten in the first few hundred steps.
DEFAULT_LEARNING_RATES: dict[Mode, float] = {"head": 1e-3, "lora": 5e-4, "last_n": 5e-5}

FORMAT = "clrec-cross-encoder"
FORMAT_VERSION = 1
RANKER_FILE = "ranker.json"
HEAD_FILE = "head.safetensors"
ENCODER_FILE = "encoder.safetensors"  # last_n: the unfrozen layers' weights only
ADAPTER_DIR = "adapter"  # lora: peft's save_pretrained of the adapter
INSTALL_HINT = "pip install 'clrec[rank]'"


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CrossEncoderConfig:
    """Settings of the cross-encoder ranker (all saved with it).

    ``model``: ``"minilm"`` (packaged all-MiniLM-L6-v2) or a local model folder.
    ``mode``: what trains (see the module docstring); ``last_n`` layers for ``"last_n"``;
    ``lora_*``: adapter rank, scale (``alpha / r``), dropout and the target module names
    (``query`` / ``value`` are BERT's attention projections). ``head_dropout`` before the head.
    ``max_length``: tokens of query + item together; the longer of the two is cut first.
    ``learning_rate`` None: the mode's entry in :data:`DEFAULT_LEARNING_RATES`.
    ``warmup_ratio``: share of all steps with linearly rising rate, then linear decay to ~0.
    ``weight_decay``: AdamW decay on weight matrices (not biases / LayerNorm).
    ``max_grad_norm``: gradient clipping (None: off). ``patience``: validations without a
    better AUC before stopping (0: never stop early); validation runs every ``eval_every``
    steps (None: only at epoch ends) and at every epoch end. ``time_limit_minutes``: stop
    training after this much wall-clock time, keeping the best state. ``device`` None: CUDA
    when available, else CPU. ``threads`` None keeps torch's CPU thread setting.
    """

    model: str = "minilm"
    mode: Mode = "lora"
    last_n: int = 2
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = ("query", "value")
    head_dropout: float = 0.1
    max_length: int = 128
    batch_size: int = 32
    epochs: int = 3
    learning_rate: float | None = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    patience: int = 2
    eval_every: int | None = None
    seed: int = 0
    threads: int | None = None
    device: str | None = None
    time_limit_minutes: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        # YAML and JSON give lists; the config is frozen and hashable, so keep a tuple.
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if self.mode not in MODES:
            raise ClrecError(f"cross-encoder mode must be one of {MODES}, got {self.mode!r}")
        _at_least("last_n", self.last_n, 1)
        _at_least("lora_r", self.lora_r, 1)
        if not self.lora_alpha > 0:
            raise ClrecError(f"cross-encoder lora_alpha must be positive, got {self.lora_alpha}")
        _probability("lora_dropout", self.lora_dropout)
        _probability("head_dropout", self.head_dropout)
        if not self.lora_targets or not all(isinstance(t, str) and t for t in self.lora_targets):
            raise ClrecError(
                f"cross-encoder lora_targets must name modules, got {self.lora_targets!r}"
            )
        _at_least("max_length", self.max_length, 4)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("epochs", self.epochs, 1)
        rate = self.learning_rate
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ClrecError(f"cross-encoder learning_rate must be positive, got {rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ClrecError(
                f"cross-encoder warmup_ratio must be in [0, 1), got {self.warmup_ratio}"
            )
        if not self.weight_decay >= 0:  # NaN too
            raise ClrecError(f"cross-encoder weight_decay must be ≥ 0, got {self.weight_decay}")
        norm = self.max_grad_norm
        if norm is not None and not (math.isfinite(norm) and norm > 0):
            raise ClrecError(f"cross-encoder max_grad_norm must be positive or None, got {norm}")
        _at_least("patience", self.patience, 0)
        if self.eval_every is not None:
            _at_least("eval_every", self.eval_every, 1)
        if self.threads is not None:
            _at_least("threads", self.threads, 1)
        limit = self.time_limit_minutes
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise ClrecError(f"cross-encoder time_limit_minutes must be positive, got {limit}")

    @property
    def lr(self) -> float:
        """The learning rate in use: the one given, else the mode's default."""
        return (
            self.learning_rate
            if self.learning_rate is not None
            else (DEFAULT_LEARNING_RATES[self.mode])
        )


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ClrecError(f"cross-encoder {name} must be an integer ≥ {low}, got {value!r}")


def _probability(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ClrecError(f"cross-encoder {name} must be in [0, 1), got {value}")


def _config_from_dict(data: dict[str, Any], source: Path) -> CrossEncoderConfig:
    known = {f.name for f in fields(CrossEncoderConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ClrecError(f"{source}: unknown cross-encoder setting(s) {', '.join(unknown)}")
    return CrossEncoderConfig(**data)


# --------------------------------------------------------------------------- network


def _missing(package: str, error: ImportError) -> ClrecError:
    """The error for a missing optional dependency of the ranking stage."""
    return ClrecError(
        f"the cross-encoder ranker needs {package} ({error}); install it with {INSTALL_HINT}"
    )


def _encoder_layers(encoder: Any) -> Any:
    """The transformer's block list: ``encoder.layer`` (BERT family) or the one ModuleList
    as long as ``num_hidden_layers``."""
    from torch import nn

    inner = getattr(encoder, "encoder", None)
    layers = getattr(inner, "layer", None)
    if isinstance(layers, nn.ModuleList):
        return layers
    depth = int(getattr(encoder.config, "num_hidden_layers", -1))
    lists = [m for m in encoder.modules() if isinstance(m, nn.ModuleList) and len(m) == depth]
    if len(lists) != 1:
        raise ClrecError(
            f"mode 'last_n': cannot find the transformer layers of {type(encoder).__name__}"
        )
    return lists[0]


def _build_network(
    config: CrossEncoderConfig, files: ModelFiles, adapter: Path | None = None
) -> nn.ModuleDict:
    """Encoder (frozen except what ``mode`` trains) + dropout + head, seeded by the caller.

    ``adapter`` (lora): a saved peft adapter folder to load instead of fresh adapters.
    """
    import torch
    from torch import nn

    encoder = load_transformer(files.directory)
    hidden = int(encoder.config.hidden_size)
    limit = int(getattr(encoder.config, "max_position_embeddings", 0) or 10**9)
    if config.max_length > limit:
        raise ClrecError(
            f"cross-encoder max_length {config.max_length} exceeds what {files.label} "
            f"accepts ({limit} tokens)"
        )
    encoder.requires_grad_(False)
    if config.mode == "lora":
        encoder = _with_lora(encoder, config, adapter)
    elif config.mode == "last_n":
        layers = _encoder_layers(encoder)
        if config.last_n > len(layers):
            raise ClrecError(
                f"cross-encoder last_n {config.last_n} exceeds the {len(layers)} layers of "
                f"{files.label}"
            )
        for layer in layers[len(layers) - config.last_n :]:
            layer.requires_grad_(True)
    head = nn.Linear(hidden, 1)
    with torch.no_grad():  # small start: the first logits sit near 0 (p ≈ 0.5)
        nn.init.normal_(head.weight, std=0.02)
        head.bias.zero_()
    network = nn.ModuleDict(
        {"encoder": encoder, "dropout": nn.Dropout(config.head_dropout), "head": head}
    )
    return network.eval()


def _with_lora(encoder: Any, config: CrossEncoderConfig, adapter: Path | None) -> Any:
    """Fresh LoRA adapters on ``config.lora_targets``, or the saved ones in ``adapter``."""
    try:
        from peft import LoraConfig, PeftModel, get_peft_model
    except ImportError as err:
        raise _missing("peft", err) from err
    try:
        with warnings.catch_warnings():
            # peft calls a transformers method that transformers 5 deprecated; not ours to fix.
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
            if adapter is not None:
                return PeftModel.from_pretrained(encoder, str(adapter), is_trainable=True)
            lora = LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=list(config.lora_targets),
                bias="none",
            )
            return get_peft_model(encoder, lora)
    except (ValueError, OSError, KeyError) as err:
        where = (
            f"adapter {adapter}" if adapter is not None else f"lora_targets {config.lora_targets}"
        )
        raise ClrecError(f"cross-encoder {where}: {err}") from err


def _logits(network: nn.ModuleDict, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Padded pair batch (name → (B, L)) → click logits (B,)."""
    hidden = network["encoder"](**batch).last_hidden_state  # (B, L, H)
    pooled = pool_torch(hidden, batch["attention_mask"], "mean", normalize=False)  # (B, H)
    logits: torch.Tensor = network["head"](network["dropout"](pooled))  # (B, 1)
    return logits.squeeze(-1)  # (B,)


def _trainable_state(network: nn.ModuleDict) -> dict[str, torch.Tensor]:
    """Copies (on CPU) of the parameters that train; everything else never changes."""
    return {
        name: p.detach().to("cpu", copy=True)
        for name, p in network.named_parameters()
        if p.requires_grad
    }


def _weighted_bce(logits: np.ndarray, labels: np.ndarray, pos_weight: float) -> float:
    """Mean of ``pos_weight·y·softplus(-z) + (1-y)·softplus(z)``: torch's BCEWithLogits."""
    z = logits.astype(np.float64)  # (N,)
    y = labels.astype(np.float64)  # (N,)
    losses = pos_weight * y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z)
    return float(losses.mean())


def _linear_warmup_decay(total: int, warmup: int) -> Any:
    """Rate factor of optimiser step ``s`` (0-based): rises to 1 over ``warmup`` steps, then
    falls linearly; no step gets a zero rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(total - step, 1) / max(total - warmup, 1)

    return factor


# --------------------------------------------------------------------------- inputs


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


# --------------------------------------------------------------------------- ranker


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

        config = self.config
        device = self._device()
        tokens = self._tokenize(q, i)
        pad_id = self._pad_id()
        self.pos_weight = float(pos_weight)
        self.history, self.best = [], None
        self.stopped_early = self.stopped_by_time = False
        self._fitted = False
        with torch_threads(config.threads), self._seeded(device):
            network = _build_network(config, self.files).to(device)
            self.network = network
            self._fitted = True  # validation predicts with the network being trained
            try:
                self._train(network, tokens, pad_id, y, validation, device)
            except BaseException:
                self.network, self._fitted = None, False
                raise
        return self

    def _validation_set(
        self,
        queries: Sequence[str] | None,
        items: Sequence[str] | None,
        labels: np.ndarray | Sequence[float] | None,
    ) -> tuple[list[str], list[str], np.ndarray] | None:
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

    def _train(
        self,
        network: nn.ModuleDict,
        tokens: dict[str, list[list[int]]],
        pad_id: int,
        y: np.ndarray,
        validation: tuple[list[str], list[str], np.ndarray] | None,
        device: torch.device,
    ) -> None:
        """The step loop: shuffled batches, scheduled AdamW, validation, early stopping."""
        import torch
        from tqdm.auto import tqdm

        config = self.config
        n = len(y)
        steps_per_epoch = math.ceil(n / config.batch_size)
        total = steps_per_epoch * config.epochs
        trainable = [(k, p) for k, p in network.named_parameters() if p.requires_grad]
        decay = [p for _, p in trainable if p.ndim >= 2]  # weight matrices, LoRA A / B
        no_decay = [p for _, p in trainable if p.ndim < 2]  # biases, LayerNorm
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.lr,
        )
        warmup = int(config.warmup_ratio * total)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_warmup_decay(total, warmup))
        loss_fn = torch.nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(self.pos_weight, device=device)
        )
        targets = torch.from_numpy(y).to(device)  # (N,)
        order_rng = np.random.default_rng(config.seed)
        limit = None if config.time_limit_minutes is None else 60.0 * config.time_limit_minutes
        best_state: dict[str, torch.Tensor] | None = None
        bad_checks = 0
        loss_sum, loss_count = 0.0, 0
        started = time.perf_counter()
        bar = tqdm(total=total, unit="step", desc="cross-encoder", disable=not config.progress)

        def check(step: int) -> bool:
            """Log one history entry; validate and keep the best. True: patience is spent."""
            nonlocal best_state, bad_checks, loss_sum, loss_count
            entry = {
                "step": float(step),
                "epoch": step / steps_per_epoch,
                "train_loss": loss_sum / max(loss_count, 1),
            }
            loss_sum, loss_count = 0.0, 0
            stop = False
            if validation is not None:
                metrics = self.evaluate(*validation, progress=False)
                entry["val_auc"], entry["val_loss"] = metrics["auc"], metrics["loss"]
                score = metrics["auc"]
                if math.isfinite(score) and (self.best is None or score > self.best["val_auc"]):
                    self.best = {"val_auc": score, "step": entry["step"], "epoch": entry["epoch"]}
                    best_state = _trainable_state(network)
                    bad_checks = 0
                else:
                    bad_checks += 1
                    stop = config.patience > 0 and bad_checks >= config.patience
                self._train_mode(network)
            entry["seconds"] = time.perf_counter() - started
            self.history.append(entry)
            _say(
                f"step {step} (epoch {entry['epoch']:.2f}): "
                + ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k not in ("step", "epoch")),
                config.progress,
            )
            return stop

        step = 0
        self._train_mode(network)
        try:
            for positions, epoch_end in self._batches(n, order_rng):
                batch = {
                    name: torch.from_numpy(array).to(device)
                    for name, array in pad_batch(tokens, positions, pad_id).items()
                }  # name → (B, L)
                rows = torch.from_numpy(positions).to(device)  # (B,)
                loss = loss_fn(_logits(network, batch), targets[rows])
                if not torch.isfinite(loss):
                    raise ClrecError(
                        f"the cross-encoder loss became {float(loss.detach())} at step "
                        f"{step + 1}; lower the learning rate"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_([p for _, p in trainable], config.max_grad_norm)
                optimizer.step()
                schedule.step()
                step += 1
                value = float(loss.detach())
                loss_sum, loss_count = loss_sum + value, loss_count + 1
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                due = epoch_end or (
                    validation is not None
                    and config.eval_every is not None
                    and step % config.eval_every == 0
                )
                if due and check(step):
                    self.stopped_early = step < total
                    break
                if limit is not None and time.perf_counter() - started > limit and step < total:
                    if not due:
                        check(step)
                    self.stopped_by_time = True
                    _say(
                        f"stopping at step {step}: the time limit of "
                        f"{config.time_limit_minutes:g} minutes is spent",
                        config.progress,
                    )
                    break
        finally:
            bar.close()
        if best_state is not None:
            with torch.no_grad():
                for name, p in network.named_parameters():
                    if name in best_state:
                        p.copy_(best_state[name])
        network.eval()

    def _train_mode(self, network: nn.ModuleDict) -> None:
        network.train()
        if self.config.mode == "head":
            network["encoder"].eval()  # a fixed feature extractor: no dropout noise

    def _batches(self, n: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, bool]]:
        """(positions of one shuffled mini-batch, whether it ends its epoch) for all epochs."""
        size = self.config.batch_size
        for _ in range(self.config.epochs):
            order = rng.permutation(n)
            for start in range(0, n, size):
                yield order[start : start + size], start + size >= n

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
                    batch = {
                        name: torch.from_numpy(array).to(device)
                        for name, array in pad_batch(tokens, positions, pad_id).items()
                    }  # name → (B, L)
                    out[positions] = _logits(network, batch).float().cpu().numpy()  # (B,)
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
                self.network = _build_network(self.config, self.files)
        params = list(self.network.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def quantized(self) -> CrossEncoderRanker:
        """An int8 copy for CPU inference: LoRA merged into the base weights, then the
        encoder's ``nn.Linear`` layers dynamically quantised (the head stays fp32)."""
        self._require_float("quantise")
        network = self._require_fitted("quantise")
        import torch
        from torch import nn

        copied: nn.ModuleDict = copy.deepcopy(network).to("cpu").eval()
        encoder: Any = copied["encoder"]  # a PeftModel or a transformers model
        if self.config.mode == "lora":
            encoder = encoder.merge_and_unload()  # W + (alpha / r)·B·A, plain Linear layers
        quantize: Any = torch.ao.quantization.quantize_dynamic  # untyped in torch
        with warnings.catch_warnings():
            # torch.ao's int8 tensors are being retired in favour of torchao; they still work.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
            copied["encoder"] = quantize(encoder, {nn.Linear}, dtype=torch.qint8)
        twin = CrossEncoderRanker.__new__(CrossEncoderRanker)
        twin.__dict__.update(self.__dict__)
        twin.history = [dict(e) for e in self.history]
        twin.best = None if self.best is None else dict(self.best)
        twin.network = copied
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
        try:
            from safetensors.torch import save_file
        except ImportError as err:
            raise _missing("safetensors", err) from err
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        head = {k: v.detach().cpu().contiguous() for k, v in network["head"].state_dict().items()}
        save_file(head, str(out / HEAD_FILE))
        encoder: Any = network["encoder"]
        if self.config.mode == "lora":
            encoder.save_pretrained(str(out / ADAPTER_DIR))
        elif self.config.mode == "last_n":
            unfrozen = {
                name: p.detach().cpu().contiguous()
                for name, p in encoder.named_parameters()
                if p.requires_grad
            }
            save_file(unfrozen, str(out / ENCODER_FILE))
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "config": asdict(self.config),
            "model": {"label": self.files.label, "digest": self.files.digest},
            "pos_weight": self.pos_weight,
            "history": self.history,
            "best": self.best,
            "stopped_early": self.stopped_early,
            "stopped_by_time": self.stopped_by_time,
        }
        (out / RANKER_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path, *, model: str | None = None) -> CrossEncoderRanker:
        """Read a saved ranker. ``model`` overrides where the base model lives now (a moved
        folder); its files must match the saved digest either way."""
        folder = Path(directory)
        path = folder / RANKER_FILE
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ClrecError(f"{path}: not a readable cross-encoder ranker ({err})") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ClrecError(f"{path}: not a clrec cross-encoder ranker")
        if meta.get("version") != FORMAT_VERSION:
            raise ClrecError(
                f"{path}: format version {meta.get('version')!r}; this clrec reads {FORMAT_VERSION}"
            )
        config = _config_from_dict(dict(meta["config"]), path)
        if model is not None:
            config = replace(config, model=model)
        ranker = cls(config)
        saved = meta["model"]
        if ranker.files.digest != saved["digest"]:
            raise ClrecError(
                f"{path}: the ranker was trained on {saved['label']} (digest "
                f"{saved['digest']}), but {config.model!r} holds {ranker.files.label} (digest "
                f"{ranker.files.digest}); point model= at the original base model"
            )
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise _missing("safetensors", err) from err
        adapter = folder / ADAPTER_DIR if config.mode == "lora" else None
        if adapter is not None and not adapter.is_dir():
            raise ClrecError(f"{folder}: the LoRA adapter folder {ADAPTER_DIR}/ is missing")
        device = ranker._device()
        import torch

        with torch_threads(config.threads), ranker._seeded(device):
            network = _build_network(config, ranker.files, adapter=adapter)
        try:
            network["head"].load_state_dict(load_file(str(folder / HEAD_FILE)))
            if config.mode == "last_n":
                unfrozen = load_file(str(folder / ENCODER_FILE))
                expected = {k for k, p in network["encoder"].named_parameters() if p.requires_grad}
                if set(unfrozen) != expected:
                    raise ClrecError(
                        f"{folder / ENCODER_FILE}: holds other layers than last_n "
                        f"{config.last_n} of {ranker.files.label}"
                    )
                with torch.no_grad():
                    for name, p in network["encoder"].named_parameters():
                        if name in unfrozen:
                            p.copy_(unfrozen[name])
        except (OSError, RuntimeError) as err:
            raise ClrecError(f"{folder}: cannot read the ranker's weights ({err})") from err
        ranker.network = network.to(device).eval()
        ranker.pos_weight = float(meta["pos_weight"])
        ranker.history = [dict(e) for e in meta["history"]]
        ranker.best = None if meta["best"] is None else dict(meta["best"])
        ranker.stopped_early = bool(meta["stopped_early"])
        ranker.stopped_by_time = bool(meta["stopped_by_time"])
        ranker._fitted = True
        return ranker


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities (N,) float32 of logits (N,), without overflow warnings."""
    z = logits.astype(np.float64)  # (N,)
    small = np.exp(-np.abs(z))  # (N,) in (0, 1]: never overflows
    return np.where(z >= 0, 1.0 / (1.0 + small), small / (1.0 + small)).astype(np.float32)


def _say(line: str, progress: bool) -> None:
    """``line`` to the ``logging`` log (INFO) and, with progress bars, to the display."""
    logger.info(line)
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(line)
