"""Pairwise (BPR-style) training of embedding models on the shared epoch loop.

Every epoch draws a fresh negative for every training pair and walks shuffled batches of
``(user, positive, negative)`` triples with Adam; early stopping, best-state restore and the
curve come from :func:`clrec.training.loop.run_training`. The model supplies
``batch_loss(users, positives, negatives)`` on ``(B,)`` index tensors and ``validate()``,
which refreshes whatever it caches for scoring and returns the validator's metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from clrec.errors import ClrecError
from clrec.training.loop import LoopConfig, TrainResult, run_training
from clrec.training.sampling import NegativeSampler, batch_slices

BatchLoss = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``(users, positives, negatives)`` ``(B,)`` int64 tensors → scalar loss."""


@dataclass(frozen=True)
class TrainerConfig:
    """Loop settings; ``patience`` counts evaluations (0 = never stop early);
    ``time_limit_minutes`` caps the wall-clock training time (None = no limit)."""

    epochs: int = 100
    batch_size: int = 4096
    lr: float = 1e-3
    eval_every: int = 1
    patience: int = 10
    metric: str = "ndcg@10"
    progress: bool = True
    time_limit_minutes: float | None = None
    optimizer: Literal["adam", "sparse_adam"] = "adam"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ClrecError(f"batch_size must be at least 1, got {self.batch_size}")
        self.loop()  # the loop's own checks

    def loop(self) -> LoopConfig:
        """The shared loop's settings (no checkpoints)."""
        return LoopConfig(
            epochs=self.epochs,
            lr=self.lr,
            optimizer=self.optimizer,
            eval_every=self.eval_every,
            patience=self.patience,
            metric=self.metric,
            progress=self.progress,
            time_limit_minutes=self.time_limit_minutes,
        )


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

    def epoch_batches(epoch: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        triples = sampler.epoch()  # the sampler's own seeded stream
        users = torch.from_numpy(triples.users).to(device)  # (n,)
        positives = torch.from_numpy(triples.positives).to(device)  # (n,)
        negatives = torch.from_numpy(triples.negatives).to(device)  # (n,)
        return [
            (users[part], positives[part], negatives[part])
            for part in batch_slices(len(triples), config.batch_size)
        ]

    def loss(batch: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        return batch_loss(*batch), {}

    return run_training(module, epoch_batches, loss, config.loop(), validate=validate)
