"""Explanations from the model's own arithmetic (issue 23): the clrec model's score of an item
splits exactly into the user's ID part, one term per history item (the pooled mean and the
EASE prior are both sums over the history) and one term for history the model does not know
as items — for a trained user, after real-time events and for a user known only by events;
the same score splits over the item's ID part, content modalities and prior; the
counterfactual user without an item is the user who posted the same history without it; a
model of ID vectors declares that it splits nothing further."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clrec.models.clrec import ClrecRecommender
from clrec.serving.artifact import Artifact, load_artifact


@pytest.fixture(scope="module")
def model(clrec_artifact: Path) -> ClrecRecommender:
    loaded = load_artifact(clrec_artifact).model
    assert isinstance(loaded, ClrecRecommender) and loaded.prior is not None
    return loaded


def _fields(art: Artifact, item: int) -> dict[str, object]:
    """An artifact item's content fields, as the service reads them."""
    return {c: art.catalogue[c].iat[item] for c in art.catalogue.columns if c != "id"}


def _check_additive(model: ClrecRecommender, state: object) -> None:
    vectors = model.item_vectors()  # (I, D) index space
    rows = np.arange(model.n_items)
    served = model.score_user(state, vectors, rows)  # type: ignore[arg-type]
    for item in range(model.n_items):
        split = model.explain(state, vectors[item], item)  # type: ignore[arg-type]
        assert split.score == pytest.approx(
            split.user + split.history.sum() + split.other, abs=1e-9
        )
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


def test_history_the_model_does_not_know_is_one_more_exact_term(
    model: ClrecRecommender, clrec_artifact: Path
) -> None:
    """A profile text (or an item added after training) moves the user's vector but is no
    model item: it is the ``other`` term, and the parts still add up to the served score."""
    art = load_artifact(clrec_artifact)
    profile = art.embed_items([_fields(art, 0)])[0]  # (D,) history space, as a profile
    user = model.user_state(None)
    model.add_event(user, 2, model.pooled_users().history_vectors[2])
    model.add_event(user, None, profile)
    split = model.explain(user, model.item_vectors()[4], 4)
    assert split.other != 0.0 and split.items.tolist() == [2]
    _check_additive(model, user)
    trained = model.user_state(5)
    model.add_event(trained, model.n_items + 3, profile)  # an item added through the API
    assert model.explain(trained, model.item_vectors()[1], 1).other != 0.0
    _check_additive(model, trained)


def test_the_item_side_splits_into_id_content_and_prior(
    model: ClrecRecommender, clrec_artifact: Path
) -> None:
    """The same score split over the item: its ID part, each content modality, the prior —
    exact; an item embedded from its content alone has no ID part."""
    art = load_artifact(clrec_artifact)
    assert model.explanations == frozenset({"history", "content"})
    user = model.user_state(3)
    vectors, pooled = model.item_vectors(), model.history_vectors()
    served = model.score_user(user, vectors, np.arange(model.n_items))
    for item in (0, 4, 11):
        split = model.explain_item(user, pooled[item], item, art.featurize([_fields(art, item)]))
        assert set(split) == {"id", "tags", "prior"}
        assert sum(split.values()) == pytest.approx(float(served[item]), abs=1e-4)
        assert split["id"] != 0.0 and split["tags"] != 0.0
        without_content = model.explain_item(user, pooled[item], item, None)
        assert set(without_content) == {"id", "prior"}
        assert sum(without_content.values()) == pytest.approx(float(served[item]), abs=1e-4)
    content = art.featurize([{**_fields(art, 3), "title": "A film never seen"}])
    fresh = model.embed_items(content)[0]  # (D,) history space: content only
    split = model.explain_item(user, fresh, -1, content)
    assert set(split) == {"id", "tags"} and split["id"] == pytest.approx(0.0, abs=1e-6)
    index = model.index_vectors(fresh[None, :])  # (1, D)
    expected = float(model.score_user(user, index, np.array([-1]))[0])
    assert split["tags"] == pytest.approx(expected, abs=1e-4)


def test_a_model_of_id_vectors_says_what_it_can(bpr_artifact: Path) -> None:
    """BPR-MF: a trained user's score is all ID parts, and it declares no more."""
    bpr = load_artifact(bpr_artifact).model
    assert bpr.explanations == frozenset()
    user = bpr.user_state(2)
    vectors = bpr.item_vectors()
    served = bpr.score_user(user, vectors, np.arange(bpr.n_items))
    split = bpr.explain(user, vectors[7], 7)
    assert split.user == pytest.approx(float(served[7]), abs=1e-5) and len(split.items) == 0
    assert bpr.explain_item(user, bpr.history_vectors()[7], 7, None) == pytest.approx(
        {"id": float(served[7])}, abs=1e-5
    )


def test_the_counterfactual_keeps_what_the_model_does_not_know_as_items(
    model: ClrecRecommender, clrec_artifact: Path
) -> None:
    """Removing one item keeps a profile text (history the model does not know as items):
    the counterfactual is the user who posted the same events without that item; removing
    the only item of a history leaves the profile alone, and removing everything leaves an
    empty history (the vector is the ID part)."""
    art = load_artifact(clrec_artifact)
    users = model.pooled_users()
    profile = art.embed_items([_fields(art, 0)])[0]  # (D,)
    vectors, rows = model.item_vectors(), np.arange(model.n_items)

    def walk_in(items: list[int], with_profile: bool) -> object:
        state = model.user_state(None)
        for item in items:
            model.add_event(state, item, users.history_vectors[item])
        if with_profile:
            model.add_event(state, None, profile)
        return state

    for items, removed in (([1, 2, 9], 9), ([2], 2)):
        full = walk_in(items, True)
        replayed = walk_in([i for i in items if i != removed], True)
        counterfactual = users.without(full, removed)  # type: ignore[arg-type]
        np.testing.assert_allclose(
            model.score_user(counterfactual, vectors, rows),
            model.score_user(replayed, vectors, rows),  # type: ignore[arg-type]
            atol=1e-5,
        )
        assert model.explain(counterfactual, vectors[4], 4).other != 0.0
    alone = users.without(walk_in([7], False), 7)  # type: ignore[arg-type]
    assert alone.weight == 0.0 and not alone.pooled.any()  # type: ignore[union-attr]
    np.testing.assert_allclose(model.user_vector(alone), model.user_vector(model.user_state(None)))
