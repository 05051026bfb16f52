"""The contrastive terms (intra-user, cross-user, alignment, social, augmentation views)."""

import math
from collections.abc import Callable

import pytest
import torch

from clrec.errors import ClrecError
from clrec.losses.alignment import alignment_loss
from clrec.losses.augmentation import simgcl_noise, view_contrast_loss
from clrec.losses.cross_user import cross_user_loss
from clrec.losses.infonce import info_nce
from clrec.losses.intra_user import intra_user_loss
from clrec.losses.social import social_loss

SQRT2 = math.sqrt(2.0)

# Shared 2 × 2 example. Normalised first rows: [1, 0], [0, 1]; second rows: [1, 0],
# [1/√2, 1/√2]. With τ = 0.5 the logits are [[2, √2], [0, √2]].
FIRST = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
SECOND = torch.tensor([[1.0, 0.0], [2.0, 2.0]])
FORWARD = (
    (-2.0 + math.log(math.exp(2.0) + math.exp(SQRT2))) + (-SQRT2 + math.log(1.0 + math.exp(SQRT2)))
) / 2
# second → first reads the columns: [2, 0] (target 0) and [√2, √2] (target 1, = log 2)
BACKWARD = ((-2.0 + math.log(math.exp(2.0) + 1.0)) + math.log(2.0)) / 2

# Shared 3 × 2 example for masking. Normalised first rows: [1, 0], [0, 1], [1, 0]; second
# rows: [1, 0], [0, 1], [0, 1]. With τ = 1 the logits are [[1, 0, 0], [0, 1, 1], [1, 0, 0]].
FIRST3 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 0.0]])
SECOND3 = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
E = math.e
ROWS3 = [-1 + math.log(E + 2), -1 + math.log(1 + 2 * E), math.log(E + 2)]
# rows 0 and 2 share an id: row 0 loses column 2, row 2 loses column 0
ROWS3_MASKED = [-1 + math.log(E + 1), ROWS3[1], math.log(2.0)]


@pytest.mark.parametrize("term", [intra_user_loss, cross_user_loss, social_loss])
def test_one_way_terms_hand_computed(term: Callable[..., torch.Tensor]) -> None:
    assert term(FIRST, SECOND, 0.5).item() == pytest.approx(FORWARD, rel=1e-6)


def test_intra_user_masks_rows_of_the_same_user() -> None:
    plain = intra_user_loss(FIRST3, SECOND3, 1.0)
    masked = intra_user_loss(FIRST3, SECOND3, 1.0, users=torch.tensor([4, 8, 4]))
    assert plain.item() == pytest.approx(sum(ROWS3) / 3, rel=1e-6)
    assert masked.item() == pytest.approx(sum(ROWS3_MASKED) / 3, rel=1e-6)


def test_cross_user_masks_rows_of_the_same_item() -> None:
    masked = cross_user_loss(FIRST3, SECOND3, 1.0, items=torch.tensor([0, 1, 0]))
    assert masked.item() == pytest.approx(sum(ROWS3_MASKED) / 3, rel=1e-6)
    unmasked = cross_user_loss(FIRST3, SECOND3, 1.0, items=torch.tensor([0, 1, 2]))
    assert unmasked.item() == pytest.approx(sum(ROWS3) / 3, rel=1e-6)


def test_social_masks_a_repeated_user() -> None:
    masked = social_loss(FIRST3, SECOND3, 1.0, ids=torch.tensor([3, 2, 3]))
    assert masked.item() == pytest.approx(sum(ROWS3_MASKED) / 3, rel=1e-6)


def test_alignment_is_symmetric_hand_computed() -> None:
    loss = alignment_loss(FIRST, SECOND, 0.5)
    assert loss.item() == pytest.approx((FORWARD + BACKWARD) / 2, rel=1e-6)
    swapped = alignment_loss(SECOND, FIRST, 0.5)
    assert swapped.item() == pytest.approx(loss.item(), rel=1e-6)


def test_alignment_masks_a_repeated_item_in_both_directions() -> None:
    ids = torch.tensor([7, 1, 7])
    loss = alignment_loss(FIRST3, SECOND3, 1.0, ids=ids)
    # columns of the logits: [1, 0, 1] (target 0), [0, 1, 0] (target 1), [0, 1, 0] (target 2);
    # column 0 loses row 2 and column 2 loses row 0
    backward = [-1 + math.log(E + 1), -1 + math.log(2 + E), math.log(E + 1)]
    expected = (sum(ROWS3_MASKED) / 3 + sum(backward) / 3) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_view_contrast_hand_computed_and_prefers_matching_views() -> None:
    assert view_contrast_loss(FIRST, SECOND, 0.5).item() == pytest.approx(FORWARD, rel=1e-6)
    generator = torch.Generator().manual_seed(0)
    nodes = torch.randn(6, 8, generator=generator)
    view_a = simgcl_noise(nodes, 0.1, generator)
    view_b = simgcl_noise(nodes, 0.1, generator)
    matched = view_contrast_loss(view_a, view_b, 0.2)
    shuffled = view_contrast_loss(view_a, view_b.roll(1, dims=0), 0.2)
    assert matched < shuffled
    ids = torch.tensor([0, 1, 2, 0, 3, 4])
    assert view_contrast_loss(view_a, view_b, 0.2, ids=ids).item() == pytest.approx(
        info_nce(view_a, view_b, 0.2, ids=ids).item()
    )


