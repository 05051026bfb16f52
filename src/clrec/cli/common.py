"""What every command module shares: user errors as one line, the data root, the torchrun
process group, JSON printing and the option types used by more than one command.

This is the only CLI module that reads the environment (``CLREC_DATA``; under ``torchrun``,
``WORLD_SIZE`` and ``LOCAL_RANK``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar, cast

import typer

from clrec.errors import ClrecError

if TYPE_CHECKING:
    from clrec.data.splits import Scheme

P = ParamSpec("P")
R = TypeVar("R")


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print a ClrecError as one line on stderr and exit 1, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ClrecError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=1) from None

    return wrapper


def data_root() -> Path | None:
    """Where known data sets are looked up: ``$CLREC_DATA`` or the library's default."""
    from clrec.data.registry import default_data_root

    return default_data_root(os.environ.get("CLREC_DATA"))


@contextlib.contextmanager
def torchrun_group() -> Iterator[None]:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1) join its process group for the command, so the
    training loop runs data-parallel (gloo on CPU, NCCL on GPUs); otherwise do nothing."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ClrecError(
            "WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)"
        ) from None
    if world_size <= 1:
        yield
        return
    from clrec.distributed import init_from_torchrun, shutdown

    init_from_torchrun(local_rank=local_rank)
    try:
        yield
    finally:
        shutdown()


def print_json(payload: Any) -> None:
    """Print ``payload`` as indented JSON (values JSON cannot hold are printed as text)."""
    typer.echo(json.dumps(payload, indent=2, default=str))


def parse_scheme(text: str) -> Scheme:
    """The split scheme named by ``--scheme``; an unknown name is a ClrecError."""
    from clrec.data.splits import SCHEMES

    if text not in SCHEMES:
        raise ClrecError(f"unknown split scheme {text!r}; choose one of {', '.join(SCHEMES)}")
    return cast("Scheme", text)


SchemeOption = Annotated[
    str,
    typer.Option(help="random | loo | temporal | cold-item | cold-user | predefined"),
]
SeedOption = Annotated[int, typer.Option(help="Seed of the split.")]
MinRatingOption = Annotated[float | None, typer.Option(help="Keep ratings >= this as positives.")]

# The service's database, shared by `serve` and the `keys` group.
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: SQLite service.db in --data-dir)."),
]
DataDirOption = Annotated[
    Path, typer.Option(help="Folder of the default SQLite database, service.db.")
]
DEFAULT_DATA_DIR = Path("clrec-service")
