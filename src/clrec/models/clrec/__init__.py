"""The clrec model: ID embeddings fused with pretrained content, trained with contrastive terms.

Items are ``ID vector + fused content`` and users ``ID vector + pooled history``
(:mod:`~clrec.models.clrec.network`); the training plan draws batches and computes the
supervised and contrastive losses (:mod:`~clrec.models.clrec.objective`); an EASE prior can
be fused with the embedding scores after training (:mod:`~clrec.models.clrec.prior`); every
hyper-parameter is in :class:`~clrec.models.clrec.config.ClrecConfig`.
"""

from clrec.models.clrec.config import ClrecConfig
from clrec.models.clrec.model import ClrecRecommender
from clrec.models.clrec.objective import Batch, TrainingPlan
from clrec.models.clrec.prior import MAX_PRIOR_ITEMS, PRIOR_REGS, PRIOR_WEIGHTS

__all__ = [
    "MAX_PRIOR_ITEMS",
    "PRIOR_REGS",
    "PRIOR_WEIGHTS",
    "Batch",
    "ClrecConfig",
    "ClrecRecommender",
    "TrainingPlan",
]
