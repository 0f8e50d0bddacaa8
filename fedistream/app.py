"""Composition root: builds the Starlette application from Settings and wires every layer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from fedistream.errors import FedistreamError
from fedistream.services import owner
from fedistream.settings import Settings
from fedistream.store.db import Database
from fedistream.web import admin, feeds, public
from fedistream.web.context import WebContext
from fedistream.web.errors import on_app_error, on_http_error, on_login_required, on_unexpected
from fedistream.web.security import LoginRequired, SecurityHeadersMiddleware
from fedistream.web.templating import build_environment, templates_dir


def build_app(settings: Settings) -> Starlette:
    """The ASGI app. The database opens in the lifespan (start-up), not at import or build time."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = await Database.open(settings.db_path)
        try:
            await owner.ensure_owner(db, settings)
            app.state.ctx = WebContext(
                settings=settings, db=db, templates=build_environment(templates_dir())
            )
            yield
        finally:
            await db.close()

    routes: list[Route] = [*public.routes, *feeds.routes, *admin.routes]
    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeadersMiddleware)],
        exception_handlers={
            FedistreamError: on_app_error,
            HTTPException: on_http_error,
            LoginRequired: on_login_required,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
