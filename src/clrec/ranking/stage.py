"""The ranking stage packaged for serving: the LambdaRank model and everything its features read.

:func:`write_stage` puts into a folder (inside a serving artifact) the trained LambdaRank
model, the cheap retrievers and the feature tables refitted on **all** the run's
interactions (serving ranks after the last interaction the run knows), and each known
user's item history, oldest first. :class:`RerankStage` loads it and ranks one user's
candidates with the same functions the training used (:mod:`clrec.ranking.candidates`,
:mod:`clrec.ranking.features`). The run's model stays the service's own: the stage gets its
scores from the caller.

Items added through the API after export are not candidates of the stage (its tables and
retrievers know the exported catalogue); they still reach users through plain retrieval.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.ranking.candidates import CandidateConfig, Retrievers
from clrec.ranking.features import (
    CLICK_FEATURE,
    FeatureTables,
    feature_columns,
    feature_names,
    ordered_histories,
    user_features,
)
from clrec.ranking.folds import Content, RankerSettings, fit_tables
from clrec.ranking.ltr import LambdaRanker
from clrec.ranking.pipeline import RANKER_DIR, SETTINGS_FILE

STAGE_FILE = "stage.json"
TABLES_FILE = "tables.npz"
RETRIEVERS_FILE = "retrievers.npz"
HISTORIES_FILE = "histories.parquet"
MODEL_DIR = "model"


def write_stage(ranker_dir: str | Path, dataset: Dataset, out: str | Path) -> dict[str, Any]:
    """Write the serving form of the ranker in ``ranker_dir`` (a ``clrec rank train`` folder)
    for ``dataset`` (the run's, all interactions) into ``out``; returns its summary."""
    root = Path(ranker_dir)
    if not (root / SETTINGS_FILE).is_file() or not (root / RANKER_DIR).is_dir():
        raise ClrecError(f"{root}: not a ranker folder (no {SETTINGS_FILE}); see clrec rank train")
    saved = json.loads((root / SETTINGS_FILE).read_text())
    settings = RankerSettings.from_plain(saved["settings"])
    ranker = LambdaRanker.load(root / RANKER_DIR)
    if CLICK_FEATURE in ranker.features:
        raise ClrecError(
            f"{root}: this ranker reads the click model's probability, which the service does "
            "not compute; train the stage without --click-model to serve it"
        )
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(root / RANKER_DIR, target / MODEL_DIR)
    history = dataset.interactions
    content = Content.encode(dataset, settings)
    retrievers, tables = fit_tables(dataset, history, content, settings)
    retrievers.save(target / RETRIEVERS_FILE)
    tables.save(target / TABLES_FILE)  # without the neighbours: the retrievers', attached at load
    users = np.arange(dataset.n_users, dtype=np.int64)
    pd.DataFrame(
        {
            "id": dataset.users["id"].astype(str),
            "items": [h.astype(np.int32) for h in ordered_histories(history, users)],
        }
    ).to_parquet(target / HISTORIES_FILE, index=False)
    summary = {
        "candidates": settings.to_plain()["candidates"],
        "features": ranker.features,
        "items": dataset.n_items,
        "history": ranker.history,
    }
    (target / STAGE_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


@dataclass
class RerankStage:
    """A loaded ranking stage: candidates, features and LambdaRank scores for one user."""

    ranker: LambdaRanker
    retrievers: Retrievers
    tables: FeatureTables
    histories: dict[str, np.ndarray]  # known user id -> item rows, oldest first
    columns: list[int]  # the ranker's features among the stage's columns

    @classmethod
    def load(cls, folder: str | Path) -> RerankStage:
        """Load :func:`write_stage`'s folder; anything missing or damaged is a clear error."""
        root = Path(folder)
        try:
            summary = json.loads((root / STAGE_FILE).read_text())
            config = CandidateConfig(**summary["candidates"])
            histories = pd.read_parquet(root / HISTORIES_FILE)
            retrievers = Retrievers.load(root / RETRIEVERS_FILE, config)
            tables = FeatureTables.load(root / TABLES_FILE, retrievers.similarity)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ClrecError(f"{root}: unreadable ranking stage: {error}") from error
        ranker = LambdaRanker.load(root / MODEL_DIR)
        if tables.n_items != retrievers.n_items:
            raise ClrecError(f"{root}: the stage's tables and retrievers disagree on the items")
        try:
            columns = feature_columns(feature_names(config.retrievers), ranker.features)
        except ClrecError as error:
            raise ClrecError(f"{root}: {error}") from None
        return cls(
            ranker,
            retrievers,
            tables,
            {
                str(user): np.asarray(items, dtype=np.int64)
                for user, items in zip(histories["id"], histories["items"], strict=True)
            },
            columns,
        )

    @property
    def n_items(self) -> int:
        """Items of the exported catalogue (rows ``0 .. n_items - 1``)."""
        return self.tables.n_items

    @property
    def depth(self) -> int:
        """Candidates each retriever proposes."""
        return self.retrievers.config.per_retriever

    def history(self, user_id: str, later: np.ndarray) -> np.ndarray:
        """The user's item rows oldest first: the exported history, then ``later`` (rows
        recorded since, in the given order), each item once at its newest place."""
        stored = self.histories.get(user_id, np.zeros(0, dtype=np.int64))
        later = later[(later >= 0) & (later < self.n_items)]
        if not len(later):
            return stored
        joined = np.concatenate([stored, later])
        _, last = np.unique(joined[::-1], return_index=True)  # newest occurrence of each
        keep = np.sort(len(joined) - 1 - last)
        return joined[keep]

    def rank(
        self, model_scores: np.ndarray, history: np.ndarray, exclude: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The stage's candidates ``(C,)`` for one user and their LambdaRank scores
        ``(C,)``: ``model_scores`` ``(n_items,)`` the run's model over the exported catalogue,
        ``history`` ``(H,)`` (:meth:`history`), ``exclude`` ``(E,)`` rows never proposed."""
        exclude = exclude[(exclude >= 0) & (exclude < self.n_items)]
        found = self.retrievers.user_candidates(model_scores, history, exclude)
        rows = user_features(
            self.tables, history, found.items, found.scores, found.ranks, self.depth
        )  # (C, F)
        return found.items, self.ranker.predict(rows[:, self.columns])


__all__ = ["RerankStage", "write_stage"]
