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
run gets a fresh budget); with ``time_check="batch"`` the clock is also read before every batch,
and the epoch in which the budget runs out ends there (for models whose epochs are long).
Optional per-step extras, off by default: gradient-norm clipping (``max_grad_norm``), AdamW
decay on weight matrices only (``decay_matrices_only``) and a learning-rate schedule
(``run_training(lr_factor=...)``). With a ``checkpoint_dir`` the loop writes a checkpoint at
the end of every epoch (model, optimiser, history, best state, counters; written to a
temporary file and renamed, so a kill never leaves a half-written one) and, when one is
there, resumes from it. With a ``log_dir`` every loss part and metric goes to TensorBoard.

Under ``torchrun`` (a ``torch.distributed`` process group of more than one process, see
:mod:`clrec.distributed`) the same call trains data-parallel with PyTorch's
``DistributedDataParallel``: every rank builds the same epoch (hence the seeding above), takes
batches ``rank, rank + world, ...`` of it and DDP averages the gradients before each step, so
``world`` processes with batch size B follow one process whose batches are the concatenations
of ``world`` consecutive batches (batch size ``world · B``) when the loss is a mean over the
batch's examples; a loss with in-batch negatives (InfoNCE) still draws them from each rank's
own batch of B. Rank 0 alone validates, writes checkpoints and logs and shows progress; its
decisions reach the others, so all ranks stop together and end with the same (best) weights.
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

from clrec import distributed
from clrec.errors import ClrecError
from clrec.training.optim import OPTIMIZERS, build_optimizer

