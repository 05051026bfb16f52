"""The truncated loss against noisy positives: its value by hand, its gradient, the clrec
model's drop-rate schedule, and that the pairs it leaves out are mostly the fake ones."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor

from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.losses import softmax as softmax_module
from clrec.losses.softmax import catalogue_softmax_loss, truncated_mean
from clrec.models.clrec import ClrecConfig, ClrecRecommender
from clrec.models.clrec import objective as clrec_module
from clrec.models.registry import build_model, load_model

FAST: dict[str, Any] = {
    "embedding_size": 16,
    "batch_size": 8,
    "lr": 0.05,
    "seed": 0,
    "eval_every": 1000,
    "prior": "none",
    "content": {"modalities": []},
    "weights": {"contrastive": 0.0, "alignment": 0.0},
    "id_dropout": 0.0,
    "progress": False,
    "device": "cpu",
    "num_threads": 1,
}


def test_truncated_mean_leaves_out_the_largest_share_by_hand() -> None:
    losses = torch.tensor([1.0, 5.0, 2.0, 4.0])
    assert truncated_mean(losses, 0.0).item() == pytest.approx(3.0)
    assert truncated_mean(losses, 0.25).item() == pytest.approx((1 + 2 + 4) / 3)
    assert truncated_mean(losses, 0.5).item() == pytest.approx(1.5)
    assert truncated_mean(losses, 0.9).item() == pytest.approx(1.0)  # at least one kept
    with pytest.raises(ClrecError, match="drop_rate"):
        truncated_mean(losses, 1.0)


def test_dropped_pairs_get_no_gradient() -> None:
    losses = torch.tensor([1.0, 5.0, 2.0, 4.0], requires_grad=True)
    truncated_mean(losses * 1.0, 0.5).backward()
    assert losses.grad is not None
    assert losses.grad.tolist() == [0.5, 0.0, 0.5, 0.0]


def test_catalogue_softmax_drops_the_worst_pair_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0, 2.0], [0.0, 4.0, 4.0]])
    rows, items = torch.tensor([0, 1, 1]), torch.tensor([2, 1, 2])
    row0 = float(np.log(2 + np.exp(-2.0)))  # −log p of each of user 0's pairs: the largest
    row1 = float(np.log(2 + np.exp(-4.0)))
    full = catalogue_softmax_loss(logits, rows, items)
    assert full.item() == pytest.approx((row0 + 2 * row1) / 3, rel=1e-6)
    assert catalogue_softmax_loss(logits, rows, items, drop_rate=0.4).item() == pytest.approx(
        row1, rel=1e-6
    )


def _blocks_with_fakes() -> tuple[Dataset, int]:
    """40 users in two blocks of 20 items; each user has 8 items of its block and one fake
    item of the other block."""
    rng = np.random.default_rng(1)
    rows = []
    for user in range(40):
        own, other = (0, 20) if user < 20 else (20, 0)
        rows += [(f"u{user}", f"i{own + item}") for item in rng.choice(20, 8, replace=False)]
        rows.append((f"u{user}", f"i{other + int(rng.integers(20))}"))
    return Dataset.from_external("blocks", pd.DataFrame(rows, columns=["user", "item"])), 40


def test_the_model_follows_the_schedule_and_drops_mostly_fake_pairs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Epoch e leaves out rate · min(1, e / warm-up) of its pairs; in the last epoch the pairs
    with the largest loss (the ones dropped) are mostly the fake cross-block ones."""
    data, _ = _blocks_with_fakes()
    item_block = np.array([int(item[1:]) >= 20 for item in data.item_index()])
    calls: list[tuple[float, Tensor, Tensor, Tensor]] = []
    original = softmax_module.catalogue_softmax_loss

    def spy(logits: Tensor, rows: Tensor, items: Tensor, tau: float, drop: float) -> Tensor:
        calls.append((drop, logits.detach(), rows, items))
        return original(logits, rows, items, tau, drop)

    monkeypatch.setattr(clrec_module, "catalogue_softmax_loss", spy)
    params = {**FAST, "epochs": 30, "denoise_drop_rate": 0.1, "denoise_warmup_epochs": 4}
    ClrecRecommender(**params).fit(data)
    per_epoch = len(calls) // 30
    rates = [calls[e * per_epoch][0] for e in range(6)]
    assert rates == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])

    fake, dropped = 0, 0
    for _, logits, rows, items in calls[-per_epoch:]:
        losses = -torch.log_softmax(logits / params.get("temperature", 0.2), dim=1)[rows, items]
        blocks = torch.as_tensor(item_block)[items]
        # a row's own block is the one most of its positives are in
        own = torch.zeros(len(logits)).index_add_(0, rows, blocks.float())
        count = torch.zeros(len(logits)).index_add_(0, rows, torch.ones(len(rows)))
        is_fake = blocks != (own / count > 0.5)[rows]
        worst = torch.topk(losses, len(losses) - int(np.ceil(len(losses) * 0.9))).indices
        fake += int(is_fake[worst].sum())
        dropped += len(worst)
    # fakes are 1 pair in 9; among the dropped ones they are more than 3 times as common
    assert dropped > 0 and fake / dropped > 3 / 9


def test_zero_rate_is_the_plain_mean_and_rate_changes_training() -> None:
    data, _ = _blocks_with_fakes()
    users = np.arange(data.n_users)
    plain = ClrecRecommender(**FAST, epochs=3).fit(data)
    again = ClrecRecommender(**FAST, epochs=3, denoise_warmup_epochs=9).fit(data)
    np.testing.assert_array_equal(plain.score(users), again.score(users))
    denoised = ClrecRecommender(**FAST, epochs=3, denoise_drop_rate=0.2).fit(data)
    assert not np.array_equal(plain.score(users), denoised.score(users))


def test_settings_round_trip_and_bad_ones_are_refused(tmp_path: Path) -> None:
    params = {**FAST, "epochs": 1, "denoise_drop_rate": 0.2, "denoise_warmup_epochs": 3}
    config = ClrecConfig.from_params(params)
    assert ClrecConfig.from_params(config.to_params()) == config
    model = ClrecRecommender(**params).fit(_blocks_with_fakes()[0])
    loaded = load_model(model.save(tmp_path / "clrec"))
    assert isinstance(loaded, ClrecRecommender)
    assert (loaded.config.denoise_drop_rate, loaded.config.denoise_warmup_epochs) == (0.2, 3)
    for bad in (
        {"denoise_drop_rate": 1.0},
        {"denoise_drop_rate": -0.1},
        {"denoise_warmup_epochs": -1},
        {"denoise_drop_rate": 0.2, "supervised": "bpr"},
    ):
        with pytest.raises(ClrecError, match="denoise"):
            build_model("clrec", bad)
