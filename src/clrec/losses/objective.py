"""The training objective: a supervised loss plus weighted contrastive terms.

The founding document writes the user contrast as ``L = α·L_contrast + (1−α)·L_cross``. Read
literally, ``L_contrast`` and ``L_cross`` would be sums of similarities between positive pairs,
which are unbounded and would be *maximised*; here each is the InfoNCE objective that is
*minimised* to the same end. It pulls a positive pair together and pushes the batch's other
rows away, so it cannot be won by inflating every similarity:

* ``L_contrast`` is :func:`clrec.losses.intra_user.intra_user_loss` (two items of one user),
* ``L_cross`` is :func:`clrec.losses.cross_user.cross_user_loss` (two users of one item).

Their α-mix is one term with the weight ``contrastive``, added to the supervised loss (BPR,
softmax, BCE or MSE) together with the optional alignment, augmentation and social terms::

    total = supervised
          + contrastive · (α · intra_user + (1 − α) · cross_user)
          + alignment · L_alignment + augmentation · L_augmentation + social · L_social

A term that is not computed contributes nothing. A term whose coefficient is 0 is logged but
left out of the total, so a disabled term can never turn the total into NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from pydantic import ConfigDict
from torch import Tensor

from clrec.errors import ClrecError

TERMS = ("intra_user", "cross_user", "alignment", "augmentation", "social")


@dataclass(frozen=True)
class LossWeights:
    """Weights of the contrastive terms; all ≥ 0, and ``0 ≤ alpha ≤ 1``.

    ``contrastive`` weighs the whole user contrast, ``alpha`` splits it between intra-user
    (``alpha``) and cross-user (``1 − alpha``) contrast. The defaults are the clrec model's
    (intra / cross-user contrast at 0.5, alignment at 0.1), so a config that names one weight
    keeps the others as they were.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    contrastive: float = 0.5
    alpha: float = 0.5
    alignment: float = 0.1
    augmentation: float = 0.0
    social: float = 0.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ClrecError(
                    f"loss weight {field.name} must be a finite number ≥ 0, got {value!r}"
                )
        if self.alpha > 1:
            raise ClrecError(f"loss weight alpha must be in [0, 1], got {self.alpha}")

    def coefficient(self, term: str) -> float:
        """The factor ``term``'s loss is multiplied by in the total."""
        if term == "intra_user":
            return self.contrastive * self.alpha
        if term == "cross_user":
            return self.contrastive * (1 - self.alpha)
        if term in ("alignment", "augmentation", "social"):
            return float(getattr(self, term))
        raise ClrecError(f"unknown loss term {term!r}; expected one of {', '.join(TERMS)}")


def combine(
    supervised: Tensor | None, terms: dict[str, Tensor], weights: LossWeights
) -> tuple[Tensor, dict[str, float]]:
    """The weighted total of ``supervised`` and ``terms``, and every part as a float for logs.

    ``terms`` keys are among ``intra_user``, ``cross_user``, ``alignment``, ``augmentation``,
    ``social``; values are scalar tensors. The log has ``supervised`` (0.0 when None), each
    given term and ``total``.
    """
    coefficients = {name: weights.coefficient(name) for name in terms}  # checks the names
    parts = ({"supervised": supervised} if supervised is not None else {}) | terms
    if not parts:
        raise ClrecError("combine needs a supervised loss or at least one contrastive term")
    for name, value in parts.items():
        if value.ndim != 0:
            raise ClrecError(f"loss {name} must be a scalar tensor, got shape {tuple(value.shape)}")
    first = next(iter(parts.values()))
    total = supervised if supervised is not None else torch.zeros((), device=first.device)
    for name, value in terms.items():
        if coefficients[name] > 0:
            total = total + coefficients[name] * value
    logged = {"supervised": torch.zeros((), device=first.device)} | parts | {"total": total}
    values = torch.stack([v.detach().to(first.device, torch.float64) for v in logged.values()])
    return total, dict(zip(logged, values.tolist(), strict=True))
