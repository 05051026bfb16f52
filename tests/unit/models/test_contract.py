"""The shared contract every registered model must honour, on a matrix with a known answer.

Two communities: users 0-5 consume items a0..a4, users 6-11 items b0..b4. Each user has
seen all but one item of their community's block; that missing item is the one obvious
recommendation, and a personalised model must rank it first among unseen items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clrec.data.matrix import interaction_matrix
from clrec.data.schema import Dataset
from clrec.models.registry import MODELS, build_model, load_model

# Small-data settings so the iterative models converge on the toy matrix in a second or two.
TEST_PARAMS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "itemknn": {"k": 5},
    "ease": {"reg_weight": 1.0},
    "bpr": {"epochs": 60, "batch_size": 32, "lr": 0.05, "seed": 0, "eval_every": 1000},
    "lightgcn": {"epochs": 60, "batch_size": 32, "lr": 0.05, "seed": 0, "eval_every": 1000},
    "clrec": {
        "epochs": 30,
        "batch_size": 4,
        "lr": 0.05,
        "seed": 0,
        "eval_every": 1000,
        "prior": "none",
        "content": {"modalities": []},
        "progress": False,
    },
}
PERSONALISED = set(MODELS) - {"popularity"}


def _communities() -> tuple[Dataset, pd.DataFrame, pd.DataFrame]:
    train_rows, held_out = [], []
    for user in range(12):
        block = "a" if user < 6 else "b"
        missing = user % 5
        for item in range(5):
            row = (f"u{user}", f"{block}{item}")
            (held_out if item == missing else train_rows).append(row)
    frame = pd.DataFrame(train_rows + held_out, columns=["user", "item"])
    dataset = Dataset.from_external("communities", frame)
    n = len(train_rows)
    return dataset, dataset.interactions.iloc[:n], dataset.interactions.iloc[n:]


def test_every_registered_model_has_test_settings() -> None:
    assert set(TEST_PARAMS) == set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_contract(name: str, tmp_path: Path) -> None:
    dataset, train, held_out = _communities()
    model = build_model(name, TEST_PARAMS[name])
    assert model.fit(dataset.with_interactions(train)) is model
    users = np.arange(dataset.n_users)
    scores = model.score(users)
    assert scores.shape == (dataset.n_users, dataset.n_items)
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(model.score(users), scores)  # scoring is deterministic

    seen = interaction_matrix(train, dataset.n_users, dataset.n_items)
    top, top_scores = model.recommend(users, k=3, exclude=seen)
    assert top.shape == top_scores.shape == (dataset.n_users, 3)
    for user in users:
        assert not set(top[user]) & set(seen[user].indices), "recommended a seen item"
        assert len(set(top[user])) == 3
        assert (np.diff(top_scores[user]) <= 0).all()

    if name in PERSONALISED:
        expected = held_out.set_index("user")["item"].reindex(users).to_numpy()
        np.testing.assert_array_equal(
            top[:, 0], expected, err_msg=f"{name} missed the obvious item"
        )

    restored = load_model(model.save(tmp_path / name))
    np.testing.assert_allclose(restored.score(users), scores, rtol=1e-6, atol=1e-6)
