"""Authentication, authorisation, rate limiting and request size limits of the service.

* **API keys**: a request names its key in ``X-API-Key: <token>`` or ``Authorization: Bearer
  <token>``; :meth:`clrec.serving.store.Store.verify_key` checks it (salted sha256, compared
  with :func:`hmac.compare_digest`). No key or an unknown, wrong or revoked one: 401. A key
  without the route's scope (``read`` or ``write``): 403. Keys are checked against the
  database on every request, so a revocation (``clrec keys revoke``) takes effect at once
  in every worker.
* **Rate limits**: a token bucket per key (``rate_limit_per_s`` tokens a second, at most
  ``rate_limit_burst`` saved up); an empty bucket answers 429 with ``Retry-After`` (seconds).
  Buckets live in the worker's memory, so with N workers a key gets up to N times the rate.
* **Body size**: :class:`BodySizeLimit` reads at most ``max_body_bytes`` of a request body
  before the application sees it and answers 413 beyond that, whether or not the client
  declared a ``Content-Length``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clrec.serving.settings import ServiceSettings
from clrec.serving.store import SCOPES, Store

API_KEY_HEADER = "x-api-key"
_MAX_BUCKETS = 100_000  # buckets kept before idle ones are dropped


@dataclass(frozen=True)
class Principal:
    """Who made a request: a key's public id, name and scopes (``anonymous`` without auth)."""

    key_id: str
    name: str
    scopes: frozenset[str]


ANONYMOUS = Principal("anonymous", "anonymous", SCOPES)


class TokenBucket:
    """Per-key token buckets: ``rate`` tokens a second up to ``burst``; thread-safe.

    ``clock`` is injectable for tests.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket: 0.0 when granted, else the seconds until a
        token is available (the request is refused and spends nothing)."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > _MAX_BUCKETS:
                    self._drop_full(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _drop_full(self, now: float) -> None:
        """Forget buckets that have refilled completely (they equal a fresh bucket)."""
        full = [
            key
            for key, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]


def request_token(request: Request) -> str | None:
    """The API key a request carries in ``X-API-Key`` or ``Authorization: Bearer``."""
    token = request.headers.get(API_KEY_HEADER)
    if token:
        return token.strip()
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class Security:
    """The checks every protected route runs: key, scope, rate limit."""

    def __init__(self, store: Store, settings: ServiceSettings) -> None:
        self.store = store
        self.required = settings.auth_required
        self.limiter = TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst)

    def authenticate(self, request: Request, scope: str) -> Principal:
        """The request's principal, or an HTTPException (401, 403 or 429)."""
        if self.required:
            token = request_token(request)
            if token is None:
                raise HTTPException(
                    401,
                    "missing API key: send it as 'X-API-Key: <key>' or "
                    "'Authorization: Bearer <key>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            key = self.store.verify_key(token)
            if key is None:
                raise HTTPException(
                    401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
                )
            principal = Principal(key.key_id, key.name, key.scopes)
            bucket = f"key:{key.key_id}"
        else:
            principal = ANONYMOUS
            bucket = f"client:{request.client.host if request.client else 'unknown'}"
        if scope not in principal.scopes:
            raise HTTPException(403, f"this API key lacks the {scope!r} scope")
        wait = self.limiter.take(bucket)
        if wait > 0:
            raise HTTPException(
                429,
                "rate limit exceeded; retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return principal


def require(scope: str) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the caller's :class:`Principal` if its key holds ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def dependency(request: Request) -> Principal:
        security: Security = request.app.state.security
        principal = security.authenticate(request, scope)
        request.state.principal = principal
        return principal

    return dependency


class BodySizeLimit:
    """ASGI middleware: buffer at most ``max_bytes`` of a request body, else answer 413.

    The body is read before the application runs and handed to it in one piece, so the
    limit holds for chunked uploads as well as for a declared ``Content-Length``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(scope, send)
            return
        chunks: list[bytes] = []
        size = 0
        disconnect: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                disconnect = message
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(scope, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                if disconnect is not None:
                    return disconnect
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        body = json.dumps({"detail": f"request body larger than {self.max_bytes} bytes"}).encode()
        scope.setdefault("state", {})["log_detail"] = "request body too large"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


__all__ = [
    "ANONYMOUS",
    "API_KEY_HEADER",
    "BodySizeLimit",
    "Principal",
    "Security",
    "TokenBucket",
    "request_token",
    "require",
]
