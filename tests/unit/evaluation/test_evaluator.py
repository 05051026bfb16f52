"""The batched evaluator: exact across batch sizes, bounded batches, segments, sampled protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import pytest

from clrec.data.schema import Dataset
from clrec.data.splits import SplitConfig, split_dataset
from clrec.evaluation.evaluator import EvaluationConfig, Evaluator
from clrec.models.base import Recommender, Validator


class FixedScores(Recommender):
    """Scores from a fixed (users, items) matrix; records the batch sizes it was asked for."""

    name = "fixed"

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores.astype(np.float32)
        self.batch_sizes: list[int] = []

    def fit(self, train: Dataset, validator: Validator | None = None) -> Self:
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(users))
        return self.scores[users]

    def save(self, directory: str | Path) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        raise NotImplementedError


def _random_case(seed: int, n_users: int = 60, n_items: int = 40) -> tuple[Dataset, object]:
    rng = np.random.default_rng(seed)
    rows = {
        (f"u{u}", f"i{i}")
        for u, i in zip(rng.integers(0, n_users, 900), rng.zipf(1.5, 900) % n_items, strict=True)
    }
    frame = pd.DataFrame(sorted(rows), columns=["user", "item"])
    dataset = Dataset.from_external("random", frame)
    return dataset, split_dataset(dataset, SplitConfig(seed=seed))


def test_batched_equals_unbatched_exactly() -> None:
    dataset, split = _random_case(1)
    scores = np.random.default_rng(0).random((dataset.n_users, dataset.n_items))
    results = []
    for batch_size in (1, 7, 4096):
        config = EvaluationConfig(ks=(1, 5, 10), batch_size=batch_size, progress=False)
        evaluator = Evaluator(dataset, split.train, config)
        results.append(
            evaluator.evaluate(FixedScores(scores), split.test, [split.train, split.valid])
        )
    for other in results[1:]:
        assert other.metrics == results[0].metrics
        assert other.segments == results[0].segments
        pd.testing.assert_frame_equal(other.per_user, results[0].per_user)


def test_batches_bounded_by_cells() -> None:
    dataset, split = _random_case(2)
    model = FixedScores(np.zeros((dataset.n_users, dataset.n_items)))
    config = EvaluationConfig(batch_size=1024, max_batch_cells=dataset.n_items * 3, progress=False)
    Evaluator(dataset, split.train, config).evaluate(model, split.test, [split.train])
    assert max(model.batch_sizes) == 3


def _tiny() -> tuple[Dataset, pd.DataFrame, pd.DataFrame]:
    # items: a (3 train users), b (2), c (1), d (cold: no train interactions)
    rows = [("u1", "a"), ("u2", "a"), ("u3", "a"), ("u1", "b"), ("u2", "b"), ("u3", "c")]
    test_rows = [("u1", "c"), ("u2", "d"), ("u3", "b"), ("u4", "a")]
    dataset = Dataset.from_external(
        "tiny", pd.DataFrame(rows + test_rows, columns=["user", "item"])
    )
    inter = dataset.interactions
    return dataset, inter.iloc[: len(rows)], inter.iloc[len(rows) :]


def test_hand_computed_metrics_and_segments() -> None:
    dataset, train, test = _tiny()
    items = dataset.item_index()
    # every user ranks a > b > c > d
    order = np.array([4.0, 3.0, 2.0, 1.0])[np.argsort(items.get_indexer(["a", "b", "c", "d"]))]
    scores = np.tile(order, (dataset.n_users, 1))
    config = EvaluationConfig(ks=(1, 2), metrics=("recall", "ndcg", "hit"), progress=False)
    evaluator = Evaluator(dataset, train, config)
    result = evaluator.evaluate(FixedScores(scores), test, [train])
    # after masking: u1 ranks c d (hit@1), u2 ranks c d (d at 2), u3 ranks b d (hit@1),
    # u4 (cold user) ranks a b (hit@1)
    assert result.metrics["hit@1"] == 0.75
    assert result.metrics["recall@2"] == 1.0
    assert result.metrics["ndcg@2"] == pytest.approx((3 + 1 / np.log2(3)) / 4, abs=1e-6)
    popularity = result.segments["item_popularity"]
    # head = top 20% of the 4 items by train count = 1 item (a); tail = b, c; cold = d
    assert popularity["head"] == {
        "recall@1": 1.0,
        "recall@2": 1.0,
        "ndcg@1": 1.0,
        "ndcg@2": 1.0,
        "hit@1": 1.0,
        "hit@2": 1.0,
        "users": 1.0,
    }
    assert popularity["cold"]["hit@1"] == 0.0 and popularity["cold"]["hit@2"] == 1.0
    assert popularity["tail"]["users"] == 2.0
    assert result.segments["cold_users"]["cold"]["users"] == 1.0
    assert sum(b["users"] for b in result.segments["user_activity"].values()) == 3.0
    assert result.metrics["coverage@1"] == pytest.approx(3 / 4)


def test_sampled_protocol_is_labelled_and_keeps_positives() -> None:
    dataset, split = _random_case(3)
    scores = np.random.default_rng(1).random((dataset.n_users, dataset.n_items))
    full_config = EvaluationConfig(ks=(5,), progress=False)
    sampled_config = EvaluationConfig(ks=(5,), sampled_negatives=5, progress=False)
    full = Evaluator(dataset, split.train, full_config).evaluate(
        FixedScores(scores), split.test, [split.train]
    )
    sampled = Evaluator(dataset, split.train, sampled_config).evaluate(
        FixedScores(scores), split.test, [split.train]
    )
    assert "SAMPLED" in sampled.protocol and "full ranking" in full.protocol
    # fewer competitors can only lift every user's recall
    assert (sampled.per_user["recall@5"] >= full.per_user["recall@5"] - 1e-12).all()
    assert sampled.metrics["recall@5"] > full.metrics["recall@5"]
