"""APR adversarial training: the perturbation's size and direction, the loss it adds, that it
is off (training bit-identical) at eps = 0, and that its settings are saved with the model."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor

from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.losses.bpr import BPRLoss
from clrec.models import mf as mf_module
from clrec.models.clrec import ClrecConfig, ClrecRecommender
from clrec.models.clrec import objective as clrec_module
from clrec.models.lightgcn import LightGCN
from clrec.models.mf import BPRMF, EmbeddingRecommender
from clrec.models.registry import build_model, load_model
from clrec.training.adversarial import adversarial_loss, adversarial_perturbation

FAST = {
    "embedding_size": 8,
    "batch_size": 16,
    "epochs": 4,
    "lr": 0.05,
    "seed": 0,
    "eval_every": 1000,
    "progress": False,
    "device": "cpu",
    "num_threads": 1,
}
CLREC_FAST = {
    "embedding_size": 8,
    "epochs": 3,
    "batch_size": 8,
    "lr": 0.05,
    "seed": 0,
    "eval_every": 1000,
    "prior": "none",
    "content": {"modalities": []},
    "progress": False,
    "device": "cpu",
    "num_threads": 1,
}


def _toy() -> Dataset:
    """30 users with 8 random items each out of 40, explicit ratings 1–5."""
    rng = np.random.default_rng(0)
    rows = [
        (f"u{user}", f"i{item}", float(rng.integers(1, 6)))
        for user in range(30)
        for item in rng.choice(40, size=8, replace=False)
    ]
    return Dataset.from_external("toy", pd.DataFrame(rows, columns=["user", "item", "rating"]))


def _batch(seed: int = 0, size: int = 6, dim: int = 4) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(  # type: ignore[return-value]
        torch.randn(size, dim, generator=generator).requires_grad_(True) for _ in range(3)
    )


# ---------------------------------------------------------------------- the perturbation
def test_perturbation_has_norm_eps_per_row_and_is_detached() -> None:
    users, positives, negatives = _batch()
    loss = BPRLoss()(users, positives, negatives)
    deltas = adversarial_perturbation(loss, (users, positives, negatives), eps=0.3)
    for delta, embedding in zip(deltas, (users, positives, negatives), strict=True):
        assert delta.shape == embedding.shape
        assert not delta.requires_grad
        torch.testing.assert_close(delta.norm(dim=1), torch.full((6,), 0.3))


def test_perturbation_points_along_the_gradient() -> None:
    users, positives, negatives = _batch(seed=1)
    loss = BPRLoss()(users, positives, negatives)
    grads = torch.autograd.grad(loss, (users, positives, negatives), retain_graph=True)
    deltas = adversarial_perturbation(loss, (users, positives, negatives), eps=0.5)
    for delta, grad in zip(deltas, grads, strict=True):
        cosine = torch.nn.functional.cosine_similarity(delta, grad, dim=1)
        torch.testing.assert_close(cosine, torch.ones(6))


def test_rows_the_loss_ignores_are_not_moved() -> None:
    users, positives, negatives = _batch(seed=2)
    unused = torch.randn(3, 4, requires_grad=True)
    loss = BPRLoss()(users[:4], positives[:4], negatives[:4])  # rows 4, 5 unused
    deltas = adversarial_perturbation(loss, (users, unused), eps=0.2)
    assert not deltas[0][4:].any()
    torch.testing.assert_close(deltas[0][:4].norm(dim=1), torch.full((4,), 0.2))
    assert not deltas[1].any()


def test_perturbation_increases_the_loss_more_than_random_steps() -> None:
    embeddings = _batch(seed=3)
    loss_fn = BPRLoss()
    clean = loss_fn(*embeddings)
    deltas = adversarial_perturbation(clean, embeddings, eps=0.1)
    with torch.no_grad():
        up = loss_fn(*(e + d for e, d in zip(embeddings, deltas, strict=True)))
        down = loss_fn(*(e - d for e, d in zip(embeddings, deltas, strict=True)))
        assert up > clean > down
        generator = torch.Generator().manual_seed(4)
        for _ in range(20):  # no random step of the same size per row hurts as much
            steps = [
                0.1 * torch.nn.functional.normalize(torch.randn(6, 4, generator=generator), dim=1)
                for _ in embeddings
            ]
            assert up >= loss_fn(*(e + s for e, s in zip(embeddings, steps, strict=True)))


def test_adversarial_loss_treats_the_perturbation_as_constant() -> None:
    embeddings = _batch(seed=5)
    loss_fn = BPRLoss()
    deltas = adversarial_perturbation(loss_fn(*embeddings), embeddings, eps=0.25)
    attacked = adversarial_loss(loss_fn, embeddings, eps=0.25)
    expected = loss_fn(*(e + d for e, d in zip(embeddings, deltas, strict=True)))
    torch.testing.assert_close(attacked, expected)
    given = adversarial_loss(loss_fn, embeddings, eps=0.25, clean=loss_fn(*embeddings))
    torch.testing.assert_close(given, expected)  # a clean loss the caller has: same result
    got = torch.autograd.grad(attacked, embeddings)
    want = torch.autograd.grad(expected, embeddings)  # Δ a constant: d(e + Δ)/de = 1
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------- the models' losses
def test_ranking_loss_adds_weight_times_the_attacked_bpr() -> None:
    model = BPRMF(reg_weight=0.01, adversarial_eps=0.2, adversarial_weight=3.0)
    embeddings = _batch(seed=6)
    loss = model.ranking_loss(*embeddings)
    plain = BPRLoss(0.01)(*embeddings)  # the adversary attacks BPR, not the L2 term
    deltas = adversarial_perturbation(BPRLoss()(*embeddings), embeddings, eps=0.2)
    attacked = BPRLoss()(*(e + d for e, d in zip(embeddings, deltas, strict=True)))
    torch.testing.assert_close(loss, plain + 3.0 * attacked)


class _PreAPRBPR(BPRMF):
    """BPR-MF's batch loss as it was before adversarial training existed."""

    def batch_loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        tables = self._tables()
        loss: Tensor = self.loss(tables.user[users], tables.item[positives], tables.item[negatives])
        return loss


