"""The one epoch loop every trained model shares: optimiser, early stopping, checkpoints, logs.

A model hands the loop two closures and keeps its maths to itself:

* ``epoch_batches(epoch)`` — the batches of one epoch, in order. Models that want exact
  resumption draw them from a generator seeded by ``(seed, epoch)``, so an epoch replayed
  after a crash is the same epoch.
* ``batch_loss(batch)`` — a scalar loss plus named float parts for the logs.

Every ``eval_every`` epochs ``validate()`` returns metrics; the best state by ``metric``
(higher is better) is kept and restored at the end, and training stops after ``patience``
evaluations without improvement. With ``time_limit_minutes`` it also stops after the first
epoch that ends past that wall-clock budget (measured from the start of this call, so a resumed
run gets a fresh budget). With a ``checkpoint_dir`` the loop writes a checkpoint at
the end of every epoch (model, optimiser, history, best state, counters; written to a
temporary file and renamed, so a kill never leaves a half-written one) and, when one is
there, resumes from it. With a ``log_dir`` every loss part and metric goes to TensorBoard.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from clrec.errors import ClrecError

BatchT = TypeVar("BatchT")
logger = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class LoopConfig:
    """Loop settings; ``patience`` counts evaluations (0 = never stop early);
    ``time_limit_minutes`` caps the wall-clock training time (None = no limit)."""

    epochs: int = 100
    lr: float = 1e-3
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0  # AdamW's decoupled decay (Adam: none)
    eval_every: int = 1
    patience: int = 10
    metric: str = "ndcg@10"
    progress: bool = True
    checkpoint_dir: str | None = None
    log_dir: str | None = None
    time_limit_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ClrecError(f"epochs must be at least 1, got {self.epochs}")
        if not self.lr > 0:
            raise ClrecError(f"lr must be positive, got {self.lr}")
        if self.optimizer not in ("adam", "adamw"):
            raise ClrecError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if not self.weight_decay >= 0:  # NaN too
            raise ClrecError(f"weight_decay must be ≥ 0, got {self.weight_decay}")
        if self.eval_every < 1:
            raise ClrecError(f"eval_every must be at least 1, got {self.eval_every}")
        if self.patience < 0:
            raise ClrecError(f"patience must be ≥ 0, got {self.patience}")
        limit = self.time_limit_minutes
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise ClrecError(f"time_limit_minutes must be positive and finite, got {limit}")


@dataclass
class TrainResult:
    """What the loop did: the curve, the kept epoch and its validation score."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float | None = None
    epochs_run: int = 0
    train_seconds: float = 0.0
    resumed_from: int = 0  # epoch of the checkpoint this run started from (0: fresh)
    stopped_by_time: bool = False  # time_limit_minutes ended training before ``epochs``


def build_optimizer(
    parameters: Iterable[nn.Parameter], config: LoopConfig
) -> torch.optim.Optimizer:
    """Adam, or AdamW with decoupled weight decay."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(parameters, lr=config.lr)


def run_training(
    module: nn.Module,
    epoch_batches: Callable[[int], Iterable[BatchT]],
    batch_loss: Callable[[BatchT], tuple[Tensor, dict[str, float]]],
    config: LoopConfig,
    *,
    validate: Callable[[], dict[str, float]] | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``module``'s parameters; restore the best validated state (or keep the last).

    ``fingerprint`` (e.g. the model's hyper-parameters and data sizes) is stored in the
    checkpoint; resuming from a checkpoint with another fingerprint is refused. With
    ``config.time_limit_minutes`` training stops after the first epoch (validated, checkpointed
    and logged as usual) that ends past the limit; ``stopped_by_time`` then says so.
    """
    optimizer = build_optimizer(module.parameters(), config)
    result = TrainResult()
    state = _LoopState()
    checkpoint = Path(config.checkpoint_dir) / CHECKPOINT_NAME if config.checkpoint_dir else None
    if checkpoint is not None and checkpoint.is_file():
        state = _resume(checkpoint, module, optimizer, result, fingerprint or {})
    writer = _summary_writer(config.log_dir)
    # a checkpoint of a run that already stopped early: nothing left to train
    stopped = bool(config.patience) and state.bad_evaluations >= config.patience
    first_epoch = config.epochs + 1 if stopped else result.epochs_run + 1
    limit_seconds = None if config.time_limit_minutes is None else 60 * config.time_limit_minutes
    started = time.perf_counter()
    try:
        for epoch in range(first_epoch, config.epochs + 1):
            entry = _train_epoch(module, optimizer, epoch, epoch_batches, batch_loss, config)
            result.train_seconds += entry["seconds"]
            entry["train_seconds"] = result.train_seconds
            result.epochs_run = epoch
            evaluate = validate is not None and (
                epoch % config.eval_every == 0 or epoch == config.epochs
            )
            stop = False
            if evaluate and validate is not None:
                stop = _evaluate(module, validate, config, epoch, entry, result, state)
            elif validate is None:
                result.best_epoch = epoch
            if evaluate or validate is None or epoch == config.epochs:
                result.history.append(entry)
                _report(entry, config)
            if writer is not None:
                for key, value in entry.items():
                    if key != "epoch":
                        writer.add_scalar(key, value, epoch)
                writer.flush()
            if checkpoint is not None:
                _save_checkpoint(checkpoint, module, optimizer, result, state, fingerprint or {})
            if stop:
                break
            elapsed = time.perf_counter() - started
            if limit_seconds is not None and elapsed > limit_seconds and epoch < config.epochs:
                result.stopped_by_time = True
                _say(
                    f"stopping after epoch {epoch}: the time limit of "
                    f"{config.time_limit_minutes:g} minutes is spent ({elapsed:.1f} s)",
                    config,
                )
                break
    finally:
        if writer is not None:
            writer.close()
    if state.best_state is not None:
        module.load_state_dict(state.best_state)
    module.eval()
    return result


