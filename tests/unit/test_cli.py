"""The CLI on the bundled data set: counts, the main job, splits, and errors without tracebacks."""

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clrec.cli import app
from clrec.data.schema import Dataset
from clrec.data.splits import Split

runner = CliRunner()


def test_describe_json_gives_the_readme_counts() -> None:
    result = runner.invoke(app, ["data", "describe", "ml-latest-small", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["users"], summary["items"], summary["interactions"]) == (610, 9724, 100836)
    assert summary["catalogue_items"] == 9742
    assert summary["rating"] == {"min": 0.5, "max": 5.0, "mean": 3.5016}
    assert summary["item_fields"]["title"]["coverage"] == 1.0


def test_unknown_name_is_one_clear_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "describe", "ml-2m"])
    assert result.exit_code == 1
    assert "no data set named 'ml-2m'" in result.output
    assert "Traceback" not in result.output


def test_missing_known_data_set_names_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLREC_DATA", str(tmp_path))
    result = runner.invoke(app, ["data", "describe", "ml-1m"])
    assert result.exit_code == 1
    assert f"looked in {tmp_path / 'ml-1m'}" in result.output


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


def test_split_command_saves_dataset_and_split(tmp_path: Path) -> None:
    out = tmp_path / "split"
    args = ["data", "split", "ml-latest-small", "--scheme", "cold-item", "--seed", "3"]
    result = runner.invoke(app, [*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    dataset = Dataset.load(out / "dataset")
    split = Split.load(out / "split")
    assert len(split.train) + len(split.valid) + len(split.test) == dataset.n_interactions
    test_items = set(split.test["item"])
    assert test_items and not test_items & set(split.train["item"])
    again = runner.invoke(app, [*args, "--out", str(tmp_path / "again"), "--json"])
    pd.testing.assert_frame_equal(Split.load(tmp_path / "again" / "split").test, split.test)
    assert json.loads(again.output) == json.loads(result.output)


def test_bad_ratios_are_refused(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["data", "split", "ml-latest-small", "--ratios", "0.8,x", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "--ratios" in result.output


def test_export_writes_a_verified_artifact(tmp_path: Path) -> None:
    from clrec.serving.artifact import load_artifact

    config = tmp_path / "bpr.yaml"
    config.write_text(
        "data: {name: ml-latest-small, min_rating: 4}\n"
        "model: {name: bpr, params: {epochs: 2, progress: false}}\n"
        "evaluation: {progress: false}\n"
    )
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(config), "--out", str(run)])
    assert trained.exit_code == 0, trained.output
    artifact = tmp_path / "artifact"
    result = runner.invoke(app, ["export", str(run), "--out", str(artifact)])
    assert result.exit_code == 0, result.output
    assert "bpr" in result.output and "64-d" in result.output
    loaded = load_artifact(artifact)
    assert loaded.item_vectors.shape == (loaded.n_items, 64)
    again = runner.invoke(app, ["export", str(run), "--out", str(artifact)])
    assert again.exit_code != 0 and "overwrite" in again.output
    replaced = runner.invoke(app, ["export", str(run), "--out", str(artifact), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
