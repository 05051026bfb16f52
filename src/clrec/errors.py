"""The one exception type for problems a user can cause, and its message format.

Every error that bad input can trigger (a malformed file, an unknown id, a wrong column)
is a :class:`ClrecError`; the CLI prints its message without a traceback and exits non-zero.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class ClrecError(Exception):
    """A problem caused by input or configuration, with a message meant for the user."""


class DataError(ClrecError):
    """Bad data: the message names the file, the row or line where known, and the problem.

    ``row`` counts data rows from 1 (a header is not a row); ``line`` is a physical line
    number in the file, also from 1. Give whichever the reader knows exactly.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        line: int | None = None,
    ) -> None:
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.row = row
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        where: list[str] = []
        if self.file is not None:
            where.append(self.file)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.row is not None:
            where.append(f"row {self.row}")
        return f"{', '.join(where)}: {self.problem}" if where else self.problem


def validation_error(
    err: ValidationError,
    source: str,
    location: Callable[[tuple[int | str, ...]], str] | None = None,
    allowed: Callable[[tuple[int | str, ...]], list[str] | None] | None = None,
) -> ClrecError:
    """One ClrecError listing every problem of a pydantic error as ``key: message``; an
    unknown key also lists the keys its section allows (``allowed(loc)``)."""
    where = location or (lambda loc: ".".join(str(p) for p in loc) or "(top level)")

    def message(error: Any) -> str:
        text = f"{where(error['loc'])}: {error['msg'].removeprefix('Value error, ')}"
        keys = allowed(error["loc"]) if allowed and error["type"] == "extra_forbidden" else None
        return f"{text} (allowed: {', '.join(keys)})" if keys else text

    problems = "; ".join(message(e) for e in err.errors())
    return ClrecError(f"{source}: {problems}")
