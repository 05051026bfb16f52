"""Fine-tuning the cross-encoder through the project's one loop,
:func:`clrec.training.loop.run_training`.

The ranker validates every ``eval_every`` steps and at every epoch end; the loop validates at
the end of its epochs. So one loop "epoch" here is one validation period: the run's shuffled
mini-batches (each epoch's permutation drawn in turn from one generator seeded by
``config.seed``) are cut after every step at which validation is due, and period ``k`` is loop
epoch ``k``. The loop supplies the rest: pos-weighted binary cross-entropy steps with AdamW
(decay on weight matrices only), linear warm-up then linear decay, gradient clipping, early
stopping on validation AUC with the best state restored, and the wall-clock limit checked
before every batch. The loop's progress bars and log lines count these periods as epochs
(the same thing when ``eval_every`` is None). Torch is imported at the top: the ranker imports
this module in ``fit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

import numpy as np
import torch
from torch import nn

from clrec.ranking.cross_encoder.config import CrossEncoderConfig
from clrec.ranking.cross_encoder.network import device_batch, pair_logits
from clrec.training.loop import LoopConfig, TrainResult, run_training


@dataclass
class TrainingRecord:
    """The ranker's account of a run: ``history`` (one entry per validation period),
    ``best`` (the kept state; None without validation) and why training stopped."""

    history: list[dict[str, float]]
    best: dict[str, float] | None
    stopped_early: bool
    stopped_by_time: bool


def train_network(
    network: nn.ModuleDict,
    config: CrossEncoderConfig,
    tokens: dict[str, list[list[int]]],
    pad_id: int,
    labels: np.ndarray,
    pos_weight: float,
    validate: Callable[[], dict[str, float]] | None,
    device: torch.device,
) -> TrainingRecord:
    """Train ``network`` in place on the tokenised pairs and their 0/1 ``labels`` (N,).

    ``validate()`` (None: no validation) returns the ranker's evaluation of the validation
    pairs (``auc``, ``loss``, ...). At the end the network holds the best validated state, or
    the last one without validation, in eval mode.
    """
    periods = _validation_periods(len(labels), config, validating=validate is not None)
    ends = np.cumsum([len(period) for period in periods])  # (P,) step at each period's end
    total = int(ends[-1])
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=device))
    targets = torch.from_numpy(labels).to(device)  # (N,)
    steps = 0  # batches trained; less than ends[-1] once the clock or patience stops the run

    def batch_loss(positions: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        nonlocal steps
        steps += 1
        batch = device_batch(tokens, positions, pad_id, device)  # name → (B, L)
        rows = torch.from_numpy(positions).to(device)  # (B,)
        return loss_fn(pair_logits(network, batch), targets[rows]), {}

    loop = LoopConfig(
        epochs=len(periods),
        lr=config.lr,
        optimizer="adamw",
        weight_decay=config.weight_decay,
        decay_matrices_only=True,
        max_grad_norm=config.max_grad_norm,
        eval_every=1,
        patience=config.patience,
        metric="val_auc",
        progress=config.progress,
        time_limit_minutes=config.time_limit_minutes,
        time_check="batch",
    )
    result = run_training(
        _Trainee(network, frozen_encoder=config.mode == "head"),
        lambda period: periods[period - 1],
        batch_loss,
        loop,
        validate=None if validate is None else _as_val_metrics(validate),
        lr_factor=_linear_warmup_decay(total, int(config.warmup_ratio * total)),
    )
    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
    return _record(result, [min(int(end), steps) for end in ends], steps_per_epoch)


def _validation_periods(
    n: int, config: CrossEncoderConfig, *, validating: bool
) -> list[list[np.ndarray]]:
    """The run's mini-batches (positions into the ``n`` pairs, in training order), cut into
    periods that end at every epoch end and, when ``validating`` with ``eval_every``, after
    every ``eval_every``-th step (steps counted over the whole run)."""
    rng = np.random.default_rng(config.seed)
    size = config.batch_size
    batches: list[np.ndarray] = []
    ends: set[int] = set()
    for _ in range(config.epochs):
        order = rng.permutation(n)  # (n,)
        batches.extend(order[start : start + size] for start in range(0, n, size))
        ends.add(len(batches))
    if validating and config.eval_every is not None:
        ends.update(range(config.eval_every, len(batches) + 1, config.eval_every))
    cuts = sorted(ends)
    return [batches[start:end] for start, end in zip([0, *cuts[:-1]], cuts, strict=True)]


def _linear_warmup_decay(total: int, warmup: int) -> Callable[[int], float]:
    """Rate factor of optimiser step ``s`` (0-based): rises to 1 over ``warmup`` steps, then
    falls linearly; no step gets a zero rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(total - step, 1) / max(total - warmup, 1)

    return factor


def _as_val_metrics(validate: Callable[[], dict[str, float]]) -> Callable[[], dict[str, float]]:
    """``validate`` for the loop: the AUC and loss as ``val_auc`` / ``val_loss`` (the loop's
    own ``loss`` is the training loss)."""

    def metrics() -> dict[str, float]:
        scores = validate()
        return {"val_auc": scores["auc"], "val_loss": scores["loss"]}

    return metrics


class _Trainee(nn.Module):
    """The network as the loop trains it. With a frozen encoder (``mode="head"``) ``train()``
    leaves the encoder in eval mode: a fixed feature extractor, without dropout noise."""

    def __init__(self, network: nn.ModuleDict, *, frozen_encoder: bool) -> None:
        super().__init__()
        self.network = network
        self.frozen_encoder = frozen_encoder

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        if self.frozen_encoder:
            self.network["encoder"].eval()
        return self


def _record(result: TrainResult, steps: list[int], steps_per_epoch: int) -> TrainingRecord:
    """The loop's result in the ranker's terms: loop epoch ``k`` ended at step
    ``steps[k - 1]``; ``seconds`` counts training and validation since the start."""
    history: list[dict[str, float]] = []
    elapsed = 0.0
    for entry in result.history:
        step = steps[int(entry["epoch"]) - 1]
        elapsed += entry["seconds"] + entry.get("eval_seconds", 0.0)
        record = {"step": float(step), "epoch": step / steps_per_epoch, "train_loss": entry["loss"]}
        if "val_auc" in entry:
            record.update(val_auc=entry["val_auc"], val_loss=entry["val_loss"])
        record["seconds"] = elapsed
        history.append(record)
    best = None
    if result.best_score is not None:
        step = steps[result.best_epoch - 1]
        best = {"val_auc": result.best_score, "step": float(step), "epoch": step / steps_per_epoch}
    stopped_early = not result.stopped_by_time and result.epochs_run < len(steps)
    return TrainingRecord(history, best, stopped_early, result.stopped_by_time)
