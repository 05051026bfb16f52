"""One user's explanations with ranks (``clrec.models.explaining``): ranks by hand, the
counterfactual rank equal to re-ranking the user recomputed without the item by hand, and
catalogue scorings shared between the items explained."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from clrec.data.matrix import interaction_matrix
from clrec.data.schema import Dataset
from clrec.models.clrec import ClrecRecommender
from clrec.models.explaining import UserExplainer, rank_among


def test_a_rank_counts_the_open_rows_scoring_higher() -> None:
    scores = np.array([3.0, 1.0, 2.0, 5.0, 2.0])
    open_rows = np.array([True, True, False, True, True])
    assert rank_among(scores, open_rows, 2) == 3  # 3.0 and 5.0; a tie ranks in its favour
    assert rank_among(scores, open_rows, 3) == 1
    assert rank_among(scores, open_rows, 1) == 4  # row 2's 2.0 is not open


@pytest.fixture(scope="module")
def fitted() -> tuple[ClrecRecommender, Dataset]:
    """A clrec model on two communities of users (a0..a7 and b0..b7), each user missing
    a few items of their block."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(16):
        block = "a" if user < 8 else "b"
        for item in sorted(rng.choice(8, 5, replace=False).tolist()):
            rows.append((f"u{user}", f"{block}{item}"))
    dataset = Dataset.from_external("communities", pd.DataFrame(rows, columns=["user", "item"]))
    params: dict[str, Any] = {
        "epochs": 20,
        "batch_size": 4,
        "lr": 0.05,
        "seed": 0,
        "eval_every": 1000,
        "prior": "none",
        "content": {"modalities": []},
        "progress": False,
    }
    return ClrecRecommender(**params).fit(dataset), dataset


def test_counterfactual_ranks_are_the_user_rescored_without_the_item(
    fitted: tuple[ClrecRecommender, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, dataset = fitted
    seen = interaction_matrix(dataset.interactions, model.n_users, model.n_items)
    vectors = model.item_vectors()  # (I, D)
    rows = np.arange(model.n_items)
    calls = [0]
    score_user = model.score_user

    def counted(*args: Any) -> np.ndarray:
        calls[0] += 1
        return score_user(*args)

    monkeypatch.setattr(model, "score_user", counted)
    for user in (0, 9):
        history = seen.indices[seen.indptr[user] : seen.indptr[user + 1]]
        state = model.user_state(user)
        calls[0] = 0
        explainer = UserExplainer(model, vectors, state, history)
        served = score_user(state, vectors, rows)  # (I,) by hand
        open_rows = np.ones(model.n_items, dtype=bool)
        open_rows[history] = False
        unseen = np.flatnonzero(open_rows).tolist()
        assert explainer.competing(unseen[0]) == len(unseen)
        assert explainer.competing(int(history[0])) == len(unseen) + 1
        removed: set[int] = set()
        for row in unseen:
            split, terms = explainer.explain(row, 3, 2)
            assert len(terms) == 3 and terms[2][2] is None
            assert [t[0] for t in terms] == [
                int(split.items[i]) for i in np.argsort(-split.history)[:3]
            ]
            removed.update(t[0] for t in terms[:2])
            assert explainer.rank(row) == 1 + int((served[open_rows] > served[row]).sum())
            for item, _, rank in terms[:2]:
                without = score_user(model.user_state_without(state, item), vectors, rows)
                open_without = open_rows.copy()
                open_without[item] = True
                assert rank == 1 + int((without[open_without] > without[row]).sum())
        assert calls[0] == 1 + len(removed)  # one scoring per removed item, shared
