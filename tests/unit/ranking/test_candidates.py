"""Candidates from several retrievers (clrec.ranking.candidates), checked by hand on a tiny
catalogue: each retriever's top list with ties by item row, the union, the ranks and flags,
exclusion, and one user's candidates equal to the batch's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clrec.data.matrix import interaction_matrix
from clrec.data.schema import Dataset
from clrec.ranking.candidates import (
    CandidateConfig,
    Candidates,
    Retrievers,
    recent_mask,
)


def tiny() -> tuple[Dataset, pd.DataFrame]:
    """4 users × 6 items; item 0 is the most popular, item 5 is only recent."""
    frame = pd.DataFrame(
        {
            "user": [0, 0, 1, 1, 2, 2, 3, 3, 3],
            "item": [0, 1, 0, 2, 0, 1, 3, 4, 5],
            "timestamp": [0, 10, 20, 30, 40, 50, 60, 70, 100],
        }
    )
    ids = pd.DataFrame({"id": pd.array([str(i) for i in range(6)], dtype="string")})
    users = pd.DataFrame({"id": pd.array([str(i) for i in range(4)], dtype="string")})
    return Dataset("tiny", frame, items=ids, users=users), frame


def test_recent_mask_takes_the_newest_share_of_the_time_span() -> None:
    _, frame = tiny()
    # span 0..100, share 0.35: timestamps ≥ 65
    assert recent_mask(frame, 0.35).tolist() == [False] * 7 + [True, True]
    assert recent_mask(frame.drop(columns="timestamp"), 1 / 3).tolist() == [False] * 6 + [True] * 3


def test_each_retriever_proposes_its_top_and_the_union_keeps_every_score() -> None:
    dataset, frame = tiny()
    config = CandidateConfig(retrievers=("model", "popular", "recent"), per_retriever=2)
    retrievers = Retrievers.fit(dataset, frame, config)
    model = np.array([[0.0, 0.1, 0.9, 0.8, 0.2, 0.3]] * 4, dtype=np.float32)  # (U, I)
    retrievers.model_scores = lambda users: model[users]
    seen = interaction_matrix(frame, 4, 6)
    found = retrievers.candidates(np.array([0]), seen, seen)  # user 0 saw items 0 and 1
    # model: 2 (0.9), 3 (0.8); popular among unseen: 2, 3, 4, 5 all once → ties by row: 2, 3;
    # recent (t ≥ 90): only item 5 counts → 5, then the ties 2 ...: 5, 2
    assert found.items.tolist() == [2, 3, 5]
    assert found.offsets.tolist() == [0, 3]
    ranks = found.ranks.tolist()
    assert ranks == [[1, 1, 2], [2, 2, 3], [3, 3, 1]]  # absent from a list: per_retriever + 1
    np.testing.assert_allclose(found.scores[:, 0], [0.9, 0.8, 0.3])
    np.testing.assert_allclose(found.scores[:, 1], np.log1p([1, 1, 1]))
    np.testing.assert_allclose(found.scores[:, 2], np.log1p([0, 0, 1]))


def test_one_user_gets_the_batch_candidates_and_nothing_excluded() -> None:
    dataset, frame = tiny()
    config = CandidateConfig(per_retriever=3, knn_neighbours=5)
    retrievers = Retrievers.fit(dataset, frame, config)
    rng = np.random.default_rng(0)
    model = rng.normal(size=(4, 6)).astype(np.float32)
    retrievers.model_scores = lambda users: model[users]
    seen = interaction_matrix(frame, 4, 6)
    users = np.arange(4)
    batch = retrievers.candidates(users, seen, seen)
    for position, user in enumerate(users):
        history = seen[user].indices
        single = retrievers.user_candidates(model[user], history, history)
        rows = batch.of(position)
        np.testing.assert_array_equal(single.items, batch.items[rows])
        np.testing.assert_allclose(single.scores, batch.scores[rows], rtol=1e-6)
        np.testing.assert_array_equal(single.ranks, batch.ranks[rows])
        assert not set(single.items.tolist()) & set(history.tolist())
    # ItemKNN by hand for user 0 (items 0, 1): item 2's only user (1) also has item 0, whose
    # users are 0, 1, 2: cosine 1 / sqrt(3); items 3-5 share no user with items 0 or 1
    rows = batch.of(0)
    knn = dict(zip(batch.items[rows].tolist(), batch.scores[rows, 1].tolist(), strict=True))
    assert knn[2] == pytest.approx(1 / np.sqrt(3), rel=1e-6)
    assert all(knn[item] == 0 for item in knn if item != 2)
    # a candidate table can be filtered and keeps its users' offsets
    kept = batch.select(batch.items != 2)
    assert 2 not in kept.items.tolist() and kept.offsets[-1] == len(kept.items)
    # a user without candidates (every item seen), last in the table, keeps an empty group
    tail = Candidates(
        np.array([0, 1]), np.array([0, 2, 2]), np.array([1, 2]), np.zeros((2, 1)), np.ones((2, 1))
    )
    assert tail.select(np.array([True, False])).offsets.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(tail.per_user(np.array([1.0, 1.0])), [2.0, 0.0])


def test_saved_retrievers_load_the_same(tmp_path: Path) -> None:
    dataset, frame = tiny()
    config = CandidateConfig()
    retrievers = Retrievers.fit(dataset, frame, config)
    retrievers.save(tmp_path / "r.npz")
    loaded = Retrievers.load(tmp_path / "r.npz", config)
    np.testing.assert_array_equal(loaded.popularity, retrievers.popularity)
    assert loaded.similarity is not None and retrievers.similarity is not None
    assert (loaded.similarity != retrievers.similarity).nnz == 0
