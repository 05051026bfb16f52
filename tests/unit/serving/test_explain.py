"""Explanations from the model's own arithmetic (issue 23, first part): the clrec model's score
of an item splits exactly into the user's ID part and one term per history item — the pooled
mean and the EASE prior are both sums over the history — for a trained user, after real-time
events and for a user known only by events; and the counterfactual user without an item is
the user who posted the same history without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clrec.models.clrec import ClrecRecommender
from clrec.serving.artifact import load_artifact


@pytest.fixture(scope="module")
def model(clrec_artifact: Path) -> ClrecRecommender:
    loaded = load_artifact(clrec_artifact).model
    assert isinstance(loaded, ClrecRecommender) and loaded.prior is not None
    return loaded


def _check_additive(model: ClrecRecommender, state: object) -> None:
    vectors = model.item_vectors()  # (I, D) index space
    rows = np.arange(model.n_items)
    served = model.score_user(state, vectors, rows)  # type: ignore[arg-type]
    for item in range(model.n_items):
        split = model.explain(state, vectors[item], item)  # type: ignore[arg-type]
        assert split.score == pytest.approx(split.user + split.history.sum(), abs=1e-9)
        assert split.score == pytest.approx(float(served[item]), abs=1e-4)
        assert len(split.items) == len(split.history)


def test_a_score_is_the_sum_of_its_parts(model: ClrecRecommender) -> None:
    users = model.pooled_users()
    trained = model.user_state(3)
    _check_additive(model, trained)
    assert len(model.explain(trained, model.item_vectors()[0], 0).items) > 0
    for item in (5, 7, 5):  # real-time events, one repeated
        model.add_event(trained, item, users.history_vectors[item])
    _check_additive(model, trained)
    walk_in = model.user_state(None)
    for item in (1, 2, 9):
        model.add_event(walk_in, item, users.history_vectors[item])
    split = model.explain(walk_in, model.item_vectors()[4], 4)
    assert split.user == 0.0 and sorted(split.items.tolist()) == [1, 2, 9]
    _check_additive(model, walk_in)


def test_the_counterfactual_user_is_the_history_without_the_item(
    model: ClrecRecommender,
) -> None:
    users = model.pooled_users()
    vectors = model.item_vectors()
    rows = np.arange(model.n_items)
    full = model.user_state(None)
    for item in (1, 2, 9, 12):
        model.add_event(full, item, users.history_vectors[item])
    replayed = model.user_state(None)
    for item in (1, 2, 12):  # the same history, posted without item 9
        model.add_event(replayed, item, users.history_vectors[item])
    counterfactual = users.without(full, 9)
    np.testing.assert_allclose(
        model.score_user(counterfactual, vectors, rows),
        model.score_user(replayed, vectors, rows),
        atol=1e-5,
    )
    # the top contributor's removal moves the item it explains down (or not up)
    target = int(np.argmax(model.score_user(full, vectors, rows)))
    split = model.explain(full, vectors[target], target)
    top = int(split.items[np.argmax(split.history)])
    before = model.score_user(full, vectors, rows)
    after = model.score_user(users.without(full, top), vectors, rows)
    rank_before = int((before > before[target]).sum())
    rank_after = int((after > after[target]).sum())
    assert rank_after >= rank_before
