"""Cosine contrastive loss (CCL) of SimpleX (Mao et al., CIKM 2021) over shared negatives.

For a positive pair with cosine ``s⁺`` and its user's sampled negatives' cosines ``s⁻_k``:

    loss = relu(1 − s⁺) + w · mean_k relu(s⁻_k − m)

The margin ``m`` filters the negatives: only those more similar than ``m`` cost anything, so
with a high margin (SimpleX: 0.9 on Gowalla) the many easy negatives drop out and the few
hard ones carry the weight ``w``. Unlike a softmax, the value does not depend on how the
negatives were drawn beyond which ones are hard, so no log-q correction applies.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional

from clrec.errors import ClrecError
from clrec.losses.infonce import zero_loss
from clrec.losses.softmax import check_sampled_scores, truncated_mean


def cosine_contrastive_loss(
    positive_scores: Tensor,
    sampled_scores: Tensor,
    rows: Tensor,
    margin: float,
    negative_weight: float,
    drop_rate: float = 0.0,
) -> Tensor:
    """The mean CCL over every (row, item) pair.

    ``positive_scores`` ``(P,)`` are the pairs' cosines and ``rows`` ``(P,)`` their batch
    rows; ``sampled_scores`` ``(B, K)`` every row's cosines with the ``K`` negatives shared by
    the batch (an accidental hit, a sample that is the row's own positive, given a score
    below ``margin``, e.g. −1e9, costs nothing). Each row's negative term is computed once
    for all of its pairs. ``drop_rate``: :func:`~clrec.losses.softmax.truncated_mean`.
    """
    if not -1 <= margin < 1:
        raise ClrecError(f"margin must be in [-1, 1), got {margin}")
    if negative_weight < 0:
        raise ClrecError(f"negative_weight must be ≥ 0, got {negative_weight}")
    check_sampled_scores(positive_scores, sampled_scores, rows, "scores")
    if len(rows) == 0:
        return zero_loss(positive_scores, sampled_scores)
    negatives = functional.relu(sampled_scores - margin).mean(dim=1)  # (B,)
    losses = functional.relu(1 - positive_scores) + negative_weight * negatives[rows]  # (P,)
    return truncated_mean(losses, drop_rate)
