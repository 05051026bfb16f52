"""The generic reader: every format reads, roles are inferred, duplicates and content behave."""

from __future__ import annotations

import bz2
import gzip
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from clrec.data.readers.generic import (
    ColumnMapping,
    ContentSource,
    GenericSource,
    infer_mapping,
    read_generic,
    read_table,
    source_from_options,
)
from clrec.data.validation import parse_ids
from clrec.errors import ClrecError, DataError

ROWS = [
    {"user_id": "u1", "item_id": "i1", "rating": 4.0, "ts": 1_500_000_000},
    {"user_id": "u1", "item_id": "i2", "rating": 3.5, "ts": 1_500_000_100},
    {"user_id": "u2", "item_id": "i1", "rating": 5.0, "ts": 1_500_000_200},
]


def _expected() -> pd.DataFrame:
    return pd.DataFrame(ROWS)


def _write(tmp_path: Path, kind: str) -> Path:
    frame = _expected()
    if kind == "csv":
        path = tmp_path / "log.csv"
        frame.to_csv(path, index=False)
    elif kind == "tsv":
        path = tmp_path / "log.tsv"
        frame.to_csv(path, index=False, sep="\t")
    elif kind == "dat":
        path = tmp_path / "log.dat"
        lines = ["::".join(frame.columns)] + ["::".join(map(str, r)) for r in frame.values]
        path.write_text("\n".join(lines) + "\n")
    elif kind == "csv.gz":
        path = tmp_path / "log.csv.gz"
        path.write_bytes(gzip.compress(frame.to_csv(index=False).encode()))
    elif kind == "parquet":
        path = tmp_path / "log.parquet"
        frame.to_parquet(path, index=False)
    elif kind == "jsonl":
        path = tmp_path / "log.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    elif kind == "json":
        path = tmp_path / "log.json"
        path.write_text(json.dumps(ROWS, indent=1))
    elif kind == "cr-only":  # old Mac newlines
        path = tmp_path / "log.csv"
        path.write_bytes(frame.to_csv(index=False).replace("\n", "\r").encode())
    elif kind == "crlf":
        path = tmp_path / "log.csv"
        path.write_bytes(frame.to_csv(index=False).replace("\n", "\r\n").encode())
    elif kind == "gzip-named-csv":  # compressed, without the .gz suffix
        path = tmp_path / "log.csv"
        path.write_bytes(gzip.compress(frame.to_csv(index=False).encode()))
    elif kind == "bz2":
        path = tmp_path / "log.csv"
        path.write_bytes(bz2.compress(frame.to_csv(index=False).encode()))
    elif kind == "latin1-gzip":  # another encoding, compressed, without the suffix
        path = tmp_path / "log.csv"
        path.write_bytes(gzip.compress(frame.to_csv(index=False).encode("latin-1")))
    else:  # pragma: no cover - test table typo
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize(
    "kind",
    [
        "csv",
        "tsv",
        "dat",
        "csv.gz",
        "parquet",
        "jsonl",
        "json",
        "cr-only",
        "crlf",
        "gzip-named-csv",
        "bz2",
        "latin1-gzip",
    ],
)
def test_every_format_reads_the_same_interactions(tmp_path: Path, kind: str) -> None:
    encoding = "latin-1" if kind.startswith("latin1") else "utf-8"
    dataset = read_generic(GenericSource(_write(tmp_path, kind), encoding=encoding))
    assert dataset.name == "log"
    assert dataset.users["id"].tolist() == ["u1", "u2"]
    assert dataset.items["id"].tolist() == ["i1", "i2"]
    inter = dataset.interactions
    assert inter[["user", "item"]].values.tolist() == [[0, 0], [0, 1], [1, 0]]
    assert inter["rating"].tolist() == [4.0, 3.5, 5.0]
    assert inter["timestamp"].tolist() == [r["ts"] for r in ROWS]
    assert str(inter["rating"].dtype) == "float32"


