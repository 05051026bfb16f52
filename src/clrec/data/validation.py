"""Row-level checks that turn string columns into typed ones or raise a DataError naming the row.

Rows are numbered from 1 over data rows (the header is not a row), matching the position of
a row in the frame a reader produced.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from clrec.errors import DataError

DuplicatePolicy = Literal["reject", "keep_last", "aggregate"]
TimeUnit = Literal["auto", "s", "ms", "us", "ns"]

MAX_ID_LENGTH = 256
"""The longest id the service can address (its API's limit); readers refuse longer ones."""
_CONTROL = r"\x00-\x1f\x7f"
CONTROL_CHARACTERS = f"[{_CONTROL}]"
"""Characters no id may hold (NUL included): invisible, and refused by some databases."""
ID_PATTERN = f"^[^{_CONTROL}]+$"
"""The API's id rule, the same as the readers'."""
_SECONDS_PER = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
# The largest magnitude read as each unit when the unit is detected: seconds until the year
# 5138, milliseconds until 5138, ...; a column's median decides.
_UNIT_BOUNDS: tuple[tuple[TimeUnit, float], ...] = (("s", 1e11), ("ms", 1e14), ("us", 1e17))
_INT64_MAX = float(np.iinfo(np.int64).max)


def _first_bad_row(mask: pd.Series | np.ndarray) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1


def require_columns(
    frame: pd.DataFrame, required: list[str], *, file: str | Path | None, role: str = ""
) -> None:
    """Raise when a required column is absent, suggesting the closest existing name."""
    present = [str(c) for c in frame.columns]
    for column in required:
        if column in present:
            continue
        close = difflib.get_close_matches(column, present, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        what = f" ({role})" if role else ""
        raise DataError(
            f"missing column {column!r}{what}; the file has columns {present}{hint}", file=file
        )


def parse_ids(series: pd.Series, *, column: str, file: str | Path | None) -> pd.Series:
    """Ids as stripped strings, by the one id rule the service's API applies too: not
    empty, at most :data:`MAX_ID_LENGTH` characters, no control character (NUL included).
    A float column whose values are whole numbers gives ``"1"``, not ``"1.0"``; a float
    column with fractions is not an id column."""
    if pd.api.types.is_float_dtype(series.dtype):
        numbers = series.astype("float64")
        fractional = numbers.notna() & (numbers != np.round(numbers))
        if fractional.any():
            row = _first_bad_row(fractional)
            raise DataError(
                f"{column!r} holds a fractional number {float(numbers.iloc[row - 1])}, not an id",
                file=file,
                row=row,
            )
        series = numbers.astype("Int64")
    values = series.astype("string").str.strip()
    missing = values.isna() | (values == "")
    if missing.any():
        raise DataError(f"empty {column!r}", file=file, row=_first_bad_row(missing))
    too_long = values.str.len() > MAX_ID_LENGTH
    if too_long.any():
        row = _first_bad_row(too_long)
        raise DataError(
            f"{column!r} value of {len(values.iloc[row - 1]):,} characters is longer than "
            f"{MAX_ID_LENGTH}, the longest id the service can address",
            file=file,
            row=row,
        )
    control = values.str.contains(CONTROL_CHARACTERS, regex=True)
    if control.any():
        row = _first_bad_row(control)
        raise DataError(
            f"{column!r} value {values.iloc[row - 1]!r} holds a control character",
            file=file,
            row=row,
        )
    return values


def parse_numbers(
    series: pd.Series,
    *,
    column: str,
    file: str | Path | None,
    low: float | None = None,
    high: float | None = None,
    dtype: str = "float32",
) -> pd.Series:
    """Numbers from strings; non-numeric, missing, infinite or out-of-range values raise."""
    text = series.astype("string").str.strip()
    missing = text.isna() | (text == "")
    if missing.any():
        raise DataError(f"empty {column!r}", file=file, row=_first_bad_row(missing))
    numbers = pd.to_numeric(text, errors="coerce")
    with np.errstate(over="ignore"):  # 1e308 as float32 is inf: caught just below
        typed = numbers.astype("float64").fillna(0.0).astype(dtype)
    bad = numbers.isna() | ~np.isfinite(typed)
    if bad.any():
        row = _first_bad_row(bad)
        raise DataError(
            f"{column!r} value {text.iloc[row - 1]!r} is not a finite number", file=file, row=row
        )
    if low is not None or high is not None:
        out_of_range = (numbers < (low if low is not None else -np.inf)) | (
            numbers > (high if high is not None else np.inf)
        )
        if out_of_range.any():
            row = _first_bad_row(out_of_range)
            bounds = " and ".join(
                text
                for text, bound in ((f">= {low}", low), (f"<= {high}", high))
                if bound is not None
            )
            raise DataError(
                f"{column!r} value {numbers.iloc[row - 1]} is out of range (must be {bounds})",
                file=file,
                row=row,
            )
    return numbers.astype(dtype)


def parse_labels(series: pd.Series, *, column: str, file: str | Path | None) -> pd.Series:
    """Click labels: exactly 0 or 1 (also ``true`` / ``false``)."""
    text = series.astype("string").str.strip().str.lower()
    text = text.replace({"true": "1", "false": "0"})
    valid = text.isin(["0", "1", "0.0", "1.0"])
    if not valid.all():
        row = _first_bad_row(~valid)
        raise DataError(
            f"{column!r} value {series.iloc[row - 1]!r} is not a 0/1 label", file=file, row=row
        )
    return text.astype("float64").astype("int8")


def parse_timestamps(
    series: pd.Series, *, column: str, file: str | Path | None, unit: TimeUnit = "auto"
) -> pd.Series:
    """Unix seconds (int64) from Unix times or ISO-8601 date-times (naive = UTC).

    Numbers are in ``unit``; ``auto`` reads the column's median magnitude: below 1e11
    seconds, below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds (a
    millisecond log read as seconds would put every event tens of thousands of years
    ahead). Values beyond int64 are refused, never wrapped."""
    text = series.astype("string").str.strip()
    missing = text.isna() | (text == "")
    if missing.any():
        raise DataError(f"empty {column!r}", file=file, row=_first_bad_row(missing))
    numeric = pd.to_numeric(text, errors="coerce").astype("float64")
    negative = numeric < 0
    if negative.any():
        row = _first_bad_row(negative)
        raise DataError(
            f"{column!r} value {text.iloc[row - 1]!r} is a negative Unix time", file=file, row=row
        )
    beyond = ~np.isfinite(numeric.fillna(0.0)) | (numeric >= _INT64_MAX)
    if beyond.any():
        row = _first_bad_row(beyond)
        raise DataError(
            f"{column!r} value {text.iloc[row - 1]!r} is beyond a 64-bit Unix time",
            file=file,
            row=row,
        )
    if unit == "auto":
        median = float(numeric.median()) if numeric.notna().any() else 0.0
        unit = next((name for name, bound in _UNIT_BOUNDS if median < bound), "ns")
    seconds = (numeric / _SECONDS_PER[unit]).round()
    if numeric.isna().any():
        parsed = pd.to_datetime(
            text.where(numeric.isna()), errors="coerce", utc=True, format="ISO8601"
        )
        bad = parsed.isna() & numeric.isna()
        if bad.any():
            row = _first_bad_row(bad)
            raise DataError(
                f"{column!r} value {text.iloc[row - 1]!r} is neither a Unix time nor an "
                "ISO-8601 date-time",
                file=file,
                row=row,
            )
        epoch = pd.Timestamp(0, tz="UTC")
        from_dates = (parsed - epoch) // pd.Timedelta(seconds=1)
        seconds = seconds.where(numeric.notna(), from_dates.astype("float64"))
    return seconds.astype("int64")


def resolve_duplicates(
    frame: pd.DataFrame, policy: DuplicatePolicy, *, file: str | Path | None
) -> pd.DataFrame:
    """Apply the duplicate (user, item) policy to typed interactions.

    ``reject`` raises naming both rows; ``keep_last`` keeps the later row (by timestamp when
    there is one, else by file order); ``aggregate`` merges them: mean rating, summed weight,
    largest label, latest timestamp, the latest row's event, and ``count`` = events merged.
    """
    key = ["user", "item"]
    duplicated = frame.duplicated(key, keep=False)
    if not duplicated.any():
        return frame
    if policy == "reject":
        later = frame.duplicated(key, keep="first")
        row = _first_bad_row(later)
        user, item = frame["user"].iloc[row - 1], frame["item"].iloc[row - 1]
        twins = np.flatnonzero(((frame["user"] == user) & (frame["item"] == item)).to_numpy())
        raise DataError(
            f"duplicate (user, item) pair ({user}, {item}), first seen at row {twins[0] + 1}; "
            "set the duplicate policy to 'keep_last' or 'aggregate' to accept repeats",
            file=file,
            row=row,
        )
    ordered = frame.reset_index(drop=True)
    ordered["_order"] = np.arange(len(ordered))
    sort_by = ["timestamp", "_order"] if "timestamp" in ordered.columns else ["_order"]
    ordered = ordered.sort_values(sort_by, kind="stable")
    if policy == "keep_last":
        kept = ordered.drop_duplicates(key, keep="last")
        return kept.sort_values("_order").drop(columns="_order").reset_index(drop=True)
    if "count" not in ordered.columns:
        ordered["count"] = 1
    rules: dict[str, str] = {"_order": "min"}
    for column in ordered.columns:
        if column in (*key, "_order"):
            continue
        rules[column] = {"rating": "mean", "weight": "sum", "label": "max", "count": "sum"}.get(
            column, "last"
        )
    merged = ordered.groupby(key, sort=False, as_index=False).agg(rules)
    if "rating" in merged.columns:
        merged["rating"] = merged["rating"].astype("float32")
    return merged.sort_values("_order").drop(columns="_order").reset_index(drop=True)
