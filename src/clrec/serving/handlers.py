"""Exception handlers: the service's errors mapped to status codes, each one's reason noted,
masked, for the request log (:mod:`clrec.serving.observability`).

An unknown user or item is a 404; a database failure a 503 (its message is logged, not
answered); any other :class:`~clrec.errors.ClrecError` is input the model cannot use, a 422.
Validation errors keep FastAPI's own answer, with the echoed input made encodable.
"""

import logging

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from clrec.encoders.privacy import PrivacyMasker
from clrec.errors import ClrecError
from clrec.serving.encoding import RETRY_AFTER_S, OverloadedError
from clrec.serving.state import NotFoundError
from clrec.serving.store import StoreError
from clrec.serving.text import json_safe, printable

logger = logging.getLogger("clrec.serving")


class ErrorHandlers:
    """The app's exception handlers; reasons pass through ``masker`` before they are logged."""

    def __init__(self, masker: PrivacyMasker) -> None:
        self.masker = masker

    def install(self, app: FastAPI) -> None:
        """Register every handler on ``app``."""
        app.add_exception_handler(NotFoundError, self.not_found)
        app.add_exception_handler(OverloadedError, self.overloaded)
        app.add_exception_handler(StoreError, self.store_failed)
        app.add_exception_handler(ClrecError, self.bad_input)
        app.add_exception_handler(StarletteHTTPException, self.http_error)
        app.add_exception_handler(RequestValidationError, self.invalid_request)

    def _note(self, request: Request, reason: str) -> None:
        request.state.log_detail = self.masker.mask(printable(reason))

    async def not_found(self, request: Request, error: Exception) -> JSONResponse:
        self._note(request, str(error))
        return JSONResponse({"detail": printable(str(error))}, status_code=404)

    async def store_failed(self, request: Request, error: Exception) -> JSONResponse:
        self._note(request, str(error))
        logger.error("database failure: %s", self.masker.mask(str(error)))
        return JSONResponse({"detail": "the database is unavailable; retry later"}, 503)

    async def overloaded(self, request: Request, error: Exception) -> JSONResponse:
        self._note(request, str(error))
        return JSONResponse(
            {"detail": printable(str(error))},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    async def bad_input(self, request: Request, error: Exception) -> JSONResponse:
        self._note(request, str(error))
        return JSONResponse({"detail": printable(str(error))}, status_code=422)

    async def http_error(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        self._note(request, str(error.detail))
        return await http_exception_handler(request, error)

    async def invalid_request(self, request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        where = sorted({".".join(str(p) for p in e.get("loc", ())) for e in error.errors()})
        self._note(request, f"invalid {', '.join(where)}")  # locations only: inputs may be private
        # FastAPI's own answer, with the echoed input made encodable (NaN, lone surrogates)
        detail = json_safe(jsonable_encoder(error.errors()))
        return JSONResponse({"detail": detail}, status_code=422)


__all__ = ["ErrorHandlers"]
