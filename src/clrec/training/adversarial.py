"""Adversarial training on embeddings (APR: He et al. 2018, "Adversarial Personalized Ranking").

APR adds the loss the model would have if its embeddings were pushed a small step ``eps``
in the direction that hurts it most:

    L_APR = L(E) + w · L(E + Δ),   Δ = eps · g / ‖g‖,   g = ∂L(E)/∂E

with ``Δ`` treated as a constant (detached), so the model learns to keep its ranking under
the worst small perturbation of its vectors — a flatter, noise-tolerant optimum. ``g`` is
normalised per row (as the APR code does), so every embedding row moves by exactly ``eps``.
A model passes the vectors it scores (e.g. one batch's user, positive and negative item
vectors) and a function that computes its ranking loss from them.

``eps`` is an absolute step, so it must stay well below the vectors' norms. APR starts from
a trained BPR model; from a small initialisation a large step shrinks every vector faster
than the ranking loss grows it: BPR-MF with its defaults (initial norms ≈ 0.16) collapsed at
eps 0.1 on ml-latest-small, while eps 0.01–0.03 cost 3–5 % of its clean NDCG@10 and cut
what 20 % random fake interactions cost it from 11 % to 4–7 % (``bench/robustness.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from clrec.errors import ClrecError

EmbeddingLoss = Callable[..., Tensor]
"""``loss(*embeddings)`` → scalar, differentiable in every embedding tensor."""


def check_adversarial(eps: float, weight: float) -> None:
    """Refuse a negative or non-finite ``eps`` / ``weight`` with a :class:`ClrecError`."""
    if not (math.isfinite(eps) and eps >= 0):
        raise ClrecError(f"adversarial_eps must be finite and ≥ 0, got {eps}")
    if not (math.isfinite(weight) and weight >= 0):
        raise ClrecError(f"adversarial_weight must be finite and ≥ 0, got {weight}")


def adversarial_perturbation(
    loss: Tensor, embeddings: Sequence[Tensor], eps: float
) -> list[Tensor]:
    """``eps · g / ‖g‖`` per row for each ``(N, D)`` tensor, ``g`` the gradient of ``loss``.

    Detached: the perturbation is a constant of the adversarial loss. A row the loss does
    not depend on (zero gradient) is not moved. ``loss``'s graph is kept, so the caller can
    still backpropagate through it.
    """
    grads = torch.autograd.grad(loss, list(embeddings), retain_graph=True, allow_unused=True)
    deltas = []
    for embedding, grad in zip(embeddings, grads, strict=True):
        if grad is None:  # the loss does not read this tensor
            deltas.append(torch.zeros_like(embedding))
            continue
        deltas.append(eps * nn.functional.normalize(grad.detach(), dim=-1))  # (N, D)
    return deltas


def adversarial_loss(
    loss_fn: EmbeddingLoss,
    embeddings: Sequence[Tensor],
    eps: float,
    clean: Tensor | None = None,
) -> Tensor:
    """``loss_fn(*(E + Δ))`` with ``Δ`` the worst-case step of :func:`adversarial_perturbation`.

    The direction comes from ``clean`` — ``loss_fn(*embeddings)``, computed here unless the
    caller has it already — and the gradient of the result flows into ``embeddings`` (and
    whatever produced them), not into ``Δ``.
    """
    if clean is None:
        clean = loss_fn(*embeddings)
    deltas = adversarial_perturbation(clean, embeddings, eps)
    perturbed = [e + d for e, d in zip(embeddings, deltas, strict=True)]
    return loss_fn(*perturbed)
