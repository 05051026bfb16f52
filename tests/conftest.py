"""Shared fixtures: where the staged real data sets live, the bundled one, a PostgreSQL
database, and a served model trained on the bundled one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


POSTGRES_ENV = "CLREC_TEST_POSTGRES_URL"
"""A throw-away PostgreSQL database for the store tests (`.ci/run` starts one with
``scripts/postgres.sh``); every table in it is dropped before each test that uses it."""


@pytest.fixture
def postgres_url() -> str:
    """The empty PostgreSQL database of ``$CLREC_TEST_POSTGRES_URL``; skips without one."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(
            f"no PostgreSQL test database: set {POSTGRES_ENV}=postgresql+psycopg://user@host/db "
            "(an empty, throw-away database; `bash scripts/postgres.sh start` starts one)"
        )
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        tables = sa.MetaData()
        tables.reflect(engine)
        tables.drop_all(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def ml_small_served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short tags-only clrec run on the bundled ml-latest-small with its HTML report,
    exported: trained once per session for every test that serves it (read only)."""
    for package in ("fastapi", "uvicorn", "sqlalchemy", "prometheus_client"):
        pytest.importorskip(package, reason="the service needs the serve extra")
    from live_server import ml_small_artifact

    return ml_small_artifact(tmp_path_factory.mktemp("ml-small-served"), report=True)


@pytest.fixture
def servers() -> Iterator[list[Any]]:
    """``clrec serve`` processes a test started (:class:`live_server.Server`), stopped after."""
    started: list[Any] = []
    yield started
    for server in started:
        server.stop()