def test_parquet_datetime_column_becomes_unix_seconds(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame(
        {
            "user": [1, 2],
            "item": [7, 7],
            "time": pd.to_datetime(["1970-01-02 00:00:00", "2020-01-01 00:00:01"]),
        }
    ).to_parquet(path)
    dataset = read_generic(GenericSource(path))
    assert dataset.interactions["timestamp"].tolist() == [86_400, 1_577_836_801]


def test_event_and_label_columns_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "uid,product_id,event_type,click,count\n"
        "1,a,browse,0,1\n1,b,click,1,2\n2,a,purchase,1,1\n2,c,,0,3\n"
    )
    inter = read_generic(GenericSource(path)).interactions
    assert inter["event"].tolist()[:3] == ["browse", "click", "purchase"]
    assert inter["event"].isna().tolist() == [False, False, False, True]
    assert str(inter["event"].dtype) == "string"
    assert inter["label"].tolist() == [0, 1, 1, 0]
    assert inter["weight"].tolist() == [1.0, 2.0, 1.0, 3.0]


def _duplicates(tmp_path: Path) -> Path:
    path = tmp_path / "dups.csv"
    path.write_text(
        "user,item,rating,weight,timestamp,event\n"
        "1,10,2,1,300,view\n"
        "1,11,4,1,100,view\n"
        "1,10,4,2,200,buy\n"
    )
    return path


def test_duplicates_keep_last_keeps_the_latest_by_time(tmp_path: Path) -> None:
    inter = read_generic(GenericSource(_duplicates(tmp_path), duplicates="keep_last")).interactions
    assert len(inter) == 2
    kept = inter[inter["item"] == 0].iloc[0]
    assert (kept["rating"], kept["timestamp"], kept["event"]) == (2.0, 300, "view")


def test_duplicates_aggregate_merges(tmp_path: Path) -> None:
    inter = read_generic(GenericSource(_duplicates(tmp_path), duplicates="aggregate")).interactions
    merged = inter[inter["item"] == 0].iloc[0]
    assert merged["rating"] == pytest.approx(3.0)
    assert merged["weight"] == 3.0
    assert merged["timestamp"] == 300
    assert merged["event"] == "view"


def test_duplicates_reject_names_both_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"row 3: duplicate .*first seen at row 1"):
        read_generic(GenericSource(_duplicates(tmp_path)))


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["userId", "movieId", "rating", "timestamp"], ("userId", "movieId", "rating", None)),
        (["UID", "IID", "score", "label"], ("UID", "IID", "score", "label")),
        (["user", "item", "click", "time"], ("user", "item", None, "click")),
        (["customer_id", "product_id", "stars"], ("customer_id", "product_id", "stars", None)),
        (["user_id", "asin", "weight"], ("user_id", "asin", None, None)),
    ],
)
def test_infer_mapping_recognises_common_names(
    columns: list[str], expected: tuple[str, str, str | None, str | None]
) -> None:
    mapping = infer_mapping(columns)
    assert (mapping.user, mapping.item, mapping.rating, mapping.label) == expected


def test_infer_mapping_roles_and_overrides() -> None:
    mapping = infer_mapping(["user_id", "item_id", "ts", "event", "count", "extra"])
    assert mapping == ColumnMapping(
        "user_id", "item_id", timestamp="ts", event="event", weight="count"
    )
    overridden = infer_mapping(
        ["who", "item_id", "rating", "stars"], {"user": "who", "rating": "stars"}
    )
    assert (overridden.user, overridden.rating) == ("who", "stars")
    with pytest.raises(DataError, match="missing column 'nope'"):
        infer_mapping(["user", "item"], {"rating": "nope"})
    with pytest.raises(ClrecError, match="unknown column role"):
        infer_mapping(["user", "item"], {"colour": "user"})
    with pytest.raises(DataError, match="no item column"):
        infer_mapping(["user", "rating"])


