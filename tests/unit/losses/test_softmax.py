"""Full, in-batch and sampled softmax against hand-computed log-sum-exps."""

import math

import pytest
import torch
from torch.nn import functional

E = math.e


def test_catalogue_softmax_equals_pairwise_full_softmax_and_hand_value() -> None:
    from clrec.losses.softmax import catalogue_softmax_loss

    logits = torch.tensor([[2.0, 0.0, 2.0], [0.0, 4.0, 4.0]])
    rows = torch.tensor([0, 1, 1])
    items = torch.tensor([2, 1, 2])
    row0 = -2.0 + math.log(2 * math.exp(2.0) + 1.0)
    row1 = -4.0 + math.log(1.0 + 2 * math.exp(4.0))
    expected = (row0 + 2 * row1) / 3  # every pair counts once; user 1 has two positives
    assert catalogue_softmax_loss(logits, rows, items).item() == pytest.approx(expected, rel=1e-6)
    users = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    catalogue = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    pairwise = functional.cross_entropy(users @ catalogue.T / 0.5, torch.tensor([2, 1, 2]))
    per_user = catalogue_softmax_loss(users[:2] @ catalogue.T, rows, items, temperature=0.5)
    assert per_user.item() == pytest.approx(pairwise.item(), rel=1e-6)


def test_sampled_catalogue_softmax_by_hand() -> None:
    from clrec.losses.softmax import sampled_catalogue_softmax_loss

    positive = torch.tensor([2.0, 0.5])
    sampled = torch.tensor([[1.0, 0.0, -1e9]])  # the third sample is the row's own positive
    rows = torch.tensor([0, 0])
    correction = math.log(10 / 3)
    negatives = math.log(math.exp(1.0) + math.exp(0.0)) + correction
    expected = [math.log(math.exp(p) + math.exp(negatives)) - p for p in (2.0, 0.5)]
    value = sampled_catalogue_softmax_loss(positive, sampled, rows, 1.0, correction)
    assert value.item() == pytest.approx(sum(expected) / 2, rel=1e-6)
    halved = sampled_catalogue_softmax_loss(positive * 0.5, sampled * 0.5, rows, 0.5, correction)
    assert halved.item() == pytest.approx(value.item(), rel=1e-6)  # the temperature divides
    dropped = sampled_catalogue_softmax_loss(positive, sampled, rows, 1.0, correction, 0.5)
    assert dropped.item() == pytest.approx(min(expected), rel=1e-6)


def test_sampled_softmax_over_the_whole_catalogue_is_the_catalogue_softmax() -> None:
    """One positive per row and every item sampled once (the positive masked, no correction):
    the same denominators as the exact catalogue softmax."""
    from clrec.losses.softmax import catalogue_softmax_loss, sampled_catalogue_softmax_loss

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 7, generator=generator)  # (B, I)
    rows, items = torch.arange(4), torch.tensor([3, 0, 6, 3])
    masked = logits.clone()
    masked[rows, items] = -1e9
    exact = catalogue_softmax_loss(logits, rows, items, temperature=0.5)
    sampled = sampled_catalogue_softmax_loss(logits[rows, items], masked, rows, 0.5)
    assert sampled.item() == pytest.approx(exact.item(), rel=1e-5)


def test_sampled_softmax_stays_finite_when_every_sample_is_a_positive() -> None:
    from clrec.losses.softmax import sampled_catalogue_softmax_loss

    positive = torch.tensor([1.0], requires_grad=True)
    sampled = torch.full((1, 3), -1e9, requires_grad=True)
    loss = sampled_catalogue_softmax_loss(positive, sampled, torch.tensor([0]), 0.2, 2.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert positive.grad is not None and sampled.grad is not None
    assert torch.isfinite(positive.grad).all() and torch.isfinite(sampled.grad).all()


def test_sampled_softmax_with_per_sample_log_q_correction_by_hand() -> None:
    """Samples drawn with probabilities q: each sample's logit gets −log(K · q_k) before the
    log-sum-exp; with uniform q that is the scalar log(I / K) correction."""
    from clrec.losses.softmax import sampled_catalogue_softmax_loss

    positive = torch.tensor([1.5])
    sampled = torch.tensor([[0.5, 2.0, -1.0]])  # (B=1, K=3)
    q = torch.tensor([0.5, 0.1, 0.05])
    correction = -torch.log(3 * q)
    scores = (0.5, 2.0, -1.0)
    negatives = math.log(
        sum(math.exp(s) / (3 * p) for s, p in zip(scores, q.tolist(), strict=True))
    )
    expected = math.log(math.exp(1.5) + math.exp(negatives)) - 1.5
    value = sampled_catalogue_softmax_loss(positive, sampled, torch.tensor([0]), 1.0, correction)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    uniform = torch.full((3,), math.log(10 / 3))
    as_tensor = sampled_catalogue_softmax_loss(positive, sampled, torch.tensor([0]), 0.5, uniform)
    as_scalar = sampled_catalogue_softmax_loss(
        positive, sampled, torch.tensor([0]), 0.5, math.log(10 / 3)
    )
    assert as_tensor.item() == pytest.approx(as_scalar.item(), rel=1e-6)
