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
"""

import functools
import gc
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clrec.encoders.privacy import PrivacyMasker
from clrec.errors import ClrecError
from clrec.serving.artifact import REPORT_FILE
from clrec.serving.security import Authorization, BodySizeLimit, Security
from clrec.serving.settings import ServiceSettings
from clrec.serving.state import NotFoundError, Scored, ServiceState
from clrec.serving.store import Event, Store, StoreError

SETTINGS_ENV = "CLREC_SERVE_SETTINGS"
"""Environment variable through which ``clrec serve`` hands its settings (JSON) to workers."""

access_log = logging.getLogger("clrec.serving.access")
logger = logging.getLogger("clrec.serving")

PAGE_PATH = "/ui"
"""Where the browser page (``static/``) is served; ``GET /`` redirects there."""
STATIC_DIR = FilePath(__file__).parent / "static"
REPORT_PATH = "/report"
# The page runs only its own files and talks only to this service; the report has no scripts.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: https: http:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_REPORT_HEADERS = {
    **_PAGE_HEADERS,
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_UNMATCHED = "<unmatched>"

ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=256)]


# ---------------------------------------------------------------------- API models


class ItemScore(BaseModel):
    """One recommended or similar item."""

    id: str
    score: float
    title: str | None = None


class UserRecommendations(BaseModel):
    user: str
    k: int
    items: list[ItemScore]


class RecommendationQuery(BaseModel):
    """A cold-start request: items the user liked and/or a free-text profile."""

    model_config = ConfigDict(extra="forbid")

    items: list[ExternalId] = Field(default_factory=list, max_length=1000)
    profile_text: str | None = Field(default=None, min_length=1, max_length=10_000)
    k: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _something_to_go_on(self) -> "RecommendationQuery":
        if not self.items and self.profile_text is None:
            raise ValueError("give at least one of items or profile_text")
        return self


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


class EventIn(BaseModel):
    """One interaction: ``ts`` is an ISO datetime or epoch seconds (default: now, UTC)."""

    model_config = ConfigDict(extra="forbid")

    user: ExternalId
    item: ExternalId
    kind: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")]
    value: float | None = Field(default=None, allow_inf_nan=False)
    ts: datetime | None = None


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


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries of the error statuses a route answers with."""
    return {
        code: {
            "model": InvalidInput if code == 422 else ErrorMessage,
            "description": _ERROR_TEXT[code],
        }
        for code in codes
    }


_PROTECTED = (401, 403, 422, 429, 503)  # key, scope, parameters, rate, start-up / database
_WITH_BODY = (400, 413)


# ---------------------------------------------------------------------- metrics


class ServiceMetrics:
    """The app's Prometheus collectors, in a registry of its own (several apps, e.g. in
    tests, never share or clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("method", "route", "status")
        self.requests = Counter(
            "clrec_http_requests", "HTTP requests answered", labels, registry=self.registry
        )
        self.latency = Histogram(
            "clrec_http_request_duration_seconds",
            "Time to answer an HTTP request",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "clrec_http_errors",
            "Requests that failed on the server side (5xx)",
            labels,
            registry=self.registry,
        )
        self.index_items = Gauge(
            "clrec_index_items", "Items in the vector index", registry=self.registry
        )
        self.index_recall = Gauge(
            "clrec_index_recall_at_10",
            "recall@10 of the index against exact search, measured at start",
            registry=self.registry,
        )
        self.events = Counter(
            "clrec_events_recorded", "Events committed to the store", registry=self.registry
        )
        self.items_written = Counter(
            "clrec_items_written", "Items added or updated through the API", registry=self.registry
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        code = str(status)
        self.requests.labels(method, route, code).inc()
        self.latency.labels(method, route, code).observe(seconds)
        if status >= 500:
            self.errors.labels(method, route, code).inc()


class RequestObserver:
    """ASGI middleware: count, time and log every request by its route template."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServiceMetrics,
        routes: Callable[[], list[BaseRoute]],
        log_requests: bool,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        started = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            status = 500
            raise
        finally:
            seconds = time.perf_counter() - started
            route = self._template(scope)
            method = str(scope.get("method", "?"))
            self.metrics.observe(method, route, status, seconds)
            if self.log_requests:
                detail = scope["state"].get("log_detail")
                access_log.info(
                    "%s %s %d %.1fms%s",
                    method,
                    route,
                    status,
                    seconds * 1000,
                    f" {detail}" if detail else "",
                )

    def _template(self, scope: Scope) -> str:
        """The matched route's path template (never the raw path, which holds ids)."""
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
        for candidate in self.routes():  # answered before routing (e.g. 413)
            match, _ = candidate.matches(scope)
            if match is not Match.NONE:
                found = getattr(candidate, "path", None)
                if isinstance(found, str):
                    return found
        return _UNMATCHED


