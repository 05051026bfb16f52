"""Mean squared error, the pointwise loss for explicit ratings.

For rating prediction (MovieLens stars) the model's score is the predicted rating itself and
the loss is ``mean((prediction - rating)²)``; its square root is the RMSE usually reported.
"""

from __future__ import annotations

from torch import Tensor

from clrec.errors import ClrecError
from clrec.losses.infonce import zero_loss


def mse_loss(predictions: Tensor, targets: Tensor) -> Tensor:
    """Mean of ``(predictions - targets)²`` over ``(B,)`` tensors."""
    if predictions.ndim != 1 or predictions.shape != targets.shape:
        raise ClrecError(
            f"predictions and targets must be 1-d tensors of the same length, got shapes "
            f"{tuple(predictions.shape)} and {tuple(targets.shape)}"
        )
    if predictions.shape[0] == 0:
        return zero_loss(predictions)
    return (predictions - targets.to(predictions)).pow(2).mean()
