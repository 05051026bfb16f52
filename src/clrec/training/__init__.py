"""Training loops and the sampling they draw batches from."""

from clrec.training.sampling import NegativeSampler, TripletBatch, batch_slices
from clrec.training.trainer import BatchLoss, TrainerConfig, TrainResult, train_pairwise

__all__ = [
    "BatchLoss",
    "NegativeSampler",
    "TrainResult",
    "TrainerConfig",
    "TripletBatch",
    "batch_slices",
    "train_pairwise",
]
