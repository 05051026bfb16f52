"""The shared epoch loop for pairwise (BPR-style) embedding models.

One loop, read top to bottom: every epoch draws a fresh negative for every training pair,
walks shuffled batches with Adam, and every ``eval_every`` epochs asks the validator for
metrics. The best state (by ``metric``, higher is better) is kept in memory and restored at
the end; training stops early after ``patience`` evaluations without improvement.

The model supplies two closures: ``batch_loss(users, positives, negatives)`` on ``(B,)``
index tensors, and ``validate()`` which refreshes whatever the model caches for scoring and
returns the validator's metrics. That keeps model maths out of the trainer and the loop out
of the models.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from clrec.errors import ClrecError
from clrec.training.sampling import NegativeSampler, batch_slices

BatchLoss = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``(users, positives, negatives)`` ``(B,)`` int64 tensors → scalar loss."""


@dataclass(frozen=True)
class TrainerConfig:
    """Loop settings; ``patience`` counts evaluations (0 = never stop early)."""

    epochs: int = 100
    batch_size: int = 4096
    lr: float = 1e-3
    eval_every: int = 1
    patience: int = 10
    metric: str = "ndcg@10"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ClrecError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ClrecError(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ClrecError(f"lr must be positive, got {self.lr}")
        if self.eval_every < 1:
            raise ClrecError(f"eval_every must be at least 1, got {self.eval_every}")
        if self.patience < 0:
            raise ClrecError(f"patience must be ≥ 0, got {self.patience}")


@dataclass
class TrainResult:
    """What the loop did: the curve, the kept epoch and its validation score."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float | None = None
    epochs_run: int = 0
    train_seconds: float = 0.0


def train_pairwise(
    module: nn.Module,
    batch_loss: BatchLoss,
    sampler: NegativeSampler,
    config: TrainerConfig,
    *,
    device: torch.device,
    validate: Callable[[], dict[str, float]] | None = None,
) -> TrainResult:
    """Train ``module``'s parameters with Adam on BPR triples; restore the best state.

    Without ``validate`` every epoch runs and the final state is kept; history then holds
    loss and timing only.
    """
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    result = TrainResult()
    best_state: dict[str, Tensor] | None = None
    bad_evaluations = 0
    for epoch in range(1, config.epochs + 1):
        module.train()
        started = time.perf_counter()
        triples = sampler.epoch()
        users = torch.from_numpy(triples.users).to(device)  # (n,)
        positives = torch.from_numpy(triples.positives).to(device)  # (n,)
        negatives = torch.from_numpy(triples.negatives).to(device)  # (n,)
        total = torch.zeros((), device=device)
        slices = batch_slices(len(triples), config.batch_size)
        bar = tqdm(
            slices, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not config.progress
        )
        for part in bar:
            loss = batch_loss(users[part], positives[part], negatives[part])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += loss.detach() * (part.stop - part.start)
        epoch_seconds = time.perf_counter() - started
        result.train_seconds += epoch_seconds
        result.epochs_run = epoch
        mean_loss = float(total) / max(len(triples), 1)
        if epoch % config.eval_every and epoch != config.epochs:
            continue

        entry = {
            "epoch": float(epoch),
            "loss": mean_loss,
            "seconds": epoch_seconds,
            "train_seconds": result.train_seconds,
        }
        if validate is None:
            result.history.append(entry)
            result.best_epoch = epoch
            continue
        module.eval()
        started = time.perf_counter()
        metrics = validate()
        entry["eval_seconds"] = time.perf_counter() - started
        if config.metric not in metrics:
            raise ClrecError(
                f"the validator returned no {config.metric!r} (got {', '.join(sorted(metrics))})"
            )
        entry.update(metrics)
        result.history.append(entry)
        score = float(metrics[config.metric])
        if result.best_score is None or score > result.best_score:
            result.best_score, result.best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            bad_evaluations = 0
        else:
            bad_evaluations += 1
            if config.patience and bad_evaluations >= config.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return result
