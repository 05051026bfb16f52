"""EASE's closed form (Steck 2019) against a float64 numpy reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clrec.data.schema import Dataset
from clrec.models.clrec.prior import history_scores
from clrec.models.ease import EASE


def test_weights_match_the_closed_form() -> None:
    rng = np.random.default_rng(3)
    dense = rng.random((40, 25)) < 0.3  # (U, I) implicit feedback
    users, items = np.nonzero(dense)
    frame = pd.DataFrame({"user": users.astype(str), "item": items.astype(str)})
    dataset = Dataset.from_external("tiny", frame)
    model = EASE(reg_weight=5.0).fit(dataset)
    # the reference in the data set's own internal ids
    x = np.zeros((dataset.n_users, dataset.n_items))
    x[dataset.interactions["user"], dataset.interactions["item"]] = 1.0
    precision = np.linalg.inv(x.T @ x + 5.0 * np.eye(dataset.n_items))
    expected = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(expected, 0.0)
    assert model.weights is not None
    np.testing.assert_allclose(model.weights, expected, rtol=1e-4, atol=1e-6)
    scores = model.score(np.arange(dataset.n_users))
    np.testing.assert_allclose(scores, x @ expected, rtol=1e-4, atol=1e-5)


def test_weights_are_row_major_after_fit_and_load(tmp_path: Path) -> None:
    """scipy's sparse × dense product copies a column-major dense side to row-major on every
    call (all I² floats): the weights must be stored row-major, fitted or loaded."""
    rng = np.random.default_rng(0)
    users, items = np.nonzero(rng.random((30, 20)) < 0.3)
    frame = pd.DataFrame({"user": users.astype(str), "item": items.astype(str)})
    model = EASE(reg_weight=5.0).fit(Dataset.from_external("tiny", frame))
    loaded = EASE.load(model.save(tmp_path / "ease"))
    for weights in (model.weights, loaded.weights):
        assert weights is not None and weights.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(loaded.score(np.arange(5)), model.score(np.arange(5)))


def test_history_scores_are_the_weighted_rows_however_many_candidates() -> None:
    """The clrec model's prior over one history: ``Σ_h w_h B[h, c]`` for each candidate,
    0 for rows the prior does not know — whether a few candidates (a column gather) or most
    of the catalogue (whole rows) are scored."""
    rng = np.random.default_rng(0)
    prior = EASE()
    prior.weights = rng.normal(size=(40, 40)).astype(np.float32)  # (I, I)
    items = np.array([3, 17, 3, 29])  # a repeated row adds up
    weights = np.array([0.5, 1.0, 0.25, 2.0], dtype=np.float32)
    expected = weights @ prior.weights[items]  # (I,)
    for candidates in (np.array([5, -1, 12, 40, 7]), np.arange(-2, 43)):
        found = history_scores(prior, items, weights, candidates)
        known = (candidates >= 0) & (candidates < 40)
        np.testing.assert_allclose(found[known], expected[candidates[known]], rtol=1e-5)
        assert np.all(found[~known] == 0.0)
