"""InfoNCE against hand-computed logits and log-sum-exps, its id masking and its gradient."""

import itertools
import math

import pytest
import torch

from clrec.errors import ClrecError
from clrec.losses.infonce import info_nce

SQRT2 = math.sqrt(2.0)


def _row_loss(logits: list[float], target: int) -> float:
    """``-logits[target] + log Σ exp(logits)``, written out by hand."""
    return -logits[target] + math.log(sum(math.exp(x) for x in logits))


def test_cosine_hand_computed() -> None:
    anchors = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # normalised: [1, 0], [0, 1]
    positives = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # normalised: [1, 0], [1/√2, 1/√2]
    # cosines / τ with τ = 0.5: row 0 → [2, √2], row 1 → [0, √2]
    expected = (
        (-2.0 + math.log(math.exp(2.0) + math.exp(SQRT2)))
        + (-SQRT2 + math.log(math.exp(0.0) + math.exp(SQRT2)))
    ) / 2
    assert info_nce(anchors, positives, 0.5).item() == pytest.approx(expected, rel=1e-6)


def test_symmetric_hand_computed() -> None:
    anchors = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    positives = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    forward = (_row_loss([2.0, SQRT2], 0) + _row_loss([0.0, SQRT2], 1)) / 2
    # positive → anchor reads the columns: column 0 → [2, 0], column 1 → [√2, √2] (= log 2)
    backward = ((-2.0 + math.log(math.exp(2.0) + 1.0)) + math.log(2.0)) / 2
    loss = info_nce(anchors, positives, 0.5, symmetric=True)
    assert loss.item() == pytest.approx((forward + backward) / 2, rel=1e-6)
    reverse = info_nce(positives, anchors, 0.5)
    assert reverse.item() == pytest.approx(backward, rel=1e-6)


def test_raw_dot_products_without_normalisation() -> None:
    anchors = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0], [2.0, 1.0]])
    # logits = a · pᵀ / 1 = [[1, 4], [0, 1]]
    expected = (
        (-1.0 + math.log(math.exp(1.0) + math.exp(4.0)))
        + (-1.0 + math.log(math.exp(0.0) + math.exp(1.0)))
    ) / 2
    loss = info_nce(anchors, positives, 1.0, normalize=False)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_duplicate_ids_are_masked_exactly() -> None:
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    # logits = [[1, 0, 0], [0, 1, 2], [1, 1, 2]]; rows 0 and 2 are the same node (id 5)
    e = math.e
    row0 = -1 + math.log(e + 1 + 1)
    row1 = -1 + math.log(1 + e + e**2)
    row2 = -2 + math.log(e + e + e**2)
    plain = info_nce(anchors, positives, 1.0, normalize=False)
    assert plain.item() == pytest.approx((row0 + row1 + row2) / 3, rel=1e-6)
    ids = torch.tensor([5, 7, 5])
    masked = info_nce(anchors, positives, 1.0, normalize=False, ids=ids)
    # row 0 loses column 2, row 2 loses column 0, row 1 is unchanged
    row0_masked = -1 + math.log(e + 1)
    row2_masked = -2 + math.log(e + e**2)
    assert masked.item() == pytest.approx((row0_masked + row1 + row2_masked) / 3, rel=1e-6)
    expected_drop = ((row0 - row0_masked) + (row2 - row2_masked)) / 3
    assert (plain - masked).item() == pytest.approx(expected_drop, rel=1e-5)


def test_distinct_ids_change_nothing_and_one_id_leaves_only_the_diagonal() -> None:
    generator = torch.Generator().manual_seed(0)
    anchors = torch.randn(4, 3, generator=generator)
    positives = torch.randn(4, 3, generator=generator)
    plain = info_nce(anchors, positives, 0.2)
    distinct = info_nce(anchors, positives, 0.2, ids=torch.arange(4))
    assert distinct.item() == pytest.approx(plain.item(), rel=1e-6)
    same = info_nce(anchors, positives, 0.2, ids=torch.zeros(4, dtype=torch.int64))
    assert same.item() == pytest.approx(0.0, abs=1e-7)


def test_loss_decreases_as_positive_pairs_move_together() -> None:
    anchors = torch.eye(3)
    spread = torch.ones(3, 3) / math.sqrt(3)  # every positive the same direction: loss log 3
    losses = [
        info_nce(anchors, (1 - t) * spread + t * anchors, 0.5).item()
        for t in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    assert losses[0] == pytest.approx(math.log(3), rel=1e-6)
    assert all(a > b for a, b in itertools.pairwise(losses))


def test_gradient_flows_and_a_step_lowers_the_loss() -> None:
    generator = torch.Generator().manual_seed(1)
    anchors = torch.randn(5, 4, generator=generator, requires_grad=True)
    positives = torch.randn(5, 4, generator=generator, requires_grad=True)
    ids = torch.tensor([0, 1, 0, 2, 3])
    loss = info_nce(anchors, positives, 0.3, ids=ids, symmetric=True)
    loss.backward()
    assert anchors.grad is not None and positives.grad is not None
    assert torch.isfinite(anchors.grad).all() and anchors.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = info_nce(
            anchors - 0.05 * anchors.grad,
            positives - 0.05 * positives.grad,
            0.3,
            ids=ids,
            symmetric=True,
        )
    assert stepped < loss


def test_empty_batch_is_a_zero_with_a_gradient() -> None:
    anchors = torch.zeros(0, 4, requires_grad=True)
    positives = torch.zeros(0, 4, requires_grad=True)
    loss = info_nce(anchors, positives, 0.1, ids=torch.zeros(0, dtype=torch.int64))
    assert loss.shape == () and loss.item() == 0.0
    loss.backward()
    assert anchors.grad is not None and anchors.grad.shape == (0, 4)


def test_deterministic() -> None:
    generator = torch.Generator().manual_seed(2)
    anchors = torch.randn(8, 3, generator=generator)
    positives = torch.randn(8, 3, generator=generator)
    first = info_nce(anchors, positives, 0.1, symmetric=True)
    second = info_nce(anchors.clone(), positives.clone(), 0.1, symmetric=True)
    assert torch.equal(first, second)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    generator = torch.Generator().manual_seed(3)
    anchors = torch.randn(6, 5, generator=generator)
    positives = torch.randn(6, 5, generator=generator)
    ids = torch.tensor([1, 2, 1, 3, 4, 2])
    cpu = info_nce(anchors, positives, 0.2, ids=ids, symmetric=True)
    cuda = info_nce(anchors.cuda(), positives.cuda(), 0.2, ids=ids, symmetric=True)
    assert cuda.device.type == "cuda"
    assert cuda.item() == pytest.approx(cpu.item(), rel=1e-5)


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, math.inf])
def test_bad_temperature(temperature: float) -> None:
    with pytest.raises(ClrecError, match="temperature"):
        info_nce(torch.ones(2, 2), torch.ones(2, 2), temperature)


def test_bad_shapes_and_ids() -> None:
    with pytest.raises(ClrecError, match="same shape"):
        info_nce(torch.ones(2, 2), torch.ones(3, 2), 0.1)
    with pytest.raises(ClrecError, match="2-d"):
        info_nce(torch.ones(2), torch.ones(2), 0.1)
    with pytest.raises(ClrecError, match="ids"):
        info_nce(torch.ones(2, 2), torch.ones(2, 2), 0.1, ids=torch.tensor([0, 1, 2]))
    with pytest.raises(ClrecError, match="integer"):
        info_nce(torch.ones(2, 2), torch.ones(2, 2), 0.1, ids=torch.tensor([0.0, 1.0]))
