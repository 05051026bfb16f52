"""Items: the items most similar to one, and adding or re-embedding an item from its fields."""

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response

from clrec.serving.deps import MetricsDep, StateDep, requested_k, service_state
from clrec.serving.idempotency import Idempotency
from clrec.serving.schemas import (
    DEFAULT_K,
    IDEMPOTENCY_KEY,
    PROTECTED,
    WITH_BODY,
    ItemWritten,
    PathId,
    PlacementOut,
    SimilarItems,
    error_responses,
    fingerprint,
    json_response,
    scored_json,
)
from clrec.serving.text import is_text

router = APIRouter(tags=["items"])


@router.get(
    "/v1/items/{item_id}/similar",
    response_model=SimilarItems,
    responses=error_responses(*PROTECTED, 404),
)
async def similar_items(
    request: Request,
    item_id: PathId,
    k: Annotated[int, Query(ge=1, description="number of results, 1 to max_k")] = DEFAULT_K,
) -> Response:
    """The k items most similar to ``item_id`` by the model's item vectors."""
    k = requested_k(request, k)
    state = await service_state(request)  # on the event loop, like user recommendations
    found = state.similar_items(item_id, k)
    return json_response({"item": item_id, "k": k, "items": scored_json(found)})


@router.put(
    "/v1/items/{item_id}",
    response_model=ItemWritten,
    responses={
        201: {"model": ItemWritten, "description": "a new item"},
        **error_responses(*PROTECTED, *WITH_BODY, 404),
    },
)
def put_item(
    state: StateDep,
    metrics: MetricsDep,
    response: Response,
    item_id: PathId,
    content: Annotated[
        dict[str, str | int | float | None],
        Body(
            description="the item's catalogue fields, e.g. "
            '{"title": "Heat (1995)", "genres": "Action|Crime"}'
        ),
    ],
    for_user: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
) -> ItemWritten:
    """Add or update an item from its fields: embedded by the model's own encoders,
    stored, and recommendable when this returns (201 for a new item, 200 otherwise). With
    an ``Idempotency-Key`` a retry is answered exactly as the first request was."""
    idempotency = None
    if idempotency_key is not None:
        request = fingerprint({"id": item_id, "content": content, "for_user": for_user})
        idempotency = Idempotency(idempotency_key, "items", request)
        answered = state.store.answered(idempotency)
        if answered is not None:
            response.status_code = int(answered["status"])  # type: ignore[call-overload]
            return ItemWritten.model_validate(answered["body"])
    fields = {
        str(name): None if value is None else str(value)
        for name, value in content.items()
        if name != "id"
    }
    if not all(is_text(n) and (v is None or is_text(v)) for n, v in fields.items()):
        raise HTTPException(
            422, "item fields must be valid Unicode text (no lone surrogates \\ud800-\\udfff)"
        )
    if not any(v is not None and v.strip() for v in fields.values()):
        raise HTTPException(422, "the item needs at least one non-empty field")
    result = state.put_item(item_id, fields, for_user=for_user)
    metrics.items_written.inc()
    response.status_code = 201 if result.created else 200
    placement = result.placement
    written = ItemWritten(
        id=result.id,
        created=result.created,
        title=result.title,
        placement=None
        if placement is None
        else PlacementOut(
            user=placement.user,
            rank=placement.rank,
            score=placement.score,
            candidates=placement.candidates,
            seen=placement.seen,
        ),
    )
    if idempotency is not None:
        answer = {"status": response.status_code, "body": written.model_dump(mode="json")}
        state.store.remember(idempotency, answer)
    return written


__all__ = ["router"]
