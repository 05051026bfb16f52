"""Small synthetic folders for the Gowalla and Last.fm readers and for layout detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from clrec.data.readers.detect import detect_layout, read_path
from clrec.data.readers.gowalla import read_gowalla
from clrec.data.readers.lastfm import read_lastfm
from clrec.errors import DataError


def _gowalla(folder: Path, train: str = "0 1 2\n1 0\n2\n", test: str = "0 3\n1 2\n2 1\n") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "train.txt").write_text(train)
    (folder / "valid.txt").write_text("0 0\n1\n2 0\n")
    (folder / "test.txt").write_text(test)
    return folder


def test_gowalla_keeps_the_split(tmp_path: Path) -> None:
    dataset = read_gowalla(_gowalla(tmp_path / "g"))
    inter = dataset.interactions
    assert dataset.n_users == 3 and dataset.n_items == 4
    assert inter["split"].value_counts().to_dict() == {"train": 3, "valid": 2, "test": 3}
    assert inter[inter["split"] == "train"][["user", "item"]].values.tolist() == [
        [0, 1],
        [0, 2],
        [1, 0],
    ]
    assert "rating" not in inter.columns


@pytest.mark.parametrize(
    ("train", "fragment", "line"),
    [
        ("0 1 2\n1 x7 3\n", "token 'x7' is not a 0-based integer id", 2),
        ("0 1 2\n1 3\n2 4.5\n", "token '4.5'", 3),
        ("0 1 -2\n", "token '-2'", 1),
    ],
)
def test_gowalla_bad_token_names_file_and_line(
    tmp_path: Path, train: str, fragment: str, line: int
) -> None:
    with pytest.raises(DataError) as info:
        read_gowalla(_gowalla(tmp_path / "g", train=train))
    assert info.value.line == line
    assert "train.txt" in str(info.value) and fragment in str(info.value)


def test_gowalla_pair_in_two_splits_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"test\.txt, line 1: user 0 lists item 1 again"):
        read_gowalla(_gowalla(tmp_path / "g", test="0 1\n"))


def _lastfm(folder: Path) -> Path:
    folder.mkdir()
    (folder / "user_artists.dat").write_bytes(
        b"userID\tartistID\tweight\r\n2\t51\t100\r\n2\t52\t5\r\n3\t51\t7\r\n"
    )
    (folder / "artists.dat").write_bytes(
        "id\tname\turl\tpictureURL\n"
        '51\t"Weird Al" Yankovic\thttp://x/51\thttp://x/51.jpg\n'
        "52\tRöyksopp\thttp://x/52\t\n".encode()
    )
    (folder / "tags.dat").write_bytes(
        "tagID\ttagValue\r\n1\trock\r\n2\ttropicália\r\n3\tpop\r\n".encode("latin-1")
    )
    (folder / "user_taggedartists.dat").write_bytes(
        b"userID\tartistID\ttagID\tday\tmonth\tyear\r\n"
        b"2\t51\t1\t1\t4\t2009\r\n3\t51\t1\t1\t4\t2009\r\n2\t51\t3\t1\t4\t2009\r\n"
        b"2\t52\t2\t1\t4\t2009\r\n2\t999\t1\t1\t4\t2009\r\n"
    )
    (folder / "user_friends.dat").write_bytes(b"userID\tfriendID\r\n2\t3\r\n3\t2\r\n3\t77\r\n")
    return folder


def test_lastfm_small(tmp_path: Path) -> None:
    dataset = read_lastfm(_lastfm(tmp_path / "lf"), top_tags=1)
    items = dataset.items.set_index("id")
    assert items.loc["51", "name"] == '"Weird Al" Yankovic'
    assert items.loc["52", "name"] == "Röyksopp"
    assert items.loc["51", "tags"] == "rock"
    assert items.loc["52", "tags"] == "tropicália"
    assert items["picture_url"].isna().tolist() == [False, True]
    assert dataset.interactions["weight"].tolist() == [100.0, 5.0, 7.0]
    assert dataset.user_relations is not None
    assert dataset.user_relations.values.tolist() == [[0, 1], [1, 0]]
    assert read_lastfm(tmp_path / "lf").items.set_index("id").loc["51", "tags"] == "rock|pop"


def test_read_path_detects_layouts(tmp_path: Path) -> None:
    gowalla = _gowalla(tmp_path / "g")
    assert detect_layout(gowalla).startswith("LightGCN")
    assert read_path(gowalla).name == "gowalla"
    assert read_path(_lastfm(tmp_path / "lf")).name == "lastfm"
    single = tmp_path / "clicks.csv"
    single.write_text("user_id,item_id,label\n1,2,1\n")
    assert read_path(single).interactions["label"].tolist() == [1]


def test_read_path_bundled_folder(bundled_folder: Path) -> None:
    assert detect_layout(bundled_folder).startswith("MovieLens latest-small")


def test_read_path_unrecognised(tmp_path: Path) -> None:
    folder = tmp_path / "stuff"
    folder.mkdir()
    (folder / "notes.md").write_text("hi")
    with pytest.raises(
        DataError, match=r"no known data set layout.*looked for.*u\.data.*notes\.md"
    ):
        read_path(folder)
    with pytest.raises(DataError, match=r"cannot tell the format from extension '\.md'"):
        read_path(folder / "notes.md")
    with pytest.raises(DataError, match="no such file or folder"):
        read_path(tmp_path / "absent")
