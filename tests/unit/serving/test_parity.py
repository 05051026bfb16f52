"""Parity: the service answers exactly what the model itself would, for every embedding model.

For BPR-MF, LightGCN and the clrec model (cosine with an EASE prior and recency-weighted
history; dot product without content or prior) trained on the tiny movie catalogue, a service
over the exported artifact (exact index) must give

* a known user the model's own top k and scores (:meth:`Recommender.score`, seen masked);
* a user who then posts events the scores of the model's formula written out here by hand
  (ID vector + recency-weighted mean of the history's vectors, normalised; the prior over the
  extended history) — not through the code the service calls;
* a user known only by events the same formula without an ID vector;
* an item added through the API from a cold item's fields, the cold item's own score.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from movies import CLREC, EMBEDDING, movies_dataset, train_run

from clrec.data.splits import Split
from clrec.models.clrec import ClrecRecommender
from clrec.serving.artifact import export_artifact
from clrec.serving.index import IndexConfig
from clrec.serving.settings import ServiceSettings
from clrec.serving.state import ServiceState
from clrec.serving.store import Event, Store

K = 10
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "bpr": ("bpr", EMBEDDING),
    "lightgcn": ("lightgcn", {**EMBEDDING, "n_layers": 2}),
    "clrec": ("clrec", {**CLREC, "history_half_life": 3.0}),
    "clrec-plain": (
        "clrec",
        {**CLREC, "content": {"modalities": []}, "prior": "none", "similarity": "dot"},
    ),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parity")
    data = movies_dataset().save(root / "data")
    return {
        name: train_run(root / name, data, model, params)
        for name, (model, params) in MODELS.items()
    }


@pytest.fixture(params=sorted(MODELS))
def served(
    request: pytest.FixtureRequest, runs: dict[str, Path], tmp_path: Path
) -> Iterator[tuple[str, ServiceState, Path]]:
    name = str(request.param)
    artifact = export_artifact(runs[name], tmp_path / "artifact")
    settings = ServiceSettings(
        artifact=artifact,
        data_dir=tmp_path / "service",
        index=IndexConfig(kind="exact"),
        max_k=100,
        sync_interval_s=None,
    )
    store = Store(settings.db_url)
    try:
        yield name, ServiceState.load(settings, store), runs[name]
    finally:
        store.close()


def _top(scores: np.ndarray, excluded: set[int]) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable") if int(i) not in excluded][:K]


def _check(state: ServiceState, user: str, scores: np.ndarray, excluded: set[int]) -> None:
    """The service's top K for ``user`` is the top K of ``scores`` ``(I,)``: each item with
    its own score, in the same order (items of equal score, e.g. two zero vectors, in any)."""
    found = state.recommend_user(user, K)
    rows = [state.artifact.item_index[s.id] for s in found]
    expected = _top(scores, excluded)
    assert not set(rows) & excluded
    np.testing.assert_allclose([s.score for s in found], scores[rows], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores[rows], scores[expected], rtol=1e-5, atol=1e-5)


def _hand_scores(model: Any, user: int | None, events: list[int], n_items: int) -> np.ndarray:
    """The model's scores ``(I,)`` for ``user`` (None: a new user) after ``events``, written
    out from the model's definition: normalise(ID + Σ w·e / Σ w) · items / τ + w_p·σ⁻¹·prior,
    with the k-th most recent interaction weighing 0.5 ** (k / half-life)."""
    assert isinstance(model, ClrecRecommender)
    config = model.config
    pooled = model.history_vectors().astype(np.float64)  # (I, D)
    decay = 1.0 if config.history_half_life is None else 0.5 ** (1 / config.history_half_life)
    weights = np.zeros(n_items)  # (I,) every weight of the history, by item
    ident = np.zeros(pooled.shape[1])
    if user is not None:
        ident = model._network_state["user_table"][user].numpy().astype(np.float64)
        row = model._train_history[user]
        weights[row.indices] = row.data * decay ** len(events)
    for age, item in enumerate(reversed(events)):  # the newest weighs 1
        if decay == 1.0:
            weights[item] = 1.0  # without recency an item counts once
        else:
            weights[item] += decay**age
    vector = ident + weights @ pooled / weights.sum()
    if config.similarity == "cosine":
        vector /= np.linalg.norm(vector)
    scores = model.item_vectors().astype(np.float64) @ vector / config.temperature
    if model.prior is not None and model.prior_scale:
        assert model.prior.weights is not None
        scores += model.prior_scale * model.prior_norm * (weights @ model.prior.weights)
    return scores


def test_known_users_get_the_models_own_ranking(served: tuple[str, ServiceState, Path]) -> None:
    _, state, _ = served
    art = state.artifact
    scores = art.model.score(np.arange(art.n_users))  # type: ignore[attr-defined]  # (U, I)
    for user in range(0, art.n_users, 3):
        _check(state, art.user_ids[user], scores[user], set(art.seen_items(user).tolist()))


def test_event_updated_and_store_only_users(served: tuple[str, ServiceState, Path]) -> None:
    name, state, _ = served
    art, model = state.artifact, state.artifact.model
    user = 7
    seen = set(art.seen_items(user).tolist())
    clicked = [i for i in range(art.n_items) if i not in seen][:3]
    state.record_events(
        [Event(art.user_ids[user], art.item_ids[i], "click", None, None) for i in clicked]
    )
    newcomer = [2, 11, 2, 23]  # a repeated item: counts once, or twice with recency
    state.record_events([Event("newcomer", art.item_ids[i], "view", None, None) for i in newcomer])
    if name.startswith("clrec"):  # users follow their history
        expected = _hand_scores(model, user, clicked, art.n_items)
        new = _hand_scores(model, None, newcomer, art.n_items)
    else:  # ID-only users stay as trained; a new user is the mean of their items' vectors
        expected = model.score(np.array([user]))[0]  # type: ignore[attr-defined]
        query = model.item_vectors()[np.unique(newcomer)].mean(axis=0)
        new = model.item_vectors() @ query
    _check(state, art.user_ids[user], expected, seen | set(clicked))
    _check(state, "newcomer", new, set(newcomer))


def test_an_api_item_scores_as_its_cold_twin(
    served: tuple[str, ServiceState, Path],
) -> None:
    name, state, run = served
    if name != "clrec":
        pytest.skip("only the clrec model with content embeds new items")
    art = state.artifact
    split = Split.load(run / "split")
    cold = np.setdiff1d(split.test["item"].unique(), split.train["item"].unique())
    twin = int(cold[0])
    fields = {c: str(art.catalogue[c].iloc[twin]) for c in ("title", "genres", "studio")}
    user = int(split.train["user"].iloc[0])
    result = state.put_item("twin", fields, for_user=art.user_ids[user])
    scores = art.model.score(np.array([user]))[0]  # type: ignore[attr-defined]
    assert result.placement is not None
    assert result.placement.score == pytest.approx(float(scores[twin]), rel=1e-5, abs=1e-5)
