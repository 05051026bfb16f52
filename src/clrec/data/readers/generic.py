"""A reader for any interaction log in CSV / TSV / Parquet / JSON lines, with a typed mapping.

:class:`ColumnMapping` says which column plays which role (user, item, rating, label,
timestamp, event, weight); :func:`infer_mapping` recognises the common names so a file with
standard headers needs none. Every value is validated row by row, so a bad cell is reported
with its file and row instead of silently becoming NaN.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
from pyarrow import json as pa_json

from clrec.data.files import read_delimited, read_text, require_file
from clrec.data.schema import Dataset, FieldKind, UnknownPolicy
from clrec.data.validation import (
    DuplicatePolicy,
    parse_ids,
    parse_labels,
    parse_numbers,
    parse_timestamps,
    require_columns,
    resolve_duplicates,
)
from clrec.errors import ClrecError, DataError

ROLES: tuple[str, ...] = ("user", "item", "rating", "label", "timestamp", "event", "weight")

# Names recognised per role, most specific first; compared after lower-casing and removing
# ``_``, ``-``, ``.`` and spaces, so ``userId``, ``user_id`` and ``User ID`` all match.
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userId", "uid", "user_idx", "customer_id", "visitor_id"),
    "item": (
        "item",
        "item_id",
        "itemId",
        "iid",
        "movieId",
        "movie_id",
        "product_id",
        "productId",
        "asin",
        "artist_id",
        "track_id",
        "book_id",
        "news_id",
        "article_id",
    ),
    "rating": ("rating", "score", "stars", "rating_value"),
    "label": ("label", "click", "clicked", "is_click"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "unix_time", "date"),
    "event": ("event", "event_type", "action", "behavior", "behaviour", "interaction_type"),
    "weight": ("weight", "count", "play_count", "plays", "playcount", "quantity"),
}

_FORMATS: dict[str, str] = {
    ".csv": ",",
    ".tsv": "\t",
    ".tab": "\t",
    ".txt": "sniff",
    ".dat": "sniff",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_FORMATS)
# Separators tried, in order, when a .txt / .dat file's extension does not say.
_SNIFF_SEPARATORS: tuple[str, ...] = ("\t", "::", ",", ";", "|", " ")
# Separators whose presence in a one-column header means the separator given was wrong.
_OTHER_SEPARATORS: tuple[str, ...] = ("\t", "::", ",", ";", "|")


def _normal(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name).lower()


@dataclass(frozen=True)
class ColumnMapping:
    """Which column of the file plays which interaction role; ``None`` = not present."""

    user: str
    item: str
    rating: str | None = None
    label: str | None = None
    timestamp: str | None = None
    event: str | None = None
    weight: str | None = None

    def roles(self) -> dict[str, str]:
        """Role → column for every role that is mapped."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


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
    interactions (``error`` names the first such row).
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


# ---------------------------------------------------------------------------- mapping


def infer_mapping(
    columns: Iterable[str],
    overrides: Mapping[str, str] | None = None,
    *,
    file: str | Path | None = None,
) -> ColumnMapping:
    """Map roles to columns by common names; ``overrides`` fixes some roles explicitly.

    Raises a :class:`DataError` when no user or item column can be found, naming the
    columns the file has and the closest one when a name looks misspelt.
    """
    present = [str(c) for c in columns]
    chosen: dict[str, str] = {}
    for role, column in (overrides or {}).items():
        if role not in ROLES:
            raise ClrecError(f"unknown column role {role!r}; roles are {', '.join(ROLES)}")
        require_columns(pd.DataFrame(columns=present), [column], file=file, role=role)
        chosen[role] = column
    taken = set(chosen.values())
    by_normal: dict[str, str] = {}
    for column in present:
        by_normal.setdefault(_normal(column), column)
    for role, candidates in ROLE_NAMES.items():
        if role in chosen:
            continue
        for candidate in candidates:
            match = by_normal.get(_normal(candidate))
            if match is not None and match not in taken:
                chosen[role] = match
                taken.add(match)
                break
    for role in ("user", "item"):
        if role not in chosen:
            free = [c for c in present if c not in taken]
            raise DataError(_no_column_message(role, present, free), file=file)
    return ColumnMapping(**chosen)


