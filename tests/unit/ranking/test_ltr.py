"""LambdaRank (clrec.ranking.ltr) on a synthetic world where the right order is known: it
must find it, a copy trained on shuffled labels must not, the base feature starts the trees
from the retriever's score, and saved rankers load to the same scores or fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clrec.errors import ClrecError
from clrec.evaluation.metrics import ndcg_at_k
from clrec.ranking.ltr import LambdaRankConfig, LambdaRanker

pytest.importorskip("lightgbm")
NAMES = ["signal", "weak", "noise", "model_score"]


def world(users: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``users`` groups of 30 candidates; a candidate is relevant when
    ``signal + 0.3 · weak`` is among its group's top 3. ``model_score`` is a noisy copy of
    the truth (a retriever that is right half the time)."""
    rng = np.random.default_rng(seed)
    rows = users * 30
    signal, weak, noise = rng.normal(size=(3, rows))
    truth = signal + 0.3 * weak
    model = truth + rng.normal(scale=1.0, size=rows)
    labels = np.zeros(rows)
    for start in range(0, rows, 30):
        top = np.argsort(-truth[start : start + 30])[:3]
        labels[start + top] = 1.0
    features = np.stack([signal, weak, noise, model], axis=1).astype(np.float32)
    return features, labels, np.full(users, 30)


def ndcg(ranker: LambdaRanker, features: np.ndarray, labels: np.ndarray) -> float:
    scores = ranker.predict(features).reshape(-1, 30)  # (U, 30)
    relevant = labels.reshape(-1, 30)
    order = np.argsort(-scores, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1) > 0
    return float(ndcg_at_k(hits, relevant.sum(axis=1).astype(np.int64), 3).mean())


def test_lambdarank_finds_the_known_order_and_a_shuffled_control_does_not() -> None:
    features, labels, groups = world(400, seed=0)
    test_features, test_labels, _ = world(200, seed=1)
    config = LambdaRankConfig(rounds=200, min_data_in_leaf=20, base_feature=None)
    ranker = LambdaRanker.fit(features, labels, groups, NAMES, config)
    shuffled = np.random.default_rng(2).permutation(labels)
    control = LambdaRanker.fit(features, shuffled, groups, NAMES, config)
    learned, chance = (
        ndcg(ranker, test_features, test_labels),
        ndcg(control, test_features, test_labels),
    )
    assert learned > 0.8 and chance < 0.3
    importance = ranker.importances()
    assert next(iter(importance)) == "signal" and importance["noise"] < 0.05


def test_trees_start_from_the_base_feature() -> None:
    """With a negligible step the ranker's order is the base feature's (fine-grained);
    from zero, the same tree gives at most ``num_leaves`` levels: the quantisation the base
    feature avoids."""
    features, labels, groups = world(300, seed=3)
    tiny_step = LambdaRankConfig(rounds=1, early_stopping=1, learning_rate=1e-6)
    ranker = LambdaRanker.fit(features, labels, groups, NAMES, tiny_step)
    assert ranker.base is not None and ranker.base[0] == NAMES.index("model_score")
    scores = ranker.predict(features)
    np.testing.assert_allclose(scores, features[:, 3] * ranker.base[1], atol=1e-5)
    assert ranker.base[1] == pytest.approx(1 / np.std(features[:, 3]), rel=0.05)
    from_zero = LambdaRanker.fit(
        features,
        labels,
        groups,
        NAMES,
        LambdaRankConfig(rounds=1, early_stopping=1, base_feature=None),
    )
    assert from_zero.base is None
    assert len(np.unique(from_zero.predict(features))) <= LambdaRankConfig().num_leaves


def test_a_saved_ranker_loads_to_the_same_scores_or_fails_clearly(tmp_path: Path) -> None:
    features, labels, groups = world(100, seed=5)
    ranker = LambdaRanker.fit(features, labels, groups, NAMES, LambdaRankConfig(rounds=20))
    ranker.save(tmp_path / "r")
    loaded = LambdaRanker.load(tmp_path / "r")
    np.testing.assert_array_equal(loaded.predict(features), ranker.predict(features))
    assert loaded.features == NAMES and loaded.base == ranker.base
    with pytest.raises(ClrecError, match="reads 4 features, got 3"):
        loaded.predict(features[:, :3])
    model = tmp_path / "r" / LambdaRanker.MODEL_FILE
    model.write_text(model.read_text()[:100])
    with pytest.raises(ClrecError, match="unreadable LambdaRank ranker"):
        LambdaRanker.load(tmp_path / "r")
    with pytest.raises(ClrecError, match="unreadable LambdaRank ranker"):
        LambdaRanker.load(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rounds", 0, "rounds"),
        ("learning_rate", 0.0, "learning_rate"),
        ("validation_share", 1.0, "validation_share"),
        ("threads", 0, "threads"),
    ],
)
def test_bad_settings_are_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(ClrecError, match=message):
        LambdaRankConfig(**{field: value})  # type: ignore[arg-type]
