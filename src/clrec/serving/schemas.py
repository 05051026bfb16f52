"""The service's request and response schemas (pydantic), the error statuses each route
documents, and the hand-built JSON of the hot read routes."""

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Header, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from clrec.data.validation import ID_PATTERN, MAX_ID_LENGTH
from clrec.serving.results import Explanation, Scored

ExternalId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
]
"""A user or item id: the readers' rule (:mod:`clrec.data.validation`): 1 to 256
characters, no control character (NUL included); anything else is a 422 on every store."""

PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
"""A user or item id in a route's path: the same rule as :data:`ExternalId`."""

IDEMPOTENCY_KEY = Header(
    min_length=1,
    max_length=128,
    pattern=r"^[\x21-\x7e]+$",
    description="a key of the client's choice (e.g. a UUID) that makes a retry safe: the same "
    "key with the same request within 24 h is answered the same and writes nothing again; "
    "with another request it is a 422",
)
"""The optional ``Idempotency-Key`` header of the write routes."""


def fingerprint(payload: Any) -> str:
    """SHA-256 of a request's canonical JSON: what a retry under the same key must match."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


DEFAULT_K = 10
"""The number of results a read route returns when the request gives no ``k`` (at most the
settings' ``max_k``)."""


# ---------------------------------------------------------------------- requests


class RecommendationQuery(BaseModel):
    """A cold-start request: items the user liked and/or a free-text profile."""

    model_config = ConfigDict(extra="forbid")

    items: list[ExternalId] = Field(default_factory=list, max_length=1000)
    profile_text: str | None = Field(default=None, min_length=1, max_length=10_000)
    k: int = Field(default=DEFAULT_K, ge=1)  # at most max_k: checked by the route

    @model_validator(mode="after")
    def _something_to_go_on(self) -> "RecommendationQuery":
        if not self.items and self.profile_text is None:
            raise ValueError("give at least one of items or profile_text")
        return self


class UserParams(BaseModel):
    """Query parameters of a user's recommendations (one model: validated in one call, which
    costs a fraction of separate parameters). ``k`` is checked against the settings'
    ``max_k`` by the route (:func:`clrec.serving.deps.requested_k`)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(DEFAULT_K, ge=1, description="number of results, 1 to max_k")
    exclude_seen: bool = Field(True, description="leave out items the user interacted with")
    exclude: list[ExternalId] = Field(
        default_factory=list, max_length=1000, description="item ids to leave out"
    )
    rerank: bool = Field(
        False,
        description="rank the union of several retrievers' candidates with the ranking "
        "stage (LambdaRank over retrieval, behaviour and language-model features; scores "
        "become its scores); 422 without one",
    )
    explain: bool = Field(
        False,
        description="add each item's explanation: its three largest history contributions, "
        "each with the item's rank without it (not with rerank: the trees are not explained)",
    )


class EventIn(BaseModel):
    """One interaction: ``ts`` is an ISO datetime or epoch seconds (default: now, UTC)."""

    model_config = ConfigDict(extra="forbid")

    user: ExternalId
    item: ExternalId
    kind: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")]
    value: float | None = Field(default=None, allow_inf_nan=False)
    ts: datetime | None = None


# ---------------------------------------------------------------------- responses


class ItemScore(BaseModel):
    """One recommended or similar item."""

    id: str
    score: float
    title: str | None = None


class Contribution(BaseModel):
    """One history item's term of a score, and the item's rank without it."""

    id: str
    title: str | None = None
    contribution: float
    rank_without: int | None = Field(
        None,
        description="the item's rank had the user never interacted with this history item "
        "(their history recomputed without it; given for the top contributors)",
    )


class ScoreExplanation(BaseModel):
    """Why an item scores what it does for the user, from the model's own arithmetic:
    ``score = user_part + other_part + the sum of every history item's contribution`` (the
    largest are listed), and the item's rank among the user's unseen items."""

    user_part: float = Field(description="the user's own (ID) vector's term")
    other_part: float = Field(
        0.0,
        description="the term of history the model does not know as items (items added "
        "through the API, profile texts)",
    )
    contributions: list[Contribution]
    rank: int


class UserItemScore(ItemScore):
    """One recommended item, with its explanation when asked for (``explain=true``)."""

    explanation: ScoreExplanation | None = None


class UserRecommendations(BaseModel):
    user: str
    k: int
    items: list[UserItemScore]


class QueryRecommendations(BaseModel):
    k: int
    items: list[ItemScore]
    ignored_items: list[str] = Field(
        default_factory=list, description="given item ids the service does not know"
    )


class SimilarItems(BaseModel):
    item: str
    k: int
    items: list[ItemScore]


class ExplanationOut(ScoreExplanation):
    """:class:`ScoreExplanation` of one item for one user, the rank without the top
    contributor (null without a history), and the same score split over the item's side:
    ``item_parts`` — ``id`` (its vector apart from its content), one term per content
    modality the model reads, ``prior`` for a model with one — which also sum to it."""

    user: str
    item: str
    score: float
    rank_without_top: int | None = None
    item_parts: dict[str, float]


class PlacementOut(BaseModel):
    """Where a written item lands for ``for_user``: rank 1 is the top recommendation."""

    user: str
    rank: int
    score: float
    candidates: int
    seen: bool


class ItemWritten(BaseModel):
    id: str
    created: bool
    title: str | None = None
    placement: PlacementOut | None = None


class HistoryItem(BaseModel):
    """One item a user interacted with: ``trained`` (the run's data set) or ``events``."""

    id: str
    title: str | None = None
    image: str | None = Field(default=None, description="an image URL, when the catalogue has one")
    source: Literal["trained", "events"]


class UserHistory(BaseModel):
    user: str
    total: int = Field(description="how many items the user interacted with")
    items: list[HistoryItem]


class UserList(BaseModel):
    prefix: str
    total: int = Field(description="how many known users match the prefix")
    users: list[str]


class EventsRecorded(BaseModel):
    recorded: int


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    model: str | None = None
    items: int | None = None
    users: int | None = None
    index: dict[str, Any] | None = None
    ranker: bool = False
    database: bool = False
    item_fields: dict[str, str] | None = Field(
        default=None,
        description="the catalogue's fields and their kinds (text, tags, category, image, "
        "number, other): what PUT /v1/items/{item_id} accepts",
    )


# ---------------------------------------------------------------------- errors


class ErrorMessage(BaseModel):
    """An error answered with a message."""

    detail: str


class ValidationIssue(BaseModel):
    """One problem of a request that failed validation (FastAPI's format)."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str


class InvalidInput(BaseModel):
    """422: the request's validation problems (a list), or a message when the input is well
    formed but unusable (an unknown item in events, content the model cannot read)."""

    detail: list[ValidationIssue] | str


_ERROR_TEXT = {
    400: "the body is not parseable",
    401: "no valid API key",
    403: "the API key lacks the route's scope",
    404: "unknown user or item",
    413: "the body is larger than max_body_bytes",
    422: "invalid or unusable input",
    429: "rate limit exceeded (see Retry-After)",
    503: "the service is starting, or its database is unavailable",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries of the error statuses a route answers with."""
    return {
        code: {
            "model": InvalidInput if code == 422 else ErrorMessage,
            "description": _ERROR_TEXT[code],
        }
        for code in codes
    }


PROTECTED = (401, 403, 422, 429, 503)  # key, scope, parameters, rate, start-up / database
WITH_BODY = (400, 413)


# ---------------------------------------------------------------------- hand-built JSON


def json_response(payload: dict[str, Any]) -> Response:
    """A 200 JSON response of a payload the route built in its response model's shape: the
    read routes skip FastAPI's re-validation of their own output, a sizeable part of their
    cost (the OpenAPI schema still describes them by ``response_model``)."""
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body.encode("utf-8", "replace"), media_type="application/json")