# ---------------------------------------------------------------------- the app


def create_app(settings: ServiceSettings) -> FastAPI:
    """The service for ``settings``; the artifact, index and database load at start-up."""
    metrics = ServiceMetrics()
    masker = PrivacyMasker(settings.mask_patterns)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logging.getLogger("clrec.serving").setLevel(settings.log_level)
        store = await run_in_threadpool(Store, settings.db_url)
        try:
            state = await run_in_threadpool(ServiceState.load, settings, store)
        except BaseException:
            store.close()
            raise
        app.state.store = store
        app.state.security = Security(store, settings)
        app.state.service = state
        metrics.index_items.set_function(lambda: float(state.n_items))
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

    app = FastAPI(
        title="clrec recommendations",
        version="1",
        summary="Real-time recommendations from a clrec artifact",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry hooks look up providers on every request; the service
        # has its Prometheus metrics (/metrics) and request log instead
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
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
    _exception_handlers(app, masker)

    max_k = settings.max_k
    K = Annotated[int, Query(ge=1, le=max_k, description=f"number of results, 1 to {max_k}")]
    default_k = min(10, max_k)
    State = Annotated[ServiceState, Depends(_service)]

    class UserParams(BaseModel):
        """Query parameters of a user's recommendations (one model: validated in one
        call, which costs a fraction of separate parameters)."""

        model_config = ConfigDict(extra="forbid")

        k: int = Field(default_k, ge=1, le=max_k, description=f"number of results, 1 to {max_k}")
        exclude_seen: bool = Field(True, description="leave out items the user interacted with")
        exclude: list[ExternalId] = Field(
            default_factory=list, max_length=1000, description="item ids to leave out"
        )
        rerank: bool = Field(
            False,
            description="re-order the retriever's top candidates with the language-model "
            "ranking stage (scores become click probabilities); 422 without one",
        )

    @app.get(
        "/v1/users/{user_id}/recommendations",
        response_model=UserRecommendations,
        tags=["recommendations"],
        responses=_responses(*_PROTECTED, 404),
    )
    async def user_recommendations(
        request: Request,
        user_id: Annotated[str, Path(min_length=1, max_length=256)],
        params: Annotated[UserParams, Query()],
    ) -> Response:
        """Top k for a known user (trained, or known by recorded events); 404 otherwise:
        new users go through POST /v1/recommendations."""
        # On the event loop: an index search is far cheaper than a hop to a worker thread.
        state = await _service(request)  # not a dependency: a sub-dependency costs more here
        k = params.k
        if params.rerank:  # a cross-encoder pass: far too heavy for the event loop
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
        return _json({"user": user_id, "k": k, "items": _scored_json(found)})

    @app.post(
        "/v1/recommendations",
        response_model=QueryRecommendations,
        tags=["recommendations"],
        responses=_responses(*_PROTECTED, *_WITH_BODY),
    )
    def query_recommendations(state: State, query: RecommendationQuery) -> QueryRecommendations:
        """Top k for a user known only by a few items and/or a profile text (cold start)."""
        if query.k > max_k:
            raise _k_error(query.k, max_k)
        result = state.recommend_anonymous(query.items, query.profile_text, query.k)
        return QueryRecommendations(
            k=query.k, items=_scored(result.items), ignored_items=result.ignored
        )

    @app.get(
        "/v1/items/{item_id}/similar",
        response_model=SimilarItems,
        tags=["items"],
        responses=_responses(*_PROTECTED, 404),
    )
    async def similar_items(
        request: Request,
        item_id: Annotated[str, Path(min_length=1, max_length=256)],
        k: K = default_k,
    ) -> Response:
        """The k items most similar to ``item_id`` by the model's item vectors."""
        state = await _service(request)
        found = state.similar_items(item_id, k)
        return _json({"item": item_id, "k": k, "items": _scored_json(found)})

    Limit = Annotated[int, Query(ge=1, le=1000, description="most entries to return")]

    @app.get(
        "/v1/users",
        response_model=UserList,
        tags=["users"],
        responses=_responses(*_PROTECTED),
    )
    def find_users(
        state: State,
        prefix: Annotated[str, Query(max_length=256, description="the ids' common start")] = "",
        limit: Limit = 20,
    ) -> UserList:
        """Known user ids (trained, or known by recorded events) that start with ``prefix``:
        the browser page's user search."""
        users, total = state.find_users(prefix, limit)
        return UserList(prefix=prefix, total=total, users=users)

    @app.get(
        "/v1/users/{user_id}/history",
        response_model=UserHistory,
        tags=["users"],
        responses=_responses(*_PROTECTED, 404),
    )
    def user_history(
        state: State,
        user_id: Annotated[str, Path(min_length=1, max_length=256)],
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

    @app.put(
        "/v1/items/{item_id}",
        response_model=ItemWritten,
        tags=["items"],
        responses={
            201: {"model": ItemWritten, "description": "a new item"},
            **_responses(*_PROTECTED, *_WITH_BODY, 404),
        },
    )
    def put_item(
        state: State,
        response: Response,
        item_id: Annotated[str, Path(min_length=1, max_length=256)],
        content: Annotated[
            dict[str, str | int | float | None],
            Body(
                description="the item's catalogue fields, e.g. "
                '{"title": "Heat (1995)", "genres": "Action|Crime"}'
            ),
        ],
        for_user: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    ) -> ItemWritten:
        """Add or update an item from its fields: embedded by the model's own encoders,
        stored, and recommendable when this returns (201 for a new item, 200 otherwise)."""
        fields = {
            str(name): None if value is None else str(value)
            for name, value in content.items()
            if name != "id"
        }
        if not all(_is_text(n) and (v is None or _is_text(v)) for n, v in fields.items()):
            raise HTTPException(
                422, "item fields must be valid Unicode text (no lone surrogates \\ud800-\\udfff)"
            )
        if not any(v is not None and v.strip() for v in fields.values()):
            raise HTTPException(422, "the item needs at least one non-empty field")
        result = state.put_item(item_id, fields, for_user=for_user)
        metrics.items_written.inc()
        response.status_code = 201 if result.created else 200
        placement = result.placement
        return ItemWritten(
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

    @app.post(
        "/v1/events",
        response_model=EventsRecorded,
        tags=["events"],
        responses=_responses(*_PROTECTED, *_WITH_BODY),
    )
    def post_events(state: State, events: list[EventIn]) -> EventsRecorded:
        """Record interactions; answers only after the database committed them. Items must
        be known (artifact or PUT /v1/items); a batch naming an unknown one is refused."""
        if len(events) > settings.max_events:
            raise HTTPException(
                422, f"at most {settings.max_events} events per request, got {len(events)}"
            )
        batch = [
            Event(user=e.user, item=e.item, kind=e.kind, value=e.value, ts=_epoch(e.ts))
            for e in events
        ]
        written = state.record_events(batch)
        metrics.events.inc(written)
        return EventsRecorded(recorded=written)

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["operations"],
        responses={503: {"model": Readiness, "description": "not ready"}},
    )
    def readyz(request: Request) -> Any:
        """Readiness: artifact loaded, index built, database answering."""
        state: ServiceState | None = request.app.state.service
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

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["operations"],
        responses=_responses(401, 403, 429, 503),
    )
    def prometheus_metrics() -> Response:
        """Prometheus metrics of this process (a read key is required)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page_redirect() -> RedirectResponse:
        """The browser page."""
        return RedirectResponse(f"{PAGE_PATH}/", status_code=307)

    @app.api_route(REPORT_PATH, methods=["GET", "HEAD"], include_in_schema=False)
    async def evaluation_report(request: Request) -> Response:
        """The loaded artifact's evaluation report (the run's ``report.html``: aggregate
        metrics, plots and the run's config, no scripts); 404 when it was exported without
        one. Public, like ``/readyz``: it holds no user's data."""
        state = await _service(request)
        path = state.artifact.root / REPORT_FILE
        if not path.is_file():
            raise HTTPException(
                404,
                "this artifact has no evaluation report: export a run that wrote report.html "
                "(run config report: true)",
            )
        return FileResponse(path, media_type="text/html", headers=_REPORT_HEADERS)

    app.mount(PAGE_PATH, _PageFiles(directory=STATIC_DIR, html=True), name="page")
    return app


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


# ---------------------------------------------------------------------- helpers


class _PageFiles(StaticFiles):
    """The browser page's static files, with headers that keep it to its own scripts."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(_PAGE_HEADERS)
        return response


async def _service(request: Request) -> ServiceState:
    """The loaded state (503 while starting), synced with other workers' writes (the
    database is read in a worker thread, and only when a sync is due)."""
    state: ServiceState | None = request.app.state.service
    if state is None:
        raise HTTPException(503, "the service is starting")
    if state.sync_due():
        await run_in_threadpool(state.maybe_sync)
    return state


def _item_fields(state: ServiceState) -> dict[str, str]:
    """The catalogue's fields (``id`` aside) with their kinds, in catalogue order."""
    kinds: dict[str, str] = state.artifact.manifest["content"].get("item_fields", {})
    columns = [c for c in state.artifact.catalogue.columns if c != "id"]
    return {str(c): str(kinds.get(c, "other")) for c in columns}


