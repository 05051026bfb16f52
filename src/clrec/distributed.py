"""Data-parallel training on ``torch.distributed``: who this process is, and the few collectives
the epoch loop and the command line need.

Nothing here starts processes. A launcher (``torchrun``, or a test that starts its own
processes) creates them; the command line joins torchrun's process group with
:func:`init_from_torchrun`, and from then on the library asks :func:`world` who it is. Without
an initialised process group every helper is the single-process identity (rank 0 of 1), so
library code calls them unconditionally.

Rank 0 is the *main* process: it alone validates, writes files and shows progress; what it
decides reaches the others through :func:`run_on_main`, so every rank takes the same branch and
no collective is left waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn

from clrec.errors import ClrecError

T = TypeVar("T")
R = TypeVar("R")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return world()[1] > 1


def is_main() -> bool:
    """True on rank 0 (and in a plain single-process run): the process that writes."""
    return world()[0] == 0


def init_from_torchrun(
    *, local_rank: int, backend: str | None = None, timeout: timedelta | None = None
) -> None:
    """Join the process group a launcher such as ``torchrun`` describes.

    ``torch.distributed.init_process_group`` reads the rendezvous (``MASTER_ADDR``,
    ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``) from the launcher's environment itself; the
    caller (the command line: the only place that reads the environment) passes
    ``local_rank``, the process's index on its machine. ``backend`` defaults to NCCL when CUDA
    is available (each process then owns GPU ``local_rank``) and to gloo otherwise.
    """
    if not dist.is_available():
        raise ClrecError("this torch build has no torch.distributed; install a full torch build")
    if dist.is_initialized():
        return
    cuda = torch.cuda.is_available()
    chosen = backend or ("nccl" if cuda else "gloo")
    if chosen not in ("gloo", "nccl"):
        raise ClrecError(f"distributed backend must be 'gloo' or 'nccl', got {chosen!r}")
    if chosen == "nccl":
        if not cuda:
            raise ClrecError("the NCCL backend needs CUDA; use gloo on CPU")
        if not 0 <= local_rank < torch.cuda.device_count():
            raise ClrecError(
                f"process {local_rank} on this machine has no GPU of its own "
                f"({torch.cuda.device_count()} visible); start at most that many processes "
                "per machine"
            )
        # "cuda" (a model's default device) now means this process's own GPU
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(chosen, timeout=timeout)
    except ValueError as err:  # the launcher's variables are missing or malformed
        raise ClrecError(f"cannot join the distributed process group: {err}") from None


def shutdown() -> None:
    """Leave the process group (no-op without one), so the process exits cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def broadcast_object(value: T, src: int = 0) -> T:
    """Rank ``src``'s ``value`` (any picklable object) on every rank."""
    if not is_distributed():
        return value
    box: list[object] = [value]
    dist.broadcast_object_list(box, src=src)
    return cast(T, box[0])


def all_gather_objects(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank."""
    size = world()[1]
    if size == 1:
        return [value]
    gathered: list[object] = [None] * size
    dist.all_gather_object(gathered, value)
    return cast(list[T], gathered)


def run_on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only; its result reaches every rank.

    If ``fn`` raises on rank 0, rank 0 re-raises it and every other rank raises
    :class:`ClrecError` naming it, so no rank is left waiting in a later collective.
    """
    if not is_distributed():
        return fn()
    failure: BaseException | None = None
    message: tuple[bool, object] = (True, None)
    if is_main():
        try:
            message = (True, fn())
        except Exception as err:
            failure = err
            message = (False, f"{type(err).__name__}: {err}")
    ok, value = broadcast_object(message)
    if failure is not None:
        raise failure
    if not ok:
        raise ClrecError(f"rank 0 failed, so this rank stops too ({value})")
    return cast(T, value)


def shard(items: Sequence[T], *, equal: bool = False) -> list[T]:
    """This rank's share of ``items``: ``items[rank::world_size]``.

    With ``equal`` the last ``len(items) % world_size`` items are dropped, so every rank gets
    the same number (what lock-step training needs).
    """
    rank, size = world()
    end = len(items) - len(items) % size if equal else len(items)
    return [items[i] for i in range(rank, end, size)]


def sharded_map(fn: Callable[[Sequence[T]], Sequence[R]], items: Sequence[T]) -> list[R]:
    """``fn(items)`` computed in parts: each rank maps ``shard(items)``, the parts are
    all-gathered and put back in order, so every rank returns the full ``len(items)`` list.

    ``fn`` must return one result per input, in order (e.g. a text encoder over a catalogue).
    """
    size = world()[1]
    share = shard(items)
    mine = list(fn(share))
    if len(mine) != len(share):
        raise ClrecError(f"sharded_map: fn returned {len(mine)} results for {len(items)} inputs")
    if size == 1:
        return mine
    parts = all_gather_objects(mine)
    out: list[R] = [None] * len(items)  # type: ignore[list-item]
    for owner, part in enumerate(parts):
        out[owner::size] = part
    return out


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Overwrite every parameter and buffer of ``module`` with rank ``src``'s, in place."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=src)


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over all ranks (a copy; ``value`` itself is left alone)."""
    total = value.detach().clone()
    size = world()[1]
    if size > 1:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        total /= size
    return total
