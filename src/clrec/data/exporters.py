"""Export a saved clrec split to the input formats of peer libraries (RecBole, LightFM).

Side-by-side benchmarks only mean something when every library trains, validates and tests
on exactly the same interactions. These exporters write one :class:`~clrec.data.splits.Split`
(with its :class:`~clrec.data.schema.Dataset`) in each peer's own format, with nothing
filtered, re-indexed or reordered on the way:

* :func:`export_recbole` writes RecBole atomic files for its ``benchmark_filename`` setting
  (``NAME.train.inter`` / ``.valid.inter`` / ``.test.inter`` plus ``NAME.item``) keyed by the
  *external* ids, and a ``recbole.yaml`` fragment that switches RecBole's own filters off.
* :func:`export_lightfm` writes users × items CSR interaction matrices per part (internal
  ids), a row-normalised item feature matrix (identity + bag-of-words + tag / category
  tokens) with its column names, and the internal → external id maps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from clrec.data.schema import Dataset, FieldKind
from clrec.data.splits import PARTS, Split
from clrec.errors import ClrecError, DataError

EXPORT_FORMATS: tuple[str, ...] = ("recbole", "lightfm")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_WORD = re.compile(r"[^\W_]+")
_SPACE = re.compile(r"\s+")
_RECBOLE_KINDS: dict[FieldKind, str] = {
    "text": "token_seq",
    "tags": "token_seq",
    "category": "token",
}


# ---------------------------------------------------------------------- shared checks
def _check_split(dataset: Dataset, split: Split) -> None:
    """Raise DataError when a part names an internal id outside the dataset's id maps."""
    for part, frame in split.parts().items():
        if not len(frame):
            continue
        users = frame["user"].to_numpy(dtype=np.int64)
        items = frame["item"].to_numpy(dtype=np.int64)
        if users.min() < 0 or users.max() >= dataset.n_users:
            raise DataError(f"split part {part!r} names users outside the dataset's id map")
        if items.min() < 0 or items.max() >= dataset.n_items:
            raise DataError(f"split part {part!r} names items outside the dataset's id map")


def _clean(values: pd.Series) -> pd.Series:
    """Strings with tabs / newlines / runs of whitespace collapsed to one space; null → ''."""
    text = values.astype("string").fillna("")
    return text.str.replace(r"\s+", " ", regex=True).str.strip()


def _unquoted(values: pd.Series) -> pd.Series:
    """``_clean`` with ``"`` turned into ``'``: RecBole reads atomic files with pandas' default
    quoting, so a field that starts with ``"`` would swallow the tabs after it."""
    return _clean(values).str.replace('"', "'", regex=False)


# ---------------------------------------------------------------------- RecBole
def export_recbole(dataset: Dataset, split: Split, out_dir: str | Path, name: str) -> list[Path]:
    """RecBole atomic files for ``benchmark_filename`` in ``out_dir/name``; returns the paths.

    Writes ``name.train.inter`` / ``.valid.inter`` / ``.test.inter`` (external ids, plus
    ``rating`` / ``timestamp`` when the split has them), ``name.item`` (one row per catalogue
    item with its text, tag and category fields) and ``recbole.yaml``. External ids are used
    so that RecBole's own id remapping cannot shuffle anything.
    """
    if not _NAME.match(name):
        raise ClrecError(
            f"RecBole data set name {name!r} must start with a letter or digit and hold only "
            "letters, digits, '_', '.' and '-'"
        )
    _check_split(dataset, split)
    user_ids = _external_ids(dataset.users, "user")
    item_ids = _external_ids(dataset.items, "item")
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)

    inter_columns = ["user_id:token", "item_id:token"]
    optional = [c for c in ("rating", "timestamp") if all(c in f for f in split.parts().values())]
    inter_columns += [f"{c}:float" for c in optional]
    written: list[Path] = []
    for part, frame in split.parts().items():
        columns = [
            pd.Series(user_ids[frame["user"].to_numpy(dtype=np.int64)]),
            pd.Series(item_ids[frame["item"].to_numpy(dtype=np.int64)]),
        ]
        for column in optional:
            values = frame[column].to_numpy()
            text = values.astype(str)
            if column == "rating":
                text[np.isnan(values.astype(np.float64))] = ""
            columns.append(pd.Series(text))
        path = folder / f"{name}.{part}.inter"
        _write_atomic(path, inter_columns, columns)
        written.append(path)

    item_header = ["item_id:token"]
    item_columns = [pd.Series(item_ids)]
    field_names: list[str] = []
    for field_name, kind in dataset.item_fields.items():
        if kind not in _RECBOLE_KINDS or field_name not in dataset.items.columns:
            continue
        column = _field_name(field_name, taken={"item_id", *field_names})
        values = dataset.items[field_name].reset_index(drop=True)
        if kind == "tags":
            # one token per tag: RecBole splits token_seq on spaces, so a tag's own
            # whitespace becomes '_' (and '"' becomes "'", as in _unquoted)
            cleaned = [
                " ".join(
                    _SPACE.sub("_", t.strip()).replace('"', "'")
                    for t in row.split("|")
                    if t.strip()
                )
                for row in values.astype("string").fillna("").tolist()
            ]
            item_columns.append(pd.Series(cleaned, dtype="string"))
        else:
            item_columns.append(_unquoted(values))
        item_header.append(f"{column}:{_RECBOLE_KINDS[kind]}")
        field_names.append(column)
    item_path = folder / f"{name}.item"
    _write_atomic(item_path, item_header, item_columns)
    written.append(item_path)

    config_path = folder / "recbole.yaml"
    config_path.write_text(_recbole_config(name, optional, field_names, Path(out_dir)))
    written.append(config_path)
    return written


