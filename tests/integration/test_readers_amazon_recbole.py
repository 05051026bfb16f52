"""RecBole ML-100K and the two Amazon readers on the staged files: README counts and content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clrec.data.describe import describe
from clrec.data.readers.amazon import read_amazon_office, read_amazon_scientific
from clrec.data.readers.movielens import read_ml_100k
from clrec.data.readers.recbole import read_ml_100k_recbole
from clrec.data.schema import Dataset
from clrec.errors import DataError
from conftest import dataset_folder


def item_row(dataset: Dataset, external_id: str) -> pd.Series:
    return dataset.items.iloc[int(dataset.item_index().get_loc(external_id))]


def external_interactions(dataset: Dataset, columns: list[str]) -> pd.DataFrame:
    """Interactions keyed by external ids, sorted, for comparing two readers."""
    inter = dataset.interactions
    frame = pd.DataFrame(
        {
            "user": dataset.users["id"].to_numpy()[inter["user"].to_numpy()],
            "item": dataset.items["id"].to_numpy()[inter["item"].to_numpy()],
        }
        | {column: inter[column].to_numpy() for column in columns}
    )
    return frame.sort_values(["user", "item"]).reset_index(drop=True)


def assert_round_trip(dataset: Dataset, directory: Path) -> None:
    loaded = Dataset.load(dataset.save(directory))
    pd.testing.assert_frame_equal(loaded.interactions, dataset.interactions)
    pd.testing.assert_frame_equal(loaded.items, dataset.items)
    pd.testing.assert_frame_equal(loaded.users, dataset.users)
    assert loaded.item_fields == dataset.item_fields
    assert sorted(loaded.item_vectors) == sorted(dataset.item_vectors)
    for modality, matrix in dataset.item_vectors.items():
        np.testing.assert_array_equal(loaded.item_vectors[modality], matrix)
    if dataset.eval_negatives is None:
        assert loaded.eval_negatives is None
    else:
        assert loaded.eval_negatives is not None
        pd.testing.assert_frame_equal(
            loaded.eval_negatives, dataset.eval_negatives, check_dtype=False
        )


# --------------------------------------------------------------------------- RecBole ML-100K


@pytest.fixture(scope="module")
def recbole(data_root: Path) -> Dataset:
    return read_ml_100k_recbole(dataset_folder(data_root, "ml-100k-recbole"))


def test_recbole_ml_100k_counts(recbole: Dataset) -> None:
    inter = recbole.interactions
    assert recbole.name == "ml-100k-recbole"
    assert inter["user"].nunique() == 943
    assert inter["item"].nunique() == 1682
    assert len(inter) == 100_000
    assert list(inter.columns) == ["user", "item", "rating", "timestamp"]


def test_recbole_ml_100k_content(recbole: Dataset) -> None:
    assert recbole.item_fields == {
        "movie_title": "text",
        "release_year": "category",
        "class": "tags",
    }
    assert recbole.user_fields == {
        "age": "category",
        "gender": "category",
        "occupation": "category",
        "zip_code": "category",
    }
    toy = item_row(recbole, "1")
    assert toy["movie_title"] == "Toy Story"
    assert toy["release_year"] == "1995"
    assert toy["class"] == "Animation|Children's|Comedy"


@pytest.mark.slow
def test_recbole_matches_grouplens_files(recbole: Dataset, data_root: Path) -> None:
    """The README says ml-100k.inter holds exactly the tuples of u.data."""
    original = read_ml_100k(dataset_folder(data_root, "ml-100k"))
    columns = ["rating", "timestamp"]
    pd.testing.assert_frame_equal(
        external_interactions(recbole, columns), external_interactions(original, columns)
    )


# --------------------------------------------------------------------------- Amazon Office


@pytest.fixture(scope="module")
def office(data_root: Path) -> Dataset:
    return read_amazon_office(dataset_folder(data_root, "amazon-office"))


@pytest.mark.slow
def test_office_counts_and_split(office: Dataset) -> None:
    inter = office.interactions
    assert inter["user"].nunique() == 4905
    assert inter["item"].nunique() == 2420
    assert len(inter) == 53_258
    assert (office.n_users, office.n_items) == (4905, 2420)
    assert inter["split"].value_counts().to_dict() == {
        "train": 43_448,
        "valid": 4905,
        "test": 4905,
    }
    # one valid and one test row per user, the test row being the user's latest
    held_out = inter[inter["split"] != "train"]
    assert held_out.groupby("split")["user"].nunique().to_dict() == {"valid": 4905, "test": 4905}
    latest = inter.groupby("user")["timestamp"].max()
    test = inter[inter["split"] == "test"].set_index("user")["timestamp"]
    assert (test == latest.reindex(test.index)).all()
    days = pd.to_datetime(inter["timestamp"], unit="s")
    assert (days.min().date().isoformat(), days.max().date().isoformat()) == (
        "2000-09-29",
        "2014-07-23",
    )


@pytest.mark.slow
def test_office_eval_negatives(office: Dataset) -> None:
    negatives = office.eval_negatives
    assert negatives is not None
    assert list(negatives.columns) == ["user", "item", "split", "negatives"]
    assert negatives["split"].value_counts().to_dict() == {"valid": 4905, "test": 4905}
    assert (negatives["negatives"].map(len) == 99).all()
    flat = np.concatenate(negatives["negatives"].to_numpy())
    assert flat.min() >= 0 and flat.max() < office.n_items
    assert not any(
        item in row for item, row in zip(negatives["item"], negatives["negatives"], strict=True)
    )
    # the negatives' (user, item) pairs are the valid/test interactions
    inter = office.interactions
    held_out = inter[inter["split"] != "train"][["user", "item", "split"]]
    merged = negatives.merge(held_out, on=["user", "item"], suffixes=("", "_inter"))
    assert len(merged) == len(negatives)
    assert (merged["split"] == merged["split_inter"]).all()


@pytest.mark.slow
def test_office_item_content(office: Dataset) -> None:
    first = item_row(office, "1")
    assert first["asin"] == "B0000AG93P"
    assert str(first["text"]).startswith("HP 78 Tri-Color Printer Cartridge")
    assert office.items["text"].notna().all()
    assert office.item_fields["category"] == "category"
    assert office.item_fields["complements"] == "tags"
    assert office.items["category"].nunique() <= 40
    # brand id 0 means "no brand": such items' text carries no brand name
    assert office.items["brand"].isna().sum() == 481
    related = item_row(office, "170")["complements"]
    assert str(related).split("|")[:3] == ["451", "1886", "2159"]


@pytest.mark.slow
def test_office_round_trip(office: Dataset, tmp_path: Path) -> None:
    assert_round_trip(office, tmp_path / "saved")


# --------------------------------------------------------------------------- Amazon Scientific


@pytest.fixture(scope="module")
def scientific(data_root: Path) -> Dataset:
    return read_amazon_scientific(dataset_folder(data_root, "amazon-scientific"))


def test_scientific_counts(scientific: Dataset) -> None:
    inter = scientific.interactions
    assert inter["user"].nunique() == 2928
    assert inter["item"].nunique() == 1585
    assert (scientific.n_users, scientific.n_items) == (2928, 1585)
    # 19,712 events; 144 are repeats of an earlier (user, item) pair and are merged into one
    # interaction whose count says how many events it merges
    assert int(inter["count"].sum()) == 19_712
    assert describe(scientific)["interactions"] == 19_712
    assert len(inter) == 19_568
    assert int((inter["count"] > 1).sum()) > 0


def test_scientific_split(scientific: Dataset) -> None:
    inter = scientific.interactions
    counts = inter["split"].value_counts().to_dict()
    # every user's last event is the test item; 8 users' valid item repeats their test item
    assert counts["test"] == 2928
    assert counts["valid"] == 2920
    assert sum(counts.values()) == len(inter)
    # test is the last position, valid the one before it
    last = inter.groupby("user")["position"].max()
    test = inter[inter["split"] == "test"].set_index("user")["position"]
    assert (test == last.reindex(test.index)).all()
    valid = inter[inter["split"] == "valid"].set_index("user")["position"]
    assert (valid == last.reindex(valid.index) - 1).all()


def test_scientific_content_and_vectors(scientific: Dataset, data_root: Path) -> None:
    folder = dataset_folder(data_root, "amazon-scientific")
    assert str(item_row(scientific, "B0000223UV")["text"]).startswith(
        "Gorilla Original Gorilla Glue"
    )
    assert scientific.items["text"].notna().all()
    raw = np.fromfile(folder / "Scientific.feat1CLS", dtype=np.float32).reshape(-1, 512)
    for modality in ("text", "image"):
        matrix = scientific.item_vectors[modality]
        assert matrix.shape == (1585, 512)
        assert matrix.dtype == np.float32
        assert not np.isnan(matrix).any()
    # row i of the raw file is item index i; index 0 is ASIN B00O47ILVA (Scientific.item2index)
    internal = int(scientific.item_index().get_loc("B00O47ILVA"))
    np.testing.assert_array_equal(scientific.item_vectors["text"][internal], raw[0])
    # user ids are the reviewer ids of Scientific.user2index
    assert "A1AXCV2WYDA4PD" in set(scientific.users["id"])


def test_scientific_round_trip(scientific: Dataset, tmp_path: Path) -> None:
    assert_round_trip(scientific, tmp_path / "saved")


def test_scientific_checks_the_valid_file(data_root: Path, tmp_path: Path) -> None:
    """A valid file that disagrees with the test sequences is refused, naming its row."""
    source = dataset_folder(data_root, "amazon-scientific")
    copy = tmp_path / "scientific"
    copy.mkdir()
    for path in source.iterdir():
        if path.name != "Scientific.valid.inter":
            (copy / path.name).symlink_to(path)
    lines = (source / "Scientific.valid.inter").read_text().splitlines()
    user, history, _ = lines[2].split("\t")
    lines[2] = f"{user}\t{history}\t0"  # data row 2 now names another target
    (copy / "Scientific.valid.inter").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"Scientific\.valid\.inter, row 2: row does not match"):
        read_amazon_scientific(copy)
