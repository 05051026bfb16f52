"""Export a finished run as a serving artifact (the layout is in :mod:`clrec.serving.artifact`).

The artifact is written to a temporary folder beside ``out_dir`` and renamed into place at the
end, so a crash never leaves a half artifact behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

import clrec
from clrec.data.matrix import interaction_matrix
from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.models.base import Recommender
from clrec.models.embedding import EmbeddingModel
from clrec.models.registry import load_model
from clrec.serving.artifact.layout import (
    CATALOGUE_FILE,
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    ITEMS_FILE,
    MANIFEST_FILE,
    MODEL_DIR,
    RANKER_DIR,
    REPORT_FILE,
    SEEN_FILE,
    USERS_FILE,
    artifact_files,
    sha256,
    write_json,
)


def export_artifact(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    ranker: str | Path | None = None,
) -> Path:
    """Write the serving artifact of the run in ``run_dir`` to ``out_dir``; returns ``out_dir``.

    ``ranker``: a ``clrec rank train`` folder trained on this run's candidates; its serving
    form (:func:`clrec.ranking.stage.write_stage`) goes into ``ranker/`` and the service can
    then re-rank with it.

    Refuses models that are not embedding models, a model whose vectors do not fit the run's
    data set or are not finite, a non-empty ``out_dir`` unless ``overwrite``, and an
    ``out_dir`` that is or holds the run itself.
    """
    run = Path(run_dir)
    out = Path(out_dir)
    _check_run(run)
    _check_out(out, run, overwrite)
    model = embedding_model(load_model(run / MODEL_DIR), str(run))
    dataset = Dataset.load(run / "dataset")
    _check_vectors(model, dataset, run)
    metrics = json.loads((run / "metrics.json").read_text())
    seen = interaction_matrix(dataset.interactions, dataset.n_users, dataset.n_items)  # (U, I)
    featurizer = model.featurizer

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        write_json(staging / USERS_FILE, dataset.users["id"].astype(str).tolist())
        write_json(staging / ITEMS_FILE, dataset.items["id"].astype(str).tolist())
        dataset.items.to_parquet(staging / CATALOGUE_FILE, index=False)
        sp.save_npz(staging / SEEN_FILE, seen)
        shutil.copytree(run / MODEL_DIR, staging / MODEL_DIR)
        shutil.copyfile(run / "config.yaml", staging / CONFIG_FILE)
        if (run / REPORT_FILE).is_file():  # offline HTML: aggregate metrics, plots, config
            shutil.copyfile(run / REPORT_FILE, staging / REPORT_FILE)
        stage = None if ranker is None else _ranker_stage(Path(ranker), run, dataset, staging)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "clrec_version": clrec.__version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": model.name,
            "dataset": dataset.name,
            "n_users": model.n_users,
            "n_items": model.n_items,
            "dim": int(model.item_vectors().shape[1]),
            "similarity": model.similarity,
            "content": [] if featurizer is None else featurizer.names,
            "item_fields": dict(dataset.item_fields),
            "metrics": metrics.get("test", {}),
            "ranker": stage,
            "files": {rel: sha256(staging / rel) for rel in artifact_files(staging)},
        }
        write_json(staging / MANIFEST_FILE, manifest)  # last: its presence marks completion
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def embedding_model(model: Recommender, where: str) -> EmbeddingModel:
    """``model`` as an :class:`EmbeddingModel`, or a clear refusal."""
    if not isinstance(model, EmbeddingModel):
        raise ClrecError(
            f"{where}: a {model.name!r} model cannot be exported or served: an artifact serves "
            "embedding "
            "models (bpr, lightgcn, clrec), which rank items by user · item vectors a vector "
            "index can search; popularity, itemknn and ease score from counts or an item–item "
            "matrix and have no such vectors"
        )
    return model


def _check_vectors(model: EmbeddingModel, dataset: Dataset, run: Path) -> None:
    """The model's vectors fit the run's data set and are finite."""
    users, items = model.user_vectors(), model.item_vectors()  # (U, D), (I, D)
    if users.shape[0] != dataset.n_users or items.shape[0] != dataset.n_items:
        raise ClrecError(
            f"{run}: the model holds {users.shape[0]} users × {items.shape[0]} items but the "
            f"run's data set has {dataset.n_users} × {dataset.n_items}"
        )
    if users.shape[1] != items.shape[1]:
        raise ClrecError(f"{run}: user and item vectors differ in width")
    for what, vectors in (("user", users), ("item", items)):
        if not np.isfinite(vectors).all():
            raise ClrecError(f"{run}: the model's {what} vectors hold NaN or infinite values")


def _ranker_stage(ranker: Path, run: Path, dataset: Dataset, staging: Path) -> dict[str, Any]:
    """Write the ranking stage into ``staging/ranker``; the ranker must come from this run."""
    from clrec.ranking.pipeline import SETTINGS_FILE
    from clrec.ranking.stage import write_stage

    settings_path = ranker / SETTINGS_FILE
    if not settings_path.is_file():
        raise ClrecError(
            f"{ranker}: not a ranker folder (no {SETTINGS_FILE}); see clrec rank train"
        )
    trained_on = Path(json.loads(settings_path.read_text())["run"])
    if trained_on.resolve() != run.resolve():
        raise ClrecError(
            f"{ranker}: the ranker was trained on {trained_on}'s candidates, not {run}'s; train "
            "one on this run with clrec rank train"
        )
    return write_stage(ranker, dataset, staging / RANKER_DIR)


def _check_run(run: Path) -> None:
    """Refuse a folder that is not a finished clrec run."""
    needed = ("config.yaml", "metrics.json", "dataset/dataset.json", "model/model.json")
    missing = [name for name in needed if not (run / name).is_file()]
    if missing:
        raise ClrecError(f"{run}: not a finished clrec run folder (missing {', '.join(missing)})")


def _check_out(out: Path, run: Path, overwrite: bool) -> None:
    """``out`` may be new, empty, or (with ``overwrite``) a folder that is not the run's own."""
    if out.exists() and not out.is_dir():
        raise ClrecError(f"{out}: exists and is not a folder")
    target, source = out.resolve(), run.resolve()
    if target == source or target in source.parents:
        raise ClrecError(f"{out}: is (or holds) the run folder {run}; export elsewhere")
    model_dir = source / MODEL_DIR
    if target == model_dir or model_dir in target.parents:
        raise ClrecError(f"{out}: lies inside the run's model folder, which it copies")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ClrecError(f"{out}: is not empty; pass overwrite=True to replace it")


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename the finished ``staging`` folder to ``out``, moving any old ``out`` aside first."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
