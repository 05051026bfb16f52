"""Augmentation views and the view contrast that trains on them (SimGCL).

Self-supervised graph learning makes two perturbed views of every node and asks the model to
recognise a node's two views among the batch's nodes (InfoNCE). The perturbation is
:func:`simgcl_noise` (SimGCL, Yu et al. 2022): a small random vector of length ``eps`` is added
to each embedding, pointing into the embedding's own orthant
(``e + eps · sign(e) ⊙ normalize(U(0, 1))``), which perturbs the view without moving it far —
cheaper than SGL's re-propagation over two edge-dropped subgraphs.

:func:`view_contrast_loss` is the cosine InfoNCE between the two views.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional

from clrec.errors import ClrecError
from clrec.losses.infonce import info_nce


def simgcl_noise(
    embeddings: Tensor, eps: float, generator: torch.Generator | None = None
) -> Tensor:
    """``(N, D)`` embeddings plus SimGCL noise of L2 norm ``eps`` per row.

    The noise is drawn on ``generator``'s device (the embeddings' when ``generator`` is None)
    and moved to the embeddings, so a CPU generator gives the same noise on CPU and CUDA.
    Gradients flow to ``embeddings``; the noise itself is a constant.
    """
    if not eps >= 0:
        raise ClrecError(f"eps must be ≥ 0, got {eps}")
    if embeddings.ndim != 2:
        raise ClrecError(f"embeddings must be 2-d (N, D), got shape {tuple(embeddings.shape)}")
    if not embeddings.is_floating_point():
        raise ClrecError(f"embeddings must be floating point, got dtype {embeddings.dtype}")
    device = generator.device if generator is not None else embeddings.device
    noise = torch.rand(
        embeddings.shape, generator=generator, device=device, dtype=embeddings.dtype
    )  # (N, D)
    noise = functional.normalize(noise.to(embeddings.device), dim=1)  # (N, D), unit rows
    return embeddings + eps * torch.sign(embeddings) * noise


def view_contrast_loss(
    view_a: Tensor,
    view_b: Tensor,
    temperature: float,
    *,
    ids: Tensor | None = None,
) -> Tensor:
    """InfoNCE between two ``(B, D)`` perturbed views; row ``i`` of each is the same node."""
    return info_nce(view_a, view_b, temperature, ids=ids)
