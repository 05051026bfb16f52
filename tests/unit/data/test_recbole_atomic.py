"""RecBole atomic files: typed headers, column mapping, content kinds and error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clrec.data.readers.recbole import read_atomic_file, read_recbole_atomic
from clrec.errors import DataError

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "u1\ti1\t4\t100\n"
    "u1\ti2\t3.5\t200\n"
    "u2\ti1\t5\t300\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\tclass:token_seq\tyear:token\tprice:float\temb:float_seq\n"
    "i1\tThe  Big Film\tDrama Comedy\t1999\t9.5\t0.5 1 2\n"
    "i2\tSmall\tHorror\t\t\t1 2 3\n"
    "i3\tNever Rated\t\t2001\t1\t0 0 0\n"
)
USER = "user_id:token\tage:float\tgender:token\nu1\t30\tF\nu2\t\tM\n"


def write(folder: Path, **files: str) -> Path:
    for suffix, text in files.items():
        (folder / f"toy.{suffix}").write_text(text, encoding="utf-8")
    return folder


def test_reads_interactions_and_content(tmp_path: Path) -> None:
    dataset = read_recbole_atomic(write(tmp_path, inter=INTER, item=ITEM, user=USER), "toy")
    assert dataset.name == "toy"
    assert (dataset.n_users, dataset.n_items, dataset.n_interactions) == (2, 3, 3)
    inter = dataset.interactions
    assert list(inter.columns) == ["user", "item", "rating", "timestamp"]
    assert inter["rating"].tolist() == [4.0, 3.5, 5.0]
    assert inter["timestamp"].tolist() == [100, 200, 300]

    assert dataset.item_fields == {
        "movie_title": "text",
        "class": "tags",
        "year": "category",
        "price": "number",
    }
    items = dataset.items.set_index("id")
    assert items.loc["i1", "movie_title"] == "The Big Film"
    assert items.loc["i1", "class"] == "Drama|Comedy"
    assert pd.isna(items.loc["i3", "class"])
    assert pd.isna(items.loc["i2", "year"]) and pd.isna(items.loc["i2", "price"])
    # the unrated catalogue item is kept, after the rated ones
    assert dataset.items["id"].tolist() == ["i1", "i2", "i3"]
    np.testing.assert_array_equal(
        dataset.item_vectors["emb"], np.array([[0.5, 1, 2], [1, 2, 3], [0, 0, 0]], np.float32)
    )

    assert dataset.user_fields == {"age": "number", "gender": "category"}
    users = dataset.users.set_index("id")
    assert users.loc["u1", "age"] == 30 and pd.isna(users.loc["u2", "age"])


def test_item_and_user_files_are_optional(tmp_path: Path) -> None:
    dataset = read_recbole_atomic(write(tmp_path, inter=INTER), "toy", name="renamed")
    assert dataset.name == "renamed"
    assert list(dataset.items.columns) == ["id"]
    assert dataset.item_fields == {}


def test_header_without_type_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, inter="user_id\titem_id:token\nu1\ti1\n")
    with pytest.raises(DataError) as caught:
        read_recbole_atomic(tmp_path, "toy")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'toy.inter'}, line 1: ")
    assert "header field 'user_id' has no ':type' suffix" in message
    assert caught.value.line == 1


def test_unknown_type_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, inter=INTER, item="item_id:token\tgenre:category\ni1\tDrama\n")
    with pytest.raises(DataError) as caught:
        read_recbole_atomic(tmp_path, "toy")
    assert str(caught.value) == (
        f"{tmp_path / 'toy.item'}, line 1: header field 'genre:category' has unknown type "
        "'category'; expected one of token, token_seq, float, float_seq"
    )


def test_missing_inter_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"toy\.inter: file not found"):
        read_recbole_atomic(tmp_path, "toy")


def test_missing_id_column_suggests_a_name(tmp_path: Path) -> None:
    write(tmp_path, inter="user_id:token\titem:token\nu1\ti1\n")
    with pytest.raises(DataError, match=r"missing column 'item_id'.*did you mean 'item'"):
        read_recbole_atomic(tmp_path, "toy")


def test_bad_rating_names_the_row(tmp_path: Path) -> None:
    write(tmp_path, inter="user_id:token\titem_id:token\trating:float\nu1\ti1\t4\nu1\ti2\tfive\n")
    with pytest.raises(DataError, match=r"toy\.inter, row 2: 'rating' value 'five'"):
        read_recbole_atomic(tmp_path, "toy")


def test_duplicate_pairs_are_rejected_unless_asked(tmp_path: Path) -> None:
    write(tmp_path, inter="user_id:token\titem_id:token\trating:float\nu\ti\t4\nu\ti\t2\n")
    with pytest.raises(DataError, match=r"row 2: duplicate \(user, item\) pair \(u, i\)"):
        read_recbole_atomic(tmp_path, "toy")
    merged = read_recbole_atomic(tmp_path, "toy", duplicates="aggregate")
    assert merged.interactions["rating"].tolist() == [3.0]


def test_ragged_float_seq_names_the_row(tmp_path: Path) -> None:
    write(tmp_path, inter=INTER, item="item_id:token\temb:float_seq\ni1\t1 2\ni2\t1 2 3\n")
    with pytest.raises(DataError, match=r"toy\.item, row 2: 'emb' has 3 values, the first row"):
        read_recbole_atomic(tmp_path, "toy")


def test_read_atomic_file_strips_types(tmp_path: Path) -> None:
    path = tmp_path / "x.inter"
    path.write_text("a:token\tb:token_seq\tc:float_seq\n1\tx y\t1 2\n")
    frame, types = read_atomic_file(path)
    assert list(frame.columns) == ["a", "b", "c"]
    assert types == {"a": "token", "b": "token_seq", "c": "float_seq"}
    assert frame.iloc[0].tolist() == ["1", "x y", "1 2"]
