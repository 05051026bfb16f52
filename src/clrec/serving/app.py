"""The real-time recommendation HTTP service (FastAPI) over an exported artifact.

:func:`create_app` builds the application from :class:`ServiceSettings`; nothing heavy runs at
import or in :func:`create_app`: the artifact, the index and the database open in the
application's lifespan (``uvicorn`` starts answering only after that). Routes::

    GET  /v1/users/{user_id}/recommendations?k=&exclude_seen=&exclude=   read
    POST /v1/recommendations          {items, profile_text, k}: cold-start users     read
    GET  /v1/items/{item_id}/similar?k=                                              read
    GET  /v1/users?prefix=&limit=     known user ids (the browser page's search)     read
    GET  /v1/users/{user_id}/history?limit=   the items the user interacted with     read
    PUT  /v1/items/{item_id}?for_user=  {field: text, ...}: add or re-embed an item  write
    POST /v1/events                   [{user, item, kind, value?, ts?}, ...]         write
    GET  /healthz                     liveness                                       -
    GET  /readyz                      artifact, index and database ready             -
    GET  /metrics                     Prometheus text                                read
    GET  /ui/                         the browser page (static files, no data)       -
    GET  /report                      the run's evaluation report (HTML), if any     -

Status codes: 401 without a valid key, 403 without the scope, 404 for an unknown user or
item, 413 for a body over ``max_body_bytes``, 422 for bad input (including what the model
cannot read), 429 with ``Retry-After`` beyond the key's rate, 503 while starting or when the
database fails.

Concurrency: routes that only search memory (user recommendations, similar items, with the
API key found in the key cache) run on the event loop, since an index search costs less than
a hop to a worker thread; whatever touches the database or runs an encoder runs in worker
threads, never holding the state's lock while it waits.

Every request is logged as one line (method, route template, status, milliseconds) on the
``clrec.serving.access`` logger; an error's message is passed through
:class:`~clrec.encoders.privacy.PrivacyMasker` first. Paths (which hold user ids), query
strings, bodies, profile texts and API keys are never logged.

Where things live: request / response schemas in :mod:`clrec.serving.schemas`, one router per
resource in :mod:`clrec.serving.routes`, their typed dependencies in :mod:`clrec.serving.deps`,
exception handlers in :mod:`clrec.serving.handlers`, metrics and the request log in
:mod:`clrec.serving.observability`. This module wires them together.
"""

import functools
import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from clrec.encoders.privacy import PrivacyMasker
from clrec.errors import ClrecError
from clrec.serving.deps import default_k
from clrec.serving.handlers import ErrorHandlers
from clrec.serving.observability import RequestObserver, ServiceMetrics
from clrec.serving.routes import ROUTERS
from clrec.serving.routes.pages import PAGE_PATH, REPORT_PATH, STATIC_DIR, PageFiles
from clrec.serving.schemas import (
    EventsRecorded,
    Health,
    InvalidInput,
    ItemWritten,
    QueryRecommendations,
    Readiness,
    SimilarItems,
    UserRecommendations,
)
from clrec.serving.security import Authorization, BodySizeLimit, Security
from clrec.serving.settings import ServiceSettings
from clrec.serving.state import ServiceState
from clrec.serving.store import Store
from clrec.serving.store_guard import guard_store

SETTINGS_ENV = "CLREC_SERVE_SETTINGS"
"""Environment variable through which ``clrec serve`` hands its settings (JSON) to workers."""


