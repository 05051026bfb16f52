"""Your own catalogue end to end: the bundled ml-latest-small written out as plain
``interactions.csv`` + ``items.csv`` trains to exactly the registry data set's metrics
through ``clrec run --data ... --items ...``, and a run config with ``data.items`` trains the
clrec model with text content from those files and records which fields fed it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clrec.cli import app
from clrec.config import RunConfig
from clrec.data.registry import load
from clrec.experiment import run_experiment
from tiny_bert import make_tiny_bert

runner = CliRunner()


def _write_files(root: Path) -> tuple[Path, Path]:
    dataset = load("ml-latest-small")
    users = dataset.users["id"].astype(str).to_numpy()
    items = dataset.items["id"].astype(str).to_numpy()
    inter = dataset.interactions
    frame = inter.assign(user_id=users[inter["user"]], item_id=items[inter["item"]])
    interactions = root / "interactions.csv"
    frame[["user_id", "item_id", "rating", "timestamp"]].to_csv(interactions, index=False)
    catalogue = dataset.items.rename(columns={"id": "item_id"})
    table = root / "items.csv"
    catalogue[["item_id", "title", "genres"]].to_csv(table, index=False)
    return interactions, table


def test_own_files_give_the_registry_data_sets_metrics(tmp_path: Path) -> None:
    interactions, table = _write_files(tmp_path)
    reference = run_experiment(
        RunConfig.from_mapping(
            {
                "data": {"name": "ml-latest-small", "min_rating": 3.5},
                "split": {"scheme": "random", "seed": 2020},
                "model": {"name": "ease"},
                "report": False,
            }
        ),
        tmp_path / "reference",
    )
    args = ["run", "--data", str(interactions), "--items", str(table), "--model", "ease"]
    result = runner.invoke(app, [*args, "--min-rating", "3.5", "--out", str(tmp_path / "own")])
    assert result.exit_code == 0, result.output
    own = json.loads((tmp_path / "own" / "metrics.json").read_text())
    assert own["dataset"]["users"] == reference["dataset"]["users"]
    assert own["dataset"]["items"] == reference["dataset"]["items"]
    for key, value in reference["test"].items():
        assert own["test"][key] == pytest.approx(value, abs=1e-6), key
    assert own["dataset"]["item_fields"]["title"]["kind"] == "text"


@pytest.mark.slow
def test_a_config_with_items_trains_the_clrec_model_on_their_text(tmp_path: Path) -> None:
    interactions, table = _write_files(tmp_path)
    bert = make_tiny_bert(tmp_path / "bert")
    config = RunConfig.from_mapping(
        {
            "data": {
                "path": str(interactions),
                "columns": {"user": "user_id", "item": "item_id"},
                "items": {
                    "path": str(table),
                    "id": "item_id",
                    "fields": {"title": "text", "genres": "tags"},
                },
                "min_rating": 4.0,
            },
            "split": {"scheme": "random", "seed": 1},
            "model": {
                "name": "clrec",
                "params": {
                    "content": {
                        "modalities": ["text"],
                        "cache_dir": None,
                        "text_model": str(bert),
                        "text_backend": "torch",
                    },
                    "prior": "none",
                    "epochs": 1,
                    "num_threads": 1,
                    "progress": False,
                },
            },
            "evaluation": {"ks": [10], "progress": False},
            "report": False,
        }
    )
    results = run_experiment(config, tmp_path / "run")
    assert results["content_fields"] == {"text": ["title", "genres"]}
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["content_fields"] == results["content_fields"]
    assert 0 < saved["test"]["ndcg@10"] < 1
