"""Gowalla check-ins in the LightGCN benchmark layout (train / valid / test adjacency lists).

Each file holds one line per user, ``user item item ...``, space separated, 0-based remapped
ids, implicit feedback. The files' own split is kept as the ``split`` column so experiments
can reproduce the published protocol.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from clrec.data.files import read_text
from clrec.data.schema import Dataset
from clrec.errors import DataError

SPLIT_FILES: tuple[tuple[str, str], ...] = (
    ("train", "train.txt"),
    ("valid", "valid.txt"),
    ("test", "test.txt"),
)
# Anything that is neither a digit nor a space, tab or line end makes a token that is no id.
_NOT_ID = re.compile(r"[^0-9 \t\r\n]")


def _read_adjacency(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users, items and the 1-based line of each pair from one adjacency-list file.

    One regular-expression scan over the whole text finds a bad token, so the common case
    (a clean file) needs no per-token Python checks.
    """
    text = read_text(path)
    bad = _NOT_ID.search(text)
    if bad is not None:
        start = max(
            text.rfind(" ", 0, bad.start()),
            text.rfind("\t", 0, bad.start()),
            text.rfind("\n", 0, bad.start()),
        )
        token = re.split(r"[ \t\r\n]", text[start + 1 :], maxsplit=1)[0]
        raise DataError(
            f"token {token!r} is not a 0-based integer id (expected 'user item item ...')",
            file=path,
            line=text.count("\n", 0, bad.start()) + 1,
        )
    try:
        values = np.array(text.split(), dtype=np.int64)
    except (OverflowError, ValueError) as err:
        raise DataError(f"an id does not fit a 64-bit integer ({err})", file=path) from err
    # Token starts (a digit after whitespace or at the start) and the line each one is on.
    raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    digit = (raw >= ord("0")) & (raw <= ord("9"))
    starts = np.flatnonzero(digit & ~np.concatenate(([False], digit[:-1])))
    line_index = np.searchsorted(np.flatnonzero(raw == ord("\n")), starts)
    first_on_line = np.concatenate(([True], line_index[1:] != line_index[:-1]))
    users = np.repeat(values[first_on_line], np.diff(np.flatnonzero(np.r_[first_on_line, True])))
    keep = ~first_on_line
    return users[keep], values[keep], line_index[keep] + 1


def read_gowalla(folder: str | Path) -> Dataset:
    """Gowalla (LightGCN split): 29,858 users, 40,981 items, train / valid / test as ``split``.

    A (user, item) pair repeated within or across the files is an error, since the benchmark
    guarantees disjoint splits and a repeat would leak test items into training.
    """
    root = Path(folder)
    frames: list[pd.DataFrame] = []
    for split, name in SPLIT_FILES:
        path = root / name
        if split == "valid" and not path.exists():
            continue  # the official LightGCN layout has only train.txt and test.txt
        users, items, lines = _read_adjacency(path)
        frames.append(
            pd.DataFrame(
                {
                    "user": users,
                    "item": items,
                    "split": split,
                    "_file": name,
                    "_line": lines,
                }
            )
        )
    interactions = pd.concat(frames, ignore_index=True)
    if interactions.empty:
        raise DataError("no (user, item) pairs in any split file", file=root)
    pair = interactions["user"] * (int(interactions["item"].max()) + 1) + interactions["item"]
    repeated = pair.duplicated(keep="first")
    if repeated.any():
        row = interactions[repeated].iloc[0]
        first = interactions[
            (interactions["user"] == row["user"]) & (interactions["item"] == row["item"])
        ].iloc[0]
        raise DataError(
            f"user {row['user']} lists item {row['item']} again "
            f"(first at {first['_file']} line {first['_line']})",
            file=root / str(row["_file"]),
            line=int(row["_line"]),
        )
    return Dataset.from_external(
        "gowalla",
        interactions.drop(columns=["_file", "_line"]),
        source=str(root),
    )
