"""Versioned JSON manifests that mark a folder as something clrec saved (dataset, split, run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clrec.errors import DataError


def read_manifest(folder: Path, filename: str, version_key: str, expected: int) -> dict[str, Any]:
    """The manifest ``folder/filename``; a DataError when it is missing, broken or too new/old."""
    path = folder / filename
    if not path.is_file():
        raise DataError(f"not a saved clrec folder (no {filename})", file=folder)
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{filename} is not valid JSON ({err})", file=path) from err
    if manifest.get(version_key) != expected:
        raise DataError(
            f"{version_key} {manifest.get(version_key)!r}, expected {expected}", file=path
        )
    return manifest
