"""The service's routes, one :class:`fastapi.APIRouter` per resource; each route is a few
lines over a :class:`~clrec.serving.state.ServiceState` method, its dependencies typed in
:mod:`clrec.serving.deps`. :func:`clrec.serving.app.create_app` adds their routes in
:data:`ROUTERS`' order (the OpenAPI document's)."""

from fastapi import APIRouter

from clrec.serving.routes import events, items, operations, pages, recommendations, users

ROUTERS: tuple[APIRouter, ...] = (
    recommendations.router,
    items.router,
    users.router,
    events.router,
    operations.router,
    pages.router,
)

__all__ = ["ROUTERS"]
