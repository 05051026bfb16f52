"""InfoNCE with in-batch negatives, the contrastive loss every other contrastive term reuses.

Row ``i`` of ``anchors`` and row ``i`` of ``positives`` form a positive pair; every other row's
positive is a negative for row ``i``. With ``L2``-normalised inputs the logits are cosine
similarities over a temperature τ, and the loss is the mean cross-entropy of each row's
softmax against its own column (van den Oord et al. 2018; SimCLR; CLIP with ``symmetric``).

In-batch negatives have one trap: the same node can appear in a batch twice (a popular item,
a heavy user). Its second copy would then be a "negative" of the first, and the loss would push
a node away from itself. Given ``ids``, an off-diagonal column with the row's own id is masked
to ``-inf`` so it drops out of the softmax. The diagonal is never masked, so every row keeps a
finite logit and the loss stays finite.

:func:`masked_diagonal_cross_entropy` is the shared core; :mod:`clrec.losses.softmax` uses it
on raw dot products for in-batch softmax.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional

from clrec.errors import ClrecError


def check_temperature(temperature: float) -> None:
    """Raise :class:`ClrecError` unless ``temperature`` is a finite positive number."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ClrecError(f"temperature must be a number, got {temperature!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ClrecError(f"temperature must be a finite number > 0, got {temperature!r}")


def check_pair(first: Tensor, second: Tensor, names: tuple[str, str]) -> None:
    """Raise :class:`ClrecError` unless both are ``(B, D)`` tensors of the same shape."""
    if first.ndim != 2 or second.ndim != 2:
        raise ClrecError(
            f"{names[0]} and {names[1]} must be 2-d (B, D) tensors, got shapes "
            f"{tuple(first.shape)} and {tuple(second.shape)}"
        )
    if first.shape != second.shape:
        raise ClrecError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(first.shape)} "
            f"and {tuple(second.shape)}"
        )


def zero_loss(*inputs: Tensor) -> Tensor:
    """A scalar 0 connected to ``inputs`` (so ``backward`` works on an empty batch)."""
    return sum((x.sum() * 0.0 for x in inputs), torch.zeros((), device=inputs[0].device))


def masked_diagonal_cross_entropy(logits: Tensor, ids: Tensor | None = None) -> Tensor:
    """Mean cross-entropy of ``(B, B)`` logits against labels ``arange(B)``.

    With ``ids`` (``(B,)`` integers), column ``j ≠ i`` is removed from row ``i``'s softmax when
    ``ids[j] == ids[i]``. The mask is symmetric, so it also serves ``logits.T``.
    """
    batch = logits.shape[0]
    if logits.ndim != 2 or logits.shape[1] != batch:
        raise ClrecError(f"logits must be square (B, B), got shape {tuple(logits.shape)}")
    if ids is not None:
        if ids.shape != (batch,):
            raise ClrecError(f"ids must have shape ({batch},), got {tuple(ids.shape)}")
        if ids.is_floating_point() or ids.is_complex():
            raise ClrecError(f"ids must be an integer tensor, got dtype {ids.dtype}")
        ids = ids.to(logits.device)
        same = ids.unsqueeze(1) == ids.unsqueeze(0)  # (B, B)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    labels = torch.arange(batch, device=logits.device)  # (B,)
    return functional.cross_entropy(logits, labels)


def info_nce(
    anchors: Tensor,
    positives: Tensor,
    temperature: float,
    *,
    ids: Tensor | None = None,
    normalize: bool = True,
    symmetric: bool = False,
) -> Tensor:
    """In-batch InfoNCE between ``(B, D)`` anchors and positives; a scalar.

    ``ids`` (``(B,)`` int64) masks duplicate nodes out of each other's negatives; ``normalize``
    makes the logits cosine similarities; ``symmetric`` averages the anchor→positive and
    positive→anchor directions. An empty batch gives a zero that still has a gradient.
    """
    check_temperature(temperature)
    check_pair(anchors, positives, ("anchors", "positives"))
    if anchors.shape[0] == 0:
        return zero_loss(anchors, positives)
    if normalize:
        anchors = functional.normalize(anchors, dim=1)  # (B, D)
        positives = functional.normalize(positives, dim=1)  # (B, D)
    logits = anchors @ positives.T / temperature  # (B, B)
    loss = masked_diagonal_cross_entropy(logits, ids)
    if symmetric:
        loss = (loss + masked_diagonal_cross_entropy(logits.T, ids)) / 2
    return loss
