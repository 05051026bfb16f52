"""The artifact's files, its manifest and their checks (what export writes, load reads)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import clrec
from clrec.errors import ClrecError

FORMAT = "clrec-artifact"
FORMAT_VERSION = 2
"""Version of the layout export writes; a loader refuses others (2: the model folder carries
everything the EmbeddingModel contract needs; 1 held separate vector files)."""

MANIFEST_FILE = "artifact.json"
USERS_FILE = "users.json"
ITEMS_FILE = "items.json"
CATALOGUE_FILE = "catalogue.parquet"
SEEN_FILE = "seen.npz"
MODEL_DIR = "model"
CONFIG_FILE = "config.yaml"
RANKER_DIR = "ranker"  # the optional ranking stage (clrec.ranking.stage)
REPORT_FILE = "report.html"  # the run's evaluation report, copied when present

REQUIRED_KEYS = ("format", "format_version", "model", "dataset", "n_users", "n_items", "dim")
_BLOCK = 1 << 20  # bytes read at a time when hashing


def artifact_files(root: Path) -> list[str]:
    """Every file under ``root`` except the manifest, as sorted POSIX relative paths."""
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).as_posix() != MANIFEST_FILE
    )


def sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            hasher.update(block)
    return hasher.hexdigest()


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def read_manifest(root: Path) -> dict[str, Any]:
    """The checked manifest of the artifact in ``root``."""
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise ClrecError(f"{root}: not a clrec artifact (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ClrecError(f"{path}: unreadable manifest: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ClrecError(f"{path}: not a clrec artifact manifest (format is not {FORMAT!r})")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ClrecError(f"{path}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ClrecError(
            f"{path}: format_version {version} was written by a newer clrec; this version "
            f"({clrec.__version__}) reads format_version {FORMAT_VERSION}: upgrade clrec"
        )
    if version != FORMAT_VERSION:
        raise ClrecError(
            f"{path}: format_version {version} is no longer supported; export the run again "
            "with this clrec (clrec export RUN --out ...)"
        )
    missing = [key for key in (*REQUIRED_KEYS, "files") if key not in manifest]
    if missing:
        raise ClrecError(f"{path}: missing key(s) {', '.join(missing)}")
    if not isinstance(manifest["files"], dict):
        raise ClrecError(f"{path}: 'files' must map relative paths to sha256 digests")
    for key in ("n_users", "n_items", "dim"):
        value = manifest[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ClrecError(f"{path}: {key} must be a non-negative integer, got {value!r}")
    return manifest


def verify_files(root: Path, files: Mapping[str, str]) -> None:
    """Every listed file exists inside ``root`` with its sha256; no file is unlisted."""
    base = root.resolve()
    for rel, digest in files.items():
        path = (root / rel).resolve()
        if Path(rel).is_absolute() or base not in path.parents:
            raise ClrecError(f"{root / MANIFEST_FILE}: lists a path outside the artifact: {rel}")
        if not path.is_file():
            raise ClrecError(f"{root / rel}: missing from the artifact")
        if sha256(path) != digest:
            raise ClrecError(f"{root / rel}: corrupt or changed (sha256 differs from the manifest)")
    extra = sorted(set(artifact_files(root)) - set(files))
    if extra:
        raise ClrecError(f"{root}: holds files the manifest does not list: {', '.join(extra)}")
