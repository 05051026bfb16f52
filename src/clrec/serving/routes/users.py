"""Users: the known user ids (the browser page's search), a user's history, and why an item
scores what it does for a user."""

from typing import Annotated

from fastapi import APIRouter, Query

from clrec.serving.deps import StateDep
from clrec.serving.schemas import (
    PROTECTED,
    ExplanationOut,
    HistoryItem,
    PathId,
    UserHistory,
    UserList,
    error_responses,
    explanation_json,
)

router = APIRouter(tags=["users"])

Limit = Annotated[int, Query(ge=1, le=1000, description="most entries to return")]


@router.get("/v1/users", response_model=UserList, responses=error_responses(*PROTECTED))
def find_users(
    state: StateDep,
    prefix: Annotated[str, Query(max_length=256, description="the ids' common start")] = "",
    limit: Limit = 20,
) -> UserList:
    """Known user ids (trained, or known by recorded events) that start with ``prefix``:
    the browser page's user search."""
    users, total = state.find_users(prefix, limit)
    return UserList(prefix=prefix, total=total, users=users)


@router.get(
    "/v1/users/{user_id}/explain/{item_id}",
    response_model=ExplanationOut,
    responses=error_responses(*PROTECTED, 404, 503),
)
def explain(
    state: StateDep,
    user_id: PathId,
    item_id: PathId,
    k: Annotated[int, Query(ge=1, le=50, description="history items to list")] = 5,
    counterfactuals: Annotated[
        int, Query(ge=0, le=10, description="listed items given the rank without them")
    ] = 3,
) -> ExplanationOut:
    """Why ``item_id`` scores what it does for ``user_id``: the user's ID part and each
    history item's term (they sum to the score), the rank, the rank without each of the top
    contributors (the user's history recomputed without it), and the split over the item's
    ID part, content modalities and prior. Costs one catalogue scoring per counterfactual
    and one content encoding (BENCHMARKS.md)."""
    found = state.explain(user_id, item_id, k, counterfactuals)
    return ExplanationOut(
        user=user_id,
        item=item_id,
        score=found.score,
        rank_without_top=found.rank_without_top,
        item_parts=found.item_parts or {},
        **explanation_json(found),
    )


@router.get(
    "/v1/users/{user_id}/history",
    response_model=UserHistory,
    responses=error_responses(*PROTECTED, 404),
)
def user_history(
    state: StateDep,
    user_id: PathId,
    limit: Limit = 50,
) -> UserHistory:
    """The items a known user interacted with: recorded events first, then the run's own
    interactions (the artifact keeps no time order)."""
    entries, total = state.user_history(user_id, limit)
    return UserHistory(
        user=user_id,
        total=total,
        items=[
            HistoryItem(id=e.id, title=e.title, image=e.image, source=e.source) for e in entries
        ],
    )


__all__ = ["router"]
