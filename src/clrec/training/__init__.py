"""Training loops and the sampling they draw batches from."""

from clrec.training.loop import LoopConfig, TrainResult, run_training
from clrec.training.sampling import NegativeSampler, TripletBatch, batch_slices
from clrec.training.trainer import BatchLoss, TrainerConfig, train_pairwise

__all__ = [
    "BatchLoss",
    "LoopConfig",
    "NegativeSampler",
    "TrainResult",
    "TrainerConfig",
    "TripletBatch",
    "batch_slices",
    "run_training",
    "train_pairwise",
]
