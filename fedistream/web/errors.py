"""Turning errors into responses: a readable page with the right status, never a stack trace."""

from __future__ import annotations

import logging
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from fedistream.errors import FedistreamError, TooManyRequests
from fedistream.web.security import LoginRequired
from fedistream.web.templating import render

log = logging.getLogger("fedistream.web")

_TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    410: "Deleted",
    413: "Too large",
    429: "Slow down",
    500: "Something went wrong",
}


_API_PREFIXES = (
    "/inbox", "/outbox", "/followers", "/following", "/featured", "/.well-known/", "/nodeinfo/",
)  # fmt: skip


def _wants_json(request: Request) -> bool:
    """Servers get `{"error": …}`; people get a page."""
    accept = request.headers.get("accept", "")
    return (
        request.url.path.startswith(_API_PREFIXES)
        or "activity+json" in accept
        or "ld+json" in accept
    )


def error_page(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    try:
        return render(
            request,
            "error.html",
            {
                "settings": request.app.state.ctx.settings,
                "status": status,
                "title": _TITLES.get(status, "Error"),
                "message": message,
            },
            status_code=status,
            headers=headers,
        )
    except Exception:  # the error page itself must never fail
        log.exception("error page failed")
        return PlainTextResponse(message, status_code=status, headers=headers)


async def on_app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FedistreamError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
    return error_page(request, exc.status, exc.public_message, headers)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {
        404: "There is nothing at this address.",
        405: "This address does not accept that method.",
    }
    message = messages.get(exc.status_code, str(exc.detail))
    return error_page(request, exc.status_code, message, dict(exc.headers or {}))


async def on_login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(f"/admin/login?next={quote(exc.next_path)}", status_code=303)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_page(request, 500, "The server hit an error. It has been logged.")