def _json(payload: dict[str, Any]) -> Response:
    """A 200 JSON response of a payload the route built in its response model's shape: the
    read routes skip FastAPI's re-validation of their own output, a sizeable part of their
    cost (the OpenAPI schema still describes them by ``response_model``)."""
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body.encode("utf-8", "replace"), media_type="application/json")


def _scored_json(found: list[Scored]) -> list[dict[str, Any]]:
    return [{"id": s.id, "score": s.score, "title": s.title} for s in found]


def _scored(found: list[Scored]) -> list[ItemScore]:
    return [ItemScore(id=s.id, score=s.score, title=s.title) for s in found]


def _k_error(k: int, max_k: int) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "less_than_equal",
                "loc": ("body", "k"),
                "msg": f"Input should be less than or equal to {max_k}",
                "input": k,
                "ctx": {"le": max_k},
            }
        ]
    )


def _is_text(text: str) -> bool:
    """Whether ``text`` is encodable as UTF-8 (JSON's ``"\\ud800"`` escapes decode to lone
    surrogates, which no database, encoder or response can carry)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    """``text`` with any lone surrogate replaced by U+FFFD."""
    if _is_text(text):
        return text
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _json_safe(value: Any) -> Any:
    """``value`` (JSON-ready) with what a JSON response cannot carry made printable: a
    non-finite float becomes its name (``"nan"``, ``"inf"``), lone surrogates become U+FFFD.
    Error responses echo the request's input, which Python's JSON parser accepts with both
    (``NaN``, ``1e999``, ``"\\ud800"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return _printable(value)
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _epoch(ts: datetime | None) -> float | None:
    """Epoch seconds of ``ts``; a datetime without a zone is taken as UTC."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def _exception_handlers(app: FastAPI, masker: PrivacyMasker) -> None:
    """Map errors to status codes and note a masked reason for the request log."""

    def note(request: Request, reason: str) -> None:
        request.state.log_detail = masker.mask(_printable(reason))

    async def not_found(request: Request, error: Exception) -> JSONResponse:
        note(request, str(error))
        return JSONResponse({"detail": _printable(str(error))}, status_code=404)

    async def store_failed(request: Request, error: Exception) -> JSONResponse:
        note(request, str(error))
        logger.error("database failure: %s", masker.mask(str(error)))
        return JSONResponse({"detail": "the database is unavailable; retry later"}, 503)

    async def bad_input(request: Request, error: Exception) -> JSONResponse:
        note(request, str(error))
        return JSONResponse({"detail": _printable(str(error))}, status_code=422)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        note(request, str(error.detail))
        return await http_exception_handler(request, error)

    async def invalid_request(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        where = sorted({".".join(str(p) for p in e.get("loc", ())) for e in error.errors()})
        note(request, f"invalid {', '.join(where)}")  # locations only: inputs may be private
        # FastAPI's own answer, with the echoed input made encodable (NaN, lone surrogates)
        detail = _json_safe(jsonable_encoder(error.errors()))
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(StoreError, store_failed)
    app.add_exception_handler(ClrecError, bad_input)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)


__all__ = [
    "PAGE_PATH",
    "PUBLIC_PATHS",
    "REPORT_PATH",
    "SETTINGS_ENV",
    "STATIC_DIR",
    "ServiceMetrics",
    "create_app",
    "create_app_from_env",
    "required_scope",
]
