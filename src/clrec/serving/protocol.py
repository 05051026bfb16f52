"""uvicorn's HTTP protocol with a deadline on a request's headers (against slowloris).

uvicorn closes idle keep-alive connections, but any byte a client sends resets that timer:
a client trickling a header line every few seconds holds its connection (and a worker's
file descriptor) forever, and two thousand such clients exhaust the server. ASGI middleware
cannot help — it runs only once the headers are complete. :class:`HeaderDeadlineProtocol`
arms a timer when a connection opens and after each response, disarms it when a request's
headers are complete, and closes the connection when it fires. Request bodies and long
responses are not affected (the body size is bounded by the service itself).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from clrec.serving.settings import ServiceSettings

logger = logging.getLogger("clrec.serving")

DEFAULT_HEADER_TIMEOUT_S: float = ServiceSettings.model_fields["header_timeout_s"].default
"""The settings' default deadline, for a process started without ``clrec serve``."""


def header_timeout() -> float:
    """The deadline in seconds: the service settings' ``header_timeout_s`` (workers read
    them from the environment ``clrec serve`` sets), else the default."""
    from clrec.serving.app import SETTINGS_ENV

    text = os.environ.get(SETTINGS_ENV)
    if not text:
        return DEFAULT_HEADER_TIMEOUT_S

    return ServiceSettings.from_json(text).header_timeout_s


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """httptools' protocol, closing a connection whose request headers take longer than
    :func:`header_timeout` (from its opening, or from the previous response's end)."""

    _timeout: float | None = None  # read once per process

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if HeaderDeadlineProtocol._timeout is None:
            HeaderDeadlineProtocol._timeout = header_timeout()
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this keep-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        assert self._timeout is not None
        self._deadline = self.loop.call_later(self._timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its headers did arrive
        if not self.transport.is_closing():
            logger.info(
                "closed a connection that sent no complete request headers in %.0f s",
                self._timeout,
            )
            self.transport.close()


__all__ = ["DEFAULT_HEADER_TIMEOUT_S", "HeaderDeadlineProtocol", "header_timeout"]
