"""Ranking over a candidate set (the cold-start protocol): hand-computed metrics and a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import pytest

from clrec.config import DataConfig, ModelConfig, RunConfig
from clrec.data.schema import Dataset
from clrec.data.splits import SplitConfig
from clrec.errors import ClrecError
from clrec.evaluation.evaluator import EvaluationConfig, Evaluator
from clrec.experiment import run_experiment
from clrec.models.base import Recommender, Validator


class FixedScores(Recommender):
    """Scores from a fixed (users, items) matrix."""

    name = "fixed"

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores.astype(np.float32)

    def fit(self, train: Dataset, validator: Validator | None = None) -> Self:
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        scores: np.ndarray = self.scores[users].copy()  # (B, I)
        return scores

    def save(self, directory: str | Path) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        raise NotImplementedError


def _case() -> tuple[Dataset, pd.DataFrame, pd.DataFrame, np.ndarray, FixedScores]:
    """Warm items a b c, cold candidates x y z; u3's only target (a) is no candidate."""
    train_rows = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "c")]
    test_rows = [("u1", "x"), ("u1", "c"), ("u2", "y"), ("u2", "z"), ("u3", "a")]
    frame = pd.DataFrame(train_rows + test_rows, columns=["user", "item"])
    dataset = Dataset.from_external("tiny-cold", frame)
    inter = dataset.interactions
    train, test = inter.iloc[: len(train_rows)], inter.iloc[len(train_rows) :]
    users, items = dataset.user_index(), dataset.item_index()
    wanted = {
        # u1: c (a non-candidate, and u1's dropped target) on top; candidates rank z x y
        "u1": {"c": 10, "a": 9, "z": 3, "x": 2, "y": 1},
        # u2: a is seen, c a non-candidate; candidates rank y x z
        "u2": {"a": 10, "c": 9, "y": 5, "x": 4, "z": 3},
        "u3": {"a": 10, "x": 1},
    }
    scores = np.zeros((dataset.n_users, dataset.n_items))  # (U, I)
    for user, row in wanted.items():
        for item, value in row.items():
            scores[users.get_loc(user), items.get_loc(item)] = value
    candidates = np.sort(items.get_indexer(["x", "y", "z"]))
    return dataset, train, test, candidates, FixedScores(scores)


def test_candidate_metrics_by_hand() -> None:
    dataset, train, test, candidates, model = _case()
    config = EvaluationConfig(
        ks=(1, 2, 5), metrics=("recall", "ndcg", "hit", "precision"), progress=False
    )
    evaluator = Evaluator(dataset, train, config)
    result = evaluator.evaluate(
        model, test, [train], candidates=candidates, candidate_label="cold items of this part"
    )
    # u1: targets {x} (c dropped), ranks z x y -> hit at 2
    # u2: targets {y, z}, ranks y x z -> hits at 1 and 3; u3 has no candidate target: skipped
    ideal_two = 1 + 1 / np.log2(3)
    expected = {
        "recall@1": (0 + 0.5) / 2,
        "recall@2": (1 + 0.5) / 2,
        "recall@5": 1.0,
        "ndcg@1": (0 + 1) / 2,
        "ndcg@2": (1 / np.log2(3) + 1 / ideal_two) / 2,
        "ndcg@5": (1 / np.log2(3) + 1.5 / ideal_two) / 2,
        "hit@1": 0.5,
        "hit@5": 1.0,
        "precision@5": (1 / 5 + 2 / 5) / 2,
    }
    for name, value in expected.items():
        assert result.metrics[name] == pytest.approx(value, abs=1e-6), name
    assert result.metrics["users"] == 2.0
    users = dataset.user_index()
    assert sorted(result.per_user["user"]) == sorted(users.get_indexer(["u1", "u2"]))
    assert result.protocol.startswith(
        "ranking over 3 candidate items (cold items of this part); seen items masked"
    )
    # beyond accuracy over the candidate set: top-1 lists hold z and y
    assert result.metrics["coverage@1"] == pytest.approx(2 / 3, abs=1e-6)
    assert result.metrics["coverage@5"] == 1.0
    assert "average_popularity@5" not in result.metrics

    # the full ranking counts u1's non-candidate c at rank 1 and keeps u3
    full = evaluator.evaluate(model, test, [train])
    assert full.metrics["users"] == 3.0 and full.metrics["hit@1"] > 0.5
    assert full.protocol == config.protocol


def test_candidates_combine_with_sampled_negatives() -> None:
    dataset, train, test, candidates, model = _case()
    config = EvaluationConfig(ks=(1,), metrics=("hit",), sampled_negatives=1, progress=False)
    result = Evaluator(dataset, train, config).evaluate(model, test, [train], candidates=candidates)
    assert result.protocol.startswith("SAMPLED") and "3 candidate items" in result.protocol
    # u1 keeps x and one of y / z; u2 keeps y and z; both outscore warm items never kept
    assert result.metrics["users"] == 2.0
    assert result.metrics["hit@1"] == 1.0 or result.metrics["hit@1"] == 0.5


def test_bad_candidates_refused() -> None:
    dataset, train, test, _, model = _case()
    evaluator = Evaluator(dataset, train, EvaluationConfig(ks=(1,), progress=False))
    with pytest.raises(ClrecError, match="empty"):
        evaluator.evaluate(model, test, [train], candidates=np.array([], dtype=np.int64))
    with pytest.raises(ClrecError, match="lie in"):
        evaluator.evaluate(model, test, [train], candidates=np.array([dataset.n_items]))


@pytest.mark.slow
def test_cold_item_run_writes_cold_segments(tmp_path: Path) -> None:
    config = RunConfig(
        data=DataConfig(name="ml-latest-small", min_rating=3.5),
        split=SplitConfig(scheme="cold-item", seed=7),
        model=ModelConfig(name="popularity"),
        evaluation=EvaluationConfig(ks=(10, 20), progress=False),
        report=True,
    )
    run_experiment(config, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for part in ("valid", "test"):
        cold = metrics["segments"][part]["cold_items"]
        assert 0.0 <= cold["recall@10"] <= 1.0
        assert cold["users"] > 0
        assert cold["protocol"].startswith("ranking over ")
        assert "candidate items (cold items of this part)" in cold["protocol"]
    # popularity scores never-seen items 0: over the whole catalogue warm items always win
    assert metrics["test"]["recall@20"] == 0.0
    cold = metrics["segments"]["test"]["cold_items"]
    assert cold["recall@20"] != metrics["test"]["recall@20"]
    assert metrics["protocol"] == EvaluationConfig().protocol
    per_user = pd.read_parquet(tmp_path / "run" / "per_user_test_cold.parquet")
    assert len(per_user) == cold["users"]
    assert (tmp_path / "run" / "report.html").is_file()
    assert "cold_items" in (tmp_path / "run" / "summary.md").read_text()