def test_explicit_mapping_ignores_other_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("a,b,rating,c\n1,2,9,x\n3,4,8,y\n")
    dataset = read_generic(GenericSource(path, mapping=ColumnMapping("a", "b")))
    assert list(dataset.interactions.columns) == ["user", "item"]
    with pytest.raises(DataError, match="missing column 'd'"):
        read_generic(GenericSource(path, mapping=ColumnMapping("a", "d")))


def test_rating_range_is_inclusive(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,item,rating\n1,1,1\n1,2,5\n")
    assert read_generic(GenericSource(path, rating_range=(1, 5))).n_interactions == 2
    with pytest.raises(DataError, match="row 1"):
        read_generic(GenericSource(path, rating_range=(1.5, None)))


def test_item_and_user_content(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user,item\n1,10\n2,11\n")
    items = tmp_path / "items.jsonl"
    items.write_text(
        '{"item_id": 10, "title": "Alpha", "genres": ["Drama", "War"], "year": 1999}\n'
        '{"item_id": 11, "title": "Beta", "genres": ["Comedy"], "year": null}\n'
        '{"item_id": 12, "title": "Gamma", "genres": [], "year": 2001}\n'
    )
    users = tmp_path / "users.csv"
    users.write_text("user,age\n2,31\n1,22\n")
    source = GenericSource(
        log,
        item_content=ContentSource(
            items, fields={"title": "text", "genres": "tags", "year": "number"}
        ),
        user_content=ContentSource(users),
        unknown_content="keep",
    )
    dataset = read_generic(source)
    assert dataset.items["id"].tolist() == ["10", "11", "12"]
    assert dataset.items["genres"].tolist()[:2] == ["Drama|War", "Comedy"]
    assert dataset.items["year"].isna().tolist() == [False, True, False]
    assert dataset.item_fields == {"title": "text", "genres": "tags", "year": "number"}
    assert dataset.users["age"].tolist() == [22.0, 31.0]
    assert dataset.user_fields == {"age": "number"}
    dropped = read_generic(
        GenericSource(log, item_content=ContentSource(items, "item_id"), unknown_content="drop")
    )
    assert dataset.n_items == 3 and dropped.n_items == 2
    with pytest.raises(DataError, match=r"items\.jsonl, row 3: content row for item '12'"):
        read_generic(GenericSource(log, item_content=ContentSource(items)))


def test_guessed_content_kinds(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user,item\n" + "".join(f"u{i % 3},{i}\n" for i in range(40)))
    items = tmp_path / "items.csv"
    items.write_text(
        "item,title,genres,price,poster,colour\n"
        + "".join(
            f"{i},Title number {i} of many,A|B,{i}.5,img/{i}.jpg,{'red' if i % 2 else 'blue'}\n"
            for i in range(40)
        )
    )
    dataset = read_generic(GenericSource(log, item_content=ContentSource(items)))
    assert dataset.item_fields == {
        "title": "text",
        "genres": "tags",
        "price": "number",
        "poster": "image",
        "colour": "category",
    }


def test_separator_given_explicitly_and_wrong(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("user;item\n1;2\n")
    assert read_generic(GenericSource(path, sep=";")).n_interactions == 1
    assert read_generic(GenericSource(path)).n_interactions == 1  # sniffed
    assert read_table(path, sep=";").columns.tolist() == ["user", "item"]
    with pytest.raises(DataError, match="wrong separator"):
        read_generic(GenericSource(path, sep=","))


def test_source_from_options() -> None:
    source = source_from_options(
        "x.csv", user="u", rating="r", rating_range=(None, None), item_content="items.csv"
    )
    assert source.mapping == {"user": "u", "rating": "r"}
    assert source.rating_range is None
    assert source.item_content == ContentSource("items.csv", None)
    assert source_from_options("x.csv").mapping is None
    with pytest.raises(ClrecError, match="duplicate policy"):
        source_from_options("x.csv", duplicates="first")
    with pytest.raises(ClrecError, match="minimum is above"):
        source_from_options("x.csv", rating_range=(5.0, 1.0))


@pytest.mark.parametrize(
    ("stamps", "unit", "expected"),
    [
        (
            [1_500_000_000_123, 1_500_000_100_456, 1_500_000_200_999],
            "auto",
            [1_500_000_000, 1_500_000_100, 1_500_000_201],
        ),
        (
            [1_500_000_000_000_000, 1_500_000_100_000_000, 1_500_000_200_000_000],
            "auto",
            [1_500_000_000, 1_500_000_100, 1_500_000_200],
        ),
        (
            [1_500_000_000, 1_500_000_100, 1_500_000_200],
            "auto",
            [1_500_000_000, 1_500_000_100, 1_500_000_200],
        ),
        ([1_500_000_000, 1_500_000_100, 1_500_000_200], "ms", [1_500_000, 1_500_000, 1_500_000]),
    ],
    ids=["milliseconds", "microseconds", "seconds", "explicit-ms"],
)
def test_timestamp_units_are_detected_or_given(
    tmp_path: Path, stamps: list[int], unit: str, expected: list[int]
) -> None:
    frame = _expected().assign(ts=stamps)
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    source = source_from_options(path, timestamp="ts", time_unit=unit)
    assert read_generic(source).interactions["timestamp"].tolist() == expected
    with pytest.raises(ClrecError, match="time unit 'hours'"):
        source_from_options(path, time_unit="hours")


def test_float_id_columns_read_as_whole_numbers(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    frame = pd.DataFrame({"user": [1.0, 10.0, 2.0], "item": [3.0, 3.0, 4.0]})
    frame.to_parquet(path, index=False)
    dataset = read_generic(GenericSource(path))
    assert sorted(dataset.users["id"]) == ["1", "10", "2"]
    assert sorted(dataset.items["id"]) == ["3", "4"]
    whole = parse_ids(pd.Series([1.0, 10.0]), column="user", file=None)
    assert whole.tolist() == ["1", "10"]  # a typed float column, given to the rule directly
    with pytest.raises(DataError, match=r"fractional number 1\.5"):
        parse_ids(pd.Series([1.0, 1.5]), column="user", file=None)


def test_a_line_too_long_is_refused_before_parsing(tmp_path: Path) -> None:
    from clrec.data import files

    path = tmp_path / "log.csv"
    path.write_text("user,item\nu1,i1\nu2," + "x" * 5000 + "\nu3,i3\n")
    with pytest.raises(DataError) as info:
        files.check_line_lengths(path.read_bytes(), path, limit=1000)
    assert "line 3" in str(info.value) and "longer than 1,000 bytes" in str(info.value)
    files.check_line_lengths(path.read_bytes(), path, limit=6000)  # within the limit
    cr_only = path.read_bytes().replace(b"\n", b"\r")
    with pytest.raises(DataError) as info:
        files.check_line_lengths(cr_only, path, limit=1000)
    assert "line 3" in str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_what_is_not_a_regular_file_is_named(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="found a FIFO"):
        read_generic(GenericSource(fifo))
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match="symlink loop"):
        read_generic(GenericSource(loop))
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with pytest.raises(DataError, match="found a folder"):
        read_generic(GenericSource(folder))


def test_content_tables_that_cannot_be_right_are_refused(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id\nu1,i1\nu2,i2\n")
    other = tmp_path / "other.csv"
    other.write_text("item_id,title\nx1,Some title here\nx2,Another title here\n")
    with pytest.raises(DataError, match="none of the 2 ids in column 'item_id'"):
        read_generic(GenericSource(log, item_content=ContentSource(other)))
    blank = tmp_path / "blank.csv"
    blank.write_text("item_id,title,description\ni1,A title,\ni2,Another,\n")
    source = GenericSource(
        log, item_content=ContentSource(blank, fields={"title": "text", "description": "text"})
    )
    with pytest.raises(DataError, match="text column 'description' is empty in every row"):
        read_generic(source)
