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


class Contribution(NamedTuple):
    """One history item's term of a score, and the item's rank had the user never
    interacted with it (None: not computed)."""

    id: str
    title: str | None
    contribution: float
    rank_without: int | None


@dataclass(frozen=True)
class Explanation:
    """Why an item scores what it does for a user (the model's own arithmetic): ``score =
    user_part + other_part + the sum of every history term``; the largest history terms,
    the item's rank, and (``item_parts``, when asked for and the model can) the same score
    split over the item's ID part, content modalities and prior."""

    score: float
    user_part: float
    other_part: float
    contributions: list[Contribution]
    rank: int
    item_parts: dict[str, float] | None = None

    @property
    def rank_without_top(self) -> int | None:
        """The rank without the top contributor (None: no history)."""
        return self.contributions[0].rank_without if self.contributions else None


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
