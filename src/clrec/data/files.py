"""Reading raw files into string tables, turning every low-level failure into a DataError.

Readers read everything as strings first and parse numbers afterwards (``validation``), so a
bad value is reported with its row instead of silently becoming NaN.
"""

from __future__ import annotations

import bz2
import csv
import errno
import gzip
import io
import lzma
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd

from clrec.errors import DataError

_PANDAS_LINE = re.compile(r"line (\d+)")
MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest line a text file may hold: a longer one is a damaged or wrong file, and
reading it whole would take gigabytes."""
_SCAN_BLOCK = 64 * 1024 * 1024  # bytes searched for newlines at a time
# Compressed formats recognised by their first bytes, whatever the file is called.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
# A byte that cannot occur in text files; used to turn multi-character separators into one.
_UNIT_SEPARATOR = "\x1f"


def require_file(path: str | Path) -> Path:
    """The path as a Path, or a DataError saying what is there instead: nothing, a
    folder, a FIFO / socket / device, a symlink loop, or an empty file."""
    file = Path(path)
    try:
        status = file.stat()
    except FileNotFoundError:
        raise DataError("file not found", file=file) from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise DataError("a symlink loop (the link points back to itself)", file=file) from None
        raise DataError(f"cannot read the file ({err.strerror})", file=file) from None
    mode = status.st_mode
    if stat.S_ISDIR(mode):
        raise DataError("expected a file, found a folder", file=file)
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else ("a device")
        )
        raise DataError(f"expected a regular file, found {kind}", file=file)
    if status.st_size == 0:
        raise DataError("file is empty (0 bytes)", file=file)
    return file


def compression(head: bytes) -> str | None:
    """The compression a file's first bytes announce (None: plain)."""
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, decompressed when its first bytes say gzip, bzip2 or xz (whatever
    its name); zip and zstd archives are refused with a hint."""
    file = require_file(path)
    raw = file.read_bytes()
    kind = compression(raw[:8])
    if file.suffix.lower() == ".gz" and kind != "gzip":
        raise DataError("not a valid gzip file (no gzip header), though named .gz", file=file)
    if kind in ("zip", "zstd"):
        raise DataError(f"a {kind} archive: extract the file first", file=file)
    if kind is not None:
        opener = {"gzip": gzip.decompress, "bzip2": bz2.decompress, "xz": lzma.decompress}
        try:
            raw = opener[kind](raw)
        except (OSError, EOFError, ValueError, lzma.LZMAError) as err:
            raise DataError(f"not a valid {kind} file ({err})", file=file) from err
    check_line_lengths(raw, file)
    return raw


def check_line_lengths(raw: bytes, file: str | Path, limit: int = MAX_LINE_BYTES) -> None:
    """Refuse a line longer than ``limit`` bytes (LF or CR LF newlines, or CR alone in a
    file without LF), naming it."""
    newline = 10 if raw.find(b"\n") >= 0 else 13
    line, previous = 1, -1  # previous: the last newline's offset
    for start in range(0, len(raw), _SCAN_BLOCK):
        block = np.frombuffer(
            raw, dtype=np.uint8, count=min(_SCAN_BLOCK, len(raw) - start), offset=start
        )
        ends = np.flatnonzero(block == newline) + start  # (n,) offsets
        edges = np.concatenate([[previous], ends])
        lengths = np.diff(edges) - 1  # (n,) bytes between consecutive newlines
        long = np.flatnonzero(lengths > limit)
        if len(long):
            raise _too_long(file, line + int(long[0]), limit)
        line += len(ends)
        if len(ends):
            previous = int(ends[-1])
    if len(raw) - previous - 1 > limit:
        raise _too_long(file, line, limit)


def _too_long(file: str | Path, line: int, limit: int) -> DataError:
    return DataError(
        f"a line longer than {limit:,} bytes: not a table of interactions or content "
        "(a damaged file, or the wrong one)",
        file=file,
        line=line,
    )


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
    if "\r" in text:  # Windows (CR LF) and old Mac (CR) newlines read as LF
        text = text.replace("\r\n", "\n").replace("\r", "\n")
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
