"""Training objectives computed from embeddings."""

from clrec.losses.bpr import BPRLoss, bpr_loss, l2_penalty

__all__ = ["BPRLoss", "bpr_loss", "l2_penalty"]
