"""SimpleX's cosine contrastive loss against hand-computed values."""

import pytest
import torch

from clrec.errors import ClrecError
from clrec.losses.cosine_contrastive import cosine_contrastive_loss


def test_cosine_contrastive_loss_by_hand() -> None:
    positive = torch.tensor([0.8, 1.0, 0.5])  # pairs of rows 0, 0, 1
    rows = torch.tensor([0, 0, 1])
    sampled = torch.tensor([[0.95, 0.2, -1e9], [0.7, 0.9, 0.6]])  # −1e9: an accidental hit
    margin, weight = 0.5, 10.0
    row_negatives = [(0.45 + 0 + 0) / 3, (0.2 + 0.4 + 0.1) / 3]
    expected = [
        0.2 + weight * row_negatives[0],
        0.0 + weight * row_negatives[0],
        0.5 + weight * row_negatives[1],
    ]
    value = cosine_contrastive_loss(positive, sampled, rows, margin, weight)
    assert value.item() == pytest.approx(sum(expected) / 3, rel=1e-6)
    dropped = cosine_contrastive_loss(positive, sampled, rows, margin, weight, drop_rate=0.5)
    kept = sorted(expected)[:2]  # ceil(3 · (1 − 0.5)) = 2 pairs kept, the largest loss left out
    assert dropped.item() == pytest.approx(sum(kept) / 2, rel=1e-6)


def test_easy_negatives_cost_nothing_and_get_no_gradient() -> None:
    positive = torch.tensor([1.0], requires_grad=True)
    sampled = torch.tensor([[0.1, 0.3]], requires_grad=True)
    value = cosine_contrastive_loss(positive, sampled, torch.tensor([0]), 0.9, 150.0)
    value.backward()
    assert value.item() == 0.0
    assert sampled.grad is not None and torch.count_nonzero(sampled.grad) == 0
    hard = torch.tensor([[0.95, 0.3]], requires_grad=True)
    cosine_contrastive_loss(positive.detach(), hard, torch.tensor([0]), 0.9, 150.0).backward()
    assert hard.grad is not None
    assert hard.grad[0].tolist() == pytest.approx([75.0, 0.0])  # w / K on the hard one only


def test_cosine_contrastive_loss_refuses_bad_settings() -> None:
    positive, sampled, rows = torch.tensor([0.5]), torch.zeros(1, 2), torch.tensor([0])
    with pytest.raises(ClrecError, match="margin"):
        cosine_contrastive_loss(positive, sampled, rows, 1.0, 1.0)
    with pytest.raises(ClrecError, match="negative_weight"):
        cosine_contrastive_loss(positive, sampled, rows, 0.5, -1.0)
    with pytest.raises(ClrecError, match="sampled_scores"):
        cosine_contrastive_loss(positive, torch.zeros(2), rows, 0.5, 1.0)
