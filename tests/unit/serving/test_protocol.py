"""Slow clients cannot hold connections (clrec.serving.protocol): a real uvicorn server with
the header-deadline protocol closes connections that trickle header bytes, and still answers
complete requests, on a fresh and on a kept-alive connection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("httptools")

from clrec.serving import protocol  # noqa: E402
from clrec.serving.protocol import HeaderDeadlineProtocol  # noqa: E402
from live_server import free_port  # noqa: E402


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(HeaderDeadlineProtocol, "_timeout", 0.5)
    port = free_port()
    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=port,
        http=HeaderDeadlineProtocol,
        log_level="error",
        lifespan="off",
        timeout_keep_alive=30,
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.started
    yield port
    running.should_exit = True
    thread.join(timeout=10)


def _response(sock: socket.socket) -> bytes:
    """One whole response (the app's body is ``ok``)."""
    sock.settimeout(5)
    data = b""
    while not data.endswith(b"ok"):
        chunk = sock.recv(1024)
        assert chunk, data
        data += chunk
    return data


def _closed_within(sock: socket.socket, seconds: float, trickle: bool) -> bool:
    """True when the server closes ``sock`` within ``seconds`` while the client sends a
    header byte every 0.1 s (``trickle``) or nothing."""
    sock.settimeout(0.1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            pass
        if trickle:
            try:
                sock.sendall(b"x")
            except OSError:
                return True
    return False


def test_slow_headers_are_cut_off_and_complete_requests_answered(server: int) -> None:
    slow = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(sock)
    try:
        assert all(_closed_within(sock, 3.0, trickle=True) for sock in slow)
    finally:
        for sock in slow:
            sock.close()
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)  # within the deadline, a second request on the kept-alive connection
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200")
        # then the deadline runs again from that response: an idle connection is closed
        assert _closed_within(sock, 3.0, trickle=False)


def test_the_deadline_comes_from_the_service_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from clrec.serving.app import SETTINGS_ENV

    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    assert protocol.header_timeout() == protocol.DEFAULT_HEADER_TIMEOUT_S
    monkeypatch.setenv(SETTINGS_ENV, '{"artifact": "/a", "header_timeout_s": 2.5}')
    assert protocol.header_timeout() == 2.5
