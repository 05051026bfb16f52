"""Retrieve → rank on a real run folder (ml-latest-small, a popularity retriever) with the tiny
random BERT: the report's retrieve-only figures must equal the run's own per-user test
metrics on the same users, the re-ranking only re-orders the same candidates, and the CLI
re-evaluates a saved ranker to the same figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clrec.cli import app
from clrec.config import RunConfig
from clrec.errors import ClrecError
from clrec.experiment import run_experiment
from clrec.ranking.cross_encoder import CrossEncoderConfig
from clrec.ranking.pairs import PairConfig
from clrec.ranking.pipeline import RankerSettings, RunParts, _rank_fusion, train_ranker
from tiny_bert import make_tiny_bert

pytest.importorskip("peft")
runner = CliRunner()


@pytest.fixture(scope="module")
def popularity_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "popularity"
    config = RunConfig.model_validate(
        {
            "data": {"name": "ml-latest-small"},
            "split": {"scheme": "random", "seed": 7},
            "model": {"name": "popularity", "params": {}},
            "evaluation": {"ks": [5, 10], "progress": False},
            "report": False,
        }
    )
    run_experiment(config, out)
    return out


def test_train_and_evaluate_a_ranker_on_a_run(popularity_run: Path, tmp_path: Path) -> None:
    settings = RankerSettings(
        pairs=PairConfig(max_users=40, candidates=10, hard_negatives=3, random_negatives=2),
        model=CrossEncoderConfig(
            model=str(make_tiny_bert(tmp_path / "bert")),
            mode="head",
            epochs=1,
            batch_size=16,
            max_length=64,
            progress=False,
        ),
        rerank_depth=10,
        ks=(5, 10),
        test_users=40,
    )
    report = train_ranker(popularity_run, tmp_path / "ranker", settings)

    training = report["training"]
    assert training["fit_pairs"] > 0 and training["validation_pairs"] > 0
    assert 0 < training["trainable_share"] < 0.05  # head only
    pairs = report["test_pairs"]
    assert (
        0 <= pairs["auc"] <= 1
        and pairs["pairs"] == pairs["tp"] + pairs["fp"] + pairs["tn"] + (pairs["fn"])
    )

    # retrieve-only figures are the run's own test metrics of the same (sampled) users
    end = report["end_to_end"]
    parts = RunParts.load(popularity_run)
    users = np.unique(parts.split.test["user"])
    sampled = np.sort(np.random.default_rng(0).choice(users, size=40, replace=False))
    per_user = pd.read_parquet(popularity_run / "per_user_test.parquet")
    per_user = per_user.set_index("user").loc[sampled]
    assert end["users"] == 40 and end["depth"] == 10
    for k in (5, 10):
        assert end[f"retrieve_ndcg@{k}"] == pytest.approx(per_user[f"ndcg@{k}"].mean(), abs=1e-6)
        assert end[f"retrieve_recall@{k}"] == pytest.approx(
            per_user[f"recall@{k}"].mean(), abs=1e-6
        )
    # re-ranking the full depth only re-orders: recall over all 10 candidates is unchanged
    assert end["rerank_recall@10"] == pytest.approx(end["retrieve_recall@10"])
    assert end["fused_recall@10"] == pytest.approx(end["retrieve_recall@10"])
    assert set(report["latency"]) >= {"float32_median_ms", "int8_median_ms"}

    saved = json.loads((tmp_path / "ranker" / "report.json").read_text())
    assert saved["end_to_end"] == end
    again = runner.invoke(app, ["rank", "evaluate", str(tmp_path / "ranker")])
    assert again.exit_code == 0, again.output
    reevaluated = json.loads(again.output)
    assert reevaluated["test_pairs"]["auc"] == pytest.approx(pairs["auc"], abs=1e-6)
    assert reevaluated["end_to_end"]["rerank_ndcg@10"] == pytest.approx(end["rerank_ndcg@10"])


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ClrecError, match="not a clrec run folder"):
        RunParts.load(tmp_path)
    with pytest.raises(ClrecError, match="rerank_depth"):
        RankerSettings(rerank_depth=10, ks=(20,))
    result = runner.invoke(app, ["rank", "train", str(tmp_path), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "not a clrec run folder" in result.output
    result = runner.invoke(app, ["rank", "evaluate", str(tmp_path)])
    assert result.exit_code == 1 and "not a ranker folder" in result.output


def test_rank_fusion_by_hand() -> None:
    # the ranker reverses the retriever's 3 candidates: positions 0 and 2 tie on the fused
    # score (1/61 + 1/63), above position 1 (2/62); the tie keeps the retriever's order
    assert _rank_fusion(np.array([[2, 1, 0]])).tolist() == [[0, 2, 1]]
    # agreement changes nothing
    assert _rank_fusion(np.array([[0, 1, 2, 3]])).tolist() == [[0, 1, 2, 3]]
