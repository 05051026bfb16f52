"""The two folds of the ranking stage and what builds them.

A fold is "what the retrievers may read → what they must find" for every user with a label
interaction (see :mod:`clrec.ranking.pipeline`): the cheap retrievers and the feature tables
are fitted on the fold's history alone, the run's model reads the history beyond
``split.train`` as events, and each candidate's label says whether it is one of the user's
label interactions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from clrec.data.matrix import interaction_matrix
from clrec.data.schema import Dataset
from clrec.data.splits import Split
from clrec.encoders.featurizer import ContentConfig, ItemFeaturizer, offered_modalities
from clrec.errors import ClrecError
from clrec.models.base import Recommender
from clrec.models.registry import load_model
from clrec.ranking.candidates import (
    CandidateConfig,
    Candidates,
    Retrievers,
    model_scores_with,
)
from clrec.ranking.click import ClickSettings, click_probabilities
from clrec.ranking.cross_encoder import CrossEncoderConfig, CrossEncoderRanker
from clrec.ranking.features import (
    FeatureTables,
    batch_features,
    feature_columns,
    feature_names,
    ordered_histories,
)
from clrec.ranking.ltr import LambdaRankConfig, LambdaRanker
from clrec.ranking.pairs import PairConfig
from clrec.ranking.texts import UserContextConfig


@dataclass(frozen=True)
class RankerSettings:
    """Everything :func:`train_ranker` needs besides the run: the candidates, the
    LambdaRank model, the language-model content (``text_model`` None: packaged MiniLM;
    encoded vectors cached in ``cache_dir``), the optional click model, and the evaluation
    (metrics at ``ks``, ``bootstrap`` resamples, the ablation on or off)."""

    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    lambdarank: LambdaRankConfig = field(default_factory=LambdaRankConfig)
    recent_items: int = 20
    click: ClickSettings | None = None
    ks: tuple[int, ...] = (10, 20)
    bootstrap: int = 1000
    ablation: bool = True
    text_model: str | None = None
    cache_dir: str | None = "~/.cache/clrec/embeddings"
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "ks", tuple(self.ks))
        depth = self.candidates.per_retriever
        if not self.ks or any(k < 1 or k > depth for k in self.ks):
            raise ClrecError(f"ks must lie in 1..per_retriever ({depth}), got {list(self.ks)}")
        if self.recent_items < 1:
            raise ClrecError(f"recent_items must be at least 1, got {self.recent_items}")
        if self.bootstrap < 1:
            raise ClrecError(f"bootstrap must be at least 1, got {self.bootstrap}")

    def to_plain(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> RankerSettings:
        """Inverse of :meth:`to_plain` (tuples restored from JSON lists)."""
        click = data.get("click")
        if click is not None:
            click = ClickSettings(
                PairConfig(**click["pairs"]),
                UserContextConfig(**click["context"]),
                CrossEncoderConfig(**click["model"]),  # it makes lora_targets a tuple again
            )
        plain = {k: v for k, v in data.items() if k not in ("candidates", "lambdarank", "click")}
        return cls(
            candidates=CandidateConfig(**data["candidates"]),
            lambdarank=LambdaRankConfig(**data["lambdarank"]),
            click=click,
            **plain,
        )


@dataclass
class RunParts:
    """A run folder's data set, split and retrieval model."""

    root: Path
    dataset: Dataset
    split: Split
    retriever: Recommender

    @classmethod
    def load(cls, run_dir: str | Path) -> RunParts:
        root = Path(run_dir)
        for part in ("dataset", "split", "model"):
            if not (root / part).is_dir():
                raise ClrecError(
                    f"{root}: not a clrec run folder (no {part}/); train one with clrec train"
                )
        return cls(
            root,
            Dataset.load(root / "dataset"),
            Split.load(root / "split"),
            load_model(root / "model"),
        )


@dataclass
class Content:
    """The items' language-model text vectors and tag multi-hot (None where the data set
    offers none)."""

    text: np.ndarray | None  # (I, D)
    tags: np.ndarray | None  # (I, T)

    @classmethod
    def encode(cls, dataset: Dataset, settings: RankerSettings) -> Content:
        offered = sorted(offered_modalities(dataset) & {"text", "tags"})
        if not offered:
            return cls(None, None)
        config = ContentConfig(
            modalities=tuple(offered), cache_dir=settings.cache_dir, text_model=settings.text_model
        )
        featurizer = ItemFeaturizer.fit(dataset, config)
        content, _ = featurizer.encode_dataset(dataset, progress=settings.progress)
        return cls(content.get("text"), content.get("tags"))


