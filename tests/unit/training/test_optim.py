"""LazyAdamW: AdamW's arithmetic exactly, on the rows a sparse gradient touches only."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional

from clrec.training.optim import LazyAdamW

STEPS = 5


def _table(seed: int = 0) -> nn.Parameter:
    return nn.Parameter(torch.randn(6, 4, generator=torch.Generator().manual_seed(seed)))


def _loss(table: nn.Parameter, rows: torch.Tensor, sparse: bool) -> torch.Tensor:
    looked = functional.embedding(rows, table, sparse=sparse)  # (n, D)
    return (looked**2).sum() + looked[:, 0].sum()


def test_dense_gradients_step_exactly_as_torch_adamw() -> None:
    ours, theirs = _table(), _table()
    lazy = LazyAdamW([ours], lr=0.05, weight_decay=0.01)
    reference = torch.optim.AdamW([theirs], lr=0.05, weight_decay=0.01)
    rows = torch.arange(6)
    for _ in range(STEPS):
        for table, optimizer in ((ours, lazy), (theirs, reference)):
            optimizer.zero_grad()
            _loss(table, rows, sparse=False).backward()
            optimizer.step()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_sparse_gradients_over_every_row_equal_dense_adamw() -> None:
    ours, theirs = _table(), _table()
    lazy = LazyAdamW([ours], lr=0.05, weight_decay=0.01)
    reference = torch.optim.AdamW([theirs], lr=0.05, weight_decay=0.01)
    rows = torch.tensor([3, 0, 5, 1, 2, 4, 3])  # every row, one twice
    for _ in range(STEPS):
        lazy.zero_grad()
        _loss(ours, rows, sparse=True).backward()
        assert ours.grad is not None and ours.grad.is_sparse
        lazy.step()
        reference.zero_grad()
        _loss(theirs, rows, sparse=False).backward()
        reference.step()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_untouched_rows_and_their_moments_stay() -> None:
    table = _table()
    before = table.detach().clone()
    lazy = LazyAdamW([table], lr=0.05, weight_decay=0.01)
    touched = torch.tensor([1, 4])
    for _ in range(STEPS):
        lazy.zero_grad()
        _loss(table, touched, sparse=True).backward()
        lazy.step()
    rest = torch.tensor([0, 2, 3, 5])
    torch.testing.assert_close(table.detach()[rest], before[rest], rtol=0, atol=0)
    state = lazy.state[table]
    assert state["step"] == STEPS
    assert not state["exp_avg"][rest].any() and not state["exp_avg_sq"][rest].any()
    # the touched rows moved as AdamW moves a table whose only rows they are
    alone = nn.Parameter(before[touched].clone())
    reference = torch.optim.AdamW([alone], lr=0.05, weight_decay=0.01)
    for _ in range(STEPS):
        reference.zero_grad()
        _loss(alone, torch.arange(2), sparse=False).backward()
        reference.step()
    torch.testing.assert_close(table.detach()[touched], alone.detach(), rtol=0, atol=0)


def test_state_dict_resumes_exactly() -> None:
    first, second = _table(), _table()
    rows = torch.tensor([0, 2, 2, 5])
    lazy = LazyAdamW([first], lr=0.05)
    for _ in range(2):
        lazy.zero_grad()
        _loss(first, rows, sparse=True).backward()
        lazy.step()
    with torch.no_grad():
        second.copy_(first)
    resumed = LazyAdamW([second], lr=0.05)
    resumed.load_state_dict(copy.deepcopy(lazy.state_dict()))  # as a checkpoint file would
    for table, optimizer in ((first, lazy), (second, resumed)):
        optimizer.zero_grad()
        _loss(table, rows, sparse=True).backward()
        optimizer.step()
    torch.testing.assert_close(first, second, rtol=0, atol=0)
