"""Popularity ranks by training counts, round-trips through save/load, and evaluates right."""

from pathlib import Path

import numpy as np
import pandas as pd

from clrec.data.schema import Dataset
from clrec.evaluation.evaluator import EvaluationConfig, evaluate
from clrec.models.popularity import Popularity


def _dataset(rows: list[tuple[str, str]]) -> Dataset:
    return Dataset.from_external("toy", pd.DataFrame(rows, columns=["user", "item"]))


TRAIN_ROWS = [("u1", "a"), ("u2", "a"), ("u3", "a"), ("u1", "b"), ("u2", "b"), ("u3", "c")]


def test_recommends_most_popular_unseen_items() -> None:
    data = _dataset([*TRAIN_ROWS, ("u4", "d")])
    train = data.with_interactions(data.interactions.iloc[: len(TRAIN_ROWS)])
    model = Popularity().fit(train)
    items = data.item_index()
    u3 = data.user_index().get_loc("u3")
    top, _ = model.recommend(np.array([u3]), k=2)
    assert [data.items["id"][i] for i in top[0]] == ["a", "b"]
    # excluding what u3 has seen leaves b, then the ties c / d broken by id
    from clrec.data.matrix import interaction_matrix

    seen = interaction_matrix(train.interactions, data.n_users, data.n_items)
    top, _ = model.recommend(np.array([u3]), k=2, exclude=seen)
    assert [data.items["id"][i] for i in top[0]] == ["b", "d"]
    assert items.get_loc("a") == 0


def test_save_load_round_trip(tmp_path: Path) -> None:
    data = _dataset(TRAIN_ROWS)
    model = Popularity().fit(data)
    restored = Popularity.load(model.save(tmp_path / "pop"))
    np.testing.assert_array_equal(restored.score(np.array([0])), model.score(np.array([0])))


def test_evaluator_hand_computed() -> None:
    # test: u1 -> c (popularity rank 1 after masking a, b), u2 -> d (rank 2 after c)
    data = _dataset([*TRAIN_ROWS, ("u1", "c"), ("u2", "d")])
    n_train = len(TRAIN_ROWS)
    train = data.with_interactions(data.interactions.iloc[:n_train])
    test = data.with_interactions(data.interactions.iloc[n_train:])
    model = Popularity().fit(train)
    metrics = evaluate(
        model, data, test, exclude=[train], config=EvaluationConfig(ks=(1, 2), progress=False)
    )
    assert metrics["users"] == 2
    assert metrics["hit@1"] == 0.5
    assert metrics["recall@2"] == 1.0
    assert metrics["mrr@2"] == 0.75
    assert metrics["ndcg@2"] == round((1 + 1 / np.log2(3)) / 2, 6)