def _external_ids(table: pd.DataFrame, kind: str) -> np.ndarray:
    """External ids as a string array indexed by internal id; tab / newline in an id raises."""
    ids: np.ndarray = table["id"].astype(str).to_numpy(dtype=object)
    bad = [i for i in ids if re.search(r"[\t\r\n]", i) or i != i.strip() or not i]
    if bad:
        raise DataError(
            f"{kind} id {bad[0]!r} is empty or holds a tab, newline or edge whitespace; "
            "it cannot be written to a RecBole atomic file unchanged"
        )
    return ids


def _field_name(name: str, taken: set[str]) -> str:
    """A RecBole-safe column name (word characters only) not in ``taken``."""
    base = re.sub(r"\W+", "_", name).strip("_") or "field"
    column, n = base, 1
    while column in taken:
        n += 1
        column = f"{base}_{n}"
    return column


def _write_atomic(path: Path, header: list[str], columns: list[pd.Series]) -> None:
    """One TAB-separated atomic file with a typed header, written without any quoting."""
    lines = columns[0].astype("string").reset_index(drop=True)
    if len(columns) > 1:
        others = [c.astype("string").fillna("").reset_index(drop=True) for c in columns[1:]]
        lines = lines.str.cat(others, sep="\t")
    body = "\n".join(lines.tolist())
    path.write_text("\t".join(header) + "\n" + (body + "\n" if body else ""), encoding="utf-8")


