"""Exports of a saved split to RecBole atomic files and LightFM matrices, and `data export`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from typer.testing import CliRunner

from clrec.cli import app
from clrec.data.exporters import export_lightfm, export_recbole
from clrec.data.readers.recbole import read_atomic_file, read_recbole_atomic
from clrec.data.registry import load
from clrec.data.schema import Dataset
from clrec.data.splits import PARTS, Split, SplitConfig, split_dataset
from clrec.errors import ClrecError


@pytest.fixture(scope="module")
def ml_split() -> tuple[Dataset, Split]:
    dataset = load("ml-latest-small", None)
    return dataset, split_dataset(dataset, SplitConfig(scheme="random", seed=3))


def external_pairs(dataset: Dataset, frame: pd.DataFrame) -> set[tuple[str, str]]:
    users = dataset.users["id"].astype(str).to_numpy()[frame["user"].to_numpy()]
    items = dataset.items["id"].astype(str).to_numpy()[frame["item"].to_numpy()]
    return set(zip(users.tolist(), items.tolist(), strict=True))


def tiny_dataset() -> Dataset:
    interactions = pd.DataFrame(
        {
            "user": ["u1", "u1", "u1", "u2", "u2", "u2", "u3", "u3", "u3", "u3"],
            "item": ["a", "b", "c", "a", "c", "d", "a", "b", "d", "e"],
            "rating": [4, 3, 5, 2, 4, 5, 1, 3, 4, 5],
        }
    )
    content = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "title": ["The\tBig  Film", "Small\nOne", None, "Big Small", "Film", "Unrated"],
            "genres": ["Drama|Sci Fi", "Drama", "Comedy", None, "Sci Fi|Drama", "Comedy"],
            "maker": ["x", "y", "x", None, "y", "z"],
        }
    )
    return Dataset.from_external(
        "tiny set",
        interactions,
        item_content=content,
        item_fields={"title": "text", "genres": "tags", "maker": "category"},
    )


def run_folder(root: Path) -> Path:
    dataset = tiny_dataset()
    split = split_dataset(dataset, SplitConfig(scheme="random", ratios=(0.5, 0.25, 0.25), seed=1))
    dataset.save(root / "dataset")
    split.save(root / "split")
    return root


# ---------------------------------------------------------------------- RecBole
def test_recbole_parts_hold_exactly_the_split_pairs(
    ml_split: tuple[Dataset, Split], tmp_path: Path
) -> None:
    dataset, split = ml_split
    written = export_recbole(dataset, split, tmp_path, "ml")
    folder = tmp_path / "ml"
    assert {p.name for p in written} == {
        "ml.train.inter",
        "ml.valid.inter",
        "ml.test.inter",
        "ml.item",
        "recbole.yaml",
    }
    for part in PARTS:
        frame, types = read_atomic_file(folder / f"ml.{part}.inter")
        assert types == {
            "user_id": "token",
            "item_id": "token",
            "rating": "float",
            "timestamp": "float",
        }
        assert len(frame) == len(split.parts()[part])
        pairs = set(zip(frame["user_id"], frame["item_id"], strict=True))
        assert pairs == external_pairs(dataset, split.parts()[part])

    # the project's own reader sees the same interactions as the split's train part
    train = read_recbole_atomic(folder, "ml.train")
    assert train.n_interactions == len(split.train)


def test_recbole_item_file_has_one_row_per_item(
    ml_split: tuple[Dataset, Split], tmp_path: Path
) -> None:
    dataset, split = ml_split
    export_recbole(dataset, split, tmp_path, "ml")
    frame, types = read_atomic_file(tmp_path / "ml" / "ml.item")
    assert types == {
        "item_id": "token",
        "title": "token_seq",
        "genres": "token_seq",
        "tags": "token_seq",
        "imdb_id": "token",
        "tmdb_id": "token",
    }
    assert frame["item_id"].tolist() == dataset.items["id"].astype(str).tolist()
    toy_story = frame.iloc[0]
    assert toy_story["title"] == "Toy Story (1995)"
    genres = ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert toy_story["genres"].split() == genres

    config = yaml.safe_load((tmp_path / "ml" / "recbole.yaml").read_text())
    assert config["benchmark_filename"] == ["train", "valid", "test"]
    assert config["load_col"]["inter"] == ["user_id", "item_id", "rating", "timestamp"]
    assert config["load_col"]["item"][0] == "item_id"
    assert (config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]) == ("user_id", "item_id")
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1" in (tmp_path / "ml" / "recbole.yaml").read_text()


def test_recbole_content_is_tab_and_newline_free(tmp_path: Path) -> None:
    dataset = tiny_dataset()
    split = split_dataset(dataset, SplitConfig(seed=1))
    export_recbole(dataset, split, tmp_path, "tiny")
    lines = (tmp_path / "tiny" / "tiny.item").read_text().splitlines()
    assert len(lines) == 1 + dataset.n_items
    assert all(line.count("\t") == 3 for line in lines)
    frame, _ = read_atomic_file(tmp_path / "tiny" / "tiny.item")
    assert frame["title"].iloc[0] == "The Big Film"
    assert frame["genres"].iloc[0] == "Drama Sci_Fi"
    assert frame["item_id"].iloc[-1] == "f"


def test_recbole_item_file_reads_with_pandas_default_quoting(tmp_path: Path) -> None:
    # RecBole reads atomic files with pandas' default quoting: a title that starts with '"'
    # must not swallow the following fields
    dataset = tiny_dataset()
    dataset.items.loc[dataset.items["id"] == "e", "title"] = '"Quoted" Film'
    dataset.items.loc[dataset.items["id"] == "e", "genres"] = '"Sci Fi"|Drama'
    split = split_dataset(dataset, SplitConfig(seed=1))
    export_recbole(dataset, split, tmp_path, "tiny")
    frame = pd.read_csv(tmp_path / "tiny" / "tiny.item", sep="\t", engine="python", dtype=str)
    assert len(frame) == dataset.n_items
    row = frame[frame["item_id:token"] == "e"].iloc[0]
    assert row["title:token_seq"] == "'Quoted' Film"
    assert row["genres:token_seq"] == "'Sci_Fi' Drama"


def test_recbole_rejects_unsafe_name(ml_split: tuple[Dataset, Split], tmp_path: Path) -> None:
    dataset, split = ml_split
    with pytest.raises(ClrecError, match="name"):
        export_recbole(dataset, split, tmp_path, "../escape")


# ---------------------------------------------------------------------- LightFM
def test_lightfm_matrices(ml_split: tuple[Dataset, Split], tmp_path: Path) -> None:
    dataset, split = ml_split
    written = export_lightfm(dataset, split, tmp_path)
    assert {p.name for p in written} == {
        "interactions_train.npz",
        "interactions_valid.npz",
        "interactions_test.npz",
        "item_features.npz",
        "item_feature_names.json",
        "ids.json",
    }
    for part, frame in split.parts().items():
        matrix = sp.load_npz(tmp_path / f"interactions_{part}.npz")
        assert sp.isspmatrix_csr(matrix) or isinstance(matrix, sp.csr_array)
        assert matrix.shape == (dataset.n_users, dataset.n_items)
        distinct = frame[["user", "item"]].drop_duplicates()
        assert matrix.nnz == len(distinct)
        coo = matrix.tocoo()
        assert set(zip(coo.row.tolist(), coo.col.tolist(), strict=True)) == set(
            zip(distinct["user"].tolist(), distinct["item"].tolist(), strict=True)
        )

    features = sp.load_npz(tmp_path / "item_features.npz").tocsr()
    names = json.loads((tmp_path / "item_feature_names.json").read_text())
    assert features.shape == (dataset.n_items, len(names))
    assert len(names) > dataset.n_items
    np.testing.assert_allclose(np.asarray(features.sum(axis=1)).ravel(), 1.0, rtol=1e-5)
    assert (features[:, : dataset.n_items].diagonal() > 0).all()
    assert "genres:comedy" in names and "title:story" in names
    toy_story = {names[j] for j in features[0].indices}
    assert {"item:1", "genres:animation", "tags:pixar", "title:toy"} <= toy_story

    ids = json.loads((tmp_path / "ids.json").read_text())
    assert ids["users"] == dataset.users["id"].astype(str).tolist()
    assert ids["items"] == dataset.items["id"].astype(str).tolist()


# ---------------------------------------------------------------------- CLI
def test_cli_export_both_formats(tmp_path: Path) -> None:
    run = run_folder(tmp_path / "run")
    runner = CliRunner()
    result = runner.invoke(
        app, ["data", "export", str(run), "--format", "recbole", "--out", str(tmp_path / "rb")]
    )
    assert result.exit_code == 0, result.output
    assert "tiny-set.train.inter" in result.output
    assert (tmp_path / "rb" / "tiny-set" / "tiny-set.item").is_file()

    result = runner.invoke(
        app,
        ["data", "export", str(run), "--format", "lightfm", "--out", str(tmp_path / "lfm")],
    )
    assert result.exit_code == 0, result.output
    assert "item_features.npz" in result.output
    assert sp.load_npz(tmp_path / "lfm" / "interactions_train.npz").shape == (3, 6)


@pytest.mark.parametrize(
    ("make_run", "fmt", "message"),
    [(False, "recbole", "not a run folder"), (True, "csv", "unknown export format")],
)
def test_cli_export_errors(tmp_path: Path, make_run: bool, fmt: str, message: str) -> None:
    folder = run_folder(tmp_path / "run") if make_run else tmp_path
    result = CliRunner().invoke(
        app, ["data", "export", str(folder), "--format", fmt, "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