@dataclass
class _LoopState:
    best_state: dict[str, Tensor] | None = None
    bad_evaluations: int = 0


def _train_epoch(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    epoch_batches: Callable[[int], Iterable[BatchT]],
    batch_loss: Callable[[BatchT], tuple[Tensor, dict[str, float]]],
    config: LoopConfig,
) -> dict[str, float]:
    """One pass over ``epoch_batches(epoch)``; the mean of every loss part."""
    module.train()
    started = time.perf_counter()
    batches = epoch_batches(epoch)
    bar = tqdm(
        batches,
        desc=f"epoch {epoch}",
        unit="batch",
        leave=False,
        disable=not config.progress,
        total=len(batches) if isinstance(batches, Sized) else None,
    )
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for batch in bar:
        loss, parts = batch_loss(batch)
        if not torch.isfinite(loss):
            raise ClrecError(
                f"the training loss became {float(loss.detach())} in epoch {epoch}; lower the "
                "learning rate or the contrastive temperature"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        for key, value in {"loss": float(loss.detach()), **parts}.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    entry = {"epoch": float(epoch), "seconds": time.perf_counter() - started}
    entry.update({key: sums[key] / counts[key] for key in sums})
    return entry


def _evaluate(
    module: nn.Module,
    validate: Callable[[], dict[str, float]],
    config: LoopConfig,
    epoch: int,
    entry: dict[str, float],
    result: TrainResult,
    state: _LoopState,
) -> bool:
    """Validate, keep the best state; ``True`` when patience has run out."""
    module.eval()
    started = time.perf_counter()
    metrics = validate()
    entry["eval_seconds"] = time.perf_counter() - started
    if config.metric not in metrics:
        raise ClrecError(
            f"the validator returned no {config.metric!r} (got {', '.join(sorted(metrics))})"
        )
    entry.update(metrics)
    score = float(metrics[config.metric])
    if math.isfinite(score) and (result.best_score is None or score > result.best_score):
        result.best_score, result.best_epoch = score, epoch
        state.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        state.bad_evaluations = 0
        return False
    state.bad_evaluations += 1
    return bool(config.patience) and state.bad_evaluations >= config.patience


def _report(entry: dict[str, float], config: LoopConfig) -> None:
    """One line per logged epoch: to the progress display and to the ``logging`` log."""
    shown = ("loss", config.metric, "seconds")
    line = f"epoch {int(entry['epoch'])}: " + ", ".join(
        f"{key} {entry[key]:.4f}" for key in shown if key in entry
    )
    _say(line, config)


def _say(line: str, config: LoopConfig) -> None:
    """``line`` to the ``logging`` log (INFO) and, with progress bars, to the display."""
    logger.info(line)
    if config.progress:
        tqdm.write(line)


def _save_checkpoint(
    path: Path,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    result: TrainResult,
    state: _LoopState,
    fingerprint: dict[str, Any],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "fingerprint": fingerprint,
        "module": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "result": asdict(result),
        "best_state": state.best_state,
        "bad_evaluations": state.bad_evaluations,
    }
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def _resume(
    path: Path,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    result: TrainResult,
    fingerprint: dict[str, Any],
) -> _LoopState:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a foreign or damaged file: say which
        raise ClrecError(f"{path}: not a readable clrec checkpoint ({err})") from None
    keys = {"fingerprint", "module", "optimizer", "result", "best_state", "bad_evaluations"}
    if not isinstance(payload, dict) or not keys <= payload.keys():
        raise ClrecError(f"{path}: not a clrec checkpoint (a file of another kind)")
    if payload["fingerprint"] != fingerprint:
        raise ClrecError(
            f"{path}: the checkpoint belongs to another model or data set; remove it or use "
            "another checkpoint folder"
        )
    module.load_state_dict(payload["module"])
    optimizer.load_state_dict(payload["optimizer"])
    for key, value in payload["result"].items():
        setattr(result, key, value)
    result.resumed_from = result.epochs_run
    result.stopped_by_time = False  # every call has its own time budget
    return _LoopState(payload["best_state"], int(payload["bad_evaluations"]))


def _summary_writer(log_dir: str | None) -> Any:
    """A TensorBoard writer for ``log_dir`` (None: no logging)."""
    if log_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ClrecError(
            "TensorBoard logging needs the tensorboard package: pip install 'clrec[tensorboard]'"
        ) from None
    return SummaryWriter(log_dir=log_dir)
