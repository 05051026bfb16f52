"""Top-K ranking metrics as pure functions, with RecBole's definitions.

Every function takes ``hits``, a ``(B, K)`` boolean matrix whose ``[u, j]`` says whether the
item a model ranked ``j``-th for user ``u`` is relevant, and ``n_relevant``, a ``(B,)`` count
of each user's relevant items. They return a ``(B,)`` float64 array of per-user values, so the
evaluator can average them or keep them for segments and significance tests.
"""

from __future__ import annotations

import numpy as np

FloatArray = np.ndarray


def _check(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    if k < 1 or k > hits.shape[1]:
        raise ValueError(f"k={k} but the ranking holds {hits.shape[1]} items")
    if hits.shape[0] != n_relevant.shape[0]:
        raise ValueError("hits and n_relevant disagree on the number of users")
    return hits[:, :k].astype(np.float64)  # (B, k)


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> FloatArray:
    """Share of a user's relevant items found in the top ``k``."""
    top = _check(hits, n_relevant, k)
    return top.sum(axis=1) / np.maximum(n_relevant, 1)


def precision_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> FloatArray:
    """Share of the top ``k`` that is relevant."""
    return _check(hits, n_relevant, k).sum(axis=1) / k


def hit_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> FloatArray:
    """1 when any relevant item is in the top ``k``."""
    return (_check(hits, n_relevant, k).sum(axis=1) > 0).astype(np.float64)


def mrr_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> FloatArray:
    """Reciprocal rank of the first relevant item in the top ``k`` (0 when none)."""
    top = _check(hits, n_relevant, k)
    first = top.argmax(axis=1)  # (B,) position of the first hit (0 when none)
    found = top.max(axis=1) > 0
    return np.where(found, 1.0 / (first + 1.0), 0.0)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> FloatArray:
    """DCG of the top ``k`` over the DCG of an ideal ranking of ``min(n_relevant, k)`` hits."""
    top = _check(hits, n_relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))  # (k,)
    dcg = top @ discounts
    ideal_cumulative = np.cumsum(discounts)  # (k,) IDCG for 1..k relevant items
    ideal = ideal_cumulative[np.clip(n_relevant, 1, k) - 1]
    return np.where(n_relevant > 0, dcg / ideal, 0.0)


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> FloatArray:
    """Mean of precision at each hit position in the top ``k``, over ``min(n_relevant, k)``."""
    top = _check(hits, n_relevant, k)
    precision_at_each = np.cumsum(top, axis=1) / np.arange(1, k + 1)  # (B, k)
    return (precision_at_each * top).sum(axis=1) / np.clip(n_relevant, 1, k)


TOPK_METRICS = {
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "hit": hit_at_k,
    "mrr": mrr_at_k,
    "precision": precision_at_k,
    "map": map_at_k,
}
