"""Pointwise losses (BCE on logits, MSE on ratings) against hand-computed values."""

import math

import pytest
import torch

from clrec.errors import ClrecError
from clrec.losses.bce import bce_loss
from clrec.losses.mse import mse_loss


def test_bce_hand_computed() -> None:
    scores = torch.tensor([2.0, -1.0, 0.5])
    labels = torch.tensor([1.0, 0.0, 0.0])
    # -log σ(2), -log(1 - σ(-1)) = log(1 + e^-1), -log(1 - σ(0.5)) = log(1 + e^0.5)
    rows = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0)), math.log1p(math.exp(0.5))]
    expected = sum(rows) / 3
    assert bce_loss(scores, labels).item() == pytest.approx(expected, rel=1e-6)


def test_bce_is_stable_for_large_logits() -> None:
    wrong = bce_loss(torch.tensor([100.0, -100.0]), torch.tensor([0.0, 1.0]))
    assert wrong.item() == pytest.approx(100.0)
    right = bce_loss(torch.tensor([1000.0, -1000.0]), torch.tensor([1.0, 0.0]))
    assert right.item() == pytest.approx(0.0, abs=1e-7)


def test_bce_gradient_raises_positives_and_lowers_negatives() -> None:
    scores = torch.zeros(2, requires_grad=True)
    loss = bce_loss(scores, torch.tensor([1.0, 0.0]))
    loss.backward()
    assert scores.grad is not None
    # d/ds of mean BCE = (σ(s) - y) / B = ∓0.25 at s = 0
    assert scores.grad.tolist() == pytest.approx([-0.25, 0.25])


def test_bce_accepts_integer_and_bool_labels() -> None:
    scores = torch.tensor([0.3, -0.2])
    expected = bce_loss(scores, torch.tensor([1.0, 0.0])).item()
    assert bce_loss(scores, torch.tensor([1, 0])).item() == pytest.approx(expected)
    assert bce_loss(scores, torch.tensor([True, False])).item() == pytest.approx(expected)


def test_bce_bad_arguments() -> None:
    with pytest.raises(ClrecError, match="0 or 1"):
        bce_loss(torch.zeros(2), torch.tensor([0.5, 1.0]))
    with pytest.raises(ClrecError, match="same length"):
        bce_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ClrecError, match="1-d"):
        bce_loss(torch.zeros(2, 1), torch.zeros(2, 1))


def test_mse_hand_computed() -> None:
    predictions = torch.tensor([3.0, 4.5, 1.0])
    targets = torch.tensor([4.0, 4.0, 1.0])
    assert mse_loss(predictions, targets).item() == pytest.approx((1.0 + 0.25 + 0.0) / 3)


def test_mse_gradient() -> None:
    predictions = torch.tensor([3.0, 4.5], requires_grad=True)
    mse_loss(predictions, torch.tensor([4.0, 4.0])).backward()
    assert predictions.grad is not None
    # d/dp mean((p - t)²) = 2 (p - t) / B
    assert predictions.grad.tolist() == pytest.approx([-1.0, 0.5])


def test_mse_bad_arguments() -> None:
    with pytest.raises(ClrecError, match="same length"):
        mse_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ClrecError, match="1-d"):
        mse_loss(torch.zeros(2, 2), torch.zeros(2, 2))


def test_empty_batches_are_zero_with_a_gradient() -> None:
    scores = torch.zeros(0, requires_grad=True)
    for loss in (bce_loss(scores, torch.zeros(0)), mse_loss(scores, torch.zeros(0))):
        assert loss.item() == 0.0
        loss.backward()
    assert scores.grad is not None