@dataclass
class Fold:
    """One fold's label users, their candidates and feature rows, and the labels."""

    users: np.ndarray  # (U,)
    candidates: Candidates
    features: np.ndarray  # (N, F)
    labels: np.ndarray  # (N,) 1: a label interaction
    truth: list[set[int]]  # (U,) each user's label items
    names: list[str]
    seen: sp.csr_matrix  # (all users, I) the history, binary: what is never proposed
    retrievers: Retrievers
    tables: FeatureTables
    histories: list[np.ndarray]


def build_fold(
    parts: RunParts,
    content: Content,
    later: pd.DataFrame | None,
    labels: pd.DataFrame,
    settings: RankerSettings,
    click: CrossEncoderRanker | None = None,
) -> Fold:
    """Candidates, features and labels of every user with a label interaction; the history
    is ``split.train`` plus ``later`` (None: nothing), the retrievers and tables are fitted
    on it alone, and ``later`` reaches the run's model as events."""
    dataset = parts.dataset
    config = settings.candidates
    history = parts.split.train
    if later is not None:
        history = pd.concat([history, later], ignore_index=True)
    users = np.unique(labels["user"].to_numpy(dtype=np.int64))  # (U,)
    retrievers, tables = fit_tables(dataset, history, content, settings)
    retrievers.model_scores = model_scores_with(
        parts.retriever, later if later is not None else history.iloc[:0]
    )
    seen = interaction_matrix(history, dataset.n_users, dataset.n_items)
    candidates = retrievers.candidates(users, seen, seen)
    histories = ordered_histories(history, users)
    probabilities = None
    if click is not None and settings.click is not None:
        probabilities = click_probabilities(
            click,
            dataset,
            history,
            users,
            candidates.offsets,
            candidates.items,
            settings.click.context,
        )
    features = batch_features(tables, histories, candidates, config.per_retriever, probabilities)
    keys = labels["user"].to_numpy(dtype=np.int64) * dataset.n_items + labels["item"].to_numpy(
        dtype=np.int64
    )
    owners = np.repeat(users, np.diff(candidates.offsets))  # (N,)
    found = np.isin(owners * dataset.n_items + candidates.items, keys).astype(np.float32)
    truth_frame = labels.groupby("user")["item"].agg(lambda s: set(s.tolist()))
    return Fold(
        users,
        candidates,
        features,
        found,
        [truth_frame.get(int(u), set()) for u in users],
        feature_names(config.retrievers, click=probabilities is not None),
        seen,
        retrievers,
        tables,
        histories,
    )


def fit_tables(
    dataset: Dataset, history: pd.DataFrame, content: Content, settings: RankerSettings
) -> tuple[Retrievers, FeatureTables]:
    """The retrievers and the feature tables (with the ItemKNN neighbours) fitted on
    ``history``: the one recipe of the training folds, the exported stage and its parity
    test."""
    retrievers = Retrievers.fit(dataset, history, settings.candidates)
    tables = FeatureTables.fit(
        dataset.n_items,
        history,
        content.text,
        content.tags,
        settings.candidates.recent_share,
        settings.recent_items,
        retrievers.similarity,
    )
    return retrievers, tables


def fit_on(fold: Fold, names: list[str], settings: RankerSettings) -> LambdaRanker:
    """LambdaRank on the fold's users with at least one label among their candidates,
    reading the columns ``names`` (a subset of the fold's)."""
    columns = feature_columns(fold.names, names)
    counts = np.diff(fold.candidates.offsets)  # (U,)
    positives = fold.candidates.per_user(fold.labels)  # (U,)
    useful = (counts > 0) & (positives > 0)  # (U,) groups with a positive
    if not useful.any():
        raise ClrecError(
            "no user has a held-out interaction among the candidates: nothing to learn from"
        )
    rows = np.repeat(useful, counts)  # (N,)
    return LambdaRanker.fit(
        fold.features[rows][:, columns],
        fold.labels[rows],
        counts[useful],
        names,
        settings.lambdarank,
    )


__all__ = [
    "Content",
    "Fold",
    "RankerSettings",
    "RunParts",
    "build_fold",
    "fit_on",
    "fit_tables",
]
