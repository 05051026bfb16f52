"""The peer benchmark's glue (bench/peers/table.py): a peer's top-K lists must rank exactly
as its scores do under clrec's evaluator, and the table's verdicts must follow the figures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from clrec.data.registry import load
from clrec.data.splits import SplitConfig, split_dataset
from clrec.evaluation.evaluator import EvaluationConfig, Evaluator

TABLE = Path(__file__).resolve().parents[2] / "bench" / "peers" / "table.py"


@pytest.fixture(scope="module")
def table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peer_table", TABLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["peer_table"] = module
    spec.loader.exec_module(module)
    return module


def test_topk_lists_score_like_the_full_scores(table: ModuleType) -> None:
    dataset = load("ml-latest-small", None)
    split = split_dataset(dataset, SplitConfig(scheme="random", seed=5))
    evaluator = Evaluator(dataset, split.train, EvaluationConfig(progress=False))
    seen = [split.train, split.valid]
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((dataset.n_users, dataset.n_items)).astype(np.float32)
    # what a peer hands over: its 50 best unseen items per test user, best first
    masked = scores.copy()
    for frame in seen:
        masked[frame["user"].to_numpy(), frame["item"].to_numpy()] = -np.inf
    users = np.unique(split.test["user"].to_numpy())
    lists = np.argsort(-masked[users], axis=1)[:, :50]
    dense = evaluator.evaluate(table.SavedScores(scores), split.test, seen).metrics
    shape = (dataset.n_users, dataset.n_items)
    listed = table.SavedScores.from_topk(users, lists, shape)
    from_lists = evaluator.evaluate(listed, split.test, seen).metrics
    for metric in table.METRICS:
        assert from_lists[metric] == pytest.approx(dense[metric], abs=1e-12), metric
    # and reversing the lists must change the figures (the rank order is used)
    reversed_lists = table.SavedScores.from_topk(users, lists[:, ::-1].copy(), shape)
    assert (
        evaluator.evaluate(reversed_lists, split.test, seen).metrics["ndcg@10"] < (dense["ndcg@10"])
    )


def test_ratios_and_verdict(table: ModuleType) -> None:
    def row(library: str, model: str, ndcg: float, epoch: float, rss: float) -> object:
        metrics = dict.fromkeys(table.METRICS, 0.1) | {"ndcg@10": ndcg}
        return table.Row(
            library=library,
            model=model,
            metrics=metrics,
            seconds_per_epoch=epoch,
            seconds_per_eval=1.0,
            peak_rss_mb=rss,
        )

    rows = [
        row("clrec", "lightgcn", 0.20, 2.0, 300.0),
        row("clrec", "clrec", 0.25, 3.0, 500.0),
        row("RecBole", "LightGCN", 0.22, 8.0, 1000.0),
        row("RecBole", "XSimGCL", 0.24, 9.0, 900.0),
    ]
    assert table.ratios(rows)[2] == "| lightgcn | 0.25× | 1.00× | 0.30× |"
    verdict = table.winner(rows, "ndcg@10", cold=False)
    assert "clrec clrec 0.2500, ahead of" in verdict
    assert "RecBole XSimGCL 0.2400" in verdict and "+4.2%" in verdict
    rows[1].metrics["ndcg@10"] = 0.23
    assert "behind the best peer" in table.winner(rows, "ndcg@10", cold=False)
    # a piecewise run (peers first, clrec not yet): the table still prints
    peers_only = table.winner(rows[2:], "ndcg@10", cold=False)
    assert peers_only == "Best on ndcg@10: RecBole XSimGCL 0.2400 (no clrec row)."
    assert table.winner([], "ndcg@10", cold=False) == "Best on ndcg@10: no model measured yet."
