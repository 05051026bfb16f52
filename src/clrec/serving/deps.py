"""Typed dependencies of the routes, read from ``request.app.state`` (which
:func:`clrec.serving.app.create_app` and its lifespan fill): the loaded state, the settings
and the metrics; and the settings' bound on ``k``, which a route module cannot declare
(it is the same for every app).
"""

from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from clrec.serving.observability import ServiceMetrics
from clrec.serving.schemas import DEFAULT_K
from clrec.serving.settings import ServiceSettings
from clrec.serving.state import ServiceState


async def service_state(request: Request) -> ServiceState:
    """The loaded state (503 while starting), synced with other workers' writes (the
    database is read in a worker thread, and only when a sync is due)."""
    state: ServiceState | None = request.app.state.service
    if state is None:
        raise HTTPException(503, "the service is starting")
    if state.sync_due():
        await run_in_threadpool(state.maybe_sync)
    return state


async def service_settings(request: Request) -> ServiceSettings:
    """The settings the app was built with."""
    settings: ServiceSettings = request.app.state.settings
    return settings


async def service_metrics(request: Request) -> ServiceMetrics:
    """The app's Prometheus collectors."""
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


# async: a plain function would be run in a worker thread, a hop that costs more than it does
StateDep = Annotated[ServiceState, Depends(service_state)]
SettingsDep = Annotated[ServiceSettings, Depends(service_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(service_metrics)]


def default_k(max_k: int) -> int:
    """``k`` of a read route whose request gives none."""
    return min(DEFAULT_K, max_k)


def requested_k(request: Request, k: int) -> int:
    """The query's ``k`` (already validated as >= 1) within the settings' ``max_k``, or
    :func:`default_k` when the query has none. A plain call, not a dependency: the routes
    that use it run on the event loop, where a sub-dependency costs more than the search."""
    max_k: int = request.app.state.settings.max_k
    given = request.query_params.get("k")  # the text the query model parsed into ``k``
    if given is None:
        return default_k(max_k)
    if k > max_k:
        raise k_error(given, max_k, "query")
    return k


def k_error(given: object, max_k: int, where: Literal["query", "body"]) -> RequestValidationError:
    """The 422 that a ``le=max_k`` bound on ``k`` raises, for a ``given`` k over it."""
    return RequestValidationError(
        [
            {
                "type": "less_than_equal",
                "loc": (where, "k"),
                "msg": f"Input should be less than or equal to {max_k}",
                "input": given,
                "ctx": {"le": max_k},
            }
        ]
    )


__all__ = [
    "MetricsDep",
    "SettingsDep",
    "StateDep",
    "default_k",
    "k_error",
    "requested_k",
    "service_metrics",
    "service_settings",
    "service_state",
]
