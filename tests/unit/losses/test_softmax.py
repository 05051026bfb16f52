"""Full, in-batch and sampled softmax against hand-computed log-sum-exps."""

import math

import pytest
import torch

from clrec.errors import ClrecError
from clrec.losses.softmax import full_softmax_loss, in_batch_softmax_loss, sampled_softmax_loss

E = math.e


def test_full_softmax_hand_computed() -> None:
    users = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    positives = torch.tensor([2, 1])
    # u · iᵀ / 0.5: row 0 → [2, 0, 2] (target 2), row 1 → [0, 4, 4] (target 1)
    expected = (
        (-2.0 + math.log(2 * math.exp(2.0) + 1.0)) + (-4.0 + math.log(1.0 + 2 * math.exp(4.0)))
    ) / 2
    loss = full_softmax_loss(users, items, positives, temperature=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_in_batch_softmax_hand_computed_on_raw_dot_products() -> None:
    users = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positives = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    # u · pᵀ = [[2, 1], [0, 2]]; not cosine, so scaling the users changes the loss
    expected = ((-2.0 + math.log(E**2 + E)) + (-2.0 + math.log(1.0 + E**2))) / 2
    assert in_batch_softmax_loss(users, positives).item() == pytest.approx(expected, rel=1e-6)
    halved = ((-1.0 + math.log(E + E**0.5)) + (-1.0 + math.log(1.0 + E))) / 2
    assert in_batch_softmax_loss(users, positives, 2.0).item() == pytest.approx(halved, rel=1e-6)


def test_in_batch_softmax_masks_repeated_items_exactly() -> None:
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    # logits = [[1, 0, 0], [0, 1, 2], [1, 1, 2]]; rows 0 and 2 have the same positive item
    row1 = -1 + math.log(1 + E + E**2)
    plain = (-1 + math.log(E + 2)) + row1 + (-2 + math.log(2 * E + E**2))
    masked = (-1 + math.log(E + 1)) + row1 + (-2 + math.log(E + E**2))
    assert in_batch_softmax_loss(users, positives).item() == pytest.approx(plain / 3, rel=1e-6)
    item_ids = torch.tensor([9, 4, 9])
    loss = in_batch_softmax_loss(users, positives, item_ids=item_ids)
    assert loss.item() == pytest.approx(masked / 3, rel=1e-6)


def test_in_batch_equals_full_softmax_when_the_batch_is_the_catalogue() -> None:
    generator = torch.Generator().manual_seed(0)
    users = torch.randn(4, 3, generator=generator)
    items = torch.randn(4, 3, generator=generator)
    full = full_softmax_loss(users, items, torch.arange(4), temperature=0.7)
    in_batch = in_batch_softmax_loss(users, items, temperature=0.7)
    assert in_batch.item() == pytest.approx(full.item(), rel=1e-6)


def test_sampled_softmax_hand_computed() -> None:
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # scores 2, 1
    negatives = torch.tensor([[[1.0, 0.0], [0.0, 5.0]], [[3.0, 3.0], [0.0, -1.0]]])
    # row 0: [2 | 1, 0]; row 1: [1 | 3, -1]; the positive is column 0
    expected = (
        (-2.0 + math.log(E**2 + E + 1.0)) + (-1.0 + math.log(E + E**3 + math.exp(-1.0)))
    ) / 2
    loss = sampled_softmax_loss(users, positives, negatives)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    no_negatives = sampled_softmax_loss(users, positives, torch.zeros(2, 0, 2))
    assert no_negatives.item() == pytest.approx(0.0, abs=1e-7)


def test_raising_the_positive_score_lowers_every_loss() -> None:
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[0.5, 0.2], [0.1, 0.4], [0.3, 0.3]])
    negatives = items[None, 2:].expand(2, 1, 2)
    positives = items[:2]
    better = positives + torch.eye(2)  # each user's own positive moves towards the user
    index = torch.arange(2)
    assert full_softmax_loss(users, torch.cat([better, items[2:]]), index) < full_softmax_loss(
        users, items, index
    )
    assert in_batch_softmax_loss(users, better) < in_batch_softmax_loss(users, positives)
    assert sampled_softmax_loss(users, better, negatives) < sampled_softmax_loss(
        users, positives, negatives
    )


def test_gradients_flow() -> None:
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    items = torch.tensor([[0.5, 0.2], [0.1, 0.4], [0.3, 0.3]], requires_grad=True)
    negatives = torch.ones(2, 3, 2, requires_grad=True)
    total = (
        full_softmax_loss(users, items, torch.tensor([0, 1]))
        + in_batch_softmax_loss(users, items[:2], item_ids=torch.tensor([0, 1]))
        + sampled_softmax_loss(users, items[:2], negatives)
    )
    total.backward()
    for tensor in (users, items, negatives):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0
    assert items.grad is not None and items.grad[0, 0] < 0  # descent raises user 0's positive


def test_empty_batches() -> None:
    users = torch.zeros(0, 2, requires_grad=True)
    items = torch.ones(3, 2)
    assert full_softmax_loss(users, items, torch.zeros(0, dtype=torch.int64)).item() == 0.0
    assert in_batch_softmax_loss(users, torch.zeros(0, 2)).item() == 0.0
    loss = sampled_softmax_loss(users, torch.zeros(0, 2), torch.zeros(0, 4, 2))
    assert loss.item() == 0.0
    loss.backward()
    assert users.grad is not None


@pytest.mark.parametrize("temperature", [0.0, -0.5, math.nan])
def test_bad_temperature(temperature: float) -> None:
    users = torch.ones(2, 2)
    with pytest.raises(ClrecError, match="temperature"):
        full_softmax_loss(users, users, torch.tensor([0, 1]), temperature)
    with pytest.raises(ClrecError, match="temperature"):
        in_batch_softmax_loss(users, users, temperature)
    with pytest.raises(ClrecError, match="temperature"):
        sampled_softmax_loss(users, users, torch.ones(2, 1, 2), temperature)


def test_bad_arguments() -> None:
    users = torch.ones(2, 2)
    with pytest.raises(ClrecError, match="index"):
        full_softmax_loss(users, torch.ones(3, 2), torch.tensor([0, 3]))
    with pytest.raises(ClrecError, match="shape"):
        full_softmax_loss(users, torch.ones(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ClrecError, match="same D"):
        full_softmax_loss(users, torch.ones(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ClrecError, match="integer"):
        full_softmax_loss(users, torch.ones(3, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ClrecError, match="same shape"):
        in_batch_softmax_loss(users, torch.ones(3, 2))
    with pytest.raises(ClrecError, match="negatives"):
        sampled_softmax_loss(users, users, torch.ones(2, 2))
    with pytest.raises(ClrecError, match="negatives"):
        sampled_softmax_loss(users, users, torch.ones(2, 1, 3))


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
    pairwise = full_softmax_loss(users, catalogue, torch.tensor([2, 1, 2]), temperature=0.5)
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