def scored_json(found: list[Scored]) -> list[dict[str, Any]]:
    """``found`` as JSON-ready :class:`ItemScore` entries."""
    return [{"id": s.id, "score": s.score, "title": s.title} for s in found]


def explanation_json(found: Explanation) -> dict[str, Any]:
    """``found`` as a JSON-ready :class:`ScoreExplanation`."""
    return {
        "user_part": found.user_part,
        "other_part": found.other_part,
        "contributions": [
            {
                "id": c.id,
                "title": c.title,
                "contribution": c.contribution,
                "rank_without": c.rank_without,
            }
            for c in found.contributions
        ],
        "rank": found.rank,
    }


__all__ = [
    "DEFAULT_K",
    "PROTECTED",
    "WITH_BODY",
    "ErrorMessage",
    "EventIn",
    "EventsRecorded",
    "ExternalId",
    "Health",
    "HistoryItem",
    "InvalidInput",
    "ItemScore",
    "ItemWritten",
    "PathId",
    "PlacementOut",
    "QueryRecommendations",
    "Readiness",
    "RecommendationQuery",
    "ScoreExplanation",
    "SimilarItems",
    "UserHistory",
    "UserItemScore",
    "UserList",
    "UserParams",
    "UserRecommendations",
    "ValidationIssue",
    "error_responses",
    "json_response",
    "scored_json",
]