def _recbole_config(name: str, optional: list[str], item_fields: list[str], root: Path) -> str:
    """The ``recbole.yaml`` fragment: benchmark files, columns, id fields, no filtering."""
    config: dict[str, object] = {
        "dataset": name,
        "data_path": str(root.resolve()),
        "benchmark_filename": list(PARTS),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {
            "inter": ["user_id", "item_id", *optional],
            "item": ["item_id", *item_fields],
        },
        # every interaction of the split stays: no k-core, value or duplicate filters
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "val_interval": None,
        "rm_dup_inter": None,
        "filter_inter_by_user_or_item": False,
    }
    if "rating" in optional:
        config["RATING_FIELD"] = "rating"
    if "timestamp" in optional:
        config["TIME_FIELD"] = "timestamp"
    header = (
        "# RecBole config fragment written by `clrec data export --format recbole`.\n"
        "# The three .inter files are clrec's train / valid / test exactly (external ids);\n"
        "# benchmark_filename makes RecBole use them as they are instead of splitting.\n"
        "# RecBole 1.2.x with torch >= 2.6 fails to load its own checkpoints; run it with\n"
        "#   TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1\n"
        "# in the environment (torch.load then defaults to weights_only=False again).\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False)


# ---------------------------------------------------------------------- LightFM
def export_lightfm(
    dataset: Dataset, split: Split, out_dir: str | Path, *, min_items: int = 2
) -> list[Path]:
    """LightFM inputs in ``out_dir``; returns the paths written.

    * ``interactions_{train,valid,test}.npz`` — users × items CSR (internal ids), 1.0 per pair.
    * ``item_features.npz`` — items × features CSR: an identity column per item, then one
      column per word of the text fields and per tag / category token (``field:token``)
      shared by at least ``min_items`` items; each row sums to 1 (LightFM's normalisation).
    * ``item_feature_names.json`` — the feature columns' names, in order.
    * ``ids.json`` — ``{"users": [...], "items": [...]}``, external id at each internal id.
    """
    _check_split(dataset, split)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shape = (dataset.n_users, dataset.n_items)
    written: list[Path] = []
    for part, frame in split.parts().items():
        matrix = _pair_matrix(frame, shape)
        path = out / f"interactions_{part}.npz"
        sp.save_npz(path, matrix)
        written.append(path)

    features, names = item_features(dataset, min_items=min_items)
    features_path = out / "item_features.npz"
    sp.save_npz(features_path, features)
    names_path = out / "item_feature_names.json"
    names_path.write_text(json.dumps(names, ensure_ascii=False) + "\n", encoding="utf-8")
    ids_path = out / "ids.json"
    ids = {
        "users": dataset.users["id"].astype(str).tolist(),
        "items": dataset.items["id"].astype(str).tolist(),
    }
    ids_path.write_text(json.dumps(ids, ensure_ascii=False) + "\n", encoding="utf-8")
    return [*written, features_path, names_path, ids_path]


def _pair_matrix(frame: pd.DataFrame, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary CSR with a 1.0 at every (user, item) pair of ``frame``."""
    rows = frame["user"].to_numpy(dtype=np.int64)
    cols = frame["item"].to_numpy(dtype=np.int64)
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape, dtype=np.float32
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def item_features(dataset: Dataset, *, min_items: int = 2) -> tuple[sp.csr_matrix, list[str]]:
    """Row-normalised items × features CSR (identity first) and the feature names.

    Text fields give lower-cased words, tag fields their ``|``-separated tags (lower-cased),
    category fields their value; each becomes a ``field:token`` feature counted once per
    item. Tokens found in fewer than ``min_items`` items are dropped: an item-unique token
    adds nothing the identity column does not already give.
    """
    n_items = dataset.n_items
    pieces: list[pd.DataFrame] = []
    for field_name, kind in dataset.item_fields.items():
        if field_name not in dataset.items.columns:
            continue
        values = dataset.items[field_name].astype("string").reset_index(drop=True)
        if kind == "text":
            tokens = values.str.lower().str.findall(_WORD.pattern)
        elif kind == "tags":
            tokens = values.str.split("|")
        elif kind == "category":
            tokens = values.map(lambda v: [v], na_action="ignore")
        else:
            continue
        exploded = tokens.explode().dropna()
        token = _clean(exploded.astype("string"))
        if kind == "tags":
            token = token.str.lower()
        piece = pd.DataFrame({"item": exploded.index.to_numpy(dtype=np.int64), "token": token})
        piece = piece[piece["token"] != ""]
        piece["token"] = field_name + ":" + piece["token"]
        pieces.append(piece)

    names = [f"item:{i}" for i in dataset.items["id"].astype(str)]
    rows = [np.arange(n_items, dtype=np.int64)]
    cols = [np.arange(n_items, dtype=np.int64)]
    if pieces:
        pairs = pd.concat(pieces, ignore_index=True).drop_duplicates()
        counts = pairs["token"].value_counts()
        kept = sorted(counts.index[counts >= min_items].astype(str))
        pairs = pairs[pairs["token"].isin(kept)]
        column = pd.Index(kept).get_indexer(pairs["token"]) + n_items
        rows.append(pairs["item"].to_numpy(dtype=np.int64))
        cols.append(column.astype(np.int64))
        names += kept
    row = np.concatenate(rows)
    col = np.concatenate(cols)
    matrix = sp.csr_matrix(
        (np.ones(len(row), dtype=np.float32), (row, col)),
        shape=(n_items, len(names)),
        dtype=np.float32,
    )
    sums = np.asarray(matrix.sum(axis=1), dtype=np.float32).reshape(-1)
    normalised: sp.csr_matrix = sp.csr_matrix(sp.diags(1.0 / sums) @ matrix, dtype=np.float32)
    return normalised, names


# ---------------------------------------------------------------------- both
def export_run(
    run_dir: str | Path, fmt: str, out_dir: str | Path, name: str | None = None
) -> list[Path]:
    """Export a run folder (``dataset/`` and ``split/``) in ``fmt``; returns the paths written."""
    if fmt not in EXPORT_FORMATS:
        raise ClrecError(
            f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    root = Path(run_dir)
    if not (root / "dataset").is_dir() or not (root / "split").is_dir():
        raise ClrecError(
            f"{root} is not a run folder: it needs dataset/ and split/ as written by "
            "`clrec run`, `clrec train` or `clrec data split`"
        )
    dataset = Dataset.load(root / "dataset")
    split = Split.load(root / "split")
    if fmt == "recbole":
        return export_recbole(dataset, split, out_dir, name or _default_name(dataset.name))
    return export_lightfm(dataset, split, out_dir)


def _default_name(dataset_name: str) -> str:
    """The data set's name made safe for RecBole file names."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset_name).strip("-._")
    return cleaned or "clrec"