class _PreAPRLightGCN(LightGCN):
    """LightGCN's batch loss as it was before adversarial training existed."""

    def batch_loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        tables = self._tables()
        user_final, item_final = self.final_embeddings()
        loss: Tensor = self.loss(
            user_final[users],
            item_final[positives],
            item_final[negatives],
            reg_embeddings=(tables.user[users], tables.item[positives], tables.item[negatives]),
        )
        return loss


@pytest.mark.parametrize(("cls", "reference"), [(BPRMF, _PreAPRBPR), (LightGCN, _PreAPRLightGCN)])
def test_eps_zero_trains_bit_identically(
    cls: type[EmbeddingRecommender],
    reference: type[EmbeddingRecommender],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _toy()
    before = reference.from_config(FAST).fit(data)

    def never(*args: object, **kwargs: object) -> Tensor:
        raise AssertionError("the adversary ran with adversarial_eps = 0")

    monkeypatch.setattr(mf_module, "adversarial_loss", never)
    now = cls.from_config({**FAST, "adversarial_weight": 5.0}).fit(data)  # weight: unused
    assert now.tables is not None and before.tables is not None
    assert torch.equal(now.tables.user, before.tables.user)
    assert torch.equal(now.tables.item, before.tables.item)
    assert [h["loss"] for h in now.history] == [h["loss"] for h in before.history]


@pytest.mark.parametrize("cls", [BPRMF, LightGCN])
def test_eps_changes_training_and_adds_to_the_loss(cls: type[EmbeddingRecommender]) -> None:
    data = _toy()
    plain = cls.from_config(FAST).fit(data)
    attacked = cls.from_config({**FAST, "adversarial_eps": 0.5}).fit(data)
    assert plain.tables is not None and attacked.tables is not None
    assert not torch.equal(plain.tables.user, attacked.tables.user)
    # same start, same first batches: the first epoch's loss carries the (positive) extra term
    assert attacked.history[0]["loss"] > plain.history[0]["loss"]


@pytest.mark.parametrize("supervised", ["softmax", "bpr", "bce", "mse"])
def test_clrec_eps_zero_never_runs_the_adversary(
    supervised: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _toy()
    params = {**CLREC_FAST, "supervised": supervised}
    attacked = ClrecRecommender(**params, adversarial_eps=0.3).fit(data)
    users = np.arange(data.n_users)

    def never(*args: object, **kwargs: object) -> Tensor:
        raise AssertionError("the adversary ran with adversarial_eps = 0")

    monkeypatch.setattr(clrec_module, "adversarial_loss", never)
    plain = ClrecRecommender(**params).fit(data)
    heavy = ClrecRecommender(**params, adversarial_weight=7.0).fit(data)
    np.testing.assert_array_equal(plain.score(users), heavy.score(users))
    assert np.isfinite(attacked.score(users)).all()
    assert not np.array_equal(attacked.score(users), plain.score(users))
    assert attacked.history[0]["loss"] > plain.history[0]["loss"]


# ---------------------------------------------------------------------- settings
@pytest.mark.parametrize("name", ["bpr", "lightgcn"])
def test_settings_round_trip_through_save_and_load(name: str, tmp_path: Path) -> None:
    data = _toy()
    model = build_model(name, {**FAST, "adversarial_eps": 0.25, "adversarial_weight": 0.5})
    model.fit(data)
    assert isinstance(model, EmbeddingRecommender)
    loaded = load_model(model.save(tmp_path / name))
    assert isinstance(loaded, EmbeddingRecommender)
    assert loaded.params() == model.params()
    assert (loaded.adversarial_eps, loaded.adversarial_weight) == (0.25, 0.5)
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))


def test_clrec_settings_round_trip(tmp_path: Path) -> None:
    params = {**CLREC_FAST, "adversarial_eps": 0.2, "adversarial_weight": 2.0}
    config = ClrecConfig.from_params(params)
    assert ClrecConfig.from_params(config.to_params()) == config
    model = ClrecRecommender(**params).fit(_toy())
    loaded = load_model(model.save(tmp_path / "clrec"))
    assert isinstance(loaded, ClrecRecommender)
    assert (loaded.config.adversarial_eps, loaded.config.adversarial_weight) == (0.2, 2.0)


@pytest.mark.parametrize("name", ["bpr", "lightgcn", "clrec"])
@pytest.mark.parametrize(
    "bad",
    [{"adversarial_eps": -0.1}, {"adversarial_eps": float("nan")}, {"adversarial_weight": -1.0}],
)
def test_bad_settings_are_refused(name: str, bad: dict[str, float]) -> None:
    with pytest.raises(ClrecError, match="adversarial_"):
        build_model(name, bad)
