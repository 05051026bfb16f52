"""Events: recording users' interactions."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException

from clrec.serving.deps import MetricsDep, SettingsDep, StateDep
from clrec.serving.idempotency import Idempotency
from clrec.serving.schemas import (
    IDEMPOTENCY_KEY,
    PROTECTED,
    WITH_BODY,
    EventIn,
    EventsRecorded,
    error_responses,
    fingerprint,
)
from clrec.serving.store import Event

router = APIRouter(tags=["events"])


@router.post(
    "/v1/events",
    response_model=EventsRecorded,
    responses=error_responses(*PROTECTED, *WITH_BODY),
)
def post_events(
    state: StateDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    events: list[EventIn],
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
) -> EventsRecorded:
    """Record interactions; answers only after the database committed them. Items must
    be known (artifact or PUT /v1/items); a batch naming an unknown one is refused. With an
    ``Idempotency-Key`` a retried batch is stored once."""
    if len(events) > settings.max_events:
        raise HTTPException(
            422, f"at most {settings.max_events} events per request, got {len(events)}"
        )
    batch = [
        Event(user=e.user, item=e.item, kind=e.kind, value=e.value, ts=_epoch(e.ts)) for e in events
    ]
    idempotency = None
    if idempotency_key is not None:
        request = fingerprint([e.model_dump(mode="json") for e in events])
        idempotency = Idempotency(idempotency_key, "events", request)
    recorded, written = state.record_events(batch, idempotency)
    if written:  # a retry answered from its key recorded nothing
        metrics.events.inc(recorded)
    return EventsRecorded(recorded=recorded)


def _epoch(ts: datetime | None) -> float | None:
    """Epoch seconds of ``ts``; a datetime without a zone is taken as UTC."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


__all__ = ["router"]
