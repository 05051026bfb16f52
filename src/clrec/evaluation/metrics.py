"""Recommender metrics as pure functions, with RecBole's definitions where RecBole has them.

Top-K ranking metrics (``TOPK_METRICS``) take ``hits``, a ``(B, K)`` boolean matrix whose
``[u, j]`` says whether the item a model ranked ``j``-th for user ``u`` is relevant, and
``n_relevant``, a ``(B,)`` count of each user's relevant items. They return a ``(B,)`` float64
array of per-user values, so the evaluator can average them or keep them for segments and
significance tests.

Further down: click metrics over 0/1 labels and scores (AUC, GAUC, log loss, thresholded
accuracy / precision / recall / F1), rating errors (RMSE, MAE), beyond-accuracy metrics over
``(U, K)`` top-K item-id lists (coverage, average popularity, Gini index, tail share), the
head / tail / cold item buckets, and a paired significance test between two runs' per-user
values. Metrics over no data (empty input, AUC without both classes) are ``nan``, not errors.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

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
    result: FloatArray = top.sum(axis=1) / np.maximum(n_relevant, 1)
    return result


def precision_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> FloatArray:
    """Share of the top ``k`` that is relevant."""
    result: FloatArray = _check(hits, n_relevant, k).sum(axis=1) / k
    return result


def hit_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> FloatArray:
    """1 when any relevant item is in the top ``k``."""
    result: FloatArray = (_check(hits, n_relevant, k).sum(axis=1) > 0).astype(np.float64)
    return result


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
    result: FloatArray = (precision_at_each * top).sum(axis=1) / np.clip(n_relevant, 1, k)
    return result


TOPK_METRICS = {
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "hit": hit_at_k,
    "mrr": mrr_at_k,
    "precision": precision_at_k,
    "map": map_at_k,
}


# --- click metrics over (labels, scores) ---------------------------------------------------


def _labels_and_scores(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 copies of ``labels`` (checked to be 0/1) and ``scores`` of equal length."""
    y = np.asarray(labels, dtype=np.float64).ravel()  # (N,)
    s = np.asarray(scores, dtype=np.float64).ravel()  # (N,)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return y, s


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; tied scores count half (average ranks, as sklearn).

    Uses the Mann-Whitney form ``(sum of positive ranks - P(P+1)/2) / (P * N)`` over ascending
    average ranks, which equals RecBole's ``AUC``. ``nan`` when either class is absent.
    """
    y, s = _labels_and_scores(labels, scores)
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy import stats  # imported where used: it weighs ~50 MB

    ranks = stats.rankdata(s)  # (N,) ascending, ties get their average rank
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def gauc(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    weight: Literal["positives", "samples"] = "positives",
) -> float:
    """Group (user) AUC: each group's AUC, averaged with a weight per group.

    RecBole's ``GAUC`` weights a user by their number of positive samples (the default);
    ``weight="samples"`` weights by all of the user's samples instead. Groups whose labels
    are all 0 or all 1 have no AUC and are skipped, as in RecBole; ``nan`` when none is left.
    Vectorised: one sort by (group, score), average ranks per run of tied scores in a group.
    """
    y, s = _labels_and_scores(labels, scores)
    g = np.asarray(groups).ravel()
    if g.shape != y.shape:
        raise ValueError(f"{y.size} labels but {g.size} groups")
    if y.size == 0:
        return float("nan")
    _, group = np.unique(g, return_inverse=True)  # (N,) dense group index
    group = group.ravel()
    order = np.lexsort((s, group))  # by group, then ascending score
    sg, ss = group[order], s[order]
    n = y.size
    # a new run of equal (group, score) starts where either changes
    starts = np.flatnonzero(np.r_[True, (sg[1:] != sg[:-1]) | (ss[1:] != ss[:-1])])  # (R,)
    ends = np.r_[starts[1:], n]  # (R,) exclusive
    run_of = np.repeat(np.arange(starts.size), ends - starts)  # (N,) run index per sorted row
    group_start = np.flatnonzero(np.r_[True, sg[1:] != sg[:-1]])  # (G,)
    first_of_group = group_start[sg]  # (N,) sorted position where this row's group begins
    # positions start..end-1 share the average 1-based rank within their group
    avg_rank = (starts + ends - 1) / 2.0 + 1.0  # (R,) 1-based global average position
    rank_in_group = avg_rank[run_of] - first_of_group  # (N,)
    n_groups = group_start.size
    pos = y[order]
    n_pos = np.bincount(sg, weights=pos, minlength=n_groups)  # (G,)
    n_all = np.bincount(sg, minlength=n_groups).astype(np.float64)  # (G,)
    n_neg = n_all - n_pos
    pos_rank_sum = np.bincount(sg, weights=rank_in_group * pos, minlength=n_groups)  # (G,)
    keep = (n_pos > 0) & (n_neg > 0)
    if not keep.any():
        return float("nan")
    p, q = n_pos[keep], n_neg[keep]
    group_auc = (pos_rank_sum[keep] - p * (p + 1) / 2) / (p * q)  # (G',)
    w = p if weight == "positives" else n_all[keep]
    return float((group_auc * w).sum() / w.sum())


def log_loss(labels: np.ndarray, probabilities: np.ndarray, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy, probabilities clipped to ``[eps, 1 - eps]`` (RecBole's)."""
    y, p = _labels_and_scores(labels, probabilities)
    if y.size == 0:
        return float("nan")
    p = np.clip(p, eps, 1 - eps)
    return float(np.mean(-y * np.log(p) - (1 - y) * np.log(1 - p)))


