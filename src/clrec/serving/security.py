"""Authentication, authorisation, rate limiting and request size limits of the service.

* **API keys**: a request names its key in ``X-API-Key: <token>`` or ``Authorization: Bearer
  <token>``; :meth:`clrec.serving.store.Store.verify_key` checks it (salted sha256, compared
  with :func:`hmac.compare_digest`). No key or an unknown, wrong or revoked one: 401. A key
  without the route's scope (``read`` or ``write``): 403. A verified key is remembered for
  ``key_cache_s`` seconds (by a digest of the token, never the token itself), so the
  database is asked at most once a second per key and worker by default: a revocation
  (``clrec keys revoke``) takes effect in every worker within ``key_cache_s`` (0: at once,
  with a database read per request).
* **Where**: :class:`Authorization`, an ASGI middleware, runs these checks for every request
  its policy does not call public, before routing and validation.
* **Rate limits**: a token bucket per key (``rate_limit_per_s`` tokens a second, at most
  ``rate_limit_burst`` saved up); an empty bucket answers 429 with ``Retry-After`` (seconds).
  Buckets live in the worker's memory, so with N workers a key gets up to N times the rate.
* **Body size**: :class:`BodySizeLimit` reads at most ``max_body_bytes`` of a request body
  before the application sees it and answers 413 beyond that, whether or not the client
  declared a ``Content-Length``.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clrec.serving.settings import ServiceSettings
from clrec.serving.store import SCOPES, Store

API_KEY_HEADER = "x-api-key"
_MAX_BUCKETS = 100_000  # buckets kept before idle ones are dropped
_MAX_CACHED_KEYS = 10_000  # verified keys remembered before the cache starts afresh


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


class KeyCache:
    """Verified keys by a sha256 digest of their token, each for ``ttl`` seconds.

    Only successful verifications are remembered, so a new key works at once and a wrong
    token never passes; ``ttl`` bounds how long a revoked key keeps working. ``clock`` is
    injectable for tests.
    """

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = float(ttl)
        self._clock = clock
        self._entries: dict[bytes, tuple[Principal, float]] = {}  # digest -> (who, until)

    def get(self, token: str) -> Principal | None:
        entry = self._entries.get(_digest(token))
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def put(self, token: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= _MAX_CACHED_KEYS:
            self._entries.clear()
        self._entries[_digest(token)] = (principal, self._clock() + self.ttl)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Security:
    """The checks every protected route runs: key, scope, rate limit."""

    def __init__(
        self, store: Store, settings: ServiceSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.required = settings.auth_required
        self.keys = KeyCache(settings.key_cache_s, clock)
        self.limiter = TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst, clock)

    async def authenticate(self, request: Request, scope: str) -> Principal:
        """The request's principal, or an HTTPException (401, 403 or 429). Runs on the
        event loop; only a key missing from the cache is looked up (in a worker thread)."""
        if self.required:
            token = request_token(request)
            if token is None:
                raise HTTPException(
                    401,
                    "missing API key: send it as 'X-API-Key: <key>' or "
                    "'Authorization: Bearer <key>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            principal = self.keys.get(token)
            if principal is None:
                key = await run_in_threadpool(self.store.verify_key, token)
                if key is None:
                    raise HTTPException(
                        401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
                    )
                principal = Principal(key.key_id, key.name, key.scopes)
                self.keys.put(token, principal)
            bucket = f"key:{principal.key_id}"
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


ScopePolicy = Callable[[str, str], str | None]
"""``(method, path) -> scope``: the scope a request needs, None for a public route."""


class Authorization:
    """ASGI middleware: every request that ``policy`` does not declare public passes
    :meth:`Security.authenticate` before routing and validation, so a request without a valid
    key learns nothing about its input (401 before 422) and the checks cost one call, not a
    dependency per route. The principal is left in ``scope["state"]["principal"]``.

    The :class:`Security` object is read from ``app.state.security`` at each request (the
    service creates it when its lifespan has loaded the store): until then protected routes
    answer 503.
    """

    def __init__(self, app: ASGIApp, policy: ScopePolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = self.policy(str(scope.get("method", "GET")), str(scope.get("path", "")))
        if needed is None:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        security: Security | None = getattr(scope["app"].state, "security", None)
        try:
            if security is None:
                raise HTTPException(503, "the service is starting")
            state["principal"] = await security.authenticate(Request(scope), needed)
        except HTTPException as error:
            state["log_detail"] = str(error.detail)
            response = JSONResponse({"detail": error.detail}, error.status_code, error.headers)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


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
    "Authorization",
    "BodySizeLimit",
    "KeyCache",
    "Principal",
    "ScopePolicy",
    "Security",
    "TokenBucket",
    "request_token",
]
