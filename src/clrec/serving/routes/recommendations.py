"""Recommendations: the top k for a known user, and for a cold-start user known only by a few
items and/or a profile text."""

import functools
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from clrec.errors import ClrecError
from clrec.serving.deps import SettingsDep, StateDep, k_error, requested_k, service_state
from clrec.serving.schemas import (
    PROTECTED,
    WITH_BODY,
    ItemScore,
    PathId,
    QueryRecommendations,
    RecommendationQuery,
    UserParams,
    UserRecommendations,
    error_responses,
    explanation_json,
    json_response,
    scored_json,
)

router = APIRouter(tags=["recommendations"])

EXPLAINED_CONTRIBUTORS = 3
"""History items listed (each with its counterfactual rank) per explained recommendation."""


@router.get(
    "/v1/users/{user_id}/recommendations",
    response_model=UserRecommendations,
    responses=error_responses(*PROTECTED, 404),
)
async def user_recommendations(
    request: Request,
    user_id: PathId,
    params: Annotated[UserParams, Query()],
) -> Response:
    """Top k for a known user (trained, or known by recorded events); 404 otherwise:
    new users go through POST /v1/recommendations."""
    k = requested_k(request, params.k)
    # On the event loop: an index search is far cheaper than a hop to a worker thread.
    state = await service_state(request)  # not a dependency: a sub-dependency costs more here
    if params.explain:  # a catalogue scoring per counterfactual: off the event loop
        if params.rerank:
            raise ClrecError(
                "explain=true explains the model's scores; the ranking stage's are not "
                "explained: drop rerank=true to get explanations"
            )
        explained = await run_in_threadpool(
            functools.partial(
                state.explained_recommendations,
                user_id,
                k,
                exclude_seen=params.exclude_seen,
                exclude_ids=params.exclude,
                top=EXPLAINED_CONTRIBUTORS,
            )
        )
        items = [{**scored_json([s])[0], "explanation": explanation_json(e)} for s, e in explained]
        return json_response({"user": user_id, "k": k, "items": items})
    if params.rerank:  # candidates + features + trees: milliseconds, off the event loop
        found = await run_in_threadpool(
            functools.partial(
                state.rerank_user,
                user_id,
                k,
                exclude_seen=params.exclude_seen,
                exclude_ids=params.exclude,
            )
        )
    else:
        found = state.recommend_user(
            user_id, k, exclude_seen=params.exclude_seen, exclude_ids=params.exclude
        )
    return json_response({"user": user_id, "k": k, "items": scored_json(found)})


@router.post(
    "/v1/recommendations",
    response_model=QueryRecommendations,
    responses=error_responses(*PROTECTED, *WITH_BODY),
)
def query_recommendations(
    state: StateDep, settings: SettingsDep, query: RecommendationQuery
) -> QueryRecommendations:
    """Top k for a user known only by a few items and/or a profile text (cold start)."""
    if query.k > settings.max_k:
        raise k_error(query.k, settings.max_k, "body")
    result = state.recommend_anonymous(query.items, query.profile_text, query.k)
    items = [ItemScore(id=s.id, score=s.score, title=s.title) for s in result.items]
    return QueryRecommendations(k=query.k, items=items, ignored_items=result.ignored)


__all__ = ["router"]
