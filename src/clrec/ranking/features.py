"""The ranking stage's features: one documented list, one function for batch and service.

Every (user, candidate) row gets, in :func:`feature_names` order:

* per retriever ``r`` (:mod:`clrec.ranking.candidates`): ``r_score`` (its score of the
  candidate), ``r_rank`` (1-based rank in its list; ``per_retriever + 1`` if absent) and
  ``r_proposed`` (1 if it proposed the candidate, else 0);
* ``item_popularity`` / ``item_recent_popularity``: log(1 + interactions) in the history and
  in its newest share; ``item_age_days``: days from the item's first interaction to the
  history's last (NaN without timestamps or for an item never seen);
* ``user_activity``: log(1 + the user's history length);
* item-to-item co-occurrence with the user's latest items (the ItemKNN neighbours, when that
  retriever is on): ``knn_last`` (with the most recent item), ``knn_recent_mean`` (mean over
  the 5 most recent), ``knn_recent_max`` (max over the ``recent_items`` most recent);
* language-model similarity between the candidate's text vector and those of the user's
  ``recent_items`` most recent items (cosine): ``text_mean``, ``text_max``, ``text_last``
  (NaN without text vectors on either side);
* ``tag_overlap``: the mean, over the candidate's tags / categories, of the share of the
  user's recent items carrying that tag (NaN for a candidate without tags);
* ``click``: the fine-tuned click model's probability, when the stage has one.

:func:`user_features` computes one user's rows; :func:`batch_features` calls it for every
user of a :class:`~clrec.ranking.candidates.Candidates` table, so training, evaluation and
serving share the code (the parity test checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from clrec.errors import ClrecError
from clrec.ranking.candidates import Candidates, RetrieverName, recent_mask

ITEM_FEATURES = ("item_popularity", "item_recent_popularity", "item_age_days")
USER_FEATURES = ("user_activity",)
KNN_FEATURES = ("knn_last", "knn_recent_mean", "knn_recent_max")
_KNN_MEAN_ITEMS = 5
TEXT_FEATURES = ("text_mean", "text_max", "text_last")
TAG_FEATURES = ("tag_overlap",)
CLICK_FEATURE = "click"
SECONDS_PER_DAY = 86_400.0


def retriever_features(retrievers: Sequence[RetrieverName]) -> list[str]:
    """The three columns of each retriever, in order."""
    return [f"{r}_{part}" for r in retrievers for part in ("score", "rank", "proposed")]


def feature_names(retrievers: Sequence[RetrieverName], click: bool = False) -> list[str]:
    """Every feature column, in the order :func:`user_features` writes them."""
    names = [
        *retriever_features(retrievers),
        *ITEM_FEATURES,
        *USER_FEATURES,
        *KNN_FEATURES,
        *TEXT_FEATURES,
        *TAG_FEATURES,
    ]
    return [*names, CLICK_FEATURE] if click else names


@dataclass
class FeatureTables:
    """Per-item tables the features read, fitted on one history: popularity, recent
    popularity, first-seen time and the history's last time, unit text vectors ``(I, D)``
    (NaN rows: no text), tag multi-hot ``(I, T)``, and the ItemKNN neighbours ``(I, I)``
    (the retrievers' own matrix: not saved with the tables, attached when loaded)."""

    popularity: np.ndarray  # (I,) log1p counts
    recent: np.ndarray  # (I,) log1p counts in the newest share
    first_seen: np.ndarray  # (I,) seconds, NaN if never seen or no timestamps
    now: float  # the history's last timestamp (NaN without)
    text: np.ndarray | None  # (I, D) unit rows, NaN rows for items without text
    tags: np.ndarray | None  # (I, T) uint8 multi-hot
    recent_items: int = 20
    similarity: sp.csr_matrix | None = None  # (I, I) ItemKNN neighbours

    @classmethod
    def fit(
        cls,
        n_items: int,
        history: pd.DataFrame,
        text: np.ndarray | None,
        tags: np.ndarray | None,
        recent_share: float,
        recent_items: int = 20,
        similarity: sp.csr_matrix | None = None,
    ) -> FeatureTables:
        """Tables from ``history`` (``user``, ``item``, optionally ``timestamp``), the
        items' content: ``text`` ``(I, D)`` and ``tags`` ``(I, T)`` (NaN rows: missing),
        and the ItemKNN neighbours fitted on the same history."""
        items = history["item"].to_numpy(dtype=np.int64)
        counts = np.bincount(items, minlength=n_items).astype(np.float32)
        recent = np.bincount(items[recent_mask(history, recent_share)], minlength=n_items).astype(
            np.float32
        )
        first_seen = np.full(n_items, np.nan)
        now = float("nan")
        if "timestamp" in history.columns and len(history):
            stamps = history["timestamp"].to_numpy(dtype=np.float64)
            first = pd.Series(stamps).groupby(items).min()
            first_seen[first.index.to_numpy()] = first.to_numpy()
            now = float(np.nanmax(stamps))
        return cls(
            np.log1p(counts),
            np.log1p(recent),
            first_seen,
            now,
            None if text is None else unit_rows(text),
            None if tags is None else (np.nan_to_num(tags, nan=0.0) > 0).astype(np.uint8),
            recent_items,
            None if similarity is None else similarity.tocsr(),
        )

    @property
    def n_items(self) -> int:
        return len(self.popularity)

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "popularity": self.popularity,
            "recent": self.recent,
            "first_seen": self.first_seen,
            "now": np.array(self.now),
            "recent_items": np.array(self.recent_items),
        }
        if self.text is not None:
            arrays["text"] = self.text.astype(np.float16)
        if self.tags is not None:
            arrays["tags"] = self.tags
        np.savez(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path, similarity: sp.csr_matrix | None = None) -> FeatureTables:
        """Read :meth:`save`'s file; ``similarity``: the ItemKNN neighbours to attach."""
        with np.load(path) as saved:
            return cls(
                saved["popularity"],
                saved["recent"],
                saved["first_seen"],
                float(saved["now"]),
                saved["text"].astype(np.float32) if "text" in saved else None,
                saved.get("tags"),
                int(saved["recent_items"]),
                similarity,
            )


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero and NaN rows become NaN)."""
    vectors = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (I, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, vectors / norms, np.nan).astype(np.float32)


def user_features(
    tables: FeatureTables,
    history: np.ndarray,
    items: np.ndarray,
    scores: np.ndarray,
    ranks: np.ndarray,
    per_retriever: int,
    click: np.ndarray | None = None,
) -> np.ndarray:
    """One user's feature rows ``(C, F)``: ``history`` ``(H,)`` the user's item rows oldest
    first, ``items`` ``(C,)`` the candidates with the retrievers' ``scores`` / ``ranks``
    ``(C, R)``, ``click`` ``(C,)`` the click model's probabilities (None: no such column).
    Item rows beyond the tables (items added after the stage was built) read as unseen."""
    n_candidates = len(items)
    known = items < tables.n_items  # (C,)
    safe = np.where(known, items, 0)

    def per_item(table: np.ndarray, missing: float) -> np.ndarray:
        return np.where(known, table[safe], missing).astype(np.float32)

    proposed = (ranks <= per_retriever).astype(np.float32)  # (C, R)
    retriever_block = np.stack([scores, ranks, proposed], axis=2).reshape(n_candidates, -1)
    age = (tables.now - per_item(tables.first_seen, np.nan)) / SECONDS_PER_DAY  # (C,)
    item_block = np.stack(
        [per_item(tables.popularity, 0.0), per_item(tables.recent, 0.0), age], axis=1
    )
    activity = np.full((n_candidates, 1), np.log1p(len(history)), dtype=np.float32)
    recent = history[-tables.recent_items :] if tables.recent_items else history[:0]
    recent = recent[recent < tables.n_items]  # (h,) rows the tables know
    knn_block = _knn_similarity(tables, recent, known, safe)  # (C, 3)
    text_block = _text_similarity(tables, recent, known, safe)  # (C, 3)
    tag_block = _tag_overlap(tables, recent, known, safe)  # (C, 1)
    blocks = [retriever_block, item_block, activity, knn_block, text_block, tag_block]
    if click is not None:
        blocks.append(np.asarray(click, dtype=np.float32).reshape(-1, 1))
    return np.concatenate(blocks, axis=1).astype(np.float32)


def _knn_similarity(
    tables: FeatureTables, recent: np.ndarray, known: np.ndarray, safe: np.ndarray
) -> np.ndarray:
    """ItemKNN similarity ``(C, 3)`` of each candidate with the most recent item, mean over
    the few most recent, max over ``recent`` (NaN without neighbours or history)."""
    out = np.full((len(safe), 3), np.nan, dtype=np.float32)
    if tables.similarity is None or not len(recent) or not len(safe):
        return out
    block = tables.similarity[recent][:, safe].toarray()  # (h, C)
    block[:, ~known] = np.nan
    out[:, 0] = block[-1]
    out[:, 1] = block[-_KNN_MEAN_ITEMS:].mean(axis=0)
    out[:, 2] = block.max(axis=0)
    return out


def _text_similarity(
    tables: FeatureTables, recent: np.ndarray, known: np.ndarray, safe: np.ndarray
) -> np.ndarray:
    """Mean, max and most-recent cosine ``(C, 3)`` of each candidate with ``recent``."""
    out = np.full((len(safe), 3), np.nan, dtype=np.float32)
    if tables.text is None or not len(recent) or not len(safe):
        return out
    candidates = tables.text[safe]  # (C, D)
    candidates[~known] = np.nan
    profile = tables.text[recent]  # (h, D)
    profile = profile[~np.isnan(profile).any(axis=1)]
    if not len(profile):
        return out
    cosine = candidates @ profile.T  # (C, h), NaN rows for candidates without text
    out[:, 0] = cosine.mean(axis=1)
    out[:, 1] = cosine.max(axis=1)
    out[:, 2] = cosine[:, -1]
    return out


def _tag_overlap(
    tables: FeatureTables, recent: np.ndarray, known: np.ndarray, safe: np.ndarray
) -> np.ndarray:
    """Per candidate ``(C, 1)``: the mean over its tags of the share of ``recent`` items
    with that tag (NaN: a candidate without tags, or no tag table)."""
    out = np.full((len(safe), 1), np.nan, dtype=np.float32)
    if tables.tags is None or not len(safe):
        return out
    profile = (  # (T,) share of the recent items with each tag
        tables.tags[recent].mean(axis=0, dtype=np.float32)
        if len(recent)
        else np.zeros(tables.tags.shape[1], dtype=np.float32)
    )
    rows = tables.tags[safe].astype(np.float32)  # (C, T)
    counts = rows.sum(axis=1)  # (C,)
    shared = rows @ profile  # (C,)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, 0] = np.where(known & (counts > 0), shared / counts, np.nan)
    return out


def feature_columns(available: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """Positions of the ``wanted`` feature names among the ``available`` columns; a name
    the columns lack is a clear error."""
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise ClrecError(f"the ranker reads features this stage lacks: {', '.join(missing)}")
    return [list(available).index(name) for name in wanted]


def batch_features(
    tables: FeatureTables,
    histories: Sequence[np.ndarray],
    candidates: Candidates,
    per_retriever: int,
    click: np.ndarray | None = None,
) -> np.ndarray:
    """Feature rows ``(N, F)`` of every candidate: ``histories[u]`` is the ``u``-th user's
    item rows, oldest first; ``click`` ``(N,)`` the click model's probabilities."""
    parts = []
    for position in range(len(candidates.users)):
        rows = candidates.of(position)
        parts.append(
            user_features(
                tables,
                histories[position],
                candidates.items[rows],
                candidates.scores[rows],
                candidates.ranks[rows],
                per_retriever,
                None if click is None else click[rows],
            )
        )
    width = 3 * candidates.scores.shape[1] + len(feature_names(())) + (click is not None)
    return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)


def ordered_histories(history: pd.DataFrame, users: np.ndarray) -> list[np.ndarray]:
    """Each of ``users``' item rows in ``history``, oldest first (by timestamp, then row
    order), a repeated item at its newest place only."""
    frame = history[["user", "item"]].copy()
    frame["order"] = np.arange(len(frame))
    keys = ["user", "timestamp", "order"] if "timestamp" in history.columns else ["user", "order"]
    if "timestamp" in history.columns:
        frame["timestamp"] = history["timestamp"].to_numpy()
    frame = frame.sort_values(keys, kind="stable")
    frame = frame.drop_duplicates(["user", "item"], keep="last")
    grouped = {
        int(u): g.to_numpy(dtype=np.int64) for u, g in frame.groupby("user", sort=False)["item"]
    }
    empty = np.zeros(0, dtype=np.int64)
    return [grouped.get(int(u), empty) for u in users]


__all__ = [
    "CLICK_FEATURE",
    "KNN_FEATURES",
    "FeatureTables",
    "batch_features",
    "feature_columns",
    "feature_names",
    "ordered_histories",
    "retriever_features",
    "user_features",
]
