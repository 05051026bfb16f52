"""Service security: API keys (401 / 403 / revocation), per-key token buckets (429 with
Retry-After) and the request body limit (413), on a minimal app with the service's checks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Body, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from clrec.serving.security import (
    ANONYMOUS,
    Authorization,
    BodySizeLimit,
    Security,
    TokenBucket,
)
from clrec.serving.settings import ServiceSettings, default_database_url
from clrec.serving.store import Store

LIMIT = 2048


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(default_database_url(tmp_path))
    yield opened
    opened.close()


def _client(
    store: Store, tmp_path: Path, clock: Callable[[], float] = time.monotonic, **overrides: Any
) -> TestClient:
    settings = ServiceSettings(artifact=tmp_path / "unused", max_body_bytes=LIMIT, **overrides)
    app = FastAPI()
    app.state.security = Security(store, settings, clock)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    scopes = {"/read": "read", "/write": "write"}
    app.add_middleware(Authorization, policy=lambda method, path: scopes.get(path))

    @app.get("/read")
    def read(request: Request) -> dict[str, str]:
        return {"key": request.state.principal.key_id}

    @app.post("/write")
    def write(body: dict[str, Any] = Body(...)) -> dict[str, int]:  # noqa: B008
        return {"fields": len(body)}

    @app.get("/open")
    def open_route() -> dict[str, bool]:
        return {"open": True}

    return TestClient(app)


def test_missing_and_invalid_keys_are_401(store: Store, tmp_path: Path) -> None:
    client = _client(store, tmp_path)
    assert client.get("/open").json() == {"open": True}  # public by the policy
    response = client.get("/read")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "X-API-Key" in response.json()["detail"]
    for headers in (
        {"X-API-Key": "clrec_0123456789abcdef_nope"},
        {"Authorization": "Bearer garbage"},
        {"Authorization": "Basic dXNlcjpwdw=="},  # not a bearer token: no key at all
    ):
        assert client.get("/read", headers=headers).status_code == 401


def test_valid_keys_by_either_header(store: Store, tmp_path: Path) -> None:
    key = store.create_key("reader", "read")
    client = _client(store, tmp_path)
    for headers in (
        {"X-API-Key": key.token},
        {"Authorization": f"Bearer {key.token}"},
        {"authorization": f"bearer  {key.token} "},
    ):
        response = client.get("/read", headers=headers)
        assert response.status_code == 200, headers
        assert response.json() == {"key": key.key.key_id}


def test_scopes_are_403(store: Store, tmp_path: Path) -> None:
    reader = store.create_key("reader", "read")
    writer = store.create_key("writer", "write")
    both = store.create_key("both", "read,write")
    client = _client(store, tmp_path)
    denied = client.post("/write", json={"a": 1}, headers={"X-API-Key": reader.token})
    assert denied.status_code == 403 and "'write' scope" in denied.json()["detail"]
    assert client.get("/read", headers={"X-API-Key": writer.token}).status_code == 403
    assert client.post("/write", json={"a": 1}, headers={"X-API-Key": writer.token}).json() == {
        "fields": 1
    }
    assert client.get("/read", headers={"X-API-Key": both.token}).status_code == 200
    # an unauthenticated request never reaches body validation
    assert client.post("/write", content=b"not json").status_code == 401


def test_revocation_takes_effect_at_once_without_a_key_cache(store: Store, tmp_path: Path) -> None:
    key = store.create_key("temp", "read")
    client = _client(store, tmp_path, key_cache_s=0)
    assert client.get("/read", headers={"X-API-Key": key.token}).status_code == 200
    store.revoke_key(key.key.key_id)
    response = client.get("/read", headers={"X-API-Key": key.token})
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_a_cached_key_is_trusted_for_key_cache_s_then_checked_again(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [50.0]
    key = store.create_key("temp", "read")
    client = _client(store, tmp_path, clock=lambda: now[0], key_cache_s=2.0, rate_limit_per_s=0)
    headers = {"X-API-Key": key.token}
    lookups: list[str] = []
    verify = store.verify_key
    monkeypatch.setattr(store, "verify_key", lambda token: lookups.append(token) or verify(token))
    assert client.get("/read", headers=headers).status_code == 200
    assert client.get("/read", headers=headers).status_code == 200
    assert len(lookups) == 1  # the second request was answered from the cache
    store.revoke_key("temp")
    now[0] += 1.9
    assert client.get("/read", headers=headers).status_code == 200  # still within the TTL
    now[0] += 0.2
    assert client.get("/read", headers=headers).status_code == 401  # asked again: revoked
    assert len(lookups) == 2
    # a wrong token is never cached, and never passes
    wrong = {"X-API-Key": key.token[:-1] + ("A" if key.token[-1] != "A" else "B")}
    assert [client.get("/read", headers=wrong).status_code for _ in range(2)] == [401, 401]
    assert len(lookups) == 4


def test_rate_limit_is_per_key_with_retry_after(store: Store, tmp_path: Path) -> None:
    first = store.create_key("first", "read")
    second = store.create_key("second", "read")
    client = _client(store, tmp_path, rate_limit_per_s=0.25, rate_limit_burst=3)
    headers = {"X-API-Key": first.token}
    assert [client.get("/read", headers=headers).status_code for _ in range(3)] == [200] * 3
    limited = client.get("/read", headers=headers)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 4  # one token every 4 s
    assert "rate limit" in limited.json()["detail"]
    # another key has its own bucket
    assert client.get("/read", headers={"X-API-Key": second.token}).status_code == 200
    # no limit at all with rate 0
    free = _client(store, tmp_path, rate_limit_per_s=0.0, rate_limit_burst=1)
    assert {free.get("/read", headers=headers).status_code for _ in range(5)} == {200}


def test_token_bucket_refills() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=2.0, burst=2, clock=lambda: now[0])
    assert bucket.take("a") == 0.0 and bucket.take("a") == 0.0
    assert bucket.take("a") == pytest.approx(0.5)  # one token in half a second
    assert bucket.take("b") == 0.0  # separate bucket
    now[0] += 0.25
    assert bucket.take("a") == pytest.approx(0.25)  # refused requests spend nothing
    now[0] += 0.25
    assert bucket.take("a") == 0.0
    now[0] += 60
    assert [bucket.take("a") for _ in range(3)][:2] == [0.0, 0.0]  # capped at the burst
    assert TokenBucket(0.0, 1).take("x") == 0.0


def test_auth_can_be_turned_off(store: Store, tmp_path: Path) -> None:
    client = _client(store, tmp_path, auth_required=False)
    assert client.get("/read").json() == {"key": ANONYMOUS.key_id}
    assert client.post("/write", json={"a": 1, "b": 2}).json() == {"fields": 2}


def test_body_size_limit(store: Store, tmp_path: Path) -> None:
    key = store.create_key("writer", "write")
    client = _client(store, tmp_path)
    headers = {"X-API-Key": key.token, "content-type": "application/json"}
    fits = b'{"a": "' + b"x" * (LIMIT - 10) + b'"}'
    assert len(fits) <= LIMIT
    assert client.post("/write", content=fits, headers=headers).status_code == 200
    big = b'{"a": "' + b"x" * LIMIT + b'"}'
    response = client.post("/write", content=big, headers=headers)
    assert response.status_code == 413
    assert response.json() == {"detail": f"request body larger than {LIMIT} bytes"}
    # no Content-Length (chunked upload): counted as it arrives
    chunked = client.post("/write", content=iter([big[:1000], big[1000:]]), headers=headers)
    assert chunked.status_code == 413


def test_body_size_limit_counts_streamed_chunks() -> None:
    """Raw ASGI: a body in several messages, no Content-Length; the app never runs."""
    called: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        called.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def run(chunks: list[bytes]) -> tuple[int, list[Message]]:
        queue = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]
        sent: list[Message] = []

        async def receive() -> Message:
            return queue.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)

        scope: Scope = {"type": "http", "method": "POST", "headers": [], "path": "/"}
        asyncio.run(BodySizeLimit(app, 1024)(scope, receive, send))
        return int(sent[0]["status"]), sent

    status, _ = run([b"a" * 600, b"b" * 600])
    assert status == 413 and called == []
    status, _ = run([b"a" * 500, b"b" * 500])
    assert status == 200 and called == [b"a" * 500 + b"b" * 500]  # handed over whole


# ---------------------------------------------------------------------- the keys CLI


def test_keys_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from clrec.cli import app

    runner = CliRunner()
    db = default_database_url(tmp_path / "db")
    created = runner.invoke(
        app, ["keys", "create", "--db", db, "--name", "ops", "--scopes", "read,write"]
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert "shown only this once" in created.stderr and token not in created.stderr
    store = Store(db)
    key = store.verify_key(token)
    assert key is not None and key.scopes == {"read", "write"} and key.name == "ops"
    listed = runner.invoke(app, ["keys", "list", "--db", db])
    assert listed.exit_code == 0 and key.key_id in listed.stdout and "active" in listed.stdout
    assert token not in listed.stdout
    # the default database lives in --data-dir
    in_dir = runner.invoke(
        app, ["keys", "create", "--data-dir", str(tmp_path / "d"), "--name", "x"]
    )
    assert in_dir.exit_code == 0 and (tmp_path / "d" / "service.db").is_file()
    bad = runner.invoke(app, ["keys", "create", "--db", db, "--name", "y", "--scopes", "admin"])
    assert bad.exit_code == 1 and "scopes must be" in bad.output and "Traceback" not in bad.output
    revoked = runner.invoke(app, ["keys", "revoke", key.key_id, "--db", db])
    assert revoked.exit_code == 0 and f"revoked {key.key_id} (ops)" in revoked.stdout
    assert store.verify_key(token) is None
    again = runner.invoke(app, ["keys", "revoke", "ops", "--db", db])
    assert again.exit_code == 1 and "no active key" in again.output
    store.close()


def test_serve_cli_refusals(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from clrec.cli import app

    runner = CliRunner()
    missing = runner.invoke(app, ["serve", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "not a clrec artifact" in missing.output
    (tmp_path / "artifact.json").write_text("{}")
    bad_index = runner.invoke(app, ["serve", str(tmp_path), "--index", "annoy"])
    assert bad_index.exit_code == 1 and "index.kind" in bad_index.output
    assert "Traceback" not in bad_index.output
