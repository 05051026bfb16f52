"""What the service answers with: scored items, history entries, placements, write results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from clrec.errors import ClrecError


class NotFoundError(ClrecError):
    """An unknown user or item (the service answers 404)."""


class Scored(NamedTuple):
    """One result: external item id, score, title (None when the catalogue has none). A
    named tuple: a response builds up to ``max_k`` of them, and a frozen dataclass costs
    several times more to create."""

    id: str
    score: float
    title: str | None


class HistoryEntry(NamedTuple):
    """One item of a user's history: external id, title, an image URL (or None) and where the
    interaction comes from (``"trained"``: the run's data set; ``"events"``: the API)."""

    id: str
    title: str | None
    image: str | None
    source: Literal["trained", "events"]


@dataclass(frozen=True)
class Explanation:
    """Why an item scores what it does for a user (the model's own arithmetic): the score,
    the user's ID part, the largest history terms ``(item id, title, contribution)``, the
    item's rank, and its rank without the top contributor (None: no history)."""

    user: str
    item: str
    score: float
    user_part: float
    contributions: list[tuple[str, str | None, float]]
    rank: int
    rank_without_top: int | None


@dataclass(frozen=True)
class Placement:
    """Where an item lands for a user: its 1-based rank among the items the user would be
    recommended (seen items excluded), its score, and how many items compete."""

    user: str
    rank: int
    score: float
    candidates: int
    seen: bool


@dataclass(frozen=True)
class PutResult:
    """The outcome of :meth:`ServiceState.put_item`."""

    id: str
    created: bool
    title: str | None
    placement: Placement | None


@dataclass(frozen=True)
class QueryResult:
    """Results of an anonymous query and the given item ids the service does not know."""

    items: list[Scored]
    ignored: list[str]
