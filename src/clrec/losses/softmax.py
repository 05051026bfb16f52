"""Softmax (cross-entropy) recommendation losses over the model's scores, computed per user.

* :func:`catalogue_softmax_loss`: the whole catalogue, one log-sum-exp per user shared by all
  of their positives;
* :func:`sampled_catalogue_softmax_loss`: the same against ``K`` items sampled once per batch,
  with the log(I / K) correction;
* :func:`truncated_mean`: the truncated loss against noisy positives both can use.

Scores are the model's own similarities over a temperature ``τ``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional

from clrec.errors import ClrecError
from clrec.losses.infonce import (
    check_temperature,
    zero_loss,
)


def catalogue_softmax_loss(
    logits: Tensor,
    rows: Tensor,
    items: Tensor,
    temperature: float = 1.0,
    drop_rate: float = 0.0,
) -> Tensor:
    """Full-catalogue softmax computed once per user: the mean over every (row, item) pair.

    ``logits`` ``(B, I)`` are the batch users' scores over the catalogue; pair ``k`` says that
    ``items[k]`` is a positive of batch row ``rows[k]``. The value is the mean cross-entropy
    of every pair against the whole catalogue, but the log-sum-exp of a row is shared by
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
    log_correction: float | Tensor = 0.0,
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
    catalogue's sum, and the loss approaches :func:`catalogue_softmax_loss` as ``K → I``.
    For a sample drawn with probabilities ``q`` (e.g. by popularity) it is the ``(K,)``
    tensor ``−log(K · q_k)`` added to each sample's logit before the log-sum-exp. A
    row's log-sum-exp is computed once for all of its pairs: ``B × K`` scores per batch, not
    ``B × I``. ``drop_rate``: :func:`truncated_mean`.
    """
    check_temperature(temperature)
    check_sampled_scores(positive_logits, sampled_logits, rows, "logits")
    if len(rows) == 0:
        return zero_loss(positive_logits, sampled_logits)
    if isinstance(log_correction, Tensor):  # one correction per sample
        scaled = sampled_logits / temperature + log_correction.unsqueeze(0)  # (B, K)
        negatives = torch.logsumexp(scaled, dim=1)  # (B,)
    else:
        negatives = torch.logsumexp(sampled_logits / temperature, dim=1) + log_correction
    positives = positive_logits / temperature  # (P,)
    losses = torch.logaddexp(positives, negatives[rows]) - positives  # (P,)
    return truncated_mean(losses, drop_rate)


def check_sampled_scores(positive: Tensor, sampled: Tensor, rows: Tensor, kind: str) -> None:
    """Raise :class:`ClrecError` unless ``sampled_{kind}`` is ``(B, K)`` and ``rows`` and
    ``positive_{kind}`` are 1-d of one length (the inputs of every shared-sample loss)."""
    if sampled.ndim != 2:
        raise ClrecError(f"sampled_{kind} must be (B, K), got {tuple(sampled.shape)}")
    if rows.shape != positive.shape or rows.ndim != 1:
        raise ClrecError(f"rows and positive_{kind} must be 1-d and of equal length")


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
