"""Operations: liveness, readiness and Prometheus metrics."""

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clrec.serving.deps import MetricsDep, StateDep
from clrec.serving.schemas import Health, Readiness, error_responses
from clrec.serving.state import ServiceState

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "not ready"}},
)
def readyz(request: Request) -> Any:
    """Readiness: artifact loaded, index built, database answering."""
    state: ServiceState | None = request.app.state.service  # None while starting
    if state is None:
        return JSONResponse(Readiness(status="starting").model_dump(), status_code=503)
    database = state.store.ping()
    ready = Readiness(
        status="ready" if database else "database unavailable",
        model=state.artifact.model_name,
        items=state.n_items,
        users=state.n_users,
        index=state.index_report,
        ranker=state.rerank is not None,
        database=database,
        item_fields=_item_fields(state),
    )
    if not database:
        return JSONResponse(ready.model_dump(), status_code=503)
    return ready


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses=error_responses(401, 403, 429, 503),
)
def prometheus_metrics(metrics: MetricsDep, state: StateDep) -> Response:
    """Prometheus metrics of this process (a read key is required). The state dependency
    first reads what other workers wrote when that is due, so an idle replica does not look
    stale."""
    del state  # needed for its sync only
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _item_fields(state: ServiceState) -> dict[str, str]:
    """The catalogue's fields (``id`` aside) with their kinds, in catalogue order."""
    kinds = state.artifact.item_fields
    columns = [c for c in state.artifact.catalogue.columns if c != "id"]
    return {str(c): str(kinds.get(c, "other")) for c in columns}


__all__ = ["router"]
