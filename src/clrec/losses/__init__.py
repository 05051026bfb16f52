"""Training objectives computed from embeddings."""

from clrec.losses.alignment import alignment_loss
from clrec.losses.augmentation import simgcl_noise, view_contrast_loss
from clrec.losses.bce import bce_loss
from clrec.losses.bpr import BPRLoss, bpr_loss, l2_penalty
from clrec.losses.cross_user import cross_user_loss
from clrec.losses.infonce import info_nce
from clrec.losses.intra_user import intra_user_loss
from clrec.losses.mse import mse_loss
from clrec.losses.objective import LossWeights, combine
from clrec.losses.social import social_loss
from clrec.losses.softmax import (
    catalogue_softmax_loss,
    sampled_catalogue_softmax_loss,
    truncated_mean,
)

__all__ = [
    "BPRLoss",
    "LossWeights",
    "alignment_loss",
    "bce_loss",
    "bpr_loss",
    "catalogue_softmax_loss",
    "combine",
    "cross_user_loss",
    "info_nce",
    "intra_user_loss",
    "l2_penalty",
    "mse_loss",
    "sampled_catalogue_softmax_loss",
    "simgcl_noise",
    "social_loss",
    "truncated_mean",
    "view_contrast_loss",
]
