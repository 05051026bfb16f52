"""`clrec train` / `evaluate` / `compare` on the bundled data, and run-config validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from clrec.cli import app
from clrec.config import RunConfig, apply_override
from clrec.errors import ClrecError

runner = CliRunner()


def _config(tmp_path: Path, model: dict[str, object]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"name": "ml-latest-small", "min_rating": 3.5},
                "split": {"scheme": "random", "seed": 7},
                "model": model,
                "evaluation": {"ks": [5, 10]},
            }
        )
    )
    return path


@pytest.mark.slow
def test_train_evaluate_compare(tmp_path: Path) -> None:
    config = _config(tmp_path, {"name": "itemknn", "params": {"k": 50}})
    knn_dir, pop_dir = tmp_path / "itemknn", tmp_path / "pop"
    result = runner.invoke(
        app, ["train", str(config), "--set", "model.params.shrink=10", "--out", str(knn_dir)]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((knn_dir / "metrics.json").read_text())
    assert metrics["config"]["model"]["params"] == {"k": 50, "shrink": 10}
    assert set(metrics["test"]) >= {"ndcg@5", "recall@10", "coverage@10", "users"}
    assert metrics["segments"]["test"]["item_popularity"]
    assert (knn_dir / "report.html").is_file()

    again = runner.invoke(app, ["evaluate", str(knn_dir)])
    assert again.exit_code == 0, again.output
    assert json.loads((knn_dir / "metrics.json").read_text())["test"] == metrics["test"]

    result = runner.invoke(
        app,
        [
            "train",
            str(config),
            "--set",
            "model.name=popularity",
            "--set",
            "model.params={}",
            "--out",
            str(pop_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    compared = runner.invoke(app, ["compare", str(knn_dir), str(pop_dir), "--metric", "ndcg@10"])
    assert compared.exit_code == 0, compared.output
    test = json.loads(compared.output)
    assert test["mean_difference"] > 0 and test["t_pvalue"] < 0.01


def test_unknown_config_key_is_one_clear_error(tmp_path: Path) -> None:
    config = _config(tmp_path, {"name": "ease", "paramz": {}})
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "model.paramz" in result.output and "Traceback" not in result.output


def test_unknown_model_and_parameter(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", str(_config(tmp_path, {"name": "nope"})), "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 1 and "unknown model 'nope'" in result.output
    bad = _config(tmp_path, {"name": "ease", "params": {"lambda": 3}})
    result = runner.invoke(app, ["train", str(bad), "--out", str(tmp_path / "y")])
    assert result.exit_code == 1 and "bad parameters ['lambda']" in result.output


def test_overrides_parse_yaml_values() -> None:
    values: dict[str, object] = {}
    apply_override(values, "evaluation.ks=[1, 5]")
    apply_override(values, "split.seed=3")
    config = RunConfig.from_mapping(values)
    assert config.evaluation.ks == (1, 5) and config.split.seed == 3
    with pytest.raises(ClrecError, match=r"expected key\.path=value"):
        apply_override(values, "no-equals-sign")
    with pytest.raises(ClrecError, match="evaluation"):
        RunConfig.from_mapping({"evaluation": {"ks": [0]}})
