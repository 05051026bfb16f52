"""The ranking stage's features (clrec.ranking.features) by hand on a three-item catalogue:
popularity, recency, age, activity, text similarities and tag overlap, items the tables do
not know, the batch rows equal to one user's, and a save / load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from clrec.ranking.candidates import Candidates
from clrec.ranking.features import (
    FeatureTables,
    batch_features,
    feature_names,
    ordered_histories,
    user_features,
)

DAY = 86_400.0


def tables() -> FeatureTables:
    history = pd.DataFrame(
        {
            "user": [0, 0, 1, 1, 1],
            "item": [0, 1, 0, 2, 0],
            "timestamp": [0.0, DAY, 2 * DAY, 9 * DAY, 10 * DAY],
        }
    )
    text = np.array([[1.0, 0.0], [0.0, 2.0], [np.nan, np.nan]], dtype=np.float32)  # item 2: none
    tags = np.array([[1, 1, 0], [0, 1, 0], [np.nan] * 3], dtype=np.float32)  # item 2: no tags
    return FeatureTables.fit(3, history, text, tags, recent_share=0.2, recent_items=2)


def test_tables_by_hand() -> None:
    found = tables()
    np.testing.assert_allclose(found.popularity, np.log1p([3, 1, 1]))
    # newest 20 % of the 10-day span: days ≥ 8, rows (1, 2, day 9) and (1, 0, day 10)
    np.testing.assert_allclose(found.recent, np.log1p([1, 0, 1]))
    np.testing.assert_allclose(found.first_seen, [0.0, DAY, 9 * DAY])
    assert found.now == 10 * DAY
    assert found.text is not None and np.isnan(found.text[2]).all()
    np.testing.assert_allclose(found.text[1], [0.0, 1.0])  # unit rows


def test_one_users_rows_by_hand() -> None:
    found = tables()
    history = np.array([0, 2, 1])  # oldest first; recent_items = 2: items 2 and 1
    items = np.array([0, 1, 2, 7])  # 7: not in the tables (added later)
    scores = np.array([[0.5, 1.0], [0.4, 0.0], [0.3, 2.0], [0.2, 0.0]], dtype=np.float32)
    ranks = np.array([[1, 3], [2, 3], [3, 1], [4, 3]], dtype=np.float32)  # per_retriever 2
    rows = user_features(found, history, items, scores, ranks, per_retriever=2)
    names = feature_names(("model", "popular"))
    assert rows.shape == (4, len(names))
    column = {name: rows[:, i] for i, name in enumerate(names)}
    np.testing.assert_allclose(column["model_proposed"], [1, 1, 0, 0])
    np.testing.assert_allclose(column["popular_proposed"], [0, 0, 1, 0])
    np.testing.assert_allclose(column["model_rank"], [1, 2, 3, 4])
    np.testing.assert_allclose(column["item_popularity"], [*np.log1p([3, 1, 1]), 0])
    np.testing.assert_allclose(column["item_age_days"], [10, 9, 1, np.nan])
    np.testing.assert_allclose(column["user_activity"], np.log1p(3))
    # recent items with text: item 1 only (item 2 has none) → cosine with (0, 1)
    np.testing.assert_allclose(column["text_mean"], [0, 1, np.nan, np.nan])
    np.testing.assert_allclose(column["text_max"], [0, 1, np.nan, np.nan])
    np.testing.assert_allclose(column["text_last"], [0, 1, np.nan, np.nan])
    # recent items 2 (no tags) and 1 (tag b): tag shares a 0, b 0.5, c 0
    # item 0 (a, b): (0 + 0.5) / 2; item 1 (b): 0.5; item 2: no tags; item 7: unknown
    np.testing.assert_allclose(column["tag_overlap"], [0.25, 0.5, np.nan, np.nan])


def test_batch_rows_are_each_users_rows(tmp_path: Path) -> None:
    found = tables()
    history = pd.DataFrame(
        {"user": [1, 0, 1, 0], "item": [2, 1, 0, 0], "timestamp": [5.0, 3.0, 1.0, 4.0]}
    )
    histories = ordered_histories(history, np.array([0, 1, 2]))
    assert [h.tolist() for h in histories] == [[1, 0], [0, 2], []]
    rng = np.random.default_rng(0)
    candidates = Candidates(
        users=np.array([0, 1, 2]),
        offsets=np.array([0, 2, 3, 5]),
        items=np.array([0, 2, 1, 0, 1]),
        scores=rng.normal(size=(5, 1)).astype(np.float32),
        ranks=np.array([[1], [2], [1], [1], [2]], dtype=np.float32),
    )
    batch = batch_features(found, histories, candidates, per_retriever=2)
    for position in range(3):
        rows = candidates.of(position)
        alone = user_features(
            found,
            histories[position],
            candidates.items[rows],
            candidates.scores[rows],
            candidates.ranks[rows],
            per_retriever=2,
        )
        np.testing.assert_array_equal(batch[rows], alone)

    found.save(tmp_path / "tables.npz")
    loaded = FeatureTables.load(tmp_path / "tables.npz")
    again = batch_features(loaded, histories, candidates, per_retriever=2)
    np.testing.assert_allclose(again, batch, rtol=1e-3)  # text vectors are kept as float16
    assert loaded.recent_items == 2 and loaded.now == pytest.approx(found.now)


def test_co_occurrence_with_the_latest_items_by_hand() -> None:
    found = tables()
    found.similarity = sp.csr_matrix(
        np.array([[0.0, 0.2, 0.4], [0.2, 0.0, 0.6], [0.4, 0.6, 0.0]], dtype=np.float32)
    )
    history = np.array([0, 2, 1])  # recent_items = 2: items 2 then 1 (most recent)
    items = np.array([0, 2, 7])
    ranks = np.ones((3, 1), dtype=np.float32)
    rows = user_features(found, history, items, np.zeros((3, 1), np.float32), ranks, 1)
    column = dict(zip(feature_names(("model",)), rows.T, strict=True))
    np.testing.assert_allclose(column["knn_last"], [0.2, 0.6, np.nan])  # sim with item 1
    np.testing.assert_allclose(column["knn_recent_mean"], [0.3, 0.3, np.nan])  # items 2, 1
    np.testing.assert_allclose(column["knn_recent_max"], [0.4, 0.6, np.nan])
