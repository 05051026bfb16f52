"""Loss weights are validated and combine() weighs the terms as the docstring says."""

import math

import pytest
import torch

from clrec.errors import ClrecError
from clrec.losses.objective import LossWeights, combine


def test_defaults() -> None:
    weights = LossWeights()
    assert (weights.contrastive, weights.alpha) == (0.5, 0.5)
    assert (weights.alignment, weights.augmentation, weights.social) == (0.1, 0.0, 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"contrastive": -0.1},
        {"alpha": -0.01},
        {"alpha": 1.5},
        {"alignment": -1.0},
        {"augmentation": math.nan},
        {"social": math.inf},
    ],
)
def test_bad_weights(kwargs: dict[str, float]) -> None:
    with pytest.raises(ClrecError):
        LossWeights(**kwargs)


def test_combine_hand_computed() -> None:
    weights = LossWeights(contrastive=0.5, alpha=0.25, alignment=0.1, augmentation=2.0, social=3.0)
    terms = {
        "intra_user": torch.tensor(2.0),
        "cross_user": torch.tensor(4.0),
        "alignment": torch.tensor(3.0),
        "augmentation": torch.tensor(0.5),
        "social": torch.tensor(0.1),
    }
    total, logged = combine(torch.tensor(1.0), terms, weights)
    # 1 + 0.5 · (0.25 · 2 + 0.75 · 4) + 0.1 · 3 + 2 · 0.5 + 3 · 0.1
    expected = 1.0 + 0.5 * 3.5 + 0.3 + 1.0 + 0.3
    assert total.item() == pytest.approx(expected)
    assert logged == pytest.approx(
        {
            "supervised": 1.0,
            "intra_user": 2.0,
            "cross_user": 4.0,
            "alignment": 3.0,
            "augmentation": 0.5,
            "social": 0.1,
            "total": expected,
        }
    )
    assert all(isinstance(value, float) for value in logged.values())


def test_missing_terms_contribute_nothing() -> None:
    supervised = torch.tensor(0.7)
    total, logged = combine(supervised, {}, LossWeights(alignment=1.0))
    assert total.item() == pytest.approx(0.7)
    assert set(logged) == {"supervised", "total"}
    only_intra, logged = combine(supervised, {"intra_user": torch.tensor(2.0)}, LossWeights())
    assert only_intra.item() == pytest.approx(0.7 + 0.5 * 0.5 * 2.0)
    assert set(logged) == {"supervised", "intra_user", "total"}


def test_alpha_one_uses_only_the_intra_user_term_and_zero_weights_never_poison() -> None:
    terms = {"intra_user": torch.tensor(2.0), "cross_user": torch.tensor(math.nan)}
    total, logged = combine(torch.tensor(1.0), terms, LossWeights(contrastive=1.0, alpha=1.0))
    assert total.item() == pytest.approx(3.0)
    assert math.isnan(logged["cross_user"])  # still logged


def test_without_a_supervised_loss() -> None:
    total, logged = combine(None, {"social": torch.tensor(2.0)}, LossWeights(social=0.5))
    assert total.item() == pytest.approx(1.0)
    assert logged["supervised"] == 0.0 and logged["total"] == pytest.approx(1.0)


def test_gradients_carry_the_weights() -> None:
    supervised = torch.tensor(1.0, requires_grad=True)
    intra = torch.tensor(2.0, requires_grad=True)
    cross = torch.tensor(3.0, requires_grad=True)
    align = torch.tensor(4.0, requires_grad=True)
    weights = LossWeights(contrastive=0.4, alpha=0.25, alignment=0.3)
    total, _ = combine(
        supervised, {"intra_user": intra, "cross_user": cross, "alignment": align}, weights
    )
    total.backward()
    assert supervised.grad is not None and supervised.grad.item() == pytest.approx(1.0)
    assert intra.grad is not None and intra.grad.item() == pytest.approx(0.4 * 0.25)
    assert cross.grad is not None and cross.grad.item() == pytest.approx(0.4 * 0.75)
    assert align.grad is not None and align.grad.item() == pytest.approx(0.3)


def test_bad_terms() -> None:
    weights = LossWeights()
    with pytest.raises(ClrecError, match="unknown loss term"):
        combine(torch.tensor(1.0), {"contrast": torch.tensor(1.0)}, weights)
    with pytest.raises(ClrecError, match="scalar"):
        combine(torch.tensor(1.0), {"social": torch.ones(2)}, weights)
    with pytest.raises(ClrecError, match="scalar"):
        combine(torch.ones(3), {}, weights)
    with pytest.raises(ClrecError, match="at least one"):
        combine(None, {}, weights)
