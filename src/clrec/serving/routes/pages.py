"""Pages for a browser: ``/`` redirects to the page (static files under :data:`PAGE_PATH`,
mounted by :func:`clrec.serving.app.create_app` with :class:`PageFiles`), and the run's
evaluation report. Neither holds a user's data; both keep to their own content."""

from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from clrec.serving.artifact import REPORT_FILE
from clrec.serving.deps import service_state

PAGE_PATH = "/ui"
"""Where the browser page (``static/``) is served; ``GET /`` redirects there."""
STATIC_DIR = FilePath(__file__).parent.parent / "static"
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

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page_redirect() -> RedirectResponse:
    """The browser page."""
    return RedirectResponse(f"{PAGE_PATH}/", status_code=307)


@router.api_route(REPORT_PATH, methods=["GET", "HEAD"])
async def evaluation_report(request: Request) -> Response:
    """The loaded artifact's evaluation report (the run's ``report.html``: aggregate
    metrics, plots and the run's config, no scripts); 404 when it was exported without
    one. Public, like ``/readyz``: it holds no user's data."""
    state = await service_state(request)
    path = state.artifact.root / REPORT_FILE
    if not path.is_file():
        raise HTTPException(
            404,
            "this artifact has no evaluation report: export a run that wrote report.html "
            "(run config report: true)",
        )
    return FileResponse(path, media_type="text/html", headers=_REPORT_HEADERS)


class PageFiles(StaticFiles):
    """The browser page's static files, with headers that keep it to its own scripts."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(_PAGE_HEADERS)
        return response


__all__ = ["PAGE_PATH", "REPORT_PATH", "STATIC_DIR", "PageFiles", "router"]
