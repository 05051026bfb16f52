"""A reader for any interaction log in CSV / TSV / Parquet / JSON lines, with a typed mapping.

:class:`GenericSource` says where the log (and optional item / user content tables) is and
how to read it; roles without an explicit column are inferred from the header
(:mod:`~clrec.data.readers.column_roles`) and files of every format are read as strings
(:mod:`~clrec.data.readers.table_files`). Every value is then validated row by row, so a bad
cell is reported with its file and row instead of silently becoming NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast, get_args

import numpy as np
import pandas as pd

from clrec.data.readers.column_roles import (
    ColumnMapping,
    content_id_column,
    guess_kinds,
    infer_mapping,
)
from clrec.data.readers.table_files import SUPPORTED_EXTENSIONS, read_table
from clrec.data.schema import Dataset, FieldKind, UnknownPolicy
from clrec.data.validation import (
    DuplicatePolicy,
    TimeUnit,
    parse_ids,
    parse_labels,
    parse_numbers,
    parse_timestamps,
    require_columns,
    resolve_duplicates,
)
from clrec.errors import ClrecError, DataError

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "ColumnMapping",
    "ContentSource",
    "GenericSource",
    "infer_mapping",
    "read_generic",
    "read_table",
    "source_from_options",
]


@dataclass(frozen=True)
class ContentSource:
    """A content table keyed by user or item id (any format :func:`read_generic` reads).

    ``fields`` maps content column → kind; ``None`` takes every other column, with its kind
    guessed (numbers, ``|``-separated tags, image references, short categories, else text).
    ``id_column`` ``None`` looks for the usual user / item id names (``item_id``, ``iid``, …).
    """

    path: str | Path
    id_column: str | None = None
    fields: Mapping[str, FieldKind] | None = None
    sep: str | None = None
    encoding: str = "utf-8"


@dataclass(frozen=True)
class GenericSource:
    """Where an interaction log is and how to read it.

    ``mapping``: a full :class:`ColumnMapping`; a partial ``{role: column}`` dict whose other
    roles are inferred from the header; or ``None`` to infer every role. ``sep`` is taken
    from the extension when ``None`` (``.csv`` comma, ``.tsv`` tab, ``.txt`` / ``.dat``
    sniffed from the header). ``rating_range`` = inclusive ``(low, high)`` bounds, either
    may be ``None``. ``unknown_content``: what to do with content rows for ids that have no
    interactions (``error`` names the first such row). ``time_unit``: of numeric timestamps
    (``auto``: from their magnitude, see :func:`~clrec.data.validation.parse_timestamps`).
    """

    path: str | Path
    mapping: ColumnMapping | Mapping[str, str] | None = None
    sep: str | None = None
    encoding: str = "utf-8"
    rating_range: tuple[float | None, float | None] | None = None
    duplicates: DuplicatePolicy = "reject"
    item_content: ContentSource | None = None
    user_content: ContentSource | None = None
    unknown_content: UnknownPolicy = "error"
    name: str | None = None
    time_unit: TimeUnit = "auto"


# ---------------------------------------------------------------------------- content


def _read_content(
    source: ContentSource, kind: str, known_ids: set[str], policy: UnknownPolicy
) -> tuple[pd.DataFrame, dict[str, FieldKind]]:
    """A content table as ``id`` + content columns; bad or repeated ids name their row."""
    path = Path(source.path)
    table = read_table(path, sep=source.sep, encoding=source.encoding)
    id_column = source.id_column or content_id_column(table, kind, path)
    require_columns(table, [id_column], file=path, role=f"{kind} id")
    kinds: dict[str, FieldKind]
    if source.fields is None:
        kinds = guess_kinds(table, id_column)
    else:
        kinds = dict(source.fields)
        require_columns(table, list(kinds), file=path, role=f"{kind} content")
    ids = parse_ids(table[id_column], column=id_column, file=path)
    repeated = ids.duplicated()
    if repeated.any():
        row = int(np.flatnonzero(repeated.to_numpy())[0]) + 1
        first = int(np.flatnonzero((ids == ids.iloc[row - 1]).to_numpy())[0]) + 1
        raise DataError(
            f"{kind} id {ids.iloc[row - 1]!r} has a second content row (first at row {first})",
            file=path,
            row=row,
        )
    known = ids.isin(known_ids)  # (n,)
    if known_ids and not known.any():
        sample = ", ".join(repr(i) for i in ids.head(3))
        raise DataError(
            f"none of the {len(ids):,} ids in column {id_column!r} ({sample}, …) is a {kind} "
            f"of the interactions: the wrong id column, or another data set's table?",
            file=path,
        )
    if policy == "error":
        unknown = ~known
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0]) + 1
            raise DataError(
                f"content row for {kind} {ids.iloc[row - 1]!r}, which has no interactions "
                f"({int(unknown.sum())} such row(s)); set unknown content to 'keep' to add "
                "them to the catalogue or 'drop' to ignore them",
                file=path,
                row=row,
            )
    content = pd.DataFrame({"id": ids})
    for column, field_kind in kinds.items():
        values = table[column].str.strip()
        if field_kind == "number":
            numbers = pd.to_numeric(values, errors="coerce")
            bad = values.notna() & (values != "") & numbers.isna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
                raise DataError(
                    f"{column!r} value {values.iloc[row - 1]!r} is not a number",
                    file=path,
                    row=row,
                )
            content[column] = numbers.astype("float64")
        else:
            content[column] = values.replace("", pd.NA)
        if field_kind == "text" and content[column].isna().all():
            raise DataError(
                f"text column {column!r} is empty in every row: nothing to encode (drop it "
                "from the fields, or fill it)",
                file=path,
            )
    return content, kinds


# ---------------------------------------------------------------------------- reader


def _dataset_name(path: Path) -> str:
    """The file name without its extensions (``ratings.csv.gz`` → ``ratings``)."""
    name = path.name
    for suffix in reversed(path.suffixes):
        name = name.removesuffix(suffix)
    return name or path.name


def read_generic(source: GenericSource) -> Dataset:
    """Read an interaction log (and optional content tables) described by ``source``."""
    path = Path(source.path)
    table = read_table(path, sep=source.sep, encoding=source.encoding)
    if isinstance(source.mapping, ColumnMapping):
        mapping = source.mapping
        require_columns(table, list(mapping.roles().values()), file=path)
    else:
        mapping = infer_mapping(table.columns, source.mapping, file=path)
    roles = mapping.roles()

    columns: dict[str, pd.Series] = {
        "user": parse_ids(table[mapping.user], column=mapping.user, file=path),
        "item": parse_ids(table[mapping.item], column=mapping.item, file=path),
    }
    if "rating" in roles:
        low, high = source.rating_range if source.rating_range is not None else (None, None)
        columns["rating"] = parse_numbers(
            table[roles["rating"]], column=roles["rating"], file=path, low=low, high=high
        )
    if "weight" in roles:
        columns["weight"] = parse_numbers(
            table[roles["weight"]], column=roles["weight"], file=path, low=0.0
        )
    if "label" in roles:
        columns["label"] = parse_labels(table[roles["label"]], column=roles["label"], file=path)
    if "timestamp" in roles:
        columns["timestamp"] = parse_timestamps(
            table[roles["timestamp"]], column=roles["timestamp"], file=path, unit=source.time_unit
        )
    if "event" in roles:
        events = table[roles["event"]].str.strip()
        columns["event"] = events.where(events != "", pd.NA)
    interactions = resolve_duplicates(pd.DataFrame(columns), source.duplicates, file=path)

    contents: dict[str, tuple[pd.DataFrame, dict[str, FieldKind]] | None] = {}
    for kind, content_source in (("item", source.item_content), ("user", source.user_content)):
        contents[kind] = None
        if content_source is not None:
            known = set(interactions[kind].tolist())
            contents[kind] = _read_content(content_source, kind, known, source.unknown_content)
    item_content, user_content = contents["item"], contents["user"]
    return Dataset.from_external(
        source.name or _dataset_name(path),
        interactions,
        item_content=item_content[0] if item_content else None,
        item_fields=item_content[1] if item_content else None,
        user_content=user_content[0] if user_content else None,
        user_fields=user_content[1] if user_content else None,
        unknown_content=source.unknown_content,
        content_file=source.item_content.path if source.item_content else None,
        source=str(path),
    )


def source_from_options(
    path: str | Path,
    *,
    user: str | None = None,
    item: str | None = None,
    rating: str | None = None,
    timestamp: str | None = None,
    label: str | None = None,
    event: str | None = None,
    weight: str | None = None,
    sep: str | None = None,
    rating_range: tuple[float | None, float | None] | None = None,
    duplicates: str = "reject",
    item_content: str | Path | None = None,
    item_id: str | None = None,
    user_content: str | Path | None = None,
    user_id: str | None = None,
    encoding: str = "utf-8",
    unknown_content: str = "error",
    time_unit: str = "auto",
) -> GenericSource:
    """A :class:`GenericSource` from flat (CLI-style) options; absent columns are inferred.

    Checks the policy names, so a typo is a :class:`ClrecError` rather than a silent default.
    """
    if duplicates not in get_args(DuplicatePolicy):
        raise ClrecError(
            f"duplicate policy {duplicates!r}; choose one of {', '.join(get_args(DuplicatePolicy))}"
        )
    if time_unit not in get_args(TimeUnit):
        raise ClrecError(f"time unit {time_unit!r}; choose one of {', '.join(get_args(TimeUnit))}")
    if unknown_content not in get_args(UnknownPolicy):
        raise ClrecError(
            f"unknown-content policy {unknown_content!r}; choose one of "
            f"{', '.join(get_args(UnknownPolicy))}"
        )
    explicit = {
        role: column
        for role, column in {
            "user": user,
            "item": item,
            "rating": rating,
            "timestamp": timestamp,
            "label": label,
            "event": event,
            "weight": weight,
        }.items()
        if column
    }
    bounds = rating_range if rating_range is not None and rating_range != (None, None) else None
    if bounds is not None:
        low, high = bounds
        if low is not None and high is not None and low > high:
            raise ClrecError(f"rating range {bounds}: the minimum is above the maximum")
    return GenericSource(
        path,
        mapping=explicit or None,
        sep=sep,
        encoding=encoding,
        rating_range=bounds,
        duplicates=cast(DuplicatePolicy, duplicates),
        item_content=(
            ContentSource(item_content, item_id, sep=None, encoding=encoding)
            if item_content is not None
            else None
        ),
        user_content=(
            ContentSource(user_content, user_id, sep=None, encoding=encoding)
            if user_content is not None
            else None
        ),
        unknown_content=cast(UnknownPolicy, unknown_content),
        time_unit=cast(TimeUnit, time_unit),
    )
