"""RecBole atomic files: ``<name>.inter`` plus optional ``<name>.item`` and ``<name>.user``.

Atomic files are TAB separated, UTF-8, with a typed header ``field:type`` where the type is
``token``, ``token_seq`` (space-separated tokens), ``float`` or ``float_seq``. The header is
checked before anything else, so a file from another format fails with a clear message.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from clrec.data.files import read_delimited
from clrec.data.schema import Dataset, FieldKind
from clrec.data.validation import (
    DuplicatePolicy,
    parse_ids,
    parse_labels,
    parse_numbers,
    parse_timestamps,
    require_columns,
    resolve_duplicates,
)
from clrec.errors import DataError

RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
# token_seq columns whose name contains one of these hold free text (a title, a description);
# other token_seq columns are sets of labels (genres, categories) and become tags.
_TEXT_NAME_HINTS = ("title", "text", "name", "desc", "review", "abstract", "summary", "comment")


def read_atomic_file(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """One atomic file as an all-string frame with plain column names, and each column's type.

    A header field without ``:type``, or with a type RecBole does not define, is a DataError
    naming the file and line 1.
    """
    file = Path(path)
    frame = read_delimited(file, sep="\t", quoting=csv.QUOTE_NONE)
    types: dict[str, str] = {}
    for header in (str(c) for c in frame.columns):
        name, colon, kind = header.strip().rpartition(":")
        if not colon or not name:
            raise DataError(
                f"header field {header!r} has no ':type' suffix; RecBole atomic headers are "
                f"name:type with type one of {', '.join(RECBOLE_TYPES)}",
                file=file,
                line=1,
            )
        if kind not in RECBOLE_TYPES:
            raise DataError(
                f"header field {header!r} has unknown type {kind!r}; expected one of "
                f"{', '.join(RECBOLE_TYPES)}",
                file=file,
                line=1,
            )
        types[name] = kind
    if len(types) != len(frame.columns):
        raise DataError("header repeats a field name with different types", file=file, line=1)
    frame.columns = pd.Index(list(types))
    return frame, types


def read_recbole_atomic(
    folder: str | Path,
    dataset_name: str,
    *,
    name: str | None = None,
    duplicates: DuplicatePolicy = "reject",
) -> Dataset:
    """A data set stored as RecBole atomic files named after ``dataset_name`` in ``folder``.

    ``.inter`` columns ``user_id``, ``item_id`` and the optional ``rating``, ``timestamp``
    and ``label`` become interactions; other ``.inter`` columns are ignored. In ``.item`` and
    ``.user`` every other column becomes content: ``token`` → category, ``float`` → number,
    ``token_seq`` → text when the name suggests free text (title, description, …), else tags
    joined by ``|``. An ``.item`` ``float_seq`` column of fixed length becomes item vectors;
    ``.user`` ``float_seq`` columns are ignored. Knowledge-graph files are not read.
    """
    root = Path(folder)
    inter_path = root / f"{dataset_name}.inter"
    raw, _ = read_atomic_file(inter_path)
    require_columns(raw, ["user_id", "item_id"], file=inter_path)
    interactions = pd.DataFrame(
        {
            "user": parse_ids(raw["user_id"], column="user_id", file=inter_path),
            "item": parse_ids(raw["item_id"], column="item_id", file=inter_path),
        }
    )
    if "rating" in raw.columns:
        interactions["rating"] = parse_numbers(raw["rating"], column="rating", file=inter_path)
    if "timestamp" in raw.columns:
        interactions["timestamp"] = parse_timestamps(
            raw["timestamp"], column="timestamp", file=inter_path
        )
    if "label" in raw.columns:
        interactions["label"] = parse_labels(raw["label"], column="label", file=inter_path)
    interactions = resolve_duplicates(interactions, duplicates, file=inter_path)

    item_path = root / f"{dataset_name}.item"
    item_content, item_fields, vectors = (
        _content(item_path, "item_id", vectors=True) if item_path.exists() else (None, {}, {})
    )
    user_path = root / f"{dataset_name}.user"
    user_content, user_fields, _ = (
        _content(user_path, "user_id", vectors=False) if user_path.exists() else (None, {}, {})
    )
    return Dataset.from_external(
        name or dataset_name,
        interactions,
        item_content=item_content,
        user_content=user_content,
        item_fields=item_fields,
        user_fields=user_fields,
        item_vectors=vectors,
        unknown_content="keep",
        content_file=item_path if item_content is not None else user_path,
        source=str(root),
    )


def read_ml_100k_recbole(folder: str | Path) -> Dataset:
    """ML-100K as shipped with RecBole (``ml-100k.inter`` / ``.item`` / ``.user``)."""
    return read_recbole_atomic(folder, "ml-100k", name="ml-100k-recbole")


def _content(
    path: Path, id_column: str, *, vectors: bool
) -> tuple[pd.DataFrame, dict[str, FieldKind], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Content frame (``id`` plus one column per field), field kinds, and float_seq vectors."""
    raw, types = read_atomic_file(path)
    require_columns(raw, [id_column], file=path)
    ids = parse_ids(raw[id_column], column=id_column, file=path)
    content = pd.DataFrame({"id": ids})
    fields: dict[str, FieldKind] = {}
    matrices: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for column, kind in types.items():
        if column == id_column:
            continue
        values = raw[column].str.strip().replace("", pd.NA)
        if kind == "token":
            content[column] = values
            fields[column] = "category"
        elif kind == "float":
            content[column] = _optional_numbers(values, column=column, file=path)
            fields[column] = "number"
        elif kind == "token_seq":
            if any(hint in column.lower() for hint in _TEXT_NAME_HINTS):
                content[column] = values.str.split().str.join(" ").astype("string")
                fields[column] = "text"
            else:
                content[column] = values.str.split().str.join("|").astype("string")
                fields[column] = "tags"
        elif vectors:
            matrices[column] = (ids.to_numpy(dtype=str), _float_rows(values, column, path))
    return content, fields, matrices


def _optional_numbers(series: pd.Series, *, column: str, file: Path) -> pd.Series:
    """Floats from strings, missing stays NaN; a non-numeric value raises naming its row."""
    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna() & series.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise DataError(
            f"{column!r} value {series.iloc[row - 1]!r} is not a number", file=file, row=row
        )
    return numbers.astype("float32")


def _float_rows(series: pd.Series, column: str, file: Path) -> np.ndarray:
    """A ``float_seq`` column as an ``(n, d)`` float32 matrix; every row needs the same d."""
    rows: list[list[float]] = []
    for row, text in enumerate(series, start=1):
        if text is pd.NA or text is None:
            raise DataError(f"empty {column!r} vector", file=file, row=row)
        try:
            rows.append([float(v) for v in str(text).split()])
        except ValueError as err:
            raise DataError(f"{column!r} holds a non-number ({err})", file=file, row=row) from err
        if len(rows[-1]) != len(rows[0]):
            raise DataError(
                f"{column!r} has {len(rows[-1])} values, the first row has {len(rows[0])}",
                file=file,
                row=row,
            )
    return np.asarray(rows, dtype=np.float32)
