"""Binary cross-entropy on logits, the pointwise loss for implicit feedback.

Each score is a logit for "the user interacted with the item"; labels are 1 for observed pairs
and 0 for sampled negatives. The loss is ``mean(softplus(s) - y · s)``, i.e. torch's
``binary_cross_entropy_with_logits``, which never forms ``log(σ(s))`` and so stays finite
for scores of any size.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional

from clrec.errors import ClrecError
from clrec.losses.infonce import zero_loss


def bce_loss(scores: Tensor, labels: Tensor) -> Tensor:
    """Mean binary cross-entropy of ``(B,)`` logits against ``(B,)`` labels in ``{0, 1}``."""
    if scores.ndim != 1 or scores.shape != labels.shape:
        raise ClrecError(
            f"scores and labels must be 1-d tensors of the same length, got shapes "
            f"{tuple(scores.shape)} and {tuple(labels.shape)}"
        )
    if scores.shape[0] == 0:
        return zero_loss(scores)
    if bool(((labels != 0) & (labels != 1)).any()):
        raise ClrecError("labels must all be 0 or 1")
    return functional.binary_cross_entropy_with_logits(scores, labels.to(scores))
