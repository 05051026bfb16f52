"""ML-100K and ML-1M readers on the staged GroupLens files: README counts and content checks."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clrec.data.readers.movielens import read_ml_1m, read_ml_100k
from clrec.data.schema import Dataset
from conftest import dataset_folder


def item_row(dataset: Dataset, external_id: str) -> pd.Series:
    position = int(dataset.item_index().get_loc(external_id))
    return dataset.items.iloc[position]


def rating_histogram(dataset: Dataset) -> dict[int, int]:
    counts = dataset.interactions["rating"].value_counts().sort_index()
    return {int(k): int(v) for k, v in counts.items()}


# --------------------------------------------------------------------------- ML-100K


@pytest.fixture(scope="module")
def ml100k(data_root: Path) -> Dataset:
    return read_ml_100k(dataset_folder(data_root, "ml-100k"))


def test_ml_100k_counts(ml100k: Dataset) -> None:
    inter = ml100k.interactions
    assert inter["user"].nunique() == 943
    assert inter["item"].nunique() == 1682
    assert len(inter) == 100_000
    assert (ml100k.n_users, ml100k.n_items) == (943, 1682)
    assert rating_histogram(ml100k) == {1: 6110, 2: 11370, 3: 27145, 4: 34174, 5: 21201}
    first = pd.Timestamp(int(inter["timestamp"].min()), unit="s")
    last = pd.Timestamp(int(inter["timestamp"].max()), unit="s")
    assert (first.date().isoformat(), last.date().isoformat()) == ("1997-09-20", "1998-04-22")


def test_ml_100k_item_content(ml100k: Dataset) -> None:
    assert ml100k.item_fields == {
        "title": "text",
        "genres": "tags",
        "release_date": "category",
        "imdb_url": "category",
    }
    toy = item_row(ml100k, "1")
    assert toy["title"] == "Toy Story (1995)"
    assert toy["genres"] == "Animation|Children's|Comedy"  # u.genre order
    assert toy["release_date"] == "1995-01-01"
    assert str(toy["imdb_url"]).startswith("http://us.imdb.com/")
    # u.item is latin-1
    assert item_row(ml100k, "543")["title"] == "Misérables, Les (1995)"
    # item 267 is a placeholder (title "unknown", only the "unknown" genre, no date/URL)
    placeholder = item_row(ml100k, "267")
    assert placeholder[["title", "genres", "release_date", "imdb_url"]].isna().all()
    assert ml100k.items["title"].notna().sum() == 1681
    assert ml100k.items["imdb_url"].isna().sum() == 3


def test_ml_100k_user_content(ml100k: Dataset) -> None:
    assert ml100k.user_fields == {
        "age": "number",
        "gender": "category",
        "occupation": "category",
        "zip": "category",
    }
    user = ml100k.users.iloc[int(ml100k.user_index().get_loc("1"))]
    assert (user["age"], user["gender"], user["occupation"], user["zip"]) == (
        24,
        "M",
        "technician",
        "85711",
    )
    assert ml100k.users["occupation"].nunique() == 21
    assert ml100k.users["gender"].value_counts().to_dict() == {"M": 670, "F": 273}


def test_ml_100k_round_trip(ml100k: Dataset, tmp_path: Path) -> None:
    loaded = Dataset.load(ml100k.save(tmp_path / "saved"))
    pd.testing.assert_frame_equal(loaded.interactions, ml100k.interactions)
    pd.testing.assert_frame_equal(loaded.items, ml100k.items)
    pd.testing.assert_frame_equal(loaded.users, ml100k.users)
    assert loaded.item_fields == ml100k.item_fields
    assert loaded.user_fields == ml100k.user_fields


# --------------------------------------------------------------------------- ML-1M


@pytest.fixture(scope="module")
def ml1m(data_root: Path) -> Dataset:
    return read_ml_1m(dataset_folder(data_root, "ml-1m"))


@pytest.mark.slow
def test_ml_1m_counts(ml1m: Dataset) -> None:
    inter = ml1m.interactions
    assert inter["user"].nunique() == 6040
    assert inter["item"].nunique() == 3706
    assert len(inter) == 1_000_209
    # movies.dat lists 3,883 movies; abstracts and posters add no catalogue entries
    assert (ml1m.n_users, ml1m.n_items) == (6040, 3883)
    assert "timestamp" not in inter.columns
    assert rating_histogram(ml1m) == {1: 56174, 2: 107557, 3: 261197, 4: 348971, 5: 226310}
    assert float(inter["rating"].mean()) == pytest.approx(3.5816, abs=5e-5)
    # rated items come first in the id map, unrated catalogue entries after them
    assert inter["item"].max() == 3705


@pytest.mark.slow
def test_ml_1m_titles_and_users(ml1m: Dataset) -> None:
    toy = item_row(ml1m, "1")
    assert toy["title"] == "Toy Story (1995)"
    assert toy["genres"] == "Animation|Children's|Comedy"
    assert item_row(ml1m, "570")["title"] == "Slingshot, The (Kådisbellan ) (1993)"  # latin-1
    assert ml1m.user_fields == {
        "gender": "category",
        "age": "category",
        "occupation": "category",
        "zip": "category",
    }
    user = ml1m.users.iloc[int(ml1m.user_index().get_loc("1"))]
    assert (user["gender"], user["age"], user["occupation"], user["zip"]) == (
        "F",
        "1",
        "10",
        "48067",
    )


@pytest.mark.slow
def test_ml_1m_abstracts(ml1m: Dataset) -> None:
    assert ml1m.item_fields["abstract"] == "text"
    # 3,301 abstracts minus 344 "Movie: <title>, Genres: [...]" and 15 "Abstract not found."
    assert ml1m.items["abstract"].notna().sum() == 3301 - 344 - 15
    assert str(item_row(ml1m, "2")["abstract"]).startswith("Jumanji is a 1995 American")
    assert "Pixar" in str(item_row(ml1m, "2355")["abstract"])  # A Bug's Life
    # The staged JSON has no entry for Toy Story (MovieID 1); Toy Story 2 is "Abstract not
    # found." and MovieID 3719 a generated "Movie: ..., Genres: [...]" string.
    for movie in ("1", "3114", "3719"):
        assert pd.isna(item_row(ml1m, movie)["abstract"])
    abstracts = ml1m.items["abstract"].dropna()
    assert not abstracts.str.startswith("Movie: ").any()


@pytest.mark.slow
def test_ml_1m_posters(ml1m: Dataset, data_root: Path) -> None:
    tar_path = (data_root / "ml-1m-content" / "ml1m_posters.tar").absolute()
    assert ml1m.item_fields["poster"] == "image"
    assert item_row(ml1m, "1")["poster"] == f"{tar_path}#images/1.jpg"
    posters = ml1m.items["poster"]
    assert posters.notna().sum() == 3256
    # every poster belongs to a rated movie, and its member really is in the tar
    with_poster = np.flatnonzero(posters.notna().to_numpy())
    assert set(with_poster) <= set(ml1m.interactions["item"].unique())
    with tarfile.open(tar_path) as archive:
        member = archive.getmember(str(posters.iloc[0]).split("#", 1)[1])
        assert member.isfile() and member.size > 0


@pytest.mark.slow
def test_ml_1m_without_content_folder(data_root: Path, tmp_path: Path) -> None:
    source = dataset_folder(data_root, "ml-1m")
    copy = tmp_path / "ml-1m"
    copy.mkdir()
    for name in ("movies.dat", "users.dat", "ratings_no_timestamp.dat.gz"):
        (copy / name).symlink_to(source / name)
    dataset = read_ml_1m(copy)
    assert dataset.item_fields == {"title": "text", "genres": "tags"}
    assert {"abstract", "poster"}.isdisjoint(dataset.items.columns)
    assert (dataset.n_items, dataset.n_interactions) == (3883, 1_000_209)
