"""Metric values computed by hand for a three-user ranking."""

import numpy as np
import pytest

from clrec.evaluation.metrics import (
    hit_at_k,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

# user 0: hits at ranks 1 and 3 of 3 relevant; user 1: no hit of 2; user 2: hit at rank 2 of 1
HITS = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=bool)
N_RELEVANT = np.array([3, 2, 1])
LOG3 = np.log2(3)


@pytest.mark.parametrize(
    ("metric", "k", "expected"),
    [
        (recall_at_k, 4, [2 / 3, 0, 1]),
        (recall_at_k, 2, [1 / 3, 0, 1]),
        (precision_at_k, 4, [0.5, 0, 0.25]),
        (hit_at_k, 1, [1, 0, 0]),
        (hit_at_k, 2, [1, 0, 1]),
        (mrr_at_k, 4, [1, 0, 0.5]),
        (mrr_at_k, 1, [1, 0, 0]),
        # DCG 1 + 1/log2(4) over IDCG 1 + 1/log2(3) + 1/log2(4)
        (ndcg_at_k, 4, [1.5 / (1.5 + 1 / LOG3), 0, 1 / LOG3]),
        # at k=2 the ideal holds min(3, 2) = 2 hits
        (ndcg_at_k, 2, [1 / (1 + 1 / LOG3), 0, 1 / LOG3]),
        # precisions at hit positions (1/1, 2/3) over min(n_relevant, k)
        (map_at_k, 4, [(1 + 2 / 3) / 3, 0, 0.5]),
        (map_at_k, 2, [1 / 2, 0, 0.5]),
    ],
)
def test_hand_computed_values(metric, k, expected):  # type: ignore[no-untyped-def]
    np.testing.assert_allclose(metric(HITS, N_RELEVANT, k), expected, rtol=1e-9)


def test_perfect_ranking_scores_one() -> None:
    hits = np.array([[1, 1, 0]], dtype=bool)
    n_relevant = np.array([2])
    for metric in (recall_at_k, ndcg_at_k, hit_at_k, mrr_at_k, map_at_k):
        assert metric(hits, n_relevant, 3)[0] == pytest.approx(1.0)


def test_k_larger_than_ranking_is_refused() -> None:
    with pytest.raises(ValueError, match="k=5"):
        recall_at_k(HITS, N_RELEVANT, 5)
