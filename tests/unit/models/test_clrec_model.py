"""The clrec model on a small synthetic world with a known answer.

200 users × 120 items in 4 hidden clusters (item ``i`` is in cluster ``i % 4``); each user
(user ``u`` in cluster ``u % 4``) consumes 14 items of their cluster only. Every item carries
a precomputed 8-d content vector ``feat`` = its cluster's one-hot plus noise, so content alone
tells an item's cluster. The last 5 items of each cluster (ids 100–119) are *cold*: they are
in the catalogue with their content but have no training interaction. Of the warm
interactions each user keeps 2 for validation and 3 for test.

Checked: learning (beats popularity), seeded determinism, exact resumption from a checkpoint,
cold items from content alone, users from items, save / load (also with the EASE prior),
every supervised loss and contrastive mode, the loss-term logs, TensorBoard, parameter errors
and the prior's weight search.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from clrec.config import RunConfig
from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.evaluation.evaluator import EvaluationConfig, Evaluator
from clrec.models.base import Recommender
from clrec.models.clrec import (
    PRIOR_REGS,
    PRIOR_WEIGHTS,
    ClrecConfig,
    ClrecRecommender,
    TrainingPlan,
)
from clrec.models.clrec.network import ClrecNetwork, history_matrix
from clrec.models.clrec.prior import SearchBudget
from clrec.models.embedding import UserState
from clrec.models.popularity import Popularity
from clrec.models.registry import build_model, load_model

CONFIGS = Path(__file__).resolve().parents[3] / "configs"

N_USERS, N_ITEMS, N_CLUSTERS, DIM = 200, 120, 4, 8
PER_USER, N_VALID, N_TEST = 14, 2, 3
COLD = np.arange(100, 120)  # 5 per cluster
CONTENT = {"modalities": ["feat"], "cache_dir": None}
PURE_ID: dict[str, Any] = {"modalities": []}
# every setting the tests rely on is spelled out: the defaults are tuned for real data
FAST: dict[str, Any] = {
    "embedding_size": 16,
    "prior": "none",
    "supervised": "softmax",
    "similarity": "cosine",
    "temperature": 0.1,
    "contrast_temperature": 0.2,
    "weights": {"contrastive": 0.1, "alpha": 0.5},
    "contrastive_mode": "joint",
    "n_layers": 0,
    "fusion": "attention",
    "id_dropout": 0.1,
    "modality_dropout": 0.1,
    "epochs": 12,
    "lr": 0.01,
    "batch_size": 64,  # 4 steps per epoch
    "patience": 0,
    "seed": 0,
    "device": "cpu",
    "num_threads": 1,  # tiny tensors: threads only add synchronisation (and nondeterminism)
    "progress": False,
}


@dataclasses.dataclass(frozen=True)
class World:
    data: Dataset  # every interaction (train, valid, test, cold)
    train: pd.DataFrame  # warm interactions minus the held-out ones
    valid: pd.DataFrame
    test: pd.DataFrame

    @property
    def train_data(self) -> Dataset:
        return self.data.with_interactions(self.train)

    def evaluator(self) -> Evaluator:
        return Evaluator(self.data, self.train, EvaluationConfig(ks=(5, 10), progress=False))

    def validator(self) -> Any:
        evaluator = self.evaluator()

        def validate(model: Recommender) -> dict[str, float]:
            metrics = evaluator.evaluate(model, self.valid, [self.train]).metrics
            return {"ndcg@10": metrics["ndcg@10"]}

        return validate


def cluster_of(items: np.ndarray) -> np.ndarray:
    return np.asarray(items) % N_CLUSTERS


def _world(seed: int = 0) -> World:
    rng = np.random.default_rng(seed)
    items = np.arange(N_ITEMS)
    feat = rng.normal(0.0, 0.3, (N_ITEMS, DIM)).astype(np.float32)
    feat[items, cluster_of(items)] += 1.0
    rows = []
    for user in range(N_USERS):
        pool = items[cluster_of(items) == user % N_CLUSTERS]
        chosen = rng.choice(pool, PER_USER, replace=False)
        rows += [(f"u{user:03d}", f"i{item:03d}", float(rng.integers(1, 6))) for item in chosen]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"])
    ids = [f"i{i:03d}" for i in items]
    data = Dataset.from_external(
        "clusters",
        frame,
        item_content=pd.DataFrame({"id": ids}),
        item_vectors={"feat": (np.array(ids), feat)},
    )
    # internal ids follow the external ones: user u is row u, item i is row i
    assert (data.items["id"].str[1:].astype(int).to_numpy() == items).all()
    assert (data.users["id"].str[1:].astype(int).to_numpy() == np.arange(N_USERS)).all()
    inter = data.interactions
    warm = inter[~inter["item"].isin(COLD)]
    rank = warm.groupby("user").cumcount()
    valid = warm[rank < N_VALID]
    test = warm[(rank >= N_VALID) & (rank < N_VALID + N_TEST)]
    train = warm[rank >= N_VALID + N_TEST]
    return World(data, train, valid, test)


@pytest.fixture(scope="module")
def world() -> World:
    return _world()


@pytest.fixture(scope="module")
def content_model(world: World) -> ClrecRecommender:
    """A content model trained on the warm training interactions (shared by several tests)."""
    return _model(id_dropout=0.3).fit(world.train_data)


def _model(**params: Any) -> ClrecRecommender:
    """A content model with the FAST settings, ``params`` overriding them."""
    return ClrecRecommender(**{**FAST, "content": CONTENT, **params})


def _fit(world: World, validator: Any = None, **params: Any) -> ClrecRecommender:
    return _model(**params).fit(world.train_data, validator)


def _cold_recall(world: World, model: Recommender, k: int = 5) -> float:
    """recall@k of ranking the cold items only; relevant: the cold items of the user's cluster
    (5 of the 20 candidates, so a random ranking scores 0.25 at k = 5)."""
    users = np.arange(N_USERS)
    pairs = [(u, i) for u in users for i in COLD if i % N_CLUSTERS == u % N_CLUSTERS]
    target = pd.DataFrame(pairs, columns=["user", "item"])
    result = world.evaluator().evaluate(model, target, [world.train], candidates=COLD)
    return float(result.metrics[f"recall@{k}"])


# ---------------------------------------------------------------------- learning
def test_beats_popularity(world: World, content_model: ClrecRecommender) -> None:
    evaluator = world.evaluator()
    popularity = Popularity().fit(world.train_data)
    pop = evaluator.evaluate(popularity, world.test, [world.train]).metrics["recall@10"]
    ours = evaluator.evaluate(content_model, world.test, [world.train]).metrics["recall@10"]
    # picking within the right cluster gives ≈ 10 / 25 of a user's test items; popularity ≈ 0.1
    assert ours > 0.3 and ours > 2.5 * pop, (ours, pop)


def test_seeded_determinism(world: World, content_model: ClrecRecommender) -> None:
    users = np.arange(N_USERS)
    again = _fit(world, id_dropout=0.3)
    np.testing.assert_array_equal(again.score(users), content_model.score(users))
    other = _fit(world, id_dropout=0.3, seed=1)
    assert not np.array_equal(other.score(users), content_model.score(users))


LINEAR_STEP = {
    "supervised": "cosine_contrastive",
    "softmax_samples": 16,
    "negative_sampling": "mixed",
    "sparse_updates": True,
    "history_cap": 4,
}


@pytest.mark.parametrize("step", [{}, LINEAR_STEP], ids=["full-softmax", "linear-step"])
def test_resume_after_crash_matches_uninterrupted_run(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: dict[str, Any]
) -> None:
    """Also for the linear step: sampled negatives, capped histories and the lazy
    optimiser's state come back exactly from the checkpoint."""
    params = {
        "epochs": 10,
        "lr": 0.05,  # validation peaks at epoch 6 and training stops early after epoch 8
        "patience": 2,
        "weights": {"contrastive": 0.2, "alignment": 0.1},  # pair samplers in the replay too
        **step,
    }
    validator = world.validator()
    reference = _fit(world, validator, checkpoint_dir=str(tmp_path / "reference"), **params)
    last_epoch = int(reference.history[-1]["epoch"])
    assert 4 < last_epoch < 10 and reference.best_epoch < last_epoch, "no early stop to cover"

    original = TrainingPlan.batch_loss
    calls = {"n": 0}
    steps_per_epoch = -(-N_USERS // FAST["batch_size"])

    def crashing(self: TrainingPlan, batch: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2 * steps_per_epoch + 7:  # the 7th step after two whole epochs
            raise RuntimeError("simulated crash")
        return original(self, batch)

    folder = str(tmp_path / "crashed")
    monkeypatch.setattr(TrainingPlan, "batch_loss", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(world, validator, checkpoint_dir=folder, **params)
    monkeypatch.setattr(TrainingPlan, "batch_loss", original)
    checkpoint = torch.load(Path(folder) / "checkpoint.pt", weights_only=False)
    assert checkpoint["result"]["epochs_run"] == 3  # it crashed in the middle of epoch 4

    resumed = _fit(world, validator, checkpoint_dir=folder, **params)
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(resumed.score(users), reference.score(users))
    assert resumed.best_epoch == reference.best_epoch
    strip = [{k: v for k, v in e.items() if "seconds" not in k} for e in reference.history]
    assert [{k: v for k, v in e.items() if "seconds" not in k} for e in resumed.history] == strip
    assert reference.network is not None and resumed.network is not None
    for name, tensor in reference.network.state_dict().items():
        assert torch.equal(tensor, resumed.network.state_dict()[name]), name
    # the finished (early-stopped) checkpoint: a third fit trains nothing and keeps the best
    again = _fit(world, validator, checkpoint_dir=folder, **params)
    np.testing.assert_array_equal(again.score(users), reference.score(users))


def test_time_limit_stops_after_one_epoch_and_resume_may_change_it(
    world: World, tmp_path: Path
) -> None:
    folder = str(tmp_path / "checkpoints")
    model = _fit(world, epochs=5, time_limit_minutes=1e-9, checkpoint_dir=folder)
    assert len(model.history) == 1 and model.best_epoch == 1 and model.stopped_by_time
    # the limit is not decisive: the checkpoint resumes without it and trains the rest
    resumed = _fit(world, epochs=5, checkpoint_dir=folder)
    assert [int(e["epoch"]) for e in resumed.history] == [1, 2, 3, 4, 5]
    assert not resumed.stopped_by_time


# ---------------------------------------------------------------------- cold start
def test_cold_items_ranked_from_content(world: World, content_model: ClrecRecommender) -> None:
    assert _cold_recall(world, content_model) >= 3 * 0.25


@pytest.mark.parametrize("supervised", ["sampled_softmax", "cosine_contrastive"])
def test_the_linear_step_still_ranks_cold_items_from_content(world: World, supervised: str) -> None:
    """Sampled negatives, lazy sparse tables and capped histories: the content path is still
    trained (ID dropout), so a brand-new item is placed by its content alone."""
    model = _fit(world, id_dropout=0.3, **{**LINEAR_STEP, "supervised": supervised})
    assert _cold_recall(world, model) >= 3 * 0.25


def test_pure_id_model_cannot_rank_cold_items(world: World) -> None:
    model = _fit(world, content=PURE_ID, id_dropout=0.3)
    scores = model.score(np.arange(N_USERS))[:, COLD]
    # no content and no interaction: every cold item gets the same score for a user
    np.testing.assert_allclose(scores, np.repeat(scores[:, :1], len(COLD), axis=1))
    assert _cold_recall(world, model) <= 1.5 * 0.25


def _new_user(model: ClrecRecommender, items: np.ndarray) -> UserState:
    """A user the model never saw, known by ``items`` (in that order)."""
    state = model.user_state(None)
    pooled = model.history_vectors()
    for item in items:
        model.add_event(state, int(item), pooled[item])
    return state


def test_new_user_from_items(content_model: ClrecRecommender) -> None:
    items = np.arange(N_ITEMS)
    for cluster in range(N_CLUSTERS):
        known = items[(cluster_of(items) == cluster) & (items < 100)][:3]
        state = _new_user(content_model, known)
        vector = content_model.user_vector(state)
        # no ID part: the normalised mean of the items' (un-normalised) vectors
        mean = content_model.history_vectors()[known].mean(axis=0)
        np.testing.assert_allclose(vector, mean / np.linalg.norm(mean), atol=1e-6)
        scores = content_model.score_user(state, content_model.item_vectors(), items)
        assert scores.shape == (N_ITEMS,)
        scores[known] = -np.inf
        top = np.argsort(-scores, kind="stable")[:10]
        assert (cluster_of(top) == cluster).all(), (cluster, top)


# ---------------------------------------------------------------------- persistence
def test_save_load_round_trip(content_model: ClrecRecommender, tmp_path: Path) -> None:
    users = np.arange(N_USERS)
    restored = load_model(content_model.save(tmp_path / "model"))
    assert isinstance(restored, ClrecRecommender)
    np.testing.assert_array_equal(restored.score(users), content_model.score(users))
    known = np.array([0, 4, 8])
    np.testing.assert_array_equal(
        restored.user_vector(_new_user(restored, known)),
        content_model.user_vector(_new_user(content_model, known)),
    )
    assert restored.config == content_model.config
    assert restored.history == content_model.history
    # a loaded model can be saved again and still scores the same
    again = ClrecRecommender.load(restored.save(tmp_path / "again"))
    np.testing.assert_array_equal(again.score(users), content_model.score(users))


def test_save_load_with_ease_prior(world: World, tmp_path: Path) -> None:
    model = _fit(world, prior="ease", prior_weight=1.0, epochs=4)
    assert model.prior is not None and model.prior_scale == 1.0
    users = np.arange(N_USERS)
    out = model.save(tmp_path / "model")
    assert (out / "prior" / "model.json").is_file()
    restored = load_model(out)
    assert isinstance(restored, ClrecRecommender) and restored.prior is not None
    np.testing.assert_array_equal(restored.score(users), model.score(users))
    assert restored.prior_norm == model.prior_norm
    # the prior really is part of the score
    restored.prior_scale = 0.0
    assert not np.array_equal(restored.score(users), model.score(users))


def test_unfitted_model_refuses(tmp_path: Path) -> None:
    model = ClrecRecommender(**FAST)
    for call in (
        lambda: model.score(np.array([0])),
        lambda: model.save(tmp_path),
        lambda: model.user_state(None),
        lambda: model.item_vectors(),
    ):
        with pytest.raises(ClrecError, match="call fit first"):
            call()


# ---------------------------------------------------------------------- objectives
def _first_last_loss(model: ClrecRecommender) -> tuple[float, float]:
    history = model.history
    assert len(history) == FAST["epochs"]
    return history[0]["loss"], history[-1]["loss"]


@pytest.mark.parametrize(
    "supervised", ["softmax", "sampled_softmax", "cosine_contrastive", "bpr", "bce", "mse"]
)
def test_every_supervised_loss_trains(world: World, supervised: str) -> None:
    model = _fit(world, supervised=supervised)
    first, last = _first_last_loss(model)
    assert np.isfinite(last) and last < first, (supervised, first, last)
    assert np.isfinite(model.score(np.arange(5))).all()


@pytest.mark.parametrize(
    ("sparse_updates", "history_cap", "sampling", "supervised"),
    [
        (False, None, "uniform", "sampled_softmax"),
        (True, 4, "uniform", "sampled_softmax"),
        (True, 4, "mixed", "sampled_softmax"),
        (True, 4, "uniform", "cosine_contrastive"),
    ],
)
def test_sampled_objectives_beat_popularity_with_a_fraction_of_the_catalogue(
    world: World, sparse_updates: bool, history_cap: int | None, sampling: str, supervised: str
) -> None:
    """16 of 120 items scored per batch (plus the positives) still learn the clusters, with
    dense ID tables, or lazily updated (sparse) ones and users pooling 4 sampled items, the
    samples drawn uniformly or half by popularity (log-q corrected), with the sampled softmax
    or SimpleX's cosine contrastive loss."""
    model = _fit(
        world,
        supervised=supervised,
        softmax_samples=16,
        content=PURE_ID,
        sparse_updates=sparse_updates,
        history_cap=history_cap,
        negative_sampling=sampling,
    )
    evaluator = world.evaluator()
    popularity = Popularity().fit(world.train_data)
    pop = evaluator.evaluate(popularity, world.test, [world.train]).metrics["recall@10"]
    ours = evaluator.evaluate(model, world.test, [world.train]).metrics["recall@10"]
    assert ours > 0.3 and ours > 2.5 * pop, (ours, pop)


def test_a_sparse_step_touches_only_the_rows_it_needs(world: World) -> None:
    """With sampled_softmax and sparse_updates, one step's ID-table gradients name only the
    rows the step read (its plan's users and items), a fraction of the tables; the full
    softmax reads every item."""
    model = _model(
        supervised="sampled_softmax",
        softmax_samples=8,
        sparse_updates=True,
        batch_size=4,
        weights={"contrastive": 0.0, "alignment": 0.0},
    )
    network = ClrecNetwork(model.config, N_USERS, N_ITEMS, {})
    network.attach_graph(history_matrix(world.train_data, model.config), torch.device("cpu"))
    plan = TrainingPlan(model.config, network, world.train_data, torch.device("cpu"))
    batch = plan.epoch_batches(1)[0]
    drawn = plan._plan(batch, np.random.default_rng(batch.seed))
    assert drawn.item_rows is not None and len(drawn.item_rows) < N_ITEMS / 2
    network.train()
    loss, _ = plan.batch_loss(batch)
    loss.backward()
    item_grad, user_grad = network.item_table.grad, network.user_table.grad
    assert item_grad is not None and item_grad.is_sparse
    assert user_grad is not None and user_grad.is_sparse
    touched_items = set(item_grad.coalesce().indices()[0].tolist())
    touched_users = set(user_grad.coalesce().indices()[0].tolist())
    assert touched_items <= set(drawn.item_rows.tolist())
    assert touched_users == set(drawn.user_rows.tolist()) == set(batch.users.tolist())
    assert set(drawn.supervised.positives.tolist()) <= touched_items  # type: ignore[union-attr]


@pytest.mark.parametrize("sampling", ["popularity", "mixed"])
def test_negatives_are_drawn_with_their_probabilities(world: World, sampling: str) -> None:
    """q ∝ count ** 0.75 (popularity), or half that and half uniform (mixed); the drawn
    frequencies follow q, and each sample carries −log(K · q) as its correction."""
    model = _model(supervised="sampled_softmax", softmax_samples=64, negative_sampling=sampling)
    network = ClrecNetwork(model.config, N_USERS, N_ITEMS, {})
    plan = TrainingPlan(model.config, network, world.train_data, torch.device("cpu"))
    counts = np.asarray(plan.matrix.sum(axis=0)).ravel()
    popular = counts**0.75 / (counts**0.75).sum()
    expected = popular if sampling == "popularity" else 0.5 * popular + 0.5 / N_ITEMS
    assert plan.sampling_q is not None
    np.testing.assert_allclose(plan.sampling_q, expected, rtol=1e-6)
    rng = np.random.default_rng(0)
    drawn = [plan._supervised_draws(np.arange(4), rng) for _ in range(500)]
    frequency = np.bincount(np.concatenate([d.negatives for d in drawn]), minlength=N_ITEMS) / (
        500 * 64
    )
    np.testing.assert_allclose(frequency, expected, atol=0.004)
    first = drawn[0]
    assert first.correction is not None
    np.testing.assert_allclose(first.correction, -np.log(64 * expected[first.negatives]), rtol=1e-5)
    uniform = TrainingPlan(
        _model(supervised="sampled_softmax").config, network, world.train_data, torch.device("cpu")
    )
    assert uniform.sampling_q is None  # uniform: the scalar log(I / K) correction


def test_history_cap_samples_heavy_users_and_renormalises(world: World) -> None:
    model = _model(history_cap=3)
    network = ClrecNetwork(model.config, N_USERS, N_ITEMS, {})
    network.attach_graph(history_matrix(world.train_data, model.config), torch.device("cpu"))
    assert network.pooling is not None
    users = np.arange(N_USERS)
    full = network.pooling[users]
    capped = network.pooling_block(users, np.random.default_rng(0))
    assert capped is not None
    again = network.pooling_block(users, np.random.default_rng(0))
    assert again is not None and (again != capped).nnz == 0  # seeded
    other = network.pooling_block(users, np.random.default_rng(1))
    assert other is not None and (other != capped).nnz > 0  # a fresh sample each step
    for user in users:
        row, kept = full[user], capped[user]
        assert 1 <= kept.nnz <= min(row.nnz, 3)  # three draws, with replacement
        assert set(kept.indices) <= set(row.indices)
        assert kept.sum() == pytest.approx(1.0)
        if row.nnz <= 3:
            assert (kept != row).nnz == 0
        else:  # equal weights: an item drawn twice weighs 2 / 3
            assert sorted(np.round(kept.data * 3).tolist()) in ([1, 1, 1], [1, 2], [3])
    # without a generator (serving, evaluation) every item is pooled
    whole = network.pooling_block(users)
    assert whole is not None and (whole != full).nnz == 0


def test_mse_scores_predict_ratings(world: World) -> None:
    """With ``mse`` the served score (similarity / temperature) is the predicted rating, so
    the training pairs' scores approach their ratings (random 1–5 stars here: the best
    constant, their mean, has an RMSE of their standard deviation)."""
    model = _fit(world, supervised="mse", epochs=15, lr=0.03)
    train = world.train
    scores = model.score(np.arange(N_USERS))
    predicted = scores[train["user"].to_numpy(), train["item"].to_numpy()]
    ratings = train["rating"].to_numpy()
    rmse = float(np.sqrt(np.mean((predicted - ratings) ** 2)))
    assert rmse < 0.75 * float(np.std(ratings)), rmse  # far better than the mean rating


def test_mse_needs_ratings(world: World) -> None:
    data = world.data.with_interactions(world.train.drop(columns="rating"))
    with pytest.raises(ClrecError, match="explicit ratings"):
        _model(supervised="mse").fit(data)


def test_separate_contrastive_mode(world: World) -> None:
    model = _fit(world, contrastive_mode="separate", contrastive_share=0.5)
    first, last = _first_last_loss(model)
    assert last < first
    supervised_steps = -(-N_USERS // FAST["batch_size"])
    for share in (0.5, 0.3):
        model.config = dataclasses.replace(model.config, contrastive_share=share)
        plan = TrainingPlan(model.config, model.network, world.train_data, torch.device("cpu"))
        batches = plan.epoch_batches(1)
        kinds = [batch.kind for batch in batches]
        assert kinds.count("supervised") == supervised_steps
        assert kinds.count("contrastive") == round(supervised_steps * share / (1 - share))
        assert kinds.count("joint") == 0
        # every supervised user appears exactly once per epoch
        users = np.concatenate([b.users for b in batches if b.kind == "supervised"])
        np.testing.assert_array_equal(np.sort(users), np.arange(N_USERS))
        assert all(  # the same epoch is drawn the same way again
            a.seed == b.seed and a.kind == b.kind and np.array_equal(a.users, b.users)
            for a, b in zip(plan.epoch_batches(1), batches, strict=True)
        )
    joint = _fit(world, epochs=1)
    plan = TrainingPlan(joint.config, joint.network, world.train_data, torch.device("cpu"))
    kinds = [batch.kind for batch in plan.epoch_batches(1)]
    assert kinds == ["joint"] * supervised_steps


def test_loss_parts_logged(world: World) -> None:
    friends = pd.DataFrame(
        [(u, v) for u in range(N_USERS) for v in (u + 4, u + 8) if v < N_USERS],
        columns=["user", "other"],
    )
    social = dataclasses.replace(world.train_data, user_relations=friends)
    weights = {"contrastive": 0.2, "alignment": 0.1, "augmentation": 0.1, "social": 0.1}
    model = _model(epochs=3, weights=weights).fit(social)
    entry = model.history[-1]
    for part in ("supervised", "intra_user", "cross_user", "alignment", "augmentation", "social"):
        assert part in entry and np.isfinite(entry[part]), part
        assert entry[part] > 0, part
    # with the weights off, the terms are neither computed nor logged
    zero = {"contrastive": 0.0, "alignment": 0.0, "augmentation": 0.0, "social": 0.0}
    plain = _model(epochs=2, weights=zero).fit(social)
    assert not {"intra_user", "cross_user", "alignment", "social"} & set(plain.history[-1])


def test_tensorboard_events_written(world: World, tmp_path: Path) -> None:
    _fit(world, epochs=2, log_dir=str(tmp_path / "tb"))
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


# ---------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"embeding_size": 16}, "embeding_size"),
        ({"temperature": -0.1}, "temperature must be positive"),
        ({"lr": "fast"}, "lr"),
        ({"weights": {"contrastive": -1}}, "contrastive"),
        ({"content": {"modalities": ["feat"], "cach_dir": None}}, "cach_dir"),
        ({"supervised": "hinge"}, "supervised"),
        ({"supervised": "sampled_softmax", "softmax_samples": 0}, "softmax_samples"),
        ({"margin": 1.0}, "margin"),
        ({"negative_weight": -1}, "negative_weight"),
        ({"supervised": "cosine_contrastive", "similarity": "dot"}, "needs similarity 'cosine'"),
        ({"time_limit_minutes": 0}, "time_limit_minutes"),
        ({"time_limit_minutes": float("nan")}, "time_limit_minutes"),
    ],
)
def test_bad_params(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ClrecError, match=message):
        build_model("clrec", params)


def test_yaml_style_values_are_coerced() -> None:
    config = ClrecConfig.from_params({"lr": "1e-2", "content": {"modalities": ["feat"]}})
    assert config.lr == 0.01 and config.content.modalities == ("feat",)
    assert ClrecConfig.from_params(config.to_params()) == config


def test_naming_one_loss_weight_keeps_the_other_defaults() -> None:
    """``--set model.params.weights.alpha=0`` switches the intra-user term off and nothing
    else (it once reset the contrast weight to 0.1 and alignment to 0)."""
    default = ClrecConfig().weights
    assert (default.contrastive, default.alignment) == (0.5, 0.1)
    config = RunConfig.from_yaml(CONFIGS / "amazon-office.yaml", ["model.params.weights.alpha=0"])
    weights = ClrecConfig.from_params(config.model.params).weights
    assert weights == dataclasses.replace(default, alpha=0.0)


def test_missing_modality_is_named(world: World) -> None:
    model = _model(content={"modalities": ["image"], "cache_dir": None})
    with pytest.raises(ClrecError, match=r"no content modality image.*offers: feat"):
        model.fit(world.train_data)


# ---------------------------------------------------------------------- EASE prior
def test_prior_weight_chosen_on_validation(world: World) -> None:
    validator = world.validator()
    model = _fit(world, validator, prior="ease", prior_reg=10.0, epochs=4)
    searched = [entry for entry in model.prior_search if "weight" in entry]
    assert [entry["weight"] for entry in searched] == list(PRIOR_WEIGHTS)
    best = max(entry["ndcg@10"] for entry in searched)
    chosen = [e for e in searched if e["weight"] == model.prior_scale]
    assert chosen and chosen[0]["ndcg@10"] == best
    assert model.prior_norm > 0
    # the logged values are the validation NDCG@10 of each weight
    kept = model.prior_scale
    for entry in searched:
        model.prior_scale = entry["weight"]
        assert validator(model)["ndcg@10"] == entry["ndcg@10"]
    model.prior_scale = kept


def test_the_time_limit_bounds_the_prior_search(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fit's time limit covers the prior: spent before it, no prior; spent during the λ
    search, the search keeps the best λ it has and tries no weight."""
    spent = _fit(world, world.validator(), prior="ease", epochs=2, time_limit_minutes=1e-9)
    assert spent.prior is None and spent.prior_scale == 0.0 and spent.prior_search == []
    assert np.isfinite(spent.score(np.arange(N_USERS))).all()  # the embeddings alone serve
    calls: list[int] = []

    def after_one_fit(self: SearchBudget) -> bool:  # the clock runs out after the first λ
        calls.append(1)
        return len(calls) > 1

    monkeypatch.setattr(SearchBudget, "spent", after_one_fit)
    cut = _fit(world, world.validator(), prior="ease", epochs=2)
    assert cut.prior is not None and [e["reg"] for e in cut.prior_search] == [PRIOR_REGS[0]]
    assert cut.prior_scale == 1.0  # no weight was tried


# ---------------------------------------------------------------------- content-only vectors
def test_embed_content_reproduces_cold_item_vectors_and_survives_load(
    world: World, content_model: ClrecRecommender, tmp_path: Path
) -> None:
    feat = world.data.item_vectors["feat"]
    cold = np.asarray(COLD)
    # a cold item has no ID part: its trained vector is its content vector
    embedded = content_model.embed_items({"feat": feat[cold]})  # history space
    np.testing.assert_allclose(embedded, content_model.history_vectors()[cold], atol=1e-6)
    np.testing.assert_allclose(
        content_model.index_vectors(embedded), content_model.item_vectors()[cold], atol=1e-6
    )
    restored = ClrecRecommender.load(content_model.save(tmp_path / "model"))
    np.testing.assert_allclose(restored.embed_items({"feat": feat[cold]}), embedded, atol=1e-6)
    with pytest.raises(ClrecError, match="no content modality poster"):
        restored.embed_items({"poster": feat[cold]})
    with pytest.raises(ClrecError, match="8-d"):
        restored.embed_items({"feat": feat[cold][:, :4]})


def test_added_item_is_recommended_at_once(world: World, tmp_path: Path) -> None:
    model = ClrecRecommender.load(_fit(world, id_dropout=0.3).save(tmp_path / "m"))
    new_feat = np.zeros((1, world.data.item_vectors["feat"].shape[1]), dtype=np.float32)
    new_feat[0, 2] = 1.5  # clearly cluster 2
    new = model.index_vectors(model.embed_items({"feat": new_feat}))  # (1, D)
    vectors = np.concatenate([model.item_vectors(), new])  # the catalogue + the new item
    rows = np.append(np.arange(N_ITEMS), -1)  # the new item has no prior column
    scores = np.stack(
        [model.score_user(model.user_state(u), vectors, rows) for u in range(N_USERS)]
    )
    assert scores.shape == (N_USERS, N_ITEMS + 1)
    rank_of_new = (scores > scores[:, [N_ITEMS]]).sum(axis=1)  # 0 = top
    in_cluster = np.arange(N_USERS) % N_CLUSTERS == 2
    assert np.median(rank_of_new[in_cluster]) < np.median(rank_of_new[~in_cluster]) / 3