def create_app(settings: ServiceSettings) -> FastAPI:
    """The service for ``settings``; the artifact, index and database load at start-up."""
    metrics = ServiceMetrics()
    app = FastAPI(
        title="clrec recommendations",
        version="1",
        summary="Real-time recommendations from a clrec artifact",
        lifespan=_lifespan,
        # FastAPI's own OpenTelemetry hooks look up providers on every request; the service
        # has its Prometheus metrics (/metrics) and request log instead
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # what the dependencies (clrec.serving.deps) and the lifespan read
    app.state.service = None
    app.state.metrics = metrics
    app.state.settings = settings
    # outermost last: observe everything, then check the key, then read the body
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Authorization, policy=required_scope)
    app.add_middleware(
        RequestObserver,
        metrics=metrics,
        routes=lambda: app.router.routes,
        log_requests=settings.log_requests,
    )
    ErrorHandlers(PrivacyMasker(settings.mask_patterns)).install(app)
    # The routers' routes go straight into the app's route list: FastAPI 0.165's
    # include_router wraps each router in a nested matcher that costs about 30 µs a request
    # (a quarter of /healthz), every route included. The routes are self-contained
    # (settings and state come from request.app.state), so every app can share them; but
    # app.dependency_overrides does not reach them (tests build an app from settings instead).
    app.router.routes.extend(route for router in ROUTERS for route in router.routes)
    metrics.prepare(app.router.routes)
    app.mount(PAGE_PATH, PageFiles(directory=STATIC_DIR, html=True), name="page")
    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the database and load the state (artifact, index) before the first request;
    close the database at shutdown."""
    settings: ServiceSettings = app.state.settings
    metrics: ServiceMetrics = app.state.metrics
    logging.getLogger("clrec.serving").setLevel(settings.log_level)
    store = await run_in_threadpool(Store, settings.db_url)
    try:
        await run_in_threadpool(guard_store, store, settings.data_dir, settings.new_store)
        state = await run_in_threadpool(ServiceState.load, settings, store)
    except BaseException:
        store.close()
        raise
    app.state.store = store
    app.state.security = Security(store, settings)
    app.state.service = state
    metrics.index_items.set_function(lambda: float(state.n_items))
    metrics.ready.set_function(lambda: 1.0 if state.store.ping() else 0.0)
    metrics.sync_age.set_function(state.sync_age)
    metrics.sync_failures.set_function(lambda: float(state.sync_failures))
    recall = state.index_report.get("recall@10")
    if recall is not None:
        metrics.index_recall.set(float(recall))
    # The loaded state is hundreds of thousands of long-lived objects (ids, titles, maps):
    # move them out of the collector's sight, or each full collection walks them all and
    # stalls requests for tens of milliseconds.
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        app.state.service = None
        store.close()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document with the settings' ``max_k`` in the read routes' ``k``
    query parameters (its bound, its default, its description): the route modules declare
    ``k`` without them, as they serve every app, and check it with
    :func:`clrec.serving.deps.requested_k`."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = FastAPI.openapi(app)  # built once, cached in app.openapi_schema
    max_k: int = app.state.settings.max_k
    text = f"number of results, 1 to {max_k}"
    for operation in (op for path in schema["paths"].values() for op in path.values()):
        for param in operation.get("parameters", ()):
            if param["in"] == "query" and param["name"] == "k":
                param["description"] = text
                param["schema"].update(description=text, maximum=max_k, default=default_k(max_k))
    return schema


PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/openapi.json", "/docs", "/redoc", "/", PAGE_PATH, REPORT_PATH}
)
"""Paths answered without an API key: liveness, readiness, the API's documentation, the
browser page (static files that hold no data: the API calls it makes carry the key its user
types in) and the evaluation report (aggregate metrics only)."""


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs: None for :data:`PUBLIC_PATHS` and the page's files under
    ``/ui/``; ``read`` to read (GET, and the cold-start query, which only reads); ``write``
    for every other method. Anything not listed as public needs a key, unknown paths included
    (they answer 401, not 404)."""
    if path in PUBLIC_PATHS or path.startswith(("/docs/", f"{PAGE_PATH}/")):
        return None
    if method in ("GET", "HEAD") or (method == "POST" and path == "/v1/recommendations"):
        return "read"
    return "write"


def create_app_from_env() -> FastAPI:
    """The app factory worker processes import (``uvicorn --factory``): the settings come
    as JSON in ``$CLREC_SERVE_SETTINGS``, which ``clrec serve`` sets; this is the service's
    entry point, the one place besides the CLI that reads the environment."""
    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise ClrecError(
            f"${SETTINGS_ENV} is not set: start the service with `clrec serve`, or set it to "
            "ServiceSettings(...).to_json()"
        )
    return create_app(ServiceSettings.from_json(text))


__all__ = [
    "PAGE_PATH",
    "PUBLIC_PATHS",
    "REPORT_PATH",
    "SETTINGS_ENV",
    "STATIC_DIR",
    "EventsRecorded",
    "Health",
    "InvalidInput",
    "ItemWritten",
    "QueryRecommendations",
    "Readiness",
    "ServiceMetrics",
    "SimilarItems",
    "UserRecommendations",
    "create_app",
    "create_app_from_env",
    "required_scope",
]
