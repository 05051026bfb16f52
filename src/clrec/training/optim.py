"""The optimisers the training loop builds, and the lazy AdamW of large embedding tables.

A table looked up with sparse gradients (``functional.embedding(..., sparse=True)``) hands the
optimiser only the rows a step touched. :class:`LazyAdamW` then updates those rows and their
moments alone (lazy Adam, as ``torch.optim.SparseAdam``) and the dense parameters (projections,
gates) with plain AdamW, so a step costs what the batch touched, not the size of the tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

OPTIMIZERS = ("adam", "adamw", "sparse_adam", "lazy_adamw")


class LazyAdamW(torch.optim.Optimizer):
    """AdamW, lazily for sparse gradients: a sparse-gradient parameter's touched rows are
    updated (moments and decoupled weight decay) and its other rows left alone; a dense
    gradient gets the usual AdamW step. Bias correction counts the parameter's steps."""

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                if param.grad.is_sparse:
                    grad = param.grad.coalesce()
                    rows = grad.indices()[0]  # (n,) the rows this step touched, unique
                    tensors = (param, state["exp_avg"], state["exp_avg_sq"])
                    current, mean, variance = (t.index_select(0, rows) for t in tensors)
                    _adamw(current, grad.values(), (mean, variance), state["step"], group)
                    for full, part in zip(tensors, (current, mean, variance), strict=True):
                        full.index_copy_(0, rows, part)
                else:
                    moments = (state["exp_avg"], state["exp_avg_sq"])
                    _adamw(param, param.grad, moments, state["step"], group)
        return loss


def _adamw(
    param: Tensor, grad: Tensor, moments: tuple[Tensor, Tensor], step: int, group: dict[str, Any]
) -> Tensor:
    """One AdamW step on ``param`` in place (the arithmetic of ``torch.optim.AdamW``'s
    single-tensor path), its ``moments`` (mean, uncentred variance) updated in place."""
    lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
    beta1, beta2 = group["betas"]
    exp_avg, exp_avg_sq = moments
    param.mul_(1 - lr * decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denominator = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
    return param.addcdiv_(exp_avg, denominator, value=-lr / (1 - beta1**step))


def build_optimizer(
    parameters: Iterable[nn.Parameter],
    name: str,
    lr: float,
    weight_decay: float = 0.0,
    decay_matrices_only: bool = False,
) -> torch.optim.Optimizer:
    """The optimiser ``name`` (one of :data:`OPTIMIZERS`): Adam, AdamW with decoupled weight
    decay, SparseAdam (lazy Adam: only the rows a step's sparse gradient touches are updated,
    so a step costs O(batch), not O(table)) or :class:`LazyAdamW` (that for sparse gradients,
    AdamW for dense ones).

    With ``decay_matrices_only`` AdamW has two groups: parameters of two or more dimensions
    (weight matrices) decay, vectors (biases, LayerNorm gains) do not.
    """
    if name == "sparse_adam":
        return torch.optim.SparseAdam(list(parameters), lr=lr)
    if name == "lazy_adamw":
        return LazyAdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw" and decay_matrices_only:
        listed = list(parameters)
        groups = [
            {"params": [p for p in listed if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in listed if p.ndim < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(parameters, lr=lr)
