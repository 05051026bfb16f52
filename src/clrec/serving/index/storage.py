"""How a vector index's items are stored: the precision encoding in memory, and the files on
disk (``index.json``, ``vectors.npy``, ``scales.npy``, ``hnsw.bin``).

Every file is replaced atomically; ``index.json``, read first, is written last and records
each file's SHA-256. Reading checks every file's digest first — before any byte of the graph
reaches hnswlib, whose loader trusts its input and can crash the process on a damaged file —
then its shape, dtype, finiteness and the graph's own vectors, and refuses a damaged file
with its name.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from clrec.errors import ClrecError
from clrec.serving.index.config import IndexConfig
from clrec.serving.index.hnsw import HnswGraph, import_hnswlib

FORMAT_VERSION = 2
"""Version of the on-disk layout written by :func:`save_index` (2: file digests)."""

META_FILE = "index.json"
VECTORS_FILE = "vectors.npy"
SCALES_FILE = "scales.npy"
HNSW_FILE = "hnsw.bin"

STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "int8": np.dtype(np.int8),
}
"""The dtype items are stored in, by :attr:`IndexConfig.precision`."""
_INT8_MAX = 127.0
_HNSW_SAMPLE_ROWS = 64  # rows compared between hnsw.bin and vectors.npy on load


def encode(vectors: np.ndarray, precision: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Storage form of float32 ``vectors`` ``(N, D)``: (stored, int8 scales or None)."""
    if precision == "float32":
        return vectors, None
    if precision == "float16":
        if np.abs(vectors).max() > np.finfo(np.float16).max:
            raise ClrecError("item vectors exceed the float16 range (65504); use float32")
        return vectors.astype(np.float16), None
    # int8: symmetric per-vector scale, v ≈ scale * q with q in [-127, 127].
    max_abs = np.abs(vectors).max(axis=1)  # (N,)
    scales = np.where(max_abs > 0, max_abs / _INT8_MAX, 1.0).astype(np.float32)  # (N,)
    quantised = np.clip(np.rint(vectors / scales[:, None]), -_INT8_MAX, _INT8_MAX)  # (N, D)
    return quantised.astype(np.int8), scales


@dataclass(frozen=True)
class SavedIndex:
    """What :func:`load_index` read, checked: the index's config, its stored vectors
    ``(I, D)``, their int8 scales ``(I,)`` (int8 only) and its graph (HNSW only)."""

    config: IndexConfig
    vectors: np.ndarray
    scales: np.ndarray | None
    graph: HnswGraph | None