BatchT = TypeVar("BatchT")
logger = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class LoopConfig:
    """Loop settings; ``patience`` counts evaluations (0 = never stop early);
    ``time_limit_minutes`` caps the wall-clock training time (None = no limit)."""

    epochs: int = 100
    lr: float = 1e-3
    # sparse_adam: Adam on the rows a step touched only (every parameter's gradient sparse);
    # lazy_adamw: that for the sparse-gradient parameters, AdamW for the rest (optim.py)
    optimizer: Literal["adam", "adamw", "sparse_adam", "lazy_adamw"] = "adam"
    weight_decay: float = 0.0  # AdamW's decoupled decay (Adam: none)
    eval_every: int = 1
    patience: int = 10
    metric: str = "ndcg@10"
    progress: bool = True
    checkpoint_dir: str | None = None
    log_dir: str | None = None
    time_limit_minutes: float | None = None
    # "batch": also check the time limit before every batch and end the epoch there
    time_check: Literal["epoch", "batch"] = "epoch"
    max_grad_norm: float | None = None  # clip the gradients' global L2 norm (None: off)
    # AdamW: decay weight matrices only, not biases or normalisation gains (the BERT recipe)
    decay_matrices_only: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ClrecError(f"epochs must be at least 1, got {self.epochs}")
        if not self.lr > 0:
            raise ClrecError(f"lr must be positive, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ClrecError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if not self.weight_decay >= 0:  # NaN too
            raise ClrecError(f"weight_decay must be ≥ 0, got {self.weight_decay}")
        if self.eval_every < 1:
            raise ClrecError(f"eval_every must be at least 1, got {self.eval_every}")
        if self.patience < 0:
            raise ClrecError(f"patience must be ≥ 0, got {self.patience}")
        limit = self.time_limit_minutes
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise ClrecError(f"time_limit_minutes must be positive and finite, got {limit}")
        if self.time_check not in ("epoch", "batch"):
            raise ClrecError(f"time_check must be 'epoch' or 'batch', got {self.time_check!r}")
        norm = self.max_grad_norm
        if norm is not None and not (math.isfinite(norm) and norm > 0):
            raise ClrecError(f"max_grad_norm must be positive and finite, got {norm}")
        if norm is not None and self.optimizer in ("sparse_adam", "lazy_adamw"):
            raise ClrecError(f"max_grad_norm cannot clip the sparse gradients of {self.optimizer}")
        if self.decay_matrices_only and self.optimizer not in ("adamw",):
            raise ClrecError(f"decay_matrices_only needs optimizer 'adamw', not {self.optimizer!r}")


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


def run_training(
    module: nn.Module,
    epoch_batches: Callable[[int], Iterable[BatchT]],
    batch_loss: Callable[[BatchT], tuple[Tensor, dict[str, float]]],
    config: LoopConfig,
    *,
    validate: Callable[[], dict[str, float]] | None = None,
    fingerprint: dict[str, Any] | None = None,
    lr_factor: Callable[[int], float] | None = None,
) -> TrainResult:
    """Train ``module``'s parameters; restore the best validated state (or keep the last).

    ``fingerprint`` (e.g. the model's hyper-parameters and data sizes) is stored in the
    checkpoint; resuming from a checkpoint with another fingerprint is refused. With
    ``config.time_limit_minutes`` training stops after the first epoch (validated, checkpointed
    and logged as usual) that ends past the limit; ``stopped_by_time`` then says so. With
    ``time_check="batch"`` an epoch also ends before any batch but its first once the limit is
    past (a resumed run goes on with the next epoch). ``lr_factor(s)`` multiplies ``config.lr``
    at optimiser step ``s`` (0-based, counted over the whole run; its position is checkpointed).

    In a process group of ``world > 1`` processes each epoch is cut into ``len // world``
    rounds of ``world`` consecutive batches, rank ``r`` taking batch ``r`` of each round; the
    last ``len % world`` batches are dropped so every rank takes the same number of steps
    (they differ from epoch to epoch, as the seeded order does). ``validate`` runs on rank 0
    only (the others never call it); loss parts are averaged over all ranks' batches.
    """
    main = distributed.is_main()
    optimizer = build_optimizer(
        module.parameters(),
        config.optimizer,
        config.lr,
        config.weight_decay,
        decay_matrices_only=config.decay_matrices_only,
    )
    schedule = (
        None if lr_factor is None else torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    )
    update = _Update(module, optimizer, schedule, config.max_grad_norm)
    result = TrainResult()
    state = _LoopState()
    checkpoint = Path(config.checkpoint_dir) / CHECKPOINT_NAME if config.checkpoint_dir else None
    if checkpoint is not None:
        # rank 0 reads the file; every rank applies the same payload
        path = checkpoint
        payload = distributed.run_on_main(
            lambda: _read_checkpoint(path) if path.is_file() else None
        )
        if payload is not None:
            state = _resume(payload, path, module, update, result, fingerprint or {})
    step = _Stepper(module, batch_loss)  # after resuming: DDP starts every rank from rank 0's
    writer = _summary_writer(config.log_dir if main else None)
    # a checkpoint of a run that already stopped early: nothing left to train
    stopped = bool(config.patience) and state.bad_evaluations >= config.patience
    first_epoch = config.epochs + 1 if stopped else result.epochs_run + 1
    limit_seconds = None if config.time_limit_minutes is None else 60 * config.time_limit_minutes
    started = time.perf_counter()
    deadline = (
        started + limit_seconds
        if limit_seconds is not None and config.time_check == "batch"
        else None
    )
    try:
        for epoch in range(first_epoch, config.epochs + 1):
            entry, cut = _train_epoch(module, update, epoch, epoch_batches, step, config, deadline)
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
            if checkpoint is not None and main:
                _save_checkpoint(checkpoint, module, update, result, state, fingerprint or {})
            if stop and not cut:  # an epoch the clock cut short is a time stop
                break
            if limit_seconds is not None and (cut or epoch < config.epochs):
                # rank 0's clock decides for everyone
                elapsed = distributed.run_on_main(lambda: time.perf_counter() - started)
                if cut or elapsed > limit_seconds:
                    result.stopped_by_time = True
                    _say(
                        f"stopping {'in' if cut else 'after'} epoch {epoch}: the time limit of "
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


class _BatchLossModule(nn.Module):
    """``forward(batch)`` is the model's ``batch_loss(batch)``: the handle DDP needs.

    DDP synchronises gradients only for computations that run through the wrapped module's
    ``forward`` (that is where it prepares its reducer for the coming backward). Models here
    compute losses through their own methods, not ``module.forward``, so wrapping ``module``
    itself would train each rank alone; wrapping this module, whose only child is ``module``
    and whose forward is the closure, puts every batch loss through DDP unchanged.
    """

    def __init__(
        self, module: nn.Module, batch_loss: Callable[[Any], tuple[Tensor, dict[str, float]]]
    ) -> None:
        super().__init__()
        self.module = module
        self.batch_loss = batch_loss

    def forward(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        return self.batch_loss(batch)


class _Stepper:
    """One batch's loss, through DDP in a process group of more than one process."""

    def __init__(
        self, module: nn.Module, batch_loss: Callable[[BatchT], tuple[Tensor, dict[str, float]]]
    ) -> None:
        self.batch_loss: Callable[[Any], tuple[Tensor, dict[str, float]]] = batch_loss
        if distributed.is_distributed():
            # Broadcasts rank 0's parameters and buffers now (every rank starts from them),
            # then averages gradients in backward. Batches of another kind may leave some
            # parameters out of the graph (a contrastive batch vs a supervised one): DDP
            # finds those each step; one untouched on every rank keeps ``grad = None``.
            self.batch_loss = nn.parallel.DistributedDataParallel(
                _BatchLossModule(module, batch_loss), find_unused_parameters=True
            )

    def __call__(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        return self.batch_loss(batch)


@dataclass
class _Update:
    """One optimiser step from a loss: gradients, optional clipping, step, optional schedule."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler | None
    max_grad_norm: float | None

    def __call__(self, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.max_grad_norm is not None:  # parameters without a gradient are skipped
            nn.utils.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()


@dataclass
class _LoopState:
    best_state: dict[str, Tensor] | None = None
    bad_evaluations: int = 0


def _train_epoch(
    module: nn.Module,
    update: _Update,
    epoch: int,
    epoch_batches: Callable[[int], Iterable[BatchT]],
    step: _Stepper,
    config: LoopConfig,
    deadline: float | None,
) -> tuple[dict[str, float], bool]:
    """One pass over ``epoch_batches(epoch)`` (this rank's share): the mean of every loss part
    over all ranks' batches, and whether the ``deadline`` (``time.perf_counter`` on rank 0;
    None: none) ended the pass before its last batch."""
    module.train()
    started = time.perf_counter()
    batches = epoch_batches(epoch)
    parallel = distributed.is_distributed()
    if parallel:
        batches = _my_batches(list(batches), epoch)
    main = distributed.is_main()
    bar = tqdm(
        batches,
        desc=f"epoch {epoch}",
        unit="batch",
        leave=False,
        disable=not (config.progress and main),
        total=len(batches) if isinstance(batches, Sized) else None,
    )
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    cut = False
    for index, batch in enumerate(bar):
        if index and deadline is not None and _past(deadline):
            cut = True
            break
        loss, parts = step(batch)
        # every rank must see a bad loss, or the others would wait in backward forever
        checked = distributed.mean_over_ranks(loss) if parallel else loss
        if not torch.isfinite(checked):
            raise ClrecError(
                f"the training loss became {float(checked.detach())} in epoch {epoch}; lower "
                "the learning rate or the contrastive temperature"
            )
        update(loss)
        for key, value in {"loss": float(loss.detach()), **parts}.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    bar.close()
    if parallel:  # every rank's sums, merged in rank order: the same entry on every rank
        gathered = distributed.all_gather_objects((sums, counts))
        sums, counts = {}, {}
        for rank_sums, rank_counts in gathered:
            for key, value in rank_sums.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + rank_counts[key]
    entry = {"epoch": float(epoch), "seconds": time.perf_counter() - started}
    entry.update({key: sums[key] / counts[key] for key in sums})
    return entry, cut


def _past(deadline: float) -> bool:
    """Whether rank 0's clock is past ``deadline``, on every rank."""
    return distributed.run_on_main(lambda: time.perf_counter() > deadline)


def _my_batches(batches: list[BatchT], epoch: int) -> list[BatchT]:
    """This rank's share of one epoch: batch ``i`` goes to rank ``i % world``; the tail that
    does not fill a round is dropped so every rank takes the same number of steps."""
    size = distributed.world()[1]
    lengths = distributed.all_gather_objects(len(batches))
    if len(set(lengths)) > 1:
        raise ClrecError(
            f"epoch {epoch} has {', '.join(map(str, lengths))} batches on ranks "
            f"0..{size - 1}; every rank must build the same epoch (seed it by (seed, epoch))"
        )
    if len(batches) < size:
        raise ClrecError(
            f"epoch {epoch} has {len(batches)} batch(es), fewer than the {size} processes "
            "training it; lower the batch size or start fewer processes"
        )
    return distributed.shard(batches, equal=True)


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
    metrics = distributed.run_on_main(validate)  # rank 0 validates; all ranks keep the books
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
    """``line`` to the ``logging`` log (INFO) and, with progress bars, to the display
    (rank 0 only in a distributed run)."""
    if not distributed.is_main():
        return
    logger.info(line)
    if config.progress:
        tqdm.write(line)


def _save_checkpoint(
    path: Path,
    module: nn.Module,
    update: _Update,
    result: TrainResult,
    state: _LoopState,
    fingerprint: dict[str, Any],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "fingerprint": fingerprint,
        "module": module.state_dict(),
        "optimizer": update.optimizer.state_dict(),
        "result": asdict(result),
        "best_state": state.best_state,
        "bad_evaluations": state.bad_evaluations,
    }
    if update.schedule is not None:  # only then: files of runs without one stay as they were
        payload["schedule"] = update.schedule.state_dict()
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's payload (CPU tensors), checked to be a clrec checkpoint."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a foreign or damaged file: say which
        raise ClrecError(f"{path}: not a readable clrec checkpoint ({err})") from None
    keys = {"fingerprint", "module", "optimizer", "result", "best_state", "bad_evaluations"}
    if not isinstance(payload, dict) or not keys <= payload.keys():
        raise ClrecError(f"{path}: not a clrec checkpoint (a file of another kind)")
    return payload


def _resume(
    payload: dict[str, Any],
    path: Path,
    module: nn.Module,
    update: _Update,
    result: TrainResult,
    fingerprint: dict[str, Any],
) -> _LoopState:
    if payload["fingerprint"] != fingerprint:
        raise ClrecError(
            f"{path}: the checkpoint belongs to another model or data set; remove it or use "
            "another checkpoint folder"
        )
    if ("schedule" in payload) != (update.schedule is not None):
        raise ClrecError(
            f"{path}: the checkpoint was written {'with' if 'schedule' in payload else 'without'}"
            " a learning-rate schedule and this run differs; remove it or use another folder"
        )
    module.load_state_dict(payload["module"])
    update.optimizer.load_state_dict(payload["optimizer"])
    if update.schedule is not None:
        update.schedule.load_state_dict(payload["schedule"])
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
