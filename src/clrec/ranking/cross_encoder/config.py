"""Settings of the cross-encoder ranker: one frozen dataclass, checked on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from clrec.errors import ClrecError

Mode = Literal["lora", "head", "last_n"]
MODES: tuple[Mode, ...] = ("lora", "head", "last_n")

# One learning rate per mode when none is given. The head alone is a small linear model on
# fixed features and takes a large step; LoRA adapters start at zero and the LoRA paper's
# RoBERTa-base runs used 4e-4–5e-4; unfreezing whole pretrained layers wants the usual BERT
# fine-tuning rate, or the pretrained weights are overwritten in the first few hundred steps.
DEFAULT_LEARNING_RATES: dict[Mode, float] = {"head": 1e-3, "lora": 5e-4, "last_n": 5e-5}


@dataclass(frozen=True)
class CrossEncoderConfig:
    """Settings of the cross-encoder ranker (all saved with it).

    ``model``: ``"minilm"`` (packaged all-MiniLM-L6-v2) or a local model folder.
    ``mode``: what trains (see :mod:`clrec.ranking.cross_encoder`); ``last_n`` layers for
    ``"last_n"``; ``lora_*``: adapter rank, scale (``alpha / r``), dropout and the target module
    names (``query`` / ``value`` are BERT's attention projections). ``head_dropout`` before the
    head. ``max_length``: tokens of query + item together; the longer of the two is cut first.
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


def config_from_dict(data: dict[str, Any], source: Path) -> CrossEncoderConfig:
    """The config saved in ``source`` (a settings dict); unknown keys are refused by name."""
    known = {f.name for f in fields(CrossEncoderConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ClrecError(f"{source}: unknown cross-encoder setting(s) {', '.join(unknown)}")
    return CrossEncoderConfig(**data)


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ClrecError(f"cross-encoder {name} must be an integer ≥ {low}, got {value!r}")


def _probability(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ClrecError(f"cross-encoder {name} must be in [0, 1), got {value}")
