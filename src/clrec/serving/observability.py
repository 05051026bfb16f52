"""What the service reports about itself: Prometheus collectors (:class:`ServiceMetrics`)
and the middleware that counts, times and logs every request (:class:`RequestObserver`).

Requests are logged as one line (method, route template, status, milliseconds, and the
masked reason an error handler noted) on the ``clrec.serving.access`` logger; paths (which
hold user ids), query strings, bodies and API keys never are.
"""

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("clrec.serving.access")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_UNMATCHED = "<unmatched>"


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
        self.ready = Gauge(
            "clrec_ready",
            "1 when the service is ready (state loaded, database answering), else 0",
            registry=self.registry,
        )
        self.sync_age = Gauge(
            "clrec_sync_age_seconds",
            "Seconds since this process last read what other workers wrote (0: it never needs to)",
            registry=self.registry,
        )
        self.sync_failures = Gauge(
            "clrec_sync_failures",
            "Reads of other workers' writes that failed since start",
            registry=self.registry,
        )
        self.events = Counter(
            "clrec_events_recorded", "Events committed to the store", registry=self.registry
        )
        self.items_written = Counter(
            "clrec_items_written", "Items added or updated through the API", registry=self.registry
        )

    def prepare(self, routes: list[BaseRoute]) -> None:
        """Create every route's server-error series at 0: a counter series that first
        appears at its final value shows no increase to ``rate()``, so a burst of 5xx would
        stay invisible to the alert rules."""
        for route in routes:
            path = getattr(route, "path", None)
            if not isinstance(path, str) or not path.startswith(("/v1/", "/metrics", "/readyz")):
                continue
            for method in sorted(getattr(route, "methods", None) or ()):
                if method in ("HEAD", "OPTIONS"):
                    continue
                for status in ("500", "503"):
                    self.requests.labels(method, path, status)
                    self.errors.labels(method, path, status)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count and time one answered request; a 5xx also counts as an error."""
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


__all__ = ["RequestObserver", "ServiceMetrics", "access_log"]
