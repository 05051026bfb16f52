"""Click, rating, beyond-accuracy and significance metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from clrec.evaluation.metrics import (
    auc,
    average_popularity_at_k,
    classification_report,
    coverage_at_k,
    gauc,
    gini_index_at_k,
    log_loss,
    mae,
    paired_test,
    popularity_buckets,
    rmse,
    tail_share_at_k,
)

# --- AUC --------------------------------------------------------------------------------


def test_auc_counts_correctly_ordered_pairs() -> None:
    # positive/negative pairs: (.9>.8) (.9>.1) (.3<.8) (.3>.1) -> 3 of 4
    assert auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.1])) == pytest.approx(0.75)


def test_auc_ties_count_half() -> None:
    # pairs: (.5 vs .5) tie = 0.5, (.5>.1), (.9>.5), (.9>.1) -> 3.5 / 4
    assert auc(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.9, 0.1])) == pytest.approx(0.875)
    # every score tied: each pair counts 0.5
    assert auc(np.array([1, 0, 0]), np.zeros(3)) == pytest.approx(0.5)


def test_auc_perfect_and_reversed() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    assert auc(labels, scores) == 1.0
    assert auc(labels, -scores) == 0.0


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0], []])
def test_auc_without_both_classes_is_nan(labels: list[int]) -> None:
    assert math.isnan(auc(np.array(labels), np.arange(len(labels), dtype=float)))


def test_auc_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        auc(np.array([2, 0]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        auc(np.array([1, 0, 1]), np.array([0.1, 0.2]))


# --- GAUC -------------------------------------------------------------------------------

# user "a": the AUC example above, 0.75 with 2 positives of 4 samples
# user "b": pairs (.2<.5) (.2>.1) -> 0.5, 1 positive of 3 samples
# user "c": all positive, user "d": all negative -> both skipped
G_LABELS = np.array([1, 0, 1, 0, 1, 0, 0, 1, 1, 0])
G_SCORES = np.array([0.9, 0.8, 0.3, 0.1, 0.2, 0.5, 0.1, 0.7, 0.6, 0.4])
G_GROUPS = np.array(["a", "a", "a", "a", "b", "b", "b", "c", "c", "d"])


def test_gauc_weights_users_by_positives_like_recbole() -> None:
    # (0.75 * 2 + 0.5 * 1) / (2 + 1)
    assert gauc(G_LABELS, G_SCORES, G_GROUPS) == pytest.approx(2 / 3)


def test_gauc_can_weight_by_samples() -> None:
    # (0.75 * 4 + 0.5 * 3) / (4 + 3)
    value = gauc(G_LABELS, G_SCORES, G_GROUPS, weight="samples")
    assert value == pytest.approx(4.5 / 7)


def test_gauc_ignores_row_order_and_handles_ties_within_a_user() -> None:
    order = np.random.default_rng(0).permutation(G_LABELS.size)
    assert gauc(G_LABELS[order], G_SCORES[order], G_GROUPS[order]) == pytest.approx(2 / 3)
    # user 0: AUC 0.875 (the tie example), user 1: 1.0; the same score in both users must
    # not tie across users. Weights 2 and 1 positives -> (0.875 * 2 + 1) / 3
    labels = np.array([1, 0, 1, 0, 1, 0])
    scores = np.array([0.5, 0.5, 0.9, 0.1, 0.5, 0.1])
    groups = np.array([0, 0, 0, 0, 1, 1])
    assert gauc(labels, scores, groups) == pytest.approx((0.875 * 2 + 1) / 3)


def test_gauc_with_no_scorable_user_is_nan() -> None:
    assert math.isnan(gauc(np.array([1, 1, 0]), np.array([0.1, 0.2, 0.3]), np.array([0, 0, 1])))
    assert math.isnan(gauc(np.array([]), np.array([]), np.array([])))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 1), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    )
)
def test_gauc_matches_a_per_user_loop(rows: list[tuple[int, int, int]]) -> None:
    groups = np.array([r[0] for r in rows])
    labels = np.array([r[1] for r in rows])
    scores = np.array([r[2] for r in rows], dtype=float)  # few distinct values: many ties
    total, weight = 0.0, 0.0
    for g in np.unique(groups):
        mine = groups == g
        value = auc(labels[mine], scores[mine])
        if not math.isnan(value):
            total += value * labels[mine].sum()
            weight += labels[mine].sum()
    expected = total / weight if weight else float("nan")
    np.testing.assert_allclose(gauc(labels, scores, groups), expected, rtol=1e-12)


# --- log loss and thresholded classification ---------------------------------------------


def test_log_loss_hand_computed() -> None:
    # -(ln 0.8 + ln(1 - 0.4)) / 2
    expected = -(math.log(0.8) + math.log(0.6)) / 2
    assert log_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(expected)


def test_log_loss_clips_certain_predictions() -> None:
    assert log_loss(np.array([1, 0]), np.array([1.0, 0.0])) == pytest.approx(0.0, abs=1e-12)
    # a confidently wrong prediction costs about -ln(1e-15) = 34.54, not infinity: the label-1
    # row pays -ln(1e-15), the label-0 row -ln(1 - (1 - 1e-15)), which float64 rounds to
    # -ln(1.11e-15)
    wrong = log_loss(np.array([1, 0]), np.array([0.0, 1.0]))
    assert wrong == pytest.approx(-(math.log(1e-15) + math.log(1 - (1 - 1e-15))) / 2)
    assert 34.5 < wrong < 34.6
    assert math.isnan(log_loss(np.array([]), np.array([])))


def test_classification_report_hand_computed() -> None:
    # predicted at 0.5: [1, 0, 1, 0, 1]; tp = rows 0 and 4, fp = row 2, fn = row 1, tn = row 3
    report = classification_report(
        np.array([1, 1, 0, 0, 1]), np.array([0.9, 0.4, 0.6, 0.2, 0.5]), threshold=0.5
    )
    assert (report["tp"], report["fp"], report["fn"], report["tn"]) == (2, 1, 1, 1)
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["precision"] == pytest.approx(2 / 3)
    assert report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(2 / 3)


def test_classification_report_threshold_and_zero_denominators() -> None:
    # threshold 0.95 predicts nothing positive: precision, recall, f1 are 0; accuracy 2/4
    report = classification_report(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.1, 0.2]), 0.95)
    assert report["precision"] == report["recall"] == report["f1"] == 0.0
    assert report["accuracy"] == pytest.approx(0.5)
    # all-negative labels, all predicted negative: accuracy 1, the rest 0
    report = classification_report(np.zeros(3), np.zeros(3))
    assert report["accuracy"] == 1.0
    assert report["recall"] == 0.0
    assert math.isnan(classification_report(np.array([]), np.array([]))["accuracy"])


# --- rating errors -----------------------------------------------------------------------


def test_rmse_and_mae_hand_computed() -> None:
    truth = np.array([3.0, 4.0, 5.0])
    predicted = np.array([2.5, 4.0, 6.0])
    # errors -0.5, 0, 1: squares 0.25 + 0 + 1 = 1.25
    assert rmse(truth, predicted) == pytest.approx(math.sqrt(1.25 / 3))
    assert mae(truth, predicted) == pytest.approx(1.5 / 3)
    assert rmse(truth, truth) == 0.0
    assert math.isnan(rmse(np.array([]), np.array([])))
    assert math.isnan(mae(np.array([]), np.array([])))
    with pytest.raises(ValueError, match="3 true values but 2"):
        mae(truth, predicted[:2])


# --- beyond accuracy ---------------------------------------------------------------------

# three users' top-2 lists over a 5-item catalogue; training counts per item
TOP = np.array([[0, 1], [0, 2], [0, 1]])
COUNTS = np.array([10, 5, 3, 0, 1])


def test_coverage() -> None:
    assert coverage_at_k(TOP, 5, 2) == pytest.approx(3 / 5)  # items {0, 1, 2}
    assert coverage_at_k(TOP, 5, 1) == pytest.approx(1 / 5)  # item {0}


def test_average_popularity() -> None:
    # k=2 slots: 10, 5, 10, 3, 10, 5 -> 43 / 6; k=1: item 0 three times -> 10
    assert average_popularity_at_k(TOP, COUNTS, 2) == pytest.approx(43 / 6)
    assert average_popularity_at_k(TOP, COUNTS, 1) == pytest.approx(10.0)


def test_gini_index_counts_never_recommended_items() -> None:
    # k=2 recommendation counts [3, 2, 1, 0, 0] sorted [0, 0, 1, 2, 3];
    # weights 2i - n - 1 = -4, -2, 0, 2, 4 -> 0 + 4 + 12 = 16, over n * total = 5 * 6
    assert gini_index_at_k(TOP, 5, 2) == pytest.approx(16 / 30)
    # k=1 counts sorted [0, 0, 0, 0, 3] -> 4 * 3 / (5 * 3)
    assert gini_index_at_k(TOP, 5, 1) == pytest.approx(0.8)
    # every item recommended equally often -> 0
    assert gini_index_at_k(np.array([[0, 1], [2, 3]]), 4, 2) == pytest.approx(0.0)


def test_tail_share() -> None:
    tail = popularity_buckets(COUNTS) != "head"  # only item 0 is head
    # k=2 slots 0, 1, 0, 2, 0, 1: tail slots 1, 2, 1 -> 3 / 6
    assert tail_share_at_k(TOP, tail, 2) == pytest.approx(0.5)
    assert tail_share_at_k(TOP, tail, 1) == 0.0


def test_beyond_accuracy_on_no_users() -> None:
    empty = np.zeros((0, 2), dtype=np.int64)
    assert coverage_at_k(empty, 5, 2) == 0.0
    assert math.isnan(average_popularity_at_k(empty, COUNTS, 2))
    assert math.isnan(gini_index_at_k(empty, 5, 2))
    assert math.isnan(tail_share_at_k(empty, np.ones(5, dtype=bool), 2))


def test_beyond_accuracy_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="k=3"):
        coverage_at_k(TOP, 5, 3)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        gini_index_at_k(TOP, 2, 2)
    with pytest.raises(ValueError, match="shape"):
        coverage_at_k(np.array([0, 1]), 5, 1)


# --- popularity buckets ------------------------------------------------------------------


def test_popularity_buckets_hand_computed() -> None:
    # 4 warm items (0, 1, 2, 4): ceil(0.2 * 4) = 1 head, the most popular; item 3 is cold
    labels = popularity_buckets(COUNTS)
    assert labels.tolist() == ["head", "tail", "tail", "cold", "tail"]
    # head_share 0.5 of 4 warm items -> items 0 and 1
    assert popularity_buckets(COUNTS, 0.5).tolist() == ["head", "head", "tail", "cold", "tail"]


def test_popularity_buckets_ties_and_float_rounding() -> None:
    # all tied: the lowest ids win the head; 0.2 * 15 must give 3, not 4
    labels = popularity_buckets(np.full(15, 7))
    assert labels.tolist() == ["head"] * 3 + ["tail"] * 12
    assert popularity_buckets(np.zeros(3)).tolist() == ["cold"] * 3
    assert popularity_buckets(np.array([])).size == 0
    with pytest.raises(ValueError, match="head_share"):
        popularity_buckets(COUNTS, 1.5)


# --- paired test -------------------------------------------------------------------------


def test_paired_test_hand_computed() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([0.0, 2.0, 1.0, 5.0])
    result = paired_test(a, b)
    # differences 1, 0, 2, -1: mean 0.5; sample sd sqrt(5 / 3); t = 0.5 / (sd / sqrt(4))
    t = 0.5 / (math.sqrt(5 / 3) / 2)
    assert result["n"] == 4
    assert result["mean_difference"] == pytest.approx(0.5)
    assert result["t_statistic"] == pytest.approx(t)
    assert result["t_pvalue"] == pytest.approx(2 * stats.t.sf(t, df=3))
    # Wilcoxon drops the zero: |d| = 1, 2, 1 -> ranks 1.5, 3, 1.5; W- = 1.5.
    # Of the 8 sign patterns, W+ in {0, 1.5, 1.5, 3, 3, 4.5, 4.5, 6}; min(W+, W-) <= 1.5 in 6
    assert result["wilcoxon_statistic"] == pytest.approx(1.5)
    assert result["wilcoxon_pvalue"] == pytest.approx(6 / 8)


def test_paired_test_identical_runs_do_not_crash() -> None:
    a = np.array([0.2, 0.5, 0.0])
    result = paired_test(a, a.copy())
    assert result["mean_difference"] == 0.0
    assert result["t_pvalue"] == 1.0
    assert result["wilcoxon_pvalue"] == 1.0


def test_paired_test_degenerate_sizes() -> None:
    one = paired_test(np.array([1.0]), np.array([0.0]))
    assert one["n"] == 1
    assert math.isnan(one["t_pvalue"])
    empty = paired_test(np.array([]), np.array([]))
    assert empty["n"] == 0
    assert math.isnan(empty["mean_difference"])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_test(np.zeros(2), np.zeros(3))
