"""Modality fusion: masks to present modalities, zeros for items with none, weights that sum
to one, modality dropout that never empties an item, and gradients to every projection."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from clrec.errors import ClrecError
from clrec.models.fusion import ModalityFusion

DIMS = {"text": 5, "image": 3, "tags": 4}
N = 6


def _inputs(seed: int = 0) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Six items: all three, text only, image only, tags + image, none, text + tags."""
    generator = torch.Generator().manual_seed(seed)
    features = {name: torch.randn(N, dim, generator=generator) for name, dim in DIMS.items()}
    present = {
        "text": torch.tensor([True, True, False, False, False, True]),
        "image": torch.tensor([True, False, True, True, False, False]),
        "tags": torch.tensor([True, False, False, True, False, True]),
    }
    return features, present


def _fusion(kind: str = "attention", **options: object) -> ModalityFusion:
    torch.manual_seed(7)
    fusion = ModalityFusion(DIMS, 8, kind=kind, **options)  # type: ignore[arg-type]
    if fusion.query is not None:  # a non-uniform gate, so attention differs from the mean
        with torch.no_grad():
            fusion.query.normal_()
    return fusion.eval()


def _projections(fusion: ModalityFusion, features: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: fusion.projections[name](features[name]) for name in DIMS}


@pytest.mark.parametrize("kind", ["attention", "mean"])
@pytest.mark.parametrize("hidden", [0, 16])
def test_single_modality_items_get_exactly_that_projection(kind: str, hidden: int) -> None:
    fusion = _fusion(kind, hidden=hidden)
    features, present = _inputs()
    with torch.no_grad():
        fused = fusion(features, present)
        projected = _projections(fusion, features)
    assert fused.shape == (N, 8)
    torch.testing.assert_close(fused[1], projected["text"][1], rtol=0, atol=1e-6)
    torch.testing.assert_close(fused[2], projected["image"][2], rtol=0, atol=1e-6)
    assert torch.equal(fused[4], torch.zeros(8))  # no modality: a zero vector


def test_missing_modality_features_do_not_leak() -> None:
    fusion = _fusion()
    features, present = _inputs()
    other = {name: value.clone() for name, value in features.items()}
    other["text"][2] = 1e3  # item 2 has no text: its text row must not matter
    other["image"][1] = -1e3  # item 1 has no image
    for name in DIMS:
        other[name][4] = 50.0  # item 4 has nothing
    with torch.no_grad():
        assert torch.equal(fusion(features, present), fusion(other, present))


def test_mean_fusion_averages_present_projections() -> None:
    fusion = _fusion("mean")
    features, present = _inputs()
    with torch.no_grad():
        fused = fusion(features, present)
        p = _projections(fusion, features)
    expected = torch.stack(
        [
            (p["text"][0] + p["image"][0] + p["tags"][0]) / 3,
            p["text"][1],
            p["image"][2],
            (p["image"][3] + p["tags"][3]) / 2,
            torch.zeros(8),
            (p["text"][5] + p["tags"][5]) / 2,
        ]
    )
    torch.testing.assert_close(fused, expected)


def test_attention_weights_are_a_softmax_over_present_modalities() -> None:
    fusion = _fusion("attention")
    features, present = _inputs()
    assert fusion.gate is not None and fusion.query is not None
    with torch.no_grad():
        fused = fusion(features, present)
        p = _projections(fusion, features)
        expected = []
        for item in range(N):
            names = [m for m in sorted(DIMS) if present[m][item]]
            if not names:
                expected.append(torch.zeros(8))
                continue
            vectors = torch.stack([p[m][item] for m in names])  # (k, D)
            weights = torch.softmax(torch.tanh(fusion.gate(vectors)) @ fusion.query, dim=0)
            assert float(weights.sum()) == pytest.approx(1.0)
            expected.append(weights @ vectors)
    torch.testing.assert_close(fused, torch.stack(expected))
    # a convex combination: not the plain mean once the gate is non-uniform
    mean = (p["image"][3] + p["tags"][3]) / 2
    assert not torch.allclose(fused[3], mean)


