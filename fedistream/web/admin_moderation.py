"""Owner pages for moderation and pins: `/admin/blocks` (block an account or a domain, unblock)
and the pin/unpin buttons of the thought list and edit page. Layer: web.

Every POST checks the session's CSRF token first (`owner_form`); buttons elsewhere (followers
page, dashboard) post here with a `next` admin path to come back to.
"""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedistream.core.ids import looks_like_id
from fedistream.errors import BadInput, FedistreamError, NotFound
from fedistream.services import moderation
from fedistream.services import pins as pin_service
from fedistream.web.admin import admin_context, dashboard, owner_form
from fedistream.web.context import context
from fedistream.web.security import require_owner
from fedistream.web.templating import render

NOTICES = {
    "blocked": "Blocked. Their follows, posts and interactions are gone.",
    "unblocked": "Unblocked. Follows removed by the block are not restored.",
    "already": "That was already blocked.",
}


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _back_to(form: FormData, default: str, done: str) -> RedirectResponse:
    """Back to the admin page the button was on (never an open redirect), with a notice."""
    target = _field(form, "next")
    if not (target.startswith("/admin") and "//" not in target and "?" not in target):
        target = default
    return RedirectResponse(f"{target}?done={done}", status_code=303)


# --- blocks -------------------------------------------------------------------------------------


async def _blocks_page(
    request: Request, *, error: str = "", target: str = "", status: int = 200
) -> Response:
    ctx = context(request)
    session = await require_owner(request)
    page = await admin_context(request, session)
    done = request.query_params.get("done", "")
    return render(
        request,
        "admin/blocks.html",
        {
            **page,
            "notice": NOTICES.get(done, page.get("notice", "")),
            "blocks": await moderation.list_blocks(ctx.db),
            "error": error,
            "target": target,
        },
        status_code=status,
    )


async def blocks_page(request: Request) -> Response:
    return await _blocks_page(request)


async def block(request: Request) -> Response:
    ctx = context(request)
    _session, form = await owner_form(request)
    target = _field(form, "target")
    try:
        outcome = await moderation.block(ctx.db, ctx.urls, target, directory=ctx.directory)
    except FedistreamError as exc:
        return await _blocks_page(
            request, error=exc.public_message, target=target, status=exc.status
        )
    ctx.wake_delivery()  # the Reject, Undo and Block
    return _back_to(form, "/admin/blocks", "blocked" if outcome.added else "already")


async def unblock(request: Request) -> Response:
    ctx = context(request)
    _session, form = await owner_form(request)
    try:
        await moderation.unblock(ctx.db, ctx.urls, _field(form, "target"))
    except NotFound as exc:
        return await _blocks_page(request, error=exc.public_message, status=404)
    ctx.wake_delivery()
    return _back_to(form, "/admin/blocks", "unblocked")


# --- pins ---------------------------------------------------------------------------------------


def _post_id(request: Request) -> str:
    post_id = str(request.path_params["post_id"])
    if not looks_like_id(post_id):
        raise NotFound("No thought has this address.")
    return post_id


async def pin(request: Request) -> Response:
    ctx = context(request)
    _session, form = await owner_form(request)
    try:
        await pin_service.pin(ctx.db, _post_id(request), urls=ctx.urls)
    except BadInput as exc:
        # Shown on the dashboard, where the pinned thoughts' Unpin buttons are.
        return await dashboard(request, error=exc.public_message, status=exc.status)
    ctx.wake_delivery()
    return _back_to(form, "/admin", "pinned")


async def unpin(request: Request) -> Response:
    ctx = context(request)
    _session, form = await owner_form(request)
    await pin_service.unpin(ctx.db, _post_id(request), urls=ctx.urls)
    ctx.wake_delivery()
    return _back_to(form, "/admin", "unpinned")


routes = [
    Route("/admin/blocks", blocks_page, methods=["GET", "HEAD"]),
    Route("/admin/blocks", block, methods=["POST"]),
    Route("/admin/blocks/remove", unblock, methods=["POST"]),
    Route("/admin/posts/{post_id}/pin", pin, methods=["POST"]),
    Route("/admin/posts/{post_id}/unpin", unpin, methods=["POST"]),
]
