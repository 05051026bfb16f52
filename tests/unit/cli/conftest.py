"""Fixtures of the CLI tests: the tiny rated catalogue on disk and runs fitted on it once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import BPR, rated_movies, run_config

from clrec.config import RunConfig
from clrec.experiment import run_experiment


@pytest.fixture(scope="session")
def movies_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rated catalogue saved as a dataset folder (a path every command accepts)."""
    return rated_movies().save(tmp_path_factory.mktemp("cli-data") / "movies")


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory, movies_dir: Path) -> dict[str, Path]:
    """Run folders of popularity, EASE and BPR on the same split of the catalogue."""
    root = tmp_path_factory.mktemp("cli-runs")
    models: dict[str, tuple[str, dict[str, Any]]] = {
        "popularity": ("popularity", {}),
        "ease": ("ease", {"reg_weight": 10.0}),
        "bpr": ("bpr", BPR),
    }
    for name, (model, params) in models.items():
        config = RunConfig.from_mapping(run_config(movies_dir, model, params))
        run_experiment(config, root / name)
    return {name: root / name for name in models}
