"""The ranking stage on a real run folder (ml-latest-small, a popularity retriever; text
vectors from the tiny random BERT so the test stays fast): retrieval alone equals the run's
own per-user test metrics over every test user, the stage beats it by a wide margin (item
co-occurrence and recency are signals popularity lacks), the report holds the ablation and
the bootstrap interval, the CLI re-evaluates to the same figures, and no test interaction
reaches training."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clrec.cli import app
from clrec.config import RunConfig
from clrec.errors import ClrecError
from clrec.experiment import run_experiment
from clrec.ranking.candidates import CandidateConfig
from clrec.ranking.folds import RankerSettings, RunParts
from clrec.ranking.ltr import LambdaRankConfig
from clrec.ranking.pipeline import train_ranker
from tiny_bert import make_tiny_bert

pytest.importorskip("lightgbm")
runner = CliRunner()
pytestmark = pytest.mark.slow  # a run, text vectors and a few LambdaRank fits: ~40 s


@pytest.fixture(scope="module")
def popularity_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "popularity"
    config = RunConfig.model_validate(
        {
            "data": {"name": "ml-latest-small", "min_rating": 3.5},
            "split": {"scheme": "random", "seed": 7},
            "model": {"name": "popularity", "params": {}},
            "evaluation": {"ks": [10, 20], "progress": False},
            "report": False,
        }
    )
    run_experiment(config, out)
    return out


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> RankerSettings:
    bert = make_tiny_bert(tmp_path_factory.mktemp("bert") / "bert")
    return RankerSettings(
        candidates=CandidateConfig(per_retriever=30),
        lambdarank=LambdaRankConfig(rounds=60, early_stopping=20),
        bootstrap=200,
        text_model=str(bert),
        cache_dir=str(tmp_path_factory.mktemp("cache")),
        progress=False,
    )


def test_the_stage_beats_its_retriever_on_every_test_user(
    popularity_run: Path, settings: RankerSettings, tmp_path: Path
) -> None:
    report = train_ranker(popularity_run, tmp_path / "ranker", settings)

    end = report["end_to_end"]
    per_user = pd.read_parquet(popularity_run / "per_user_test.parquet")
    assert end["users"] == len(per_user)  # every test user, none sampled
    for k in (10, 20):  # retrieval alone is the run's own evaluation
        assert end[f"retrieve_ndcg@{k}"] == pytest.approx(per_user[f"ndcg@{k}"].mean(), abs=1e-6)
        assert end[f"retrieve_recall@{k}"] == pytest.approx(
            per_user[f"recall@{k}"].mean(), abs=1e-6
        )
    # popularity cannot see co-occurrence: the stage must win clearly (0.099 → ~0.16)
    assert end["rerank_ndcg@10"] > 1.3 * end["retrieve_ndcg@10"]
    low, high = end["rerank_ndcg@10_change_95"]
    assert 0 < low <= end["rerank_ndcg@10_change"] <= high

    training = report["training"]
    assert training["label_users"] > 500 and 0 < training["label_recall_of_candidates"] < 1
    assert sum(training["importance"].values()) == pytest.approx(1.0, abs=1e-3)
    ablation = report["ablation"]
    assert set(ablation) == {
        "all features",
        "without language-model features",
        "without tag features",
        *(f"without retriever {name}" for name in settings.candidates.retrievers),
    }
    assert ablation["all features"]["ndcg@10"] == pytest.approx(end["rerank_ndcg@10"])
    # item-to-item co-occurrence carries this stage: without it, far less
    assert ablation["without retriever itemknn"]["ndcg@10"] < 0.9 * end["rerank_ndcg@10"]
    assert report["latency"]["candidates_median"] > 30

    again = runner.invoke(app, ["rank", "evaluate", str(tmp_path / "ranker")])
    assert again.exit_code == 0, again.output
    reevaluated = json.loads(again.stdout)
    assert reevaluated["end_to_end"]["rerank_ndcg@10"] == pytest.approx(end["rerank_ndcg@10"])


def test_no_test_interaction_reaches_training(
    popularity_run: Path, settings: RankerSettings, tmp_path: Path
) -> None:
    """The same run with every test interaction moved to another item trains the same
    ranker, tree for tree; only the test figures change."""
    changed = tmp_path / "changed"
    shutil.copytree(popularity_run, changed)
    test = pd.read_parquet(changed / "split" / "test.parquet")
    n_items = RunParts.load(changed).dataset.n_items
    test["item"] = (test["item"].to_numpy() + 17) % n_items
    test.to_parquet(changed / "split" / "test.parquet", index=False)
    quick = replace(settings, ablation=False, bootstrap=20)
    first = train_ranker(popularity_run, tmp_path / "a", quick)
    second = train_ranker(changed, tmp_path / "b", quick)
    tree_a = (tmp_path / "a" / "ranker" / "lambdarank.txt").read_text()
    tree_b = (tmp_path / "b" / "ranker" / "lambdarank.txt").read_text()
    assert tree_a == tree_b
    timing = ("features_seconds", "fit_seconds")
    assert {k: v for k, v in first["training"].items() if k not in timing} == {
        k: v for k, v in second["training"].items() if k not in timing
    }
    assert first["end_to_end"]["rerank_ndcg@10"] != second["end_to_end"]["rerank_ndcg@10"]


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ClrecError, match="not a clrec run folder"):
        RunParts.load(tmp_path)
    with pytest.raises(ClrecError, match="per_retriever"):
        RankerSettings(candidates=CandidateConfig(per_retriever=10), ks=(20,))
    with pytest.raises(ClrecError, match="retrievers must be distinct names"):
        CandidateConfig(retrievers=("model", "bm25"))  # type: ignore[arg-type]
    result = runner.invoke(app, ["rank", "train", str(tmp_path), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "not a clrec run folder" in result.output
    result = runner.invoke(app, ["rank", "evaluate", str(tmp_path)])
    assert result.exit_code == 1 and "not a ranker folder" in result.output


def test_settings_with_a_click_model_survive_json() -> None:
    """What a ranker folder saves (``to_plain`` through JSON) reads back equal, the
    cross-encoder's LoRA targets a tuple again."""
    import json

    from clrec.ranking.click import ClickSettings
    from clrec.ranking.folds import RankerSettings

    settings = RankerSettings(click=ClickSettings())
    back = RankerSettings.from_plain(json.loads(json.dumps(settings.to_plain())))
    assert back == settings and back.click is not None
    assert back.click.model.lora_targets == ("query", "value")
