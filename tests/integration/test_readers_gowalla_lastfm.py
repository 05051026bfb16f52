"""The Gowalla (LightGCN split) and Last.fm HetRec 2011 readers on the staged real files.

Counts are those in shared/data/README.md; the tests skip when the data is not staged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clrec.data.readers.detect import read_path
from clrec.data.readers.gowalla import read_gowalla
from clrec.data.readers.lastfm import read_lastfm
from clrec.data.schema import Dataset
from conftest import dataset_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gowalla(data_root: Path) -> Dataset:
    return read_gowalla(dataset_folder(data_root, "gowalla"))


@pytest.fixture(scope="module")
def lastfm(data_root: Path) -> Dataset:
    return read_lastfm(dataset_folder(data_root, "lastfm"))


def test_gowalla_counts(gowalla: Dataset) -> None:
    assert (gowalla.n_users, gowalla.n_items, gowalla.n_interactions) == (29_858, 40_981, 1_027_370)
    assert gowalla.interactions["split"].value_counts().to_dict() == {
        "train": 719_081,
        "valid": 91_047,
        "test": 217_242,
    }
    assert set(gowalla.interactions.columns) == {"user", "item", "split"}


def test_gowalla_ids_are_the_files_ids(gowalla: Dataset, data_root: Path) -> None:
    # 0-based ids that all occur: internal id == external id, so published splits line up.
    assert np.array_equal(gowalla.users["id"].astype(int).to_numpy(), np.arange(29_858))
    assert np.array_equal(gowalla.items["id"].astype(int).to_numpy(), np.arange(40_981))
    folder = dataset_folder(data_root, "gowalla")
    first_test = (folder / "test.txt").read_text().split("\n", 1)[0].split()
    test = gowalla.interactions[gowalla.interactions["split"] == "test"]
    user0 = test[test["user"] == int(first_test[0])]["item"].tolist()
    assert user0 == [int(i) for i in first_test[1:]]


def test_gowalla_splits_are_disjoint(gowalla: Dataset) -> None:
    assert not gowalla.interactions.duplicated(["user", "item"]).any()


def test_lastfm_counts(lastfm: Dataset) -> None:
    assert (lastfm.n_users, lastfm.n_items, lastfm.n_interactions) == (1_892, 17_632, 92_834)
    assert lastfm.user_relations is not None
    assert len(lastfm.user_relations) == 25_434
    weight = lastfm.interactions["weight"]
    assert (weight.min(), weight.max()) == (1.0, 352_698.0)
    assert lastfm.item_fields == {
        "name": "text",
        "url": "category",
        "picture_url": "image",
        "tags": "tags",
    }


def test_lastfm_content(lastfm: Dataset) -> None:
    items = lastfm.items.set_index("id")
    assert items.loc["1686", "name"] == '"Weird Al" Yankovic'
    assert items.loc["64", "name"] == "Röyksopp"
    assert items.loc["265", "name"] == "Céline Dion"
    assert items.loc["158", "name"] == "עברי לידר"
    assert items.loc["64", "url"] == "http://www.last.fm/music/R%C3%B6yksopp"
    assert items["picture_url"].isna().sum() == 444
    # 12,133 listed artists carry tags; the 390 tagged ids missing from artists.dat add none.
    assert items["tags"].notna().sum() == 12_133
    assert items.loc["64", "tags"].split("|")[:2] == ["electronic", "chillout"]
    assert items["tags"].dropna().str.split("|").map(len).max() == 20
    # tags.dat is latin-1: its non-ASCII tags decode to the right letters.
    all_tags = set("|".join(items["tags"].dropna()).split("|"))
    assert "tropicália" in all_tags


def test_lastfm_friends_are_symmetric(lastfm: Dataset) -> None:
    assert lastfm.user_relations is not None
    pairs = set(map(tuple, lastfm.user_relations[["user", "other"]].to_numpy().tolist()))
    assert pairs == {(b, a) for a, b in pairs}
    assert len(set(lastfm.user_relations["user"])) == 1_892


def test_detect_finds_both_layouts(data_root: Path) -> None:
    assert read_path(dataset_folder(data_root, "lastfm")).n_interactions == 92_834
