"""EASE's closed form (Steck 2019) against a float64 numpy reference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clrec.data.schema import Dataset
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
