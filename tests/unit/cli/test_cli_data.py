"""`clrec data describe / check / split / export` (clrec.cli.data): counts on the bundled and
the tiny data set, the split prepared exactly as `train` prepares it, and bad arguments as
one clear line.

Success elsewhere: export in tests/unit/data/test_exporters.py::test_cli_export_both_formats;
more `data check` errors in tests/unit/data/test_malformed_corpus.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cli_support import assert_user_error, run_config, runner

from clrec.cli import app
from clrec.data.schema import Dataset
from clrec.data.splits import Split


def test_describe_json_gives_the_readme_counts() -> None:
    result = runner.invoke(app, ["data", "describe", "ml-latest-small", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["users"], summary["items"], summary["interactions"]) == (610, 9724, 100836)
    assert summary["catalogue_items"] == 9742
    assert summary["rating"] == {"min": 0.5, "max": 5.0, "mean": 3.5016}
    assert summary["item_fields"]["title"]["coverage"] == 1.0


def test_describe_prints_a_table(movies_dir: Path) -> None:
    result = runner.invoke(app, ["data", "describe", str(movies_dir)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "rated-movies"
    # 24 users × 9 ratings, the lurker's 3 and the flop's 4
    assert f"  {'users':<16} {25:>12,}" in lines
    assert f"  {'items':<16} {25:>12,}" in lines
    assert f"  {'interactions':<16} {223:>12,}" in lines
    assert f"  {'density':<16} {223 / 625:>12.4%}" in lines
    assert any(line.startswith(f"  {'item_field':<16} genres: ") for line in lines)


def test_unknown_name_is_one_clear_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "describe", "ml-2m"])
    assert_user_error(result, "no data set named 'ml-2m'")


def test_missing_known_data_set_names_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLREC_DATA", str(tmp_path))
    result = runner.invoke(app, ["data", "describe", "ml-1m"])
    assert_user_error(result, f"looked in {tmp_path / 'ml-1m'}")


def test_check_reads_a_file_with_its_columns_and_a_folder(movies_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "ratings.csv"
    data.write_text("uid,iid,stars\na,x,4\nb,x,3\nb,y,5\nc,y,1\n")
    args = ["data", "check", str(data), "--user", "uid", "--item", "iid", "--rating", "stars"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok: {data}: 3 users, 2 items, 4 interactions\n"
    folder = runner.invoke(app, ["data", "check", str(movies_dir)])
    assert folder.exit_code == 0, folder.output
    assert folder.stdout == f"ok: {movies_dir}: 25 users, 25 items, 223 interactions\n"


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


@pytest.mark.parametrize(
    ("flag", "drop_unused", "users", "items"),
    [(None, True, 24, 24), ("--drop-unused", True, 24, 24), ("--keep-unused", False, 25, 25)],
)
def test_split_prepares_the_data_set_train_prepares(
    movies_dir: Path,
    tmp_path: Path,
    flag: str | None,
    drop_unused: bool,
    users: int,
    items: int,
) -> None:
    # min_rating 3 leaves the lurker and the flop without interactions: only drop_unused
    # (the run config's default) tells whether they stay in the data set
    args = ["data", "split", str(movies_dir), "--min-rating", "3", "--k-core", "2"]
    args += ["--seed", "7", "--out", str(tmp_path / "split")]
    result = runner.invoke(app, args if flag is None else [*args, flag])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"wrote {tmp_path / 'split'}"

    config = run_config(movies_dir, "popularity", {})
    config["data"].update(min_rating=3, k_core=2)
    if flag is not None:
        config["data"]["drop_unused"] = drop_unused
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    trained = runner.invoke(
        app, ["train", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "run")]
    )
    assert trained.exit_code == 0, trained.output

    split_data = Dataset.load(tmp_path / "split" / "dataset")
    run_data = Dataset.load(tmp_path / "run" / "dataset")
    assert (split_data.n_users, split_data.n_items) == (users, items)
    assert split_data.n_interactions == 144
    assert split_data.users["id"].tolist() == run_data.users["id"].tolist()
    assert split_data.items["id"].tolist() == run_data.items["id"].tolist()
    pd.testing.assert_frame_equal(split_data.interactions, run_data.interactions)
    split, run_split = (
        Split.load(tmp_path / "split" / "split"),
        Split.load(tmp_path / "run" / "split"),
    )
    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(split, part), getattr(run_split, part))


def test_bad_ratios_are_refused(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["data", "split", "ml-latest-small", "--ratios", "0.8,x", "--out", str(tmp_path)]
    )
    assert_user_error(result, "--ratios")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["data", "check", "{csv}", "--user", "nope", "--item", "iid"],
            "missing column 'nope' (user)",
        ),
        (
            ["data", "split", "{movies}", "--k-core", "-1", "--out", "{tmp}/split"],
            "--k-core: Input should be greater than or equal to 0",
        ),
        (
            ["data", "export", "{tmp}", "--format", "recbole", "--out", "{tmp}/peer"],
            "not a run folder",
        ),
    ],
    ids=lambda value: value[1] if isinstance(value, list) else None,
)
def test_a_bad_argument_is_one_clear_line(
    args: list[str], message: str, movies_dir: Path, tmp_path: Path
) -> None:
    csv = tmp_path / "ratings.csv"
    csv.write_text("uid,iid\na,x\n")
    places = {"tmp": tmp_path, "movies": movies_dir, "csv": csv}
    result = runner.invoke(app, [arg.format(**places) for arg in args])
    assert_user_error(result, message)


def test_describe_shows_sequence_positions_as_positions(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\nu1,a,0\nu1,b,1\nu2,a,49\n")
    result = runner.invoke(app, ["data", "describe", str(log), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["position_range"] == [0, 49] and "time_range" not in summary


def test_describe_reads_a_folder_of_ones_own_tables(tmp_path: Path) -> None:
    (tmp_path / "interactions.csv").write_text("user_id,item_id\nu1,a\nu1,b\nu2,a\n")
    (tmp_path / "items.csv").write_text(
        "item_id,title\na,Toy Story and friends (1995)\nb,Heat in the city (1995)\n"
        "c,The Gamma of it all (2001)\n"
    )
    result = runner.invoke(app, ["data", "describe", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["users"], summary["catalogue_items"]) == (2, 3)  # c: not yet interacted
    assert summary["item_fields"]["title"]["kind"] == "text"


def test_init_config_writes_a_config_that_reads_the_files(tmp_path: Path) -> None:
    from clrec.config import RunConfig
    from clrec.experiment import prepare_data

    (tmp_path / "log.csv").write_text(
        "uid,movie_id,rating,timestamp\nu1,a,4,1600000000\nu2,b,5,1600000100\n"
    )
    (tmp_path / "movies.csv").write_text(
        "movie_id,title,genres\na,Toy Story and friends (1995),Animation|Comedy\n"
        "b,Heat in the city (1995),Crime|Drama\n"
    )
    out = tmp_path / "mine.yaml"
    args = ["init-config", "--data", str(tmp_path / "log.csv")]
    result = runner.invoke(app, [*args, "--items", str(tmp_path / "movies.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(out.read_text())
    assert written["data"]["columns"] == {
        "user": "uid",
        "item": "movie_id",
        "rating": "rating",
        "timestamp": "timestamp",
    }
    assert written["data"]["items"]["fields"] == {"title": "text", "genres": "tags"}
    config = RunConfig.from_yaml(out)  # a valid run config
    dataset = prepare_data(config.data, None)
    assert (dataset.n_users, dataset.n_items) == (2, 2)
    assert dict(dataset.item_fields) == {"title": "text", "genres": "tags"}
    again = runner.invoke(app, [*args, "--out", str(out)])
    assert_user_error(again, "exists")
