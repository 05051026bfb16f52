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

import pytest
from movies import CLREC, EMBEDDING, movies_dataset, train_run

from clrec.serving.artifact import export_artifact

# The service tests need the `serve` extra (FastAPI, uvicorn, SQLAlchemy, prometheus-client).
_SERVICE_PACKAGES = ("fastapi", "uvicorn", "sqlalchemy", "prometheus_client")
collect_ignore = (
    ["test_app.py", "test_security.py", "test_store.py"]
    if any(importlib.util.find_spec(name) is None for name in _SERVICE_PACKAGES)
    else []
)


def build_artifact(root: Path, model: str, params: dict[str, Any]) -> Path:
    """Train ``model`` on :func:`movies_dataset` under ``root`` and export its artifact."""
    data_dir = root / "data"
    if not data_dir.exists():
        movies_dataset().save(data_dir)
    run_dir = train_run(root / f"run-{model}", data_dir, model, params)
    return export_artifact(run_dir, root / f"artifact-{model}")


@pytest.fixture(scope="session")
def clrec_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tags-only clrec model with an EASE prior: it can embed new items."""
    return build_artifact(tmp_path_factory.mktemp("svc-clrec"), "clrec", CLREC)


@pytest.fixture(scope="session")
def bpr_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BPR model: vectors only, no content."""
    return build_artifact(tmp_path_factory.mktemp("svc-bpr"), "bpr", EMBEDDING)


@pytest.fixture(scope="session")
def ranked_artifact(tmp_path_factory: pytest.TempPathFactory, clrec_artifact: Path) -> Path:
    """The clrec artifact's run exported again with a ranking stage: LambdaRank over the
    union of four retrievers' top 8, with the packaged MiniLM's title vectors (its trees are
    few; the tests check that the service applies the stage exactly, not that it ranks
    well)."""
    pytest.importorskip("lightgbm")
    from clrec.ranking.candidates import CandidateConfig
    from clrec.ranking.folds import RankerSettings
    from clrec.ranking.ltr import LambdaRankConfig
    from clrec.ranking.pipeline import train_ranker

    root = tmp_path_factory.mktemp("svc-ranked")
    run = clrec_artifact.parent / "run-clrec"
    settings = RankerSettings(
        candidates=CandidateConfig(per_retriever=20, knn_neighbours=10),
        lambdarank=LambdaRankConfig(rounds=20, min_data_in_leaf=5, early_stopping=5),
        ks=(5,),
        bootstrap=20,
        ablation=False,
        cache_dir=None,
        progress=False,
    )
    train_ranker(run, root / "ranker", settings)
    return export_artifact(run, root / "artifact", ranker=root / "ranker")
