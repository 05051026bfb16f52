"""Known data sets by name, where to find them, and loading by name or by path.

The data root is passed in explicitly; only the CLI reads the ``CLREC_DATA`` environment
variable and hands its value here. Without one, ``../shared/data`` next to the repository
root is used when it exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clrec.data.schema import Dataset
from clrec.errors import DataError
from clrec.loading import load_attr

BUNDLED = "ml-latest-small"


@dataclass(frozen=True)
class KnownDataset:
    """A staged data set: its folder under the data root and the reader that loads it."""

    name: str
    folder: str
    reader: str  # "module:function", imported only when this data set is loaded
    description: str

    def load_reader(self) -> Callable[[Path], Dataset]:
        reader: Callable[[Path], Dataset] = load_attr(self.reader)
        return reader


KNOWN_DATASETS: dict[str, KnownDataset] = {
    spec.name: spec
    for spec in (
        KnownDataset(
            "ml-latest-small",
            "ml-latest-small",
            "clrec.data.readers.movielens:read_ml_latest_small",
            "MovieLens latest-small 2018 (bundled; 610 users, 9,724 rated movies)",
        ),
        KnownDataset(
            "ml-100k",
            "ml-100k",
            "clrec.data.readers.movielens:read_ml_100k",
            "MovieLens-100K, original GroupLens files",
        ),
        KnownDataset(
            "ml-100k-recbole",
            "ml-100k-recbole",
            "clrec.data.readers.recbole:read_ml_100k_recbole",
            "MovieLens-100K as RecBole atomic files",
        ),
        KnownDataset(
            "ml-1m",
            "ml-1m",
            "clrec.data.readers.movielens:read_ml_1m",
            "MovieLens-1M with DBpedia abstracts and posters when ml-1m-content is present",
        ),
        KnownDataset(
            "amazon-office",
            "amazon-office-lrd",
            "clrec.data.readers.amazon:read_amazon_office",
            "Amazon 2014 Office Products 5-core (LRD), leave-one-out by time",
        ),
        KnownDataset(
            "amazon-scientific",
            "amazon-scientific-mm-decorec",
            "clrec.data.readers.amazon:read_amazon_scientific",
            "Amazon 2018 Industrial & Scientific with 512-d text and image vectors",
        ),
        KnownDataset(
            "gowalla",
            "gowalla-lightgcn",
            "clrec.data.readers.gowalla:read_gowalla",
            "Gowalla check-ins, the LightGCN benchmark split",
        ),
        KnownDataset(
            "lastfm",
            "lastfm-hetrec2011",
            "clrec.data.readers.lastfm:read_lastfm",
            "Last.fm HetRec 2011: play counts, artist tags, friendship graph",
        ),
    )
}


def bundled_path() -> Path:
    """Folder of the bundled ml-latest-small files inside the installed package."""
    return Path(str(resources.files("clrec.data").joinpath("bundled", BUNDLED)))


def default_data_root(env_value: str | None = None) -> Path | None:
    """The data root: ``env_value`` (the CLI passes ``$CLREC_DATA``) or ``../shared/data``.

    ``../shared/data`` is looked for relative to the repository root, found by walking up
    from the current directory and from this source file to a folder with ``pyproject.toml``.
    """
    if env_value:
        return Path(env_value).expanduser()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "pyproject.toml").is_file():
                candidate = folder.parent / "shared" / "data"
                if candidate.is_dir():
                    return candidate
                break
    return None


def locate(name: str, data_root: Path | None) -> Path:
    """Folder of a known data set; the bundled one is always found inside the package."""
    spec = KNOWN_DATASETS.get(name)
    if spec is None:
        raise DataError(
            f"unknown data set {name!r}; known: {', '.join(sorted(KNOWN_DATASETS))}, "
            "or give a path to a folder or file"
        )
    if data_root is not None and (data_root / spec.folder).is_dir():
        return data_root / spec.folder
    if name == BUNDLED:
        return bundled_path()
    looked = data_root / spec.folder if data_root is not None else None
    raise DataError(
        f"data set {name!r} not found: looked in {looked if looked else '(no data root)'}; "
        "set CLREC_DATA to the folder that holds it"
    )


def load(name_or_path: str | Path, data_root: Path | None = None) -> Dataset:
    """Load a known data set by name, a saved clrec dataset folder, or a known layout by path."""
    text = str(name_or_path)
    if text in KNOWN_DATASETS:
        spec = KNOWN_DATASETS[text]
        return spec.load_reader()(locate(text, data_root))
    path = Path(text)
    if not path.exists():
        raise DataError(
            f"no data set named {text!r} and no such path; known names: "
            f"{', '.join(sorted(KNOWN_DATASETS))}"
        )
    if path.is_dir() and (path / "dataset.json").is_file():
        return Dataset.load(path)
    from clrec.data.readers.detect import read_path

    return read_path(path)
