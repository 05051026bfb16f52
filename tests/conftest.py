"""Shared fixtures: where the staged real data sets live, and the bundled one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clrec.data.registry import KNOWN_DATASETS, bundled_path, default_data_root


def shared_data_root() -> Path | None:
    """``$CLREC_DATA`` or ``../shared/data`` beside the repository, when it exists."""
    root = default_data_root(os.environ.get("CLREC_DATA"))
    return root if root is not None and root.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The staged data root; tests that need it skip with a reason when it is absent."""
    root = shared_data_root()
    if root is None:
        pytest.skip("staged data sets not found: set CLREC_DATA or place ../shared/data")
    return root


def dataset_folder(root: Path, name: str) -> Path:
    """Folder of one staged data set, skipping the test when it is missing."""
    folder = root / KNOWN_DATASETS[name].folder
    if not folder.is_dir():
        pytest.skip(f"staged data set {name!r} not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def bundled_folder() -> Path:
    return bundled_path()
