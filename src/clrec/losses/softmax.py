"""Softmax (cross-entropy) recommendation losses over raw dot-product scores.

Three ways to pick the items a user's positive competes with:

* :func:`full_softmax_loss`: the whole catalogue, exact but ``O(B · I)``.
* :func:`in_batch_softmax_loss`: the other rows' positives (the two-tower / YouTube recipe);
  an item that appears twice in the batch is masked out of its own row's negatives, as in
  :func:`clrec.losses.infonce.info_nce`, whose masked cross-entropy it reuses.
* :func:`sampled_softmax_loss`: ``K`` sampled negatives per row.

Scores are unnormalised dot products ``u · i / τ`` (the model's own scoring function), unlike
InfoNCE's default cosine similarity.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional

from clrec.errors import ClrecError
from clrec.losses.infonce import (
    check_pair,
    check_temperature,
    masked_diagonal_cross_entropy,
    zero_loss,
)


def full_softmax_loss(
    users: Tensor, items: Tensor, positives: Tensor, temperature: float = 1.0
) -> Tensor:
    """Mean cross-entropy of ``users @ items.T / τ`` against the positive item indices.

    ``users`` is ``(B, D)``, ``items`` the whole catalogue ``(I, D)``, ``positives`` ``(B,)``
    int64 indices into ``items``.
    """
    check_temperature(temperature)
    if users.ndim != 2 or items.ndim != 2 or users.shape[1] != items.shape[1]:
        raise ClrecError(
            f"users (B, D) and items (I, D) must be 2-d with the same D, got shapes "
            f"{tuple(users.shape)} and {tuple(items.shape)}"
        )
    if positives.shape != (users.shape[0],):
        raise ClrecError(
            f"positives must have shape ({users.shape[0]},), got {tuple(positives.shape)}"
        )
    if positives.is_floating_point() or positives.is_complex():
        raise ClrecError(f"positives must be integer item indices, got dtype {positives.dtype}")
    if users.shape[0] == 0:
        return zero_loss(users, items)
    if int(positives.min()) < 0 or int(positives.max()) >= items.shape[0]:
        raise ClrecError(f"positives must index the {items.shape[0]} items, got ids out of range")
    logits = users @ items.T / temperature  # (B, I)
    return functional.cross_entropy(logits, positives.to(device=logits.device, dtype=torch.int64))


def in_batch_softmax_loss(
    users: Tensor,
    positives: Tensor,
    temperature: float = 1.0,
    *,
    item_ids: Tensor | None = None,
) -> Tensor:
    """Softmax over the batch's positives: row ``i``'s target is ``positives[i]``.

    ``users`` and ``positives`` are ``(B, D)``; ``item_ids`` (``(B,)`` int64) masks a repeated
    item out of the negatives of the rows whose positive it is.
    """
    check_temperature(temperature)
    check_pair(users, positives, ("users", "positives"))
    if users.shape[0] == 0:
        return zero_loss(users, positives)
    logits = users @ positives.T / temperature  # (B, B)
    return masked_diagonal_cross_entropy(logits, item_ids)


def sampled_softmax_loss(
    users: Tensor, positives: Tensor, negatives: Tensor, temperature: float = 1.0
) -> Tensor:
    """Softmax of each row's positive against its own ``K`` sampled negatives.

    ``users`` and ``positives`` are ``(B, D)``, ``negatives`` ``(B, K, D)``.
    """
    check_temperature(temperature)
    check_pair(users, positives, ("users", "positives"))
    if negatives.ndim != 3 or negatives.shape[0] != users.shape[0]:
        raise ClrecError(
            f"negatives must be (B, K, D) with B = {users.shape[0]}, got {tuple(negatives.shape)}"
        )
    if negatives.shape[2] != users.shape[1]:
        raise ClrecError(f"negatives must have D = {users.shape[1]}, got {tuple(negatives.shape)}")
    if users.shape[0] == 0:
        return zero_loss(users, positives, negatives)
    positive_scores = (users * positives).sum(dim=1, keepdim=True)  # (B, 1)
    negative_scores = torch.einsum("bd,bkd->bk", users, negatives)  # (B, K)
    logits = torch.cat([positive_scores, negative_scores], dim=1) / temperature  # (B, 1 + K)
    labels = torch.zeros(users.shape[0], dtype=torch.int64, device=logits.device)  # (B,)
    return functional.cross_entropy(logits, labels)


def catalogue_softmax_loss(
    logits: Tensor,
    rows: Tensor,
    items: Tensor,
    temperature: float = 1.0,
    drop_rate: float = 0.0,
) -> Tensor:
    """Full-catalogue softmax computed once per user: the mean over every (row, item) pair.

    ``logits`` ``(B, I)`` are the batch users' scores over the catalogue; pair ``k`` says that
    ``items[k]`` is a positive of batch row ``rows[k]``. The value equals
    :func:`full_softmax_loss` over all those pairs, but the log-sum-exp of a row is shared by
    all of its user's positives, so an epoch costs ``U × I`` logits instead of ``|R| × I``.
    ``drop_rate`` > 0 leaves out that share of the pairs with the largest loss
    (:func:`truncated_mean`).
    """
    check_temperature(temperature)
    if logits.ndim != 2:
        raise ClrecError(f"logits must be (B, I), got shape {tuple(logits.shape)}")
    if rows.shape != items.shape or rows.ndim != 1:
        raise ClrecError("rows and items must be 1-d index tensors of equal length")
    if len(rows) == 0:
        return zero_loss(logits)
    log_probs = functional.log_softmax(logits / temperature, dim=1)  # (B, I)
    return truncated_mean(-log_probs[rows, items], drop_rate)  # pairs (P,)


def sampled_catalogue_softmax_loss(
    positive_logits: Tensor,
    sampled_logits: Tensor,
    rows: Tensor,
    temperature: float = 1.0,
    log_correction: float = 0.0,
    drop_rate: float = 0.0,
) -> Tensor:
    """Catalogue softmax estimated from ``K`` items sampled once per batch: the mean over
    every (row, item) pair of ``−log softmax`` of the pair's score among {its positive} ∪ the
    sampled items.

    ``positive_logits`` ``(P,)`` are the pairs' scores, ``rows`` ``(P,)`` their batch rows,
    ``sampled_logits`` ``(B, K)`` every row's scores of the shared samples (``−inf`` where a
    sample is one of the row's own positives, or a very negative finite score such as −1e9,
    which keeps gradients finite when a row's samples are all its own: an accidental hit is
    not a negative).
    ``log_correction`` = ``log(I / K)`` for a uniform sample of a catalogue of ``I`` items
    (the sampled log-q correction): then ``exp`` of the samples' log-sum-exp estimates the
    catalogue's sum, and the loss approaches :func:`catalogue_softmax_loss` as ``K → I``. A
    row's log-sum-exp is computed once for all of its pairs: ``B × K`` scores per batch, not
    ``B × I``. ``drop_rate``: :func:`truncated_mean`.
    """
    check_temperature(temperature)
    if sampled_logits.ndim != 2:
        raise ClrecError(f"sampled_logits must be (B, K), got {tuple(sampled_logits.shape)}")
    if rows.shape != positive_logits.shape or rows.ndim != 1:
        raise ClrecError("rows and positive_logits must be 1-d and of equal length")
    if len(rows) == 0:
        return zero_loss(positive_logits, sampled_logits)
    negatives = torch.logsumexp(sampled_logits / temperature, dim=1) + log_correction  # (B,)
    positives = positive_logits / temperature  # (P,)
    losses = torch.logaddexp(positives, negatives[rows]) - positives  # (P,)
    return truncated_mean(losses, drop_rate)


def truncated_mean(losses: Tensor, drop_rate: float) -> Tensor:
    """The mean of ``losses`` ``(P,)`` without the ``drop_rate`` share that is largest.

    The truncated loss of Wang et al. (WSDM 2021, "Denoising Implicit Feedback for
    Recommendation"): a false positive (a click that says nothing about taste) is hard to fit,
    so it sits among the largest losses of its batch, and leaving those out keeps it from
    pulling the model. At least one pair is kept; ``drop_rate`` 0 is the plain mean.
    """
    if not 0 <= drop_rate < 1:
        raise ClrecError(f"drop_rate must be in [0, 1), got {drop_rate}")
    if drop_rate == 0:
        return losses.mean()
    kept = max(1, math.ceil(len(losses) * (1 - drop_rate)))
    return torch.topk(losses, kept, largest=False, sorted=False).values.mean()