def test_terms_decrease_as_positive_pairs_move_together() -> None:
    anchors = torch.eye(3)
    spread = torch.ones(3, 3)
    for term in (intra_user_loss, cross_user_loss, alignment_loss, social_loss):
        far = term(anchors, spread, 0.5)
        near = term(anchors, 0.5 * spread + anchors, 0.5)
        same = term(anchors, anchors, 0.5)
        assert far.item() == pytest.approx(math.log(3), rel=1e-6)
        assert far > near > same


def test_gradients_flow_through_every_term() -> None:
    generator = torch.Generator().manual_seed(1)
    first = torch.randn(4, 3, generator=generator, requires_grad=True)
    second = torch.randn(4, 3, generator=generator, requires_grad=True)
    ids = torch.tensor([0, 1, 0, 2])
    total = (
        intra_user_loss(first, second, 0.2, users=ids)
        + cross_user_loss(first, second, 0.2, items=ids)
        + alignment_loss(first, second, 0.2, ids=ids)
        + social_loss(first, second, 0.2, ids=ids)
        + view_contrast_loss(simgcl_noise(first, 0.1), second, 0.2, ids=ids)
    )
    total.backward()
    for tensor in (first, second):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.inf])
def test_bad_temperature(temperature: float) -> None:
    ones = torch.ones(2, 2)
    for term in (intra_user_loss, cross_user_loss, alignment_loss, social_loss):
        with pytest.raises(ClrecError, match="temperature"):
            term(ones, ones, temperature)
    with pytest.raises(ClrecError, match="temperature"):
        view_contrast_loss(ones, ones, temperature)


def test_simgcl_noise_has_length_eps_in_the_embeddings_orthant() -> None:
    embeddings = torch.tensor([[1.0, -2.0, 0.5], [-0.1, -0.3, 4.0]])
    noisy = simgcl_noise(embeddings, 0.2, torch.Generator().manual_seed(0))
    delta = noisy - embeddings  # (N, D)
    assert delta.norm(dim=1).tolist() == pytest.approx([0.2, 0.2], rel=1e-5)
    assert (delta * torch.sign(embeddings) > 0).all()  # same sign as the embedding
    zero = torch.tensor([[0.0, 1.0]])
    assert simgcl_noise(zero, 0.5)[0, 0].item() == 0.0  # sign(0) = 0: no noise there
    assert torch.equal(simgcl_noise(embeddings, 0.0), embeddings)


def test_simgcl_noise_is_seeded_and_passes_gradients() -> None:
    embeddings = torch.randn(4, 3, generator=torch.Generator().manual_seed(5))
    first = simgcl_noise(embeddings, 0.1, torch.Generator().manual_seed(9))
    second = simgcl_noise(embeddings, 0.1, torch.Generator().manual_seed(9))
    other = simgcl_noise(embeddings, 0.1, torch.Generator().manual_seed(10))
    assert torch.equal(first, second) and not torch.equal(first, other)
    leaf = embeddings.clone().requires_grad_(True)
    simgcl_noise(leaf, 0.1).sum().backward()
    assert leaf.grad is not None and torch.equal(leaf.grad, torch.ones(4, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_simgcl_noise_on_cuda() -> None:
    embeddings = torch.randn(4, 3, generator=torch.Generator().manual_seed(5))
    cpu = simgcl_noise(embeddings, 0.1, torch.Generator().manual_seed(9))
    cuda = simgcl_noise(embeddings.cuda(), 0.1, torch.Generator().manual_seed(9))
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu)
    on_device = simgcl_noise(embeddings.cuda(), 0.1, torch.Generator(device="cuda").manual_seed(9))
    assert on_device.device.type == "cuda"
    again = simgcl_noise(embeddings.cuda(), 0.1, torch.Generator(device="cuda").manual_seed(9))
    assert torch.equal(on_device, again)
    assert simgcl_noise(embeddings.cuda(), 0.1).device.type == "cuda"


def test_simgcl_noise_bad_arguments() -> None:
    with pytest.raises(ClrecError, match="eps"):
        simgcl_noise(torch.ones(2, 2), -0.1)
    with pytest.raises(ClrecError, match="2-d"):
        simgcl_noise(torch.ones(2), 0.1)
    with pytest.raises(ClrecError, match="floating"):
        simgcl_noise(torch.ones(2, 2, dtype=torch.int64), 0.1)