def test_parts_are_each_modalitys_weighted_term_and_sum_to_the_fused_vector() -> None:
    """What an explanation splits an item by: one term per modality (in name order), zero
    for a missing one, a present single modality's term its whole projection."""
    fusion = _fusion("attention")
    features, present = _inputs()
    with torch.no_grad():
        parts = fusion.parts(features, present)  # (N, M, D)
        fused = fusion(features, present)
        p = _projections(fusion, features)
    assert fusion.names == ["image", "tags", "text"] and parts.shape == (N, 3, 8)
    torch.testing.assert_close(parts.sum(dim=1), fused)
    assert torch.equal(parts[1, 0], torch.zeros(8)) and torch.equal(parts[1, 1], torch.zeros(8))
    torch.testing.assert_close(parts[1, 2], p["text"][1], rtol=0, atol=1e-6)
    assert torch.equal(parts[4], torch.zeros(3, 8))
    assert all(float(parts[0, m].norm()) > 0 for m in range(3))


def test_modality_dropout_keeps_one_modality_and_is_seeded() -> None:
    fusion = _fusion(modality_dropout=0.9).train()
    n = 400
    generator = torch.Generator().manual_seed(1)
    features = {name: torch.randn(n, dim, generator=generator) for name, dim in DIMS.items()}
    present = {name: torch.rand(n, generator=generator) < 0.6 for name in DIMS}
    has_any = torch.stack(list(present.values()), 1).any(1)
    assert not bool(has_any.all())  # some items have nothing

    def run(seed: int) -> Tensor:
        with torch.no_grad():
            return fusion(features, present, torch.Generator().manual_seed(seed))

    first = run(3)
    assert torch.equal(first, run(3))
    assert not torch.equal(first, run(4))
    norms = first.norm(dim=1)
    assert bool((norms[has_any] > 0).all())  # every item with content keeps some
    assert bool((norms[~has_any] == 0).all())
    # at rate 0.9 each multi-modal item usually keeps exactly one of its modalities
    projected = _projections(fusion, features)
    with torch.no_grad():
        singles = [
            any(torch.allclose(first[i], projected[m][i], atol=1e-6) for m in DIMS if present[m][i])
            for i in range(n)
            if sum(bool(present[m][i]) for m in DIMS) > 1
        ]
    assert sum(singles) > 0.8 * len(singles)
    # never a modality the item does not have
    for i in range(n):
        names = [m for m in DIMS if present[m][i]]
        if len(names) == 1:
            torch.testing.assert_close(first[i], projected[names[0]][i].detach())


def test_modality_dropout_is_off_in_eval_mode() -> None:
    features, present = _inputs()
    plain = _fusion()
    dropped = _fusion(modality_dropout=0.9)
    with torch.no_grad():
        expected = plain(features, present)
        for seed in range(5):
            got = dropped.eval()(features, present, torch.Generator().manual_seed(seed))
            assert torch.equal(got, expected)
        trained = dropped.train()(features, present, torch.Generator().manual_seed(0))
    assert not torch.equal(trained, expected)


@pytest.mark.parametrize("kind", ["attention", "mean"])
def test_gradients_reach_every_projection(kind: str) -> None:
    fusion = _fusion(kind, hidden=6).train()
    features, present = _inputs()
    fusion(features, present).pow(2).sum().backward()
    for name, parameter in fusion.named_parameters():
        assert parameter.grad is not None, name
        assert bool(torch.isfinite(parameter.grad).all()), name  # the empty item adds no NaN
        if name.startswith("projections."):
            assert float(parameter.grad.abs().sum()) > 0, name
    if kind == "attention":
        assert fusion.gate is not None
        assert float(fusion.gate.weight.grad.abs().sum()) > 0  # type: ignore[union-attr]


def test_empty_item_does_not_poison_gradients() -> None:
    fusion = _fusion().train()
    features, present = _inputs()
    features = {name: value.requires_grad_() for name, value in features.items()}
    fusion(features, present).sum().backward()
    for name, value in features.items():
        assert value.grad is not None and bool(torch.isfinite(value.grad).all())
        absent = ~present[name]
        assert bool((value.grad[absent] == 0).all()), name  # missing rows get no signal


@pytest.mark.parametrize(
    ("dims", "options"),
    [
        ({}, {}),
        (DIMS, {"kind": "max"}),
        (DIMS, {"modality_dropout": 1.0}),
        (DIMS, {"modality_dropout": -0.1}),
    ],
)
def test_bad_settings_are_refused(dims: dict[str, int], options: dict[str, object]) -> None:
    with pytest.raises(ClrecError):
        ModalityFusion(dims, 8, **options)  # type: ignore[arg-type]


def test_is_a_module_with_one_projection_per_modality() -> None:
    fusion = _fusion("mean")
    assert isinstance(fusion, nn.Module)
    assert sorted(fusion.projections) == sorted(DIMS)
    assert fusion.gate is None and fusion.query is None
