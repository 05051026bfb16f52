"""Pick a reader for a path that is not a known data set name.

A folder is matched against the layouts of the known data sets (by the files it holds); a
single file is read by the generic reader with its column roles inferred from the header.
Readers are imported only when chosen, so one broken reader never blocks the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clrec.data.readers.generic import (
    SUPPORTED_EXTENSIONS,
    ContentSource,
    GenericSource,
    read_generic,
)
from clrec.data.schema import Dataset
from clrec.errors import DataError
from clrec.loading import load_attr


@dataclass(frozen=True)
class Layout:
    """A folder layout: the files that identify it and the reader (``module:function``)."""

    description: str
    required: tuple[str, ...]
    reader: str

    def matches(self, folder: Path) -> bool:
        return all((folder / name).is_file() for name in self.required)

    def load(self) -> Callable[[Path], Dataset]:
        reader: Callable[[Path], Dataset] = load_attr(self.reader)
        return reader


# Checked in order: the most specific layouts first (ml-latest-small also has no u.data, the
# Amazon sets hold .inter files but need their own reader).
LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "MovieLens latest-small (ratings.csv + movies.csv)",
        ("ratings.csv", "movies.csv"),
        "clrec.data.readers.movielens:read_ml_latest_small",
    ),
    Layout("MovieLens-100K (u.data)", ("u.data",), "clrec.data.readers.movielens:read_ml_100k"),
    Layout(
        "MovieLens-1M (ratings_no_timestamp.dat.gz)",
        ("ratings_no_timestamp.dat.gz",),
        "clrec.data.readers.movielens:read_ml_1m",
    ),
    Layout(
        "MovieLens-1M (ratings.dat)", ("ratings.dat",), "clrec.data.readers.movielens:read_ml_1m"
    ),
    Layout(
        "Amazon Office, LRD layout (Office.text)",
        ("Office.text",),
        "clrec.data.readers.amazon:read_amazon_office",
    ),
    Layout(
        "Amazon Scientific, DeCoRec layout (Scientific.text)",
        ("Scientific.text",),
        "clrec.data.readers.amazon:read_amazon_scientific",
    ),
    Layout(
        "LightGCN adjacency lists (train.txt + test.txt)",
        ("train.txt", "test.txt"),
        "clrec.data.readers.gowalla:read_gowalla",
    ),
    Layout(
        "Last.fm HetRec 2011 (user_artists.dat)",
        ("user_artists.dat",),
        "clrec.data.readers.lastfm:read_lastfm",
    ),
)


def _recbole_name(folder: Path) -> str | None:
    """The ``dataset_name`` of RecBole atomic files in ``folder`` (``NAME.inter``), if any."""
    inter = sorted(p.name.removesuffix(".inter") for p in folder.glob("*.inter") if p.is_file())
    if not inter:
        return None
    plain = [name for name in inter if "." not in name]
    if len(plain) == 1:
        return plain[0]
    if len(inter) == 1:
        return inter[0]
    raise DataError(
        f"several RecBole interaction files ({', '.join(n + '.inter' for n in inter)}); "
        "load one with clrec.data.readers.recbole.read_recbole_atomic(folder, NAME)",
        file=folder,
    )


def detect_layout(folder: Path) -> str:
    """A short description of the layout ``read_path`` would use for ``folder``."""
    for layout in LAYOUTS:
        if layout.matches(folder):
            return layout.description
    name = _recbole_name(folder)
    if name is not None:
        return f"RecBole atomic files ({name}.inter)"
    raise _unrecognised_folder(folder)


def _unrecognised_folder(folder: Path) -> DataError:
    looked = "; ".join(
        f"{' + '.join(layout.required)} ({layout.description.split(' (')[0]})" for layout in LAYOUTS
    )
    present = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(present[:10]) + (f", … ({len(present)} files)" if len(present) > 10 else "")
    return DataError(
        f"no known data set layout in this folder; looked for {looked}; NAME.inter "
        "(RecBole atomic files); or interactions.* with items.* / users.* (your own "
        f"tables). The folder holds: {shown or '(nothing)'}. To read a single "
        f"interaction file ({', '.join(SUPPORTED_EXTENSIONS)}) give its path instead",
        file=folder,
    )


def read_path(path: str | Path) -> Dataset:
    """Read a folder of a known layout, or one interaction file with inferred column roles."""
    target = Path(path)
    if not target.exists():
        raise DataError("no such file or folder", file=target)
    if target.is_dir():
        for layout in LAYOUTS:
            if layout.matches(target):
                return layout.load()(target)
        name = _recbole_name(target)
        if name is not None:
            recbole = importlib.import_module("clrec.data.readers.recbole")
            dataset: Dataset = recbole.read_recbole_atomic(target, name)
            return dataset
        own = _own_tables(target)
        if own is not None:
            return read_generic(own)
        raise _unrecognised_folder(target)
    return read_generic(GenericSource(target))


_OWN_NAMES = ("interactions", "items", "users")


def _own_tables(folder: Path) -> GenericSource | None:
    """``interactions.*`` with ``items.*`` / ``users.*`` beside it (any supported format):
    the plain layout of one's own data; None when the folder has no interactions file."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem = path.name.split(".", 1)[0]
        suffix = "." + path.name.split(".", 1)[1] if "." in path.name else ""
        known = suffix.removesuffix(".gz") in SUPPORTED_EXTENSIONS
        if stem in _OWN_NAMES and known and path.is_file():
            found.setdefault(stem, path)
    if "interactions" not in found:
        return None
    items, users = found.get("items"), found.get("users")
    return GenericSource(
        found["interactions"],
        item_content=None if items is None else ContentSource(items),
        user_content=None if users is None else ContentSource(users),
        unknown_content="keep",
        name=folder.name,
    )
