"""Shared fixtures for the service tests: tiny artifacts built once per session.

The same synthetic catalogue as ``test_artifact.py`` (60 users × 40 movies with a title, 1–2
genres and a studio; users prefer one genre), trained for a few epochs on CPU: a tags-only
clrec model with an EASE prior (it embeds new items from their fields) and a BPR model (no
content: new items and profile texts are refused).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clrec.config import RunConfig
from clrec.data.schema import Dataset
from clrec.experiment import run_experiment
from clrec.serving.artifact import export_artifact

# The service tests need the `serve` extra (FastAPI, uvicorn, SQLAlchemy, prometheus-client).
_SERVICE_PACKAGES = ("fastapi", "uvicorn", "sqlalchemy", "prometheus_client")
collect_ignore = (
    ["test_app.py", "test_security.py", "test_store.py"]
    if any(importlib.util.find_spec(name) is None for name in _SERVICE_PACKAGES)
    else []
)

N_USERS, N_ITEMS = 60, 40
GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]
STUDIOS = ["North", "South", "East", "West"]

CLREC: dict[str, Any] = {
    "embedding_size": 8,
    "content": {"modalities": ["tags"], "cache_dir": None},
    "prior": "ease",
    "prior_reg": 50.0,
    "similarity": "cosine",
    "temperature": 0.2,
    "epochs": 3,
    "batch_size": 32,
    "patience": 0,
    "seed": 0,
    "device": "cpu",
    "num_threads": 1,
    "progress": False,
}
BPR: dict[str, Any] = {
    "embedding_size": 8,
    "epochs": 2,
    "batch_size": 256,
    "device": "cpu",
    "num_threads": 1,
    "progress": False,
}


def movies_dataset() -> Dataset:
    """Users prefer one genre (user ``u`` likes movies ``i`` with ``i % 5 == u % 5``)."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(N_ITEMS):
        genres = [GENRES[i % len(GENRES)]]
        if i % 3 == 0:
            genres.append(GENRES[(i + 2) % len(GENRES)])
        items.append(
            {
                "id": f"m{i}",
                "title": f"Movie {i} ({1990 + i % 4})",
                "genres": "|".join(genres),
                "studio": STUDIOS[i % len(STUDIOS)],
            }
        )
    rows = []
    for u in range(N_USERS):
        liked = [i for i in range(N_ITEMS) if i % len(GENRES) == u % len(GENRES)]
        others = [i for i in range(N_ITEMS) if i not in liked]
        chosen = list(rng.choice(liked, 5, replace=False)) + list(
            rng.choice(others, 3, replace=False)
        )
        for t, i in enumerate(rng.permutation(chosen)):
            rows.append((f"u{u}", f"m{i}", 4.0, 1_000_000 + 60 * t))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return Dataset.from_external(
        "synthetic-movies",
        frame,
        item_content=pd.DataFrame(items),
        item_fields={"title": "text", "genres": "tags", "studio": "category"},
    )


def build_artifact(root: Path, model: str, params: dict[str, Any]) -> Path:
    """Train ``model`` on :func:`movies_dataset` under ``root`` and export its artifact."""
    data_dir = root / "data"
    if not data_dir.exists():
        movies_dataset().save(data_dir)
    config = RunConfig.from_mapping(
        {
            "data": {"name": str(data_dir)},
            "split": {"scheme": "cold-item", "ratios": [0.7, 0.1, 0.2], "seed": 1},
            "model": {"name": model, "params": params},
            "evaluation": {"ks": [5, 10], "progress": False},
            "report": False,
        }
    )
    run_dir = root / f"run-{model}"
    run_experiment(config, run_dir)
    return export_artifact(run_dir, root / f"artifact-{model}")


@pytest.fixture(scope="session")
def clrec_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tags-only clrec model with an EASE prior: it can embed new items."""
    return build_artifact(tmp_path_factory.mktemp("svc-clrec"), "clrec", CLREC)


@pytest.fixture(scope="session")
def bpr_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BPR model: vectors only, no content."""
    return build_artifact(tmp_path_factory.mktemp("svc-bpr"), "bpr", BPR)