def _no_column_message(role: str, present: list[str], free: list[str] | None = None) -> str:
    """Why no column fits ``role``, pointing at a free column that looks like a misspelling."""
    names = ROLE_NAMES[role]
    message = (
        f"no {role} column: looked for {', '.join(repr(n) for n in names)}; "
        f"the file has columns {present}"
    )
    for column in present if free is None else free:
        close = difflib.get_close_matches(
            _normal(column), [_normal(n) for n in names], n=1, cutoff=0.8
        )
        if close:
            standard = next(n for n in names if _normal(n) == close[0])
            return (
                f"{message}; {column!r} looks like a misspelling of {standard!r}: rename it "
                f"or map it explicitly ({role}={column!r}; --{role} {column} on the command line)"
            )
    return f"{message}; map it explicitly ({role}=COLUMN; --{role} COLUMN on the command line)"


# ---------------------------------------------------------------------------- tables


def _file_format(path: Path, sep: str | None) -> str:
    """``parquet``, ``jsonl`` or a separator, from ``sep`` or the extension (``.gz`` ignored)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    fmt = _FORMATS.get(suffix)
    if fmt in ("parquet", "jsonl"):
        return fmt
    if sep is not None:
        return sep
    if fmt is None:
        raise DataError(
            f"cannot tell the format from extension {suffix or '(none)'!r}; supported: "
            f"{', '.join(SUPPORTED_EXTENSIONS)} (optionally .gz), or pass a separator",
            file=path,
        )
    return fmt


def _sniff_separator(path: Path, encoding: str) -> str:
    header = read_text(path, encoding).lstrip().split("\n", 1)[0]
    for candidate in _SNIFF_SEPARATORS:
        if candidate in header:
            return candidate
    return ","


def _wrong_separator_check(frame: pd.DataFrame, sep: str, path: Path) -> None:
    """A one-column header that holds another separator means the separator is wrong."""
    if len(frame.columns) != 1:
        return
    header = str(frame.columns[0])
    for candidate in _OTHER_SEPARATORS:
        if candidate != sep and candidate in header.strip():
            raise DataError(
                f"the header is a single column {header!r}: wrong separator? The file seems "
                f"to use {candidate!r}, not {sep!r}; pass the separator explicitly",
                file=path,
                line=1,
            )


def _text_value(value: Any) -> Any:
    """A JSON / Parquet cell as text for the row checks; lists become ``|``-joined tags."""
    if value is None:
        return pd.NA
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple, np.ndarray)):
        return "|".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _read_jsonl(path: Path, encoding: str) -> pd.DataFrame:
    """JSON lines (one object per line), or a JSON array of objects when the file is one.

    Clean UTF-8 JSON lines go through pyarrow's fast reader; anything it refuses is parsed
    line by line in Python, which finds and names the offending line.
    """
    text = read_text(path, encoding)
    if not text.lstrip().startswith("["):
        try:
            table = pa_json.read_json(pa.BufferReader(text.encode("utf-8")))
        except (pa.ArrowException, ValueError, TypeError):
            table = None
        if table is not None and table.num_rows > 0 and table.num_columns > 0:
            return _text_frame(table.to_pandas())
    records: list[dict[str, Any]] = []
    if text.lstrip().startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON ({err.msg})", file=path, line=err.lineno) from err
        items: Iterable[tuple[int | None, Any]] = ((None, obj) for obj in loaded)
    else:
        parsed: list[tuple[int | None, Any]] = []
        for line_number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                parsed.append((line_number, json.loads(line)))
            except json.JSONDecodeError as err:
                raise DataError(
                    f"not valid JSON ({err.msg} at column {err.colno})",
                    file=path,
                    line=line_number,
                ) from err
        items = parsed
    for number, obj in items:
        if not isinstance(obj, dict):
            raise DataError(
                f"expected a JSON object per record, found {type(obj).__name__}",
                file=path,
                line=number,
                row=len(records) + 1 if number is None else None,
            )
        records.append(obj)
    if not records:
        raise DataError("file holds no records", file=path)
    columns = list(dict.fromkeys(key for record in records for key in record))
    return pd.DataFrame(
        {
            str(c): pd.array([_text_value(r.get(c)) for r in records], dtype="string")
            for c in columns
        }
    )


def _read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file as strings (date-times become Unix seconds first)."""
    require_file(path)
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, NotImplementedError, pa.ArrowException) as err:
        raise DataError(f"not a valid Parquet file ({err})", file=path) from err
    if frame.empty:
        raise DataError("file has no data rows", file=path)
    return _text_frame(frame)