def classification_report(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of predicting 1 where ``probability >= threshold``.

    Also returns the confusion counts (``tp``, ``fp``, ``tn``, ``fn``). A ratio with a zero
    denominator (no predicted or no actual positives) is 0, as sklearn's default does.
    """
    y, p = _labels_and_scores(labels, probabilities)
    predicted = p >= threshold  # (N,)
    actual = y == 1
    tp = float((predicted & actual).sum())
    fp = float((predicted & ~actual).sum())
    fn = float((~predicted & actual).sum())
    tn = float((~predicted & ~actual).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / y.size if y.size else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "threshold": float(threshold),
    }


# --- rating metrics ------------------------------------------------------------------------


def _pair(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(truth, dtype=np.float64).ravel()  # (N,)
    p = np.asarray(predicted, dtype=np.float64).ravel()  # (N,)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true values but {p.size} predictions")
    return t, p


def rmse(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error of predicted ratings."""
    t, p = _pair(truth, predicted)
    return float(np.sqrt(np.mean((p - t) ** 2))) if t.size else float("nan")


def mae(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error of predicted ratings."""
    t, p = _pair(truth, predicted)
    return float(np.mean(np.abs(p - t))) if t.size else float("nan")


# --- beyond-accuracy metrics over top-K lists -----------------------------------------------


def _top(top_items: np.ndarray, k: int, n_items: int) -> np.ndarray:
    """The first ``k`` columns of a ``(U, K)`` id matrix, checked against the catalogue size."""
    top = np.asarray(top_items)
    if top.ndim != 2:
        raise ValueError(f"top_items must be (users, K), got shape {top.shape}")
    if k < 1 or k > top.shape[1]:
        raise ValueError(f"k={k} but the ranking holds {top.shape[1]} items")
    top = top[:, :k]  # (U, k)
    if top.size and (top.min() < 0 or top.max() >= n_items):
        raise ValueError(f"item ids must lie in [0, {n_items})")
    return top.astype(np.int64)


def coverage_at_k(top_items: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue recommended to at least one user in the top ``k`` (ItemCoverage)."""
    top = _top(top_items, k, n_items)
    return np.unique(top).size / n_items if n_items else float("nan")


def average_popularity_at_k(top_items: np.ndarray, item_counts: np.ndarray, k: int) -> float:
    """Mean training interaction count of recommended items (RecBole's AveragePopularity).

    RecBole averages per user then over users; with ``k`` slots per user that equals the mean
    over all recommended slots.
    """
    counts = np.asarray(item_counts, dtype=np.float64)  # (n_items,)
    top = _top(top_items, k, counts.size)
    return float(counts[top].mean()) if top.size else float("nan")


def gini_index_at_k(top_items: np.ndarray, n_items: int, k: int) -> float:
    """Gini index of how often each catalogue item is recommended (RecBole's GiniIndex).

    ``sum_i (2i - n - 1) P_(i) / (n * sum_i P_(i))`` with ``P`` the recommendation counts of
    all ``n`` items, never-recommended ones included as zeros, sorted ascending. 0 when every
    item is recommended equally often; near 1 when a few items take every slot.
    """
    top = _top(top_items, k, n_items)
    if top.size == 0 or n_items == 0:
        return float("nan")
    counts = np.sort(np.bincount(top.ravel(), minlength=n_items)).astype(np.float64)  # (n,)
    index = np.arange(1, n_items + 1)
    return float(((2 * index - n_items - 1) * counts).sum() / (n_items * counts.sum()))


def tail_share_at_k(top_items: np.ndarray, tail_mask: np.ndarray, k: int) -> float:
    """Share of recommended slots holding tail items (RecBole's TailPercentage).

    ``tail_mask`` is ``(n_items,)`` boolean; RecBole derives it from a ``tail_ratio``, here the
    caller chooses (e.g. ``popularity_buckets(...) != "head"``).
    """
    mask = np.asarray(tail_mask, dtype=bool)  # (n_items,)
    top = _top(top_items, k, mask.size)
    return float(mask[top].mean()) if top.size else float("nan")


def popularity_buckets(item_counts: np.ndarray, head_share: float = 0.2) -> np.ndarray:
    """Label each item ``"head"``, ``"tail"`` or ``"cold"`` by its training count.

    ``cold``: no training interaction. ``head``: the ``ceil(head_share * n_warm)`` items with
    the most interactions among the ``n_warm`` items that have any; ties at the cut go to the
    lower item id, so the head is exactly that size. ``tail``: the other warm items.
    Returns an ``(n_items,)`` array of strings.
    """
    if not 0.0 <= head_share <= 1.0:
        raise ValueError(f"head_share must lie in [0, 1], got {head_share}")
    counts = np.asarray(item_counts, dtype=np.float64).ravel()  # (n_items,)
    labels = np.full(counts.size, "cold", dtype="<U4")
    warm = np.flatnonzero(counts > 0)  # ascending ids
    labels[warm] = "tail"
    n_head = math.ceil(head_share * warm.size - 1e-9)  # tolerance: 0.2 * 15 is 3.0000000000000004
    # stable sort of -count keeps ascending ids among equal counts
    ranked = warm[np.argsort(-counts[warm], kind="stable")]
    labels[ranked[:n_head]] = "head"
    return labels


# --- significance ---------------------------------------------------------------------------


def paired_test(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Paired comparison of two runs' per-user values (same users, same order).

    Returns ``n``, ``mean_a``, ``mean_b``, ``mean_difference`` (a - b), the paired t-test's
    ``t_statistic`` / ``t_pvalue`` and the Wilcoxon signed-rank ``wilcoxon_statistic`` /
    ``wilcoxon_pvalue`` (zero differences dropped, scipy's default). When every difference
    is zero both p-values are 1 (no evidence of a difference); with fewer than two users, or
    no non-zero difference left for Wilcoxon, the undefined values are ``nan``.
    """
    x = np.asarray(a, dtype=np.float64).ravel()  # (U,)
    y = np.asarray(b, dtype=np.float64).ravel()  # (U,)
    if x.shape != y.shape:
        raise ValueError(f"paired test needs equal lengths, got {x.size} and {y.size}")
    n = int(x.size)
    diff = x - y
    nan = float("nan")
    result: dict[str, Any] = {
        "n": n,
        "mean_a": float(x.mean()) if n else nan,
        "mean_b": float(y.mean()) if n else nan,
        "mean_difference": float(diff.mean()) if n else nan,
        "t_statistic": nan,
        "t_pvalue": nan,
        "wilcoxon_statistic": nan,
        "wilcoxon_pvalue": nan,
    }
    if n and not diff.any():
        result.update(t_statistic=0.0, t_pvalue=1.0, wilcoxon_statistic=0.0, wilcoxon_pvalue=1.0)
        return result
    from scipy import stats  # imported where used: it weighs ~50 MB

    with warnings.catch_warnings():
        # constant non-zero differences make the t statistic infinite; scipy warns, we report
        warnings.simplefilter("ignore", RuntimeWarning)
        if n >= 2:
            t = stats.ttest_rel(x, y)
            result.update(t_statistic=float(t.statistic), t_pvalue=float(t.pvalue))
        if np.count_nonzero(diff) >= 1:
            w = stats.wilcoxon(x, y)
            result.update(wilcoxon_statistic=float(w.statistic), wilcoxon_pvalue=float(w.pvalue))
    return result
