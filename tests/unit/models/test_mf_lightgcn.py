"""BPR-MF and LightGCN: graph maths by hand, learning a block structure, early stopping,
save / load and seeded determinism — all on tiny synthetic data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.models.base import Recommender
from clrec.models.lightgcn import LightGCN, normalized_adjacency, propagate, to_torch_csr
from clrec.models.mf import BPRMF, EmbeddingRecommender
from clrec.models.registry import build_model, load_model

FAST = {
    "embedding_size": 4,  # low rank: the block structure, not each user's negatives
    "batch_size": 128,  # one step per epoch
    "epochs": 60,
    "lr": 0.05,
    "progress": False,
    "device": "cpu",
    "num_threads": 1,  # tiny tensors: threads only add synchronisation
}


def _blocks() -> tuple[Dataset, np.ndarray]:
    """Users 0–9 consume items 0–5, users 10–19 items 6–11; each user misses one in-block item.

    Returns the training set and each user's held-out in-block item.
    """
    rows, held_out = [], []
    for user in range(20):
        block = range(0, 6) if user < 10 else range(6, 12)
        missing = block[user % 6]
        held_out.append(missing)
        rows += [(f"u{user:02d}", f"i{item:02d}") for item in block if item != missing]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    catalogue = pd.DataFrame({"id": [f"i{i:02d}" for i in range(12)]})
    data = Dataset.from_external("blocks", frame, item_content=catalogue)
    return data, np.array(held_out)


MODELS: list[tuple[type[EmbeddingRecommender], dict[str, object]]] = [
    (BPRMF, {}),
    (BPRMF, {"sparse_updates": True}),
    (LightGCN, {"n_layers": 2}),
]


# ---------------------------------------------------------------------- graph maths
def test_normalized_adjacency_hand_computed() -> None:
    # u0 – i0, u0 – i1, u1 – i1, u1 – i2: degrees u0 2, u1 2, i0 1, i1 2, i2 1
    adjacency = normalized_adjacency(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 2]), 2, 3)
    r = 1 / np.sqrt(2)
    expected = np.array(
        [
            [0, 0, r, 0.5, 0],
            [0, 0, 0, 0.5, r],
            [r, 0, 0, 0, 0],
            [0.5, 0.5, 0, 0, 0],
            [0, r, 0, 0, 0],
        ]
    )
    np.testing.assert_allclose(adjacency.toarray(), expected, rtol=1e-6)


def test_isolated_nodes_and_duplicates() -> None:
    adjacency = normalized_adjacency(np.array([0, 0]), np.array([1, 1]), 2, 2).toarray()
    assert adjacency[0, 3] == pytest.approx(1.0)  # a repeated pair counts once
    assert not adjacency[1].any() and not adjacency[2].any()  # user 1, item 0 isolated


def test_propagation_matches_dense() -> None:
    generator = torch.Generator().manual_seed(0)
    users = np.array([0, 0, 1, 2, 2, 2])
    items = np.array([0, 3, 1, 1, 2, 3])
    scipy_adjacency = normalized_adjacency(users, items, 3, 4)
    dense = torch.from_numpy(scipy_adjacency.toarray())  # (7, 7)
    start = torch.randn(7, 5, generator=generator)  # (N, D)

    sparse_input = start.clone().requires_grad_(True)
    out = propagate(to_torch_csr(scipy_adjacency), sparse_input, 3)
    dense_input = start.clone().requires_grad_(True)
    layers = [dense_input]
    for _ in range(3):
        layers.append(dense @ layers[-1])
    expected = torch.stack(layers).mean(dim=0)
    torch.testing.assert_close(out, expected)

    weights = torch.randn(7, 5, generator=generator)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    assert sparse_input.grad is not None and dense_input.grad is not None
    torch.testing.assert_close(sparse_input.grad, dense_input.grad)


# ---------------------------------------------------------------------- learning
@pytest.mark.parametrize(("cls", "extra"), MODELS)
def test_ranks_held_out_in_block_item_above_other_block(
    cls: type[EmbeddingRecommender], extra: dict[str, object]
) -> None:
    train, held_out = _blocks()
    model = cls.from_config({**FAST, **extra}).fit(train)
    scores = model.score(np.arange(20))
    assert scores.shape == (20, 12) and scores.dtype == np.float32
    for user in range(20):
        other_block = np.arange(6, 12) if user < 10 else np.arange(0, 6)
        assert scores[user, held_out[user]] > scores[user, other_block].max()
    assert len(model.history) == FAST["epochs"]  # no validator: one entry per epoch
    assert model.history[-1]["loss"] < model.history[0]["loss"]


@pytest.mark.parametrize(("cls", "extra"), MODELS)
def test_early_stopping_restores_best_epoch(
    cls: type[EmbeddingRecommender], extra: dict[str, object]
) -> None:
    train, _ = _blocks()
    curve = [0.1, 0.5, 0.2, 0.3, 0.9, 0.9]  # best at epoch 2, then 2 misses → stop after 4
    snapshots: list[np.ndarray] = []

    def validator(model: Recommender) -> dict[str, float]:
        snapshots.append(model.score(np.arange(20)))
        return {"ndcg@10": curve[len(snapshots) - 1], "recall@10": 0.0}

    model = cls.from_config({**FAST, **extra, "epochs": 6, "patience": 2}).fit(train, validator)
    assert [int(e["epoch"]) for e in model.history] == [1, 2, 3, 4]
    assert [e["ndcg@10"] for e in model.history] == curve[:4]
    assert model.best_epoch == 2
    np.testing.assert_array_equal(model.score(np.arange(20)), snapshots[1])
    assert not np.array_equal(snapshots[1], snapshots[3])


def test_eval_every_and_missing_metric() -> None:
    train, _ = _blocks()
    calls: list[int] = []

    def validator(model: Recommender) -> dict[str, float]:
        calls.append(1)
        return {"ndcg@10": float(len(calls))}

    model = BPRMF.from_config({**FAST, "epochs": 7, "eval_every": 3}).fit(train, validator)
    assert [int(e["epoch"]) for e in model.history] == [3, 6, 7]  # the last epoch always
    with pytest.raises(ClrecError, match="ndcg@10"):
        BPRMF.from_config(FAST).fit(train, lambda m: {"recall@10": 0.0})


# ---------------------------------------------------------------------- persistence
@pytest.mark.parametrize(("cls", "extra"), MODELS)
def test_save_load_round_trip(
    cls: type[EmbeddingRecommender], extra: dict[str, object], tmp_path: Path
) -> None:
    train, _ = _blocks()
    model = cls.from_config({**FAST, **extra, "epochs": 3}).fit(train)
    folder = model.save(tmp_path / cls.name)
    restored = cls.load(folder)
    users = np.arange(20)
    np.testing.assert_array_equal(restored.score(users), model.score(users))
    assert restored.params() == model.params()
    assert restored.history == model.history
    by_name = load_model(folder)
    assert type(by_name) is cls
    np.testing.assert_array_equal(by_name.score(users), model.score(users))


@pytest.mark.parametrize(("cls", "extra"), MODELS)
def test_same_seed_same_model(cls: type[EmbeddingRecommender], extra: dict[str, object]) -> None:
    train, _ = _blocks()
    users = np.arange(20)
    first = cls.from_config({**FAST, **extra, "epochs": 5, "seed": 3}).fit(train)
    second = cls.from_config({**FAST, **extra, "epochs": 5, "seed": 3}).fit(train)
    other = cls.from_config({**FAST, **extra, "epochs": 5, "seed": 4}).fit(train)
    np.testing.assert_array_equal(first.score(users), second.score(users))
    assert first.tables is not None and second.tables is not None
    torch.testing.assert_close(first.tables.user, second.tables.user, rtol=0, atol=0)
    assert not np.array_equal(first.score(users), other.score(users))


@pytest.mark.parametrize(("cls", "extra"), MODELS)
def test_time_limit_stops_after_one_epoch(
    cls: type[EmbeddingRecommender], extra: dict[str, object], tmp_path: Path
) -> None:
    train, _ = _blocks()
    model = cls.from_config({**FAST, **extra, "epochs": 5, "time_limit_minutes": 1e-9})
    model.fit(train)
    assert len(model.history) == 1 and model.best_epoch == 1 and model.stopped_by_time
    assert model.params()["time_limit_minutes"] == 1e-9
    restored = cls.load(model.save(tmp_path / "model"))
    assert restored.stopped_by_time and restored.params() == model.params()


# ---------------------------------------------------------------------- configuration
def test_from_config_and_registry() -> None:
    model = build_model("lightgcn", {"n_layers": 1, "embedding_size": 8, "lr": 0.01})
    assert isinstance(model, LightGCN)
    assert model.params()["n_layers"] == 1 and model.params()["embedding_size"] == 8
    assert isinstance(build_model("bpr", {"batch_size": 128}), BPRMF)


@pytest.mark.parametrize(
    "params",
    [
        {"embedding_size": 0},
        {"lr": 0.0},
        {"reg_weight": -1.0},
        {"batch_size": 0},
        {"epochs": 0},
        {"eval_every": 0},
        {"patience": -1},
        {"time_limit_minutes": 0.0},
        {"time_limit_minutes": float("nan")},
        {"init_std": 0.0},
        {"seed": -1},
        {"num_threads": 0},
    ],
)
def test_bad_hyper_parameters(params: dict[str, object]) -> None:
    with pytest.raises(ClrecError):
        BPRMF.from_config(params)
    with pytest.raises(ClrecError):
        LightGCN.from_config(params)


def test_bad_layers_and_unfitted() -> None:
    with pytest.raises(ClrecError):
        LightGCN(n_layers=-1)
    with pytest.raises(ClrecError, match="call fit first"):
        LightGCN().score(np.array([0]))
    with pytest.raises(ClrecError, match="before fit"):
        BPRMF().save("/nonexistent")


def test_sparse_updates_touch_only_the_batch_rows() -> None:
    """With ``sparse_updates`` a step's gradient names only the looked-up rows, and the loop
    trains with SparseAdam, which leaves every other row (and its moments) alone."""
    from clrec.models.mf import EmbeddingTables
    from clrec.training.optim import build_optimizer

    model = BPRMF(embedding_size=4, sparse_updates=True, device="cpu")
    model.tables = EmbeddingTables.random(20, 12, 4, 0.1, seed=0)
    before = model.tables.user.detach().clone(), model.tables.item.detach().clone()
    loop = model.trainer_config.loop()
    optimizer = build_optimizer(model.tables.parameters(), loop.optimizer, loop.lr)
    assert isinstance(optimizer, torch.optim.SparseAdam)
    loss = model.batch_loss(torch.tensor([3, 7]), torch.tensor([0, 5]), torch.tensor([9, 5]))
    loss.backward()
    grad = model.tables.user.grad
    assert grad is not None and grad.is_sparse
    assert sorted(grad.coalesce().indices()[0].tolist()) == [3, 7]
    optimizer.step()
    user_moved = (model.tables.user.detach() != before[0]).any(dim=1)
    item_moved = (model.tables.item.detach() != before[1]).any(dim=1)
    assert torch.nonzero(user_moved).flatten().tolist() == [3, 7]
    assert torch.nonzero(item_moved).flatten().tolist() == [0, 5, 9]
    with pytest.raises(ClrecError, match="sparse_updates"):
        BPRMF(sparse_updates="yes")  # type: ignore[arg-type]
