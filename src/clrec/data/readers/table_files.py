"""Any supported interaction or content file as an all-string table.

CSV / TSV (or a separator sniffed from a ``.txt`` / ``.dat`` header), Parquet and JSON lines,
optionally gzipped, are all read into one shape: every column as pandas strings with
``<NA>`` for missing cells, so the row-by-row checks in :mod:`clrec.data.validation` see
the values as written and can name a bad cell's file and row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyarrow import json as pa_json

from clrec.data.files import read_delimited, read_text, require_file
from clrec.errors import DataError

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
