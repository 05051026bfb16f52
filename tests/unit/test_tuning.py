"""`clrec tune` on the bundled ml-latest-small: best.yaml, pruning, resuming, bad spaces, CLI.

EASE runs on a 10-core of the data (~2.3k items) so a trial takes about a second; BPR runs
4 tiny epochs. Torch runs on one thread here: on a busy two-core machine, two threads
contending for one free core make the EASE solve tens of times slower.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from clrec.cli import app
from clrec.config import RunConfig
from clrec.data.splits import split_dataset
from clrec.errors import ClrecError
from clrec.evaluation.evaluator import EvaluationResult, Evaluator
from clrec.experiment import prepare_data
from clrec.models.base import Recommender

optuna = pytest.importorskip("optuna", reason="clrec tune needs the tune extra (optuna)")

from clrec.tuning import STUDY_NAME, TuneConfig, TuneResult, tune  # noqa: E402

runner = CliRunner()

EASE_BASE: dict[str, Any] = {
    "data": {"name": "ml-latest-small", "k_core": 10},
    "model": {"name": "ease", "params": {"reg_weight": 250.0}},
    "report": False,
}
EASE_SPACE: dict[str, Any] = {
    "trials": 3,
    "seed": 7,
    "params": {"model.params.reg_weight": {"type": "float", "low": 10, "high": 5000, "log": True}},
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "trials.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


class RecordingEvaluator(Evaluator):
    """Remembers every target frame it is asked to rank."""

    targets: ClassVar[list[pd.DataFrame]] = []

    def evaluate(
        self,
        model: Recommender,
        target: pd.DataFrame,
        exclude: Any = (),
        **kwargs: Any,
    ) -> EvaluationResult:
        RecordingEvaluator.targets.append(target)
        return super().evaluate(model, target, exclude, **kwargs)


@pytest.fixture(scope="module")
def ease_tune(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TuneResult]:
    """A finished 3-trial EASE tune (shared: fitting is the slow part)."""
    out = tmp_path_factory.mktemp("tune") / "ease"
    with pytest.MonkeyPatch.context() as patch:
        RecordingEvaluator.targets = []
        patch.setattr("clrec.tuning.Evaluator", RecordingEvaluator)
        result = tune(
            RunConfig.from_mapping(EASE_BASE), TuneConfig.from_mapping(EASE_SPACE), out, None
        )
    return out, result


def test_best_yaml_holds_the_best_validation_trial(ease_tune: tuple[Path, TuneResult]) -> None:
    out, result = ease_tune
    rows = _rows(out)
    assert [row["state"] for row in rows] == ["COMPLETE"] * 3
    assert all(row["steps"] == "1" for row in rows)  # closed form: evaluated once after fit
    best_row = max(rows, key=lambda row: float(row["value"]))
    best = RunConfig.from_yaml(out / "best.yaml")
    assert best.model.params["reg_weight"] == float(best_row["model.params.reg_weight"])
    assert result.best_number == int(best_row["number"])
    assert result.best_value == float(best_row["value"])
    assert len({row["model.params.reg_weight"] for row in rows}) == 3
    # everything but the searched key is the base config, so best.yaml reruns the best trial
    expected = RunConfig.from_mapping(EASE_BASE).to_plain()
    expected["model"]["params"]["reg_weight"] = best.model.params["reg_weight"]
    assert best.to_plain() == expected
    assert (out / "study.db").is_file()


def test_only_the_validation_part_is_ranked(ease_tune: tuple[Path, TuneResult]) -> None:
    config = RunConfig.from_mapping(EASE_BASE)
    split = split_dataset(prepare_data(config.data, None), config.split)
    assert len(RecordingEvaluator.targets) == 3
    for target in RecordingEvaluator.targets:
        pd.testing.assert_frame_equal(target, split.valid)


def test_resume_runs_only_the_missing_trials(
    ease_tune: tuple[Path, TuneResult], tmp_path: Path
) -> None:
    out = tmp_path / "ease"
    shutil.copytree(ease_tune[0], out)
    # an interrupted tune leaves a RUNNING trial behind: it is marked failed, not counted
    stale = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / 'study.db'}")
    stale.ask()
    space = TuneConfig.from_mapping(EASE_SPACE).with_trials(4)
    result = tune(RunConfig.from_mapping(EASE_BASE), space, out, None)
    assert result.ran == 1
    states = [row["state"] for row in _rows(out)]
    assert states == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert RunConfig.from_yaml(out / "best.yaml").model.name == "ease"

    again = tune(RunConfig.from_mapping(EASE_BASE), space, out, None)
    assert again.ran == 0 and again.best_number == result.best_number

    other = RunConfig.from_mapping({**EASE_BASE, "data": {"name": "ml-latest-small"}})
    with pytest.raises(ClrecError, match="another config"):
        tune(other, space, out, None)


def test_median_pruner_stops_hopeless_trials_early(tmp_path: Path) -> None:
    epochs = 4
    base = RunConfig.from_mapping(
        {
            "data": {"name": "ml-latest-small", "k_core": 10},
            "model": {
                "name": "bpr",
                "params": {
                    "epochs": epochs,
                    "eval_every": 1,
                    "patience": 0,
                    "embedding_size": 8,
                    "batch_size": 4096,
                    "progress": False,
                    "num_threads": 1,
                },
            },
        }
    )
    # lr 1e-6 barely moves the initial embeddings (NDCG@10 ≈ 0.008 against ≈ 0.05-0.15 at
    # 1e-2): once a trial has finished, a 1e-6 trial is behind the median at its first
    # validation (or level with it, when only 1e-6 trials have finished). Seed 0 draws a
    # 1e-2 trial before a later 1e-6 one.
    space = TuneConfig.from_mapping(
        {
            "trials": 6,
            "seed": 0,
            "pruner": "median",
            "pruner_startup_trials": 1,
            "pruner_warmup_steps": 0,
            "params": {"model.params.lr": {"type": "categorical", "choices": [1e-2, 1e-6]}},
        }
    )
    out = tmp_path / "bpr"
    result = tune(base, space, out, None)
    rows = _rows(out)
    pruned = [row for row in rows if row["state"] == "PRUNED"]
    assert pruned, rows
    assert all(int(row["steps"]) < epochs for row in pruned)
    assert all(float(row["model.params.lr"]) == 1e-6 for row in pruned)
    assert result.best_params == {"model.params.lr": 1e-2}
    assert RunConfig.from_yaml(out / "best.yaml").model.params["lr"] == 1e-2


@pytest.mark.parametrize(
    ("params", "extra", "message"),
    [
        (
            {"model.paramz.reg_weight": {"type": "float", "low": 1, "high": 10}},
            {},
            "model.paramz",
        ),
        (
            {"model.params.nonsense": {"type": "int", "low": 1, "high": 10}},
            {},
            "model.params.nonsense",
        ),
        (
            {"model.params.reg_weight": {"type": "float", "low": 10, "high": 1}},
            {},
            r"params\['model.params.reg_weight'\].*low 10.0 > high 1.0",
        ),
        (
            {"model.params.reg_weight": {"type": "categorical", "choices": []}},
            {},
            r"params\['model.params.reg_weight'\].*choices is empty",
        ),
        (
            {"model.params.reg_weight": {"type": "float", "low": 0, "high": 10}},
            {},
            "model.params.reg_weight.*must be positive",
        ),
        (
            {"data.k_core": {"type": "int", "low": 1, "high": 10}},
            {},
            "only model.* keys",
        ),
        (
            {"model.params.reg_weight": {"type": "float", "low": 1, "high": 10}},
            {"metric": "ndcg@50"},
            "metric 'ndcg@50' is not reported",
        ),
        (
            {"model.params.reg_weight": {"type": "float", "low": 1, "high": 10}},
            {"fixed": {"model.params.reg_weight": 5}},
            "overlap",
        ),
        ({}, {}, "params is empty"),
    ],
)
def test_bad_space_is_one_clear_error_before_any_trial(
    tmp_path: Path, params: dict[str, Any], extra: dict[str, Any], message: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(ClrecError, match=message):
        space = TuneConfig.from_mapping({"params": params, **extra})
        tune(RunConfig.from_mapping(EASE_BASE), space, out, None)
    assert not out.exists()


def test_cli_tune_then_train_the_best(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**EASE_BASE, "data": {"name": "ml-latest-small"}}))
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "trials": 5,
                "params": {
                    "model.params.reg_weight": {"type": "categorical", "choices": [100.0, 800.0]}
                },
            }
        )
    )
    out = tmp_path / "tune"
    args = ["tune", str(config), "--space", str(space), "--out", str(out), "--trials", "2"]
    result = runner.invoke(app, [*args, "--set", "data.k_core=10"])
    assert result.exit_code == 0, result.output
    assert "trial   0 COMPLETE ndcg@10" in result.output
    assert "trial   1 COMPLETE ndcg@10" in result.output
    assert "best: trial" in result.output and "model.params.reg_weight = " in result.output
    assert str(out / "best.yaml") in result.output
    assert len(_rows(out)) == 2

    trained = runner.invoke(app, ["train", str(out / "best.yaml"), "--out", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_cli_bad_space_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(EASE_BASE))
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"params": {"model.params.lr": {"type": "float"}}}))
    result = runner.invoke(app, ["tune", str(config), "--space", str(space)])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    assert "model.params.lr" in result.output
