"""Training objectives computed from embeddings."""

from clrec.losses.alignment import alignment_loss
from clrec.losses.augmentation import edge_dropout, simgcl_noise, view_contrast_loss
from clrec.losses.bce import bce_loss
from clrec.losses.bpr import BPRLoss, bpr_loss, l2_penalty
from clrec.losses.cross_user import cross_user_loss
from clrec.losses.infonce import info_nce
from clrec.losses.intra_user import intra_user_loss
from clrec.losses.mse import mse_loss
from clrec.losses.objective import LossWeights, combine
from clrec.losses.social import social_loss
from clrec.losses.softmax import full_softmax_loss, in_batch_softmax_loss, sampled_softmax_loss

__all__ = [
    "BPRLoss",
    "LossWeights",
    "alignment_loss",
    "bce_loss",
    "bpr_loss",
    "combine",
    "cross_user_loss",
    "edge_dropout",
    "full_softmax_loss",
    "in_batch_softmax_loss",
    "info_nce",
    "intra_user_loss",
    "l2_penalty",
    "mse_loss",
    "sampled_softmax_loss",
    "simgcl_noise",
    "social_loss",
    "view_contrast_loss",
]
