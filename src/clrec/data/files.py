"""Reading raw files into string tables, turning every low-level failure into a DataError.

Readers read everything as strings first and parse numbers afterwards (``validation``), so a
bad value is reported with its row instead of silently becoming NaN.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path

import pandas as pd

from clrec.errors import DataError

_PANDAS_LINE = re.compile(r"line (\d+)")
# A byte that cannot occur in text files; used to turn multi-character separators into one.
_UNIT_SEPARATOR = "\x1f"


def require_file(path: str | Path) -> Path:
    """The path as a Path, or a DataError when it is missing, a folder, or empty."""
    file = Path(path)
    if not file.exists():
        raise DataError("file not found", file=file)
    if not file.is_file():
        raise DataError("expected a file, found a folder", file=file)
    if file.stat().st_size == 0:
        raise DataError("file is empty (0 bytes)", file=file)
    return file


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when it ends in ``.gz``."""
    file = require_file(path)
    raw = file.read_bytes()
    if file.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"not a valid gzip file ({err})", file=file) from err
    return raw


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """Decoded text of a file, with the line of the first undecodable byte on failure."""
    raw = read_bytes(path)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"bytes that are not valid {encoding} at byte {err.start} "
            f"({raw[err.start : err.start + 4]!r}); pass the file's encoding",
            file=path,
            line=line,
        ) from err
    if not text.strip():
        raise DataError("file holds only whitespace", file=path)
    return text.removeprefix("\ufeff")


def read_delimited(
    path: str | Path,
    *,
    sep: str,
    names: list[str] | None = None,
    encoding: str = "utf-8",
    quoting: int = csv.QUOTE_MINIMAL,
) -> pd.DataFrame:
    """A delimited file as an all-string frame (empty cells become ``<NA>``).

    With ``names`` the file has no header; otherwise its first line is the header. A row
    with the wrong number of fields raises a DataError naming its line.
    """
    text = read_text(path, encoding)
    if len(sep) > 1:
        if _UNIT_SEPARATOR in text:
            raise DataError("file holds a control byte 0x1f, which is not valid here", file=path)
        text = text.replace(sep, _UNIT_SEPARATOR)
        sep = _UNIT_SEPARATOR
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=None if names is not None else "infer",
            names=names,
            dtype="string",
            keep_default_na=False,
            na_values=[""],
            quoting=quoting,
            skip_blank_lines=True,
            engine="c",
            index_col=False,
        )
    except pd.errors.ParserError as err:
        match = _PANDAS_LINE.search(str(err))
        raise DataError(
            f"malformed row: {str(err).split('. ', 1)[-1].strip()}",
            file=path,
            line=int(match.group(1)) if match else None,
        ) from err
    except pd.errors.EmptyDataError as err:
        raise DataError("file has no columns", file=path) from err
    if names is not None and len(frame.columns) != len(names):
        raise DataError(f"expected {len(names)} fields per row", file=path)
    if names is not None and frame[names[-1]].isna().all() and len(names) > 1 and len(frame):
        raise DataError(
            f"every row lacks field {names[-1]!r}: wrong separator (expected {sep!r})?",
            file=path,
        )
    if len(frame) == 0:
        raise DataError("file has a header but no data rows", file=path)
    if names is None:
        header = next(csv.reader(io.StringIO(text.split("\n", 1)[0]), delimiter=sep))
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise DataError(f"header repeats column name(s) {repeated}", file=path, line=1)
    return frame
