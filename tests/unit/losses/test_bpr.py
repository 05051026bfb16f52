"""BPR loss and its L2 term against hand-computed values."""

import math

import pytest
import torch

from clrec.errors import ClrecError
from clrec.losses.bpr import BPRLoss, bpr_loss, l2_penalty


def test_bpr_loss_hand_computed() -> None:
    users = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positives = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # scores 2, 2
    negatives = torch.tensor([[0.0, 1.0], [1.0, 1.5]])  # scores 0, 3
    # -log σ(2 - 0) and -log σ(2 - 3), averaged
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2
    loss = BPRLoss()(users, positives, negatives)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert bpr_loss(torch.tensor([2.0, 2.0]), torch.tensor([0.0, 3.0])).item() == pytest.approx(
        expected, rel=1e-6
    )


def test_bpr_loss_is_stable_for_large_margins() -> None:
    loss = bpr_loss(torch.tensor([-100.0]), torch.tensor([100.0]))
    assert loss.item() == pytest.approx(200.0)
    assert bpr_loss(torch.tensor([100.0]), torch.tensor([-100.0])).item() == pytest.approx(0.0)


def test_l2_term_hand_computed() -> None:
    users = torch.tensor([[1.0, 2.0], [0.0, 1.0]])  # ‖·‖² = 6
    positives = torch.tensor([[3.0, 0.0], [0.0, 0.0]])  # 9
    negatives = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # 4
    assert l2_penalty(users, positives, negatives).item() == pytest.approx(19 / (2 * 2))
    plain = BPRLoss()(users, positives, negatives)
    regularised = BPRLoss(reg_weight=0.5)(users, positives, negatives)
    assert (regularised - plain).item() == pytest.approx(0.5 * 19 / 4, rel=1e-6)


def test_l2_term_on_separate_embeddings() -> None:
    users = torch.ones(2, 3)
    layer0 = (torch.zeros(2, 3), torch.full((2, 3), 2.0))  # ‖·‖² = 0 and 24
    plain = BPRLoss()(users, users, users)
    regularised = BPRLoss(reg_weight=0.1)(users, users, users, reg_embeddings=layer0)
    assert (regularised - plain).item() == pytest.approx(0.1 * 24 / 4, rel=1e-6)


def test_gradient_pushes_positive_up() -> None:
    users = torch.tensor([[1.0, 0.0]])
    positives = torch.zeros(1, 2, requires_grad=True)
    negatives = torch.zeros(1, 2, requires_grad=True)
    BPRLoss()(users, positives, negatives).backward()
    assert positives.grad is not None and negatives.grad is not None
    assert positives.grad[0, 0] < 0 < negatives.grad[0, 0]  # descent raises s⁺, lowers s⁻


def test_bad_reg_weight() -> None:
    with pytest.raises(ClrecError):
        BPRLoss(reg_weight=-1.0)
    with pytest.raises(ClrecError):
        l2_penalty()