def save_index(
    directory: str | Path,
    config: IndexConfig,
    vectors: np.ndarray,
    scales: np.ndarray | None,
    graph: HnswGraph | None,
) -> Path:
    """Write ``vectors`` ``(I, D)`` as stored (+ ``scales`` ``(I,)`` for int8, the graph
    for HNSW) and ``index.json`` into ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / VECTORS_FILE, lambda f: np.save(f, vectors))
    if scales is not None:
        atomic_write(out / SCALES_FILE, lambda f: np.save(f, scales))
    if graph is not None:
        _replace(out / HNSW_FILE, graph.save)
    written = (
        [VECTORS_FILE] + [SCALES_FILE] * (scales is not None) + [HNSW_FILE] * (graph is not None)
    )
    meta = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "count": vectors.shape[0],
        "dim": vectors.shape[1],
        "storage_dtype": str(vectors.dtype),
        "sha256": {name: file_digest(out / name) for name in written},
    }
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write(out / META_FILE, lambda f: f.write(text.encode()))
    return out


def load_index(directory: str | Path) -> SavedIndex:
    """Read an index written by :func:`save_index`, checking every file against
    ``index.json``."""
    root = Path(directory)
    meta = _read_meta(root / META_FILE)
    config = IndexConfig.from_dict(meta["config"])
    _check_digests(root, meta, config)
    count, dim = meta["count"], meta["dim"]
    for name, value in (("count", count), ("dim", dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ClrecError(f"{root / META_FILE}: {name} must be a positive integer")
    dtype = STORAGE_DTYPES[config.precision]
    if meta.get("storage_dtype", str(dtype)) != str(dtype):
        raise ClrecError(
            f"{root / META_FILE}: storage_dtype {meta['storage_dtype']!r} does not match "
            f"precision {config.precision!r}"
        )
    vectors = _load_npy(root / VECTORS_FILE, (count, dim), dtype)  # (I, D)
    if dtype.kind == "f" and not np.isfinite(vectors).all():
        raise ClrecError(f"{root / VECTORS_FILE}: holds NaN or infinite values")
    scales = None
    if config.precision == "int8":
        scales = _load_npy(root / SCALES_FILE, (count,), np.dtype(np.float32))  # (I,)
        if not (np.isfinite(scales).all() and (scales >= 0).all()):
            raise ClrecError(f"{root / SCALES_FILE}: scales must be finite and >= 0")
    graph = _load_hnsw(root / HNSW_FILE, config, vectors) if config.kind == "hnsw" else None
    return SavedIndex(config, vectors, scales, graph)


def file_digest(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError as error:
        raise ClrecError(f"{path}: not found") from error
    except OSError as error:
        raise ClrecError(f"{path}: unreadable: {error}") from error
    return digest.hexdigest()


def _check_digests(root: Path, meta: dict[str, Any], config: IndexConfig) -> None:
    """Every file the index needs matches the digest ``index.json`` recorded for it."""
    digests = meta.get("sha256")
    if not isinstance(digests, dict):
        raise ClrecError(f"{root / META_FILE}: no file digests")
    needed = [VECTORS_FILE]
    needed += [SCALES_FILE] if config.precision == "int8" else []
    needed += [HNSW_FILE] if config.kind == "hnsw" else []
    for name in needed:
        expected = digests.get(name)
        if not isinstance(expected, str):
            raise ClrecError(f"{root / META_FILE}: no digest for {name}")
        if file_digest(root / name) != expected:
            raise ClrecError(f"{root / name}: checksum mismatch (the file is damaged)")


def _replace(path: Path, write: Callable[[str], object]) -> None:
    """Have ``write`` write a temporary file (by name) in ``path``'s directory, then
    ``os.replace`` it onto ``path``: readers see the old file or the whole new one."""
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temp_name)
        os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through :func:`_replace`, synced to disk before the rename (a crash
    leaves the old file or the whole new one)."""

    def synced(temp_name: str) -> None:
        with open(temp_name, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    _replace(path, synced)


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ClrecError(f"{path}: not found; is this a saved VectorIndex directory?") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ClrecError(f"{path}: unreadable index metadata: {error}") from error
    if not isinstance(meta, dict):
        raise ClrecError(f"{path}: expected a JSON object")
    missing = [key for key in ("format_version", "config", "count", "dim") if key not in meta]
    if missing:
        raise ClrecError(f"{path}: missing key(s) {missing}")
    if meta["format_version"] != FORMAT_VERSION:
        raise ClrecError(
            f"{path}: format_version {meta['format_version']!r} is not supported "
            f"(this version reads {FORMAT_VERSION})"
        )
    return meta


def _load_npy(path: Path, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    """A saved array, checked against the shape and dtype ``index.json`` promises."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError as error:
        raise ClrecError(f"{path}: not found") from error
    except (OSError, ValueError, EOFError) as error:
        raise ClrecError(f"{path}: unreadable array: {error}") from error
    if not isinstance(arr, np.ndarray):
        raise ClrecError(f"{path}: expected a single .npy array")
    if arr.shape != shape or arr.dtype != dtype:
        raise ClrecError(
            f"{path}: holds {arr.dtype} {arr.shape}, but index.json says {dtype} {shape}"
        )
    return np.ascontiguousarray(arr)


def _hnsw_header(path: Path) -> tuple[int, int]:
    """(element count, bytes of vector data per element) from an hnswlib index file header.

    hnswlib writes ``offsetLevel0, max_elements, cur_element_count, size_data_per_element,
    label_offset, offsetData`` as little-endian size_t first; ``label_offset - offsetData`` is
    the vector size. Checked before loading because hnswlib trusts the caller's dimension.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(48)
    except FileNotFoundError as error:
        raise ClrecError(f"{path}: not found") from error
    except OSError as error:
        raise ClrecError(f"{path}: unreadable: {error}") from error
    if len(header) < 48:
        raise ClrecError(f"{path}: truncated hnswlib index")
    _, _, count, _, label_offset, data_offset = struct.unpack("<6Q", header)
    return count, label_offset - data_offset


def _load_hnsw(path: Path, config: IndexConfig, vectors: np.ndarray) -> HnswGraph:
    """The saved hnswlib graph, checked to hold exactly ``vectors`` ``(I, D)``."""
    count, dim = vectors.shape
    file_count, data_bytes = _hnsw_header(path)
    if file_count != count or data_bytes != dim * 4:
        raise ClrecError(
            f"{path}: holds {file_count} vectors of {data_bytes / 4:g} dims, but "
            f"{VECTORS_FILE} holds {count} of {dim}"
        )
    graph = import_hnswlib().Index(space="ip", dim=dim)
    try:
        graph.load_index(str(path), max_elements=count)
        sample = np.unique(np.linspace(0, count - 1, min(count, _HNSW_SAMPLE_ROWS)).astype(int))
        stored = np.asarray(graph.get_items(sample), dtype=np.float32)  # (S, D)
    except (RuntimeError, ValueError, MemoryError) as error:
        raise ClrecError(f"{path}: unreadable hnswlib index: {error}") from error
    if graph.get_current_count() != count or not np.array_equal(stored, vectors[sample]):
        raise ClrecError(f"{path}: the graph's vectors differ from {VECTORS_FILE}")
    loaded = HnswGraph(graph, config)
    loaded.configure(config)  # its search settings: ef_search, num_threads
    return loaded


__all__ = [
    "FORMAT_VERSION",
    "HNSW_FILE",
    "META_FILE",
    "SCALES_FILE",
    "STORAGE_DTYPES",
    "VECTORS_FILE",
    "SavedIndex",
    "atomic_write",
    "encode",
    "file_digest",
    "load_index",
    "save_index",
]