def _text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A typed frame as strings for the row checks, vectorised where the dtype allows.

    Date-times become Unix seconds, whole floats lose their ``.0`` (so ids stay ids),
    lists become ``|``-joined tags and nulls become ``<NA>``.
    """
    out: dict[str, pd.Series] = {}
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            stamps = pd.to_datetime(series, utc=True)
            seconds = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
            out[str(column)] = seconds.astype("Int64").astype("string")
        elif pd.api.types.is_float_dtype(series.dtype):
            values = series.astype("float64")
            finite = values[np.isfinite(values)]
            whole = bool((finite == np.round(finite)).all()) and bool((finite.abs() < 2**53).all())
            if whole and np.isfinite(values.fillna(0.0)).all():
                out[str(column)] = values.astype("Int64").astype("string")
            else:
                out[str(column)] = values.astype("string").where(values.notna(), pd.NA)
        elif pd.api.types.is_integer_dtype(series.dtype) or isinstance(
            series.dtype, pd.StringDtype
        ):
            out[str(column)] = series.astype("string")
        else:
            out[str(column)] = pd.Series(
                [_text_value(v) for v in series.tolist()], dtype="string", index=series.index
            )
    return pd.DataFrame(out)


def read_table(
    path: str | Path, *, sep: str | None = None, encoding: str = "utf-8"
) -> pd.DataFrame:
    """Any supported file as an all-string frame with ``<NA>`` for missing cells."""
    file = Path(path)
    fmt = _file_format(file, sep)
    if fmt == "parquet":
        return _read_parquet(file)
    if fmt == "jsonl":
        return _read_jsonl(file, encoding)
    if fmt == "sniff":
        fmt = _sniff_separator(file, encoding)
    frame = read_delimited(file, sep=fmt, encoding=encoding)
    _wrong_separator_check(frame, fmt, file)
    return frame


# ---------------------------------------------------------------------------- content


def _guess_kind(name: str, values: pd.Series) -> FieldKind:
    """A content column's kind from its name and values (used when none is given)."""
    present = values.dropna().astype(str)
    if present.empty:
        return "text"
    if pd.to_numeric(present, errors="coerce").notna().all():
        return "number"
    if re.search(r"image|picture|poster|thumbnail|photo|cover", name, re.IGNORECASE):
        return "image"
    if present.str.contains("|", regex=False).mean() > 0.2:
        return "tags"
    if present.nunique() <= max(20, len(present) // 20) and present.str.len().max() <= 40:
        return "category"
    return "text"


def _content_id_column(table: pd.DataFrame, kind: str, path: Path) -> str:
    """The id column of a content table: a usual ``kind`` id name, else ``id``."""
    by_normal = {_normal(str(c)): str(c) for c in reversed(table.columns)}
    for candidate in (*ROLE_NAMES[kind], "id"):
        if _normal(candidate) in by_normal:
            return by_normal[_normal(candidate)]
    raise DataError(_no_column_message(kind, [str(c) for c in table.columns]), file=path)


def _read_content(
    source: ContentSource, kind: str, known_ids: set[str], policy: UnknownPolicy
) -> tuple[pd.DataFrame, dict[str, FieldKind]]:
    """A content table as ``id`` + content columns; bad or repeated ids name their row."""
    path = Path(source.path)
    table = read_table(path, sep=source.sep, encoding=source.encoding)
    id_column = source.id_column or _content_id_column(table, kind, path)
    require_columns(table, [id_column], file=path, role=f"{kind} id")
    kinds: dict[str, FieldKind]
    if source.fields is None:
        kinds = {str(c): _guess_kind(str(c), table[c]) for c in table.columns if c != id_column}
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
    if policy == "error":
        unknown = ~ids.isin(known_ids)
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
    return content, kinds


# ---------------------------------------------------------------------------- reader


def _dataset_name(path: Path) -> str:
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
            table[roles["timestamp"]], column=roles["timestamp"], file=path
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
) -> GenericSource:
    """A :class:`GenericSource` from flat (CLI-style) options; absent columns are inferred.

    Checks the policy names, so a typo is a :class:`ClrecError` rather than a silent default.
    """
    if duplicates not in get_args(DuplicatePolicy):
        raise ClrecError(
            f"duplicate policy {duplicates!r}; choose one of {', '.join(get_args(DuplicatePolicy))}"
        )
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
    )
