"""`clrec run / train / tune / evaluate / compare / models / robustness` (clrec.cli.runs): each
command's printed figures and files, and a bad argument as one clear line.

Success elsewhere: tune in tests/unit/test_tuning.py::test_cli_tune_then_train_the_best,
robustness in tests/unit/test_robustness.py::test_cli_writes_the_curve.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from cli_support import assert_user_error, run_config, runner

from clrec.cli import app
from clrec.models.registry import MODELS


def _metric_lines(metrics: dict[str, Any], model: str) -> list[str]:
    """The headline lines `run`, `train` and `evaluate` print: recall and NDCG at 10 and 20,
    as far as the run measured them."""
    lines = []
    for part in ("valid", "test"):
        names = [n for n in ("recall@10", "ndcg@10", "recall@20", "ndcg@20") if n in metrics[part]]
        shown = ", ".join(f"{name} {metrics[part][name]:.4f}" for name in names)
        lines.append(f"{model} {part}: {shown}")
    return lines


@pytest.mark.slow
def test_run_main_job_beats_popularity_and_writes_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "clrec"
    assert metrics["dataset"]["interactions"] == 100836
    assert metrics["test"]["users"] == 610
    assert {"item_popularity", "user_activity"} <= set(metrics["segments"]["test"])
    assert (out / "report.html").is_file() and (out / "summary.md").is_file()
    # the main job's model must clearly beat popularity on the same split
    popularity = runner.invoke(
        app, ["run", "--model", "popularity", "--out", str(tmp_path / "pop")]
    )
    assert popularity.exit_code == 0, popularity.output
    baseline = json.loads((tmp_path / "pop" / "metrics.json").read_text())
    assert metrics["test"]["ndcg@10"] > 1.5 * baseline["test"]["ndcg@10"]


def test_run_prints_the_data_the_split_and_the_metrics(movies_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--data", str(movies_dir), "--model", "popularity", "--seed", "3"]
    result = runner.invoke(app, [*args, "--min-rating", "3", "--scheme", "loo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    # ratings >= 3: six per user; the lurker and the flop are left out
    lines = result.stdout.splitlines()
    assert lines[0] == ("rated-movies: 24 users, 24 items, 144 interactions (density 25.0000%)")
    # leave-one-out: one test and one valid interaction per user
    assert lines[1] == "split loo (seed 3): train 96, valid 24, test 24"
    assert metrics["split"]["sizes"]["test"]["interactions"] == 24
    assert metrics["config"]["data"]["min_rating"] == 3.0
    assert lines[2:] == [
        *_metric_lines(metrics, "popularity"),
        f"wrote {out / 'metrics.json'}",
    ]


def test_train_applies_overrides_and_writes_the_run(movies_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(run_config(movies_dir, "ease", {"reg_weight": 10.0})))
    out = tmp_path / "run"
    overrides = ["--set", "split.seed=5", "--set", "report=true"]
    result = runner.invoke(app, ["train", str(config), *overrides, "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "ease" and metrics["config"]["split"]["seed"] == 5
    # every rating counts: 24 users × 9, the lurker's 3 and the flop's 4
    assert result.stdout.splitlines()[0].startswith("rated-movies: 25 users, 25 items, 223 ")
    assert "split random (seed 5): " in result.stdout
    assert _metric_lines(metrics, "ease")[1] in result.stdout
    for name in ("config.yaml", "dataset", "split", "model", "summary.md", "report.html"):
        assert (out / name).exists(), name


def test_evaluate_reproduces_the_saved_metrics(runs: dict[str, Path], tmp_path: Path) -> None:
    run = Path(shutil.copytree(runs["ease"], tmp_path / "ease"))
    before = json.loads((run / "metrics.json").read_text())
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    after = json.loads((run / "metrics.json").read_text())
    assert after["test"] == before["test"] and after["valid"] == before["valid"]
    assert result.stdout.splitlines() == [
        *_metric_lines(before, "ease"),
        f"wrote {run / 'metrics.json'}",
    ]


def test_compare_prints_the_paired_test(runs: dict[str, Path]) -> None:
    ease, popularity = runs["ease"], runs["popularity"]
    result = runner.invoke(app, ["compare", str(ease), str(popularity), "--metric", "ndcg@5"])
    assert result.exit_code == 0, result.output
    test = json.loads(result.stdout)
    assert (test["metric"], test["run_a"], test["run_b"]) == ("ndcg@5", str(ease), str(popularity))
    a, b = (pd.read_parquet(run / "per_user_test.parquet") for run in (ease, popularity))
    both = a.merge(b, on="user", suffixes=("_a", "_b"))
    assert test["n"] == len(both) > 0
    difference = (both["ndcg@5_a"] - both["ndcg@5_b"]).mean()
    assert test["mean_difference"] == pytest.approx(difference)


def test_models_lists_the_registry() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == sorted(MODELS)
    assert {"bpr", "clrec", "ease", "popularity"} <= set(MODELS)


def test_models_refuses_an_argument() -> None:
    result = runner.invoke(app, ["models", "bpr"])
    assert result.exit_code == 2  # a usage error, reported by click
    assert "Got unexpected extra argument" in result.output
    assert "Traceback" not in result.output


NO_OPTUNA = pytest.mark.skipif(
    importlib.util.find_spec("optuna") is None, reason="clrec tune needs optuna"
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--scheme", "bogus", "--out", "{tmp}/run"], "unknown split scheme 'bogus'"),
        (["train", "{tmp}/none.yaml", "--out", "{tmp}/run"], "config file not found"),
        (
            ["train", "{config}", "--set", "model.name=nope", "--out", "{tmp}/run"],
            "unknown model 'nope'",
        ),
        pytest.param(
            ["tune", "{config}", "--space", "{tmp}/none.yaml", "--out", "{tmp}/tune"],
            "search space file not found",
            marks=NO_OPTUNA,
        ),
        (["evaluate", "{tmp}"], "not a clrec run folder"),
        (["compare", "{ease}", "{popularity}", "--metric", "ndcg@7"], "no metric 'ndcg@7'"),
        (
            ["robustness", "{config}", "--rates", "2", "--out", "{tmp}/noise"],
            "noise rates must lie in [0, 1]",
        ),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_a_bad_argument_is_one_clear_line(
    args: list[str], message: str, movies_dir: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(run_config(movies_dir, "popularity", {})))
    places = {"tmp": tmp_path, "config": config, **runs}
    result = runner.invoke(app, [arg.format(**places) for arg in args])
    assert_user_error(result, message)
