"""Bayesian personalised ranking loss (Rendle et al. 2009) and the L2 term used with it.

BPR pushes a user's score for an observed item above the score for a sampled negative:
``mean(-log σ(s⁺ - s⁻))``, computed as ``softplus(s⁻ - s⁺)`` so it never takes log(0).
The L2 term is the LightGCN paper's: ``λ · (‖u‖² + ‖i⁺‖² + ‖i⁻‖²) / (2B)`` over the batch's
*input* (layer-0) embeddings, so its strength does not depend on the batch size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from clrec.errors import ClrecError


def bpr_loss(positive_scores: Tensor, negative_scores: Tensor) -> Tensor:
    """Mean of ``-log σ(positive - negative)`` over the batch; scores are ``(B,)``."""
    return torch.nn.functional.softplus(negative_scores - positive_scores).mean()


def l2_penalty(*embeddings: Tensor) -> Tensor:
    """``Σ ‖e‖² / (2B)`` over the given ``(B, D)`` tensors (B from the first one)."""
    if not embeddings:
        raise ClrecError("l2_penalty needs at least one tensor")
    batch = embeddings[0].shape[0]
    total = sum((e.pow(2).sum() for e in embeddings), torch.zeros((), device=embeddings[0].device))
    return total / (2 * max(batch, 1))


class BPRLoss(nn.Module):
    """BPR on user / positive / negative embeddings plus ``reg_weight`` · L2.

    :meth:`compute_loss_from_embeddings` holds the maths; :meth:`forward` is the same call.
    ``reg_embeddings`` are what the L2 term acts on (layer-0 embeddings for LightGCN); by
    default the scored embeddings themselves.
    """

    def __init__(self, reg_weight: float = 0.0) -> None:
        super().__init__()
        if reg_weight < 0:
            raise ClrecError(f"reg_weight must be ≥ 0, got {reg_weight}")
        self.reg_weight = reg_weight

    def compute_loss_from_embeddings(
        self,
        users: Tensor,
        positives: Tensor,
        negatives: Tensor,
        reg_embeddings: tuple[Tensor, ...] | None = None,
    ) -> Tensor:
        """Scalar loss from ``(B, D)`` user, positive-item and negative-item embeddings."""
        positive_scores = (users * positives).sum(dim=1)  # (B,)
        negative_scores = (users * negatives).sum(dim=1)  # (B,)
        loss = bpr_loss(positive_scores, negative_scores)
        if self.reg_weight > 0:
            regularised = (
                reg_embeddings
                if reg_embeddings is not None
                else (
                    users,
                    positives,
                    negatives,
                )
            )
            loss = loss + self.reg_weight * l2_penalty(*regularised)
        return loss

    def forward(
        self,
        users: Tensor,
        positives: Tensor,
        negatives: Tensor,
        reg_embeddings: tuple[Tensor, ...] | None = None,
    ) -> Tensor:
        return self.compute_loss_from_embeddings(users, positives, negatives, reg_embeddings)
