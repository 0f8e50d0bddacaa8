"""Owner pages for the fediverse side: followers (approve, remove), following (follow by handle,
unfollow), the timeline of accounts the owner follows, and per-thought delivery status."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedistream.core.ids import looks_like_id
from fedistream.errors import BadInput, FedistreamError, NotFound
from fedistream.services import follows, housekeeping
from fedistream.services import posts as post_service
from fedistream.store import deliveries as delivery_store
from fedistream.store import followers as follower_store
from fedistream.store import interactions as interaction_store
from fedistream.store import remote_posts
from fedistream.web.admin import admin_context, owner_form
from fedistream.web.context import context
from fedistream.web.security import require_owner
from fedistream.web.templating import render

LIST_LIMIT = 200
TIMELINE_PAGE = 30


def _actor_field(form: object) -> str:
    value = form.get("actor") if hasattr(form, "get") else None  # type: ignore[union-attr]
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise BadInput("The form names no account.")
    return value


@contextmanager
def _answerable() -> Iterator[None]:
    """A follower whose account left our cache (after its Delete, say) cannot be sent an Accept
    or a Reject: say so (400) rather than fail (500). Nothing was changed."""
    try:
        yield
    except follows.UnknownActor as exc:
        raise BadInput(f"Cannot answer it: {exc}. The account can follow again.") from exc


async def followers_page(request: Request) -> Response:
    ctx = context(request)
    session = await require_owner(request)
    pending = await follower_store.follower_page(ctx.db, follower_store.PENDING, None, LIST_LIMIT)
    accepted = await follower_store.follower_page(ctx.db, follower_store.ACCEPTED, None, LIST_LIMIT)
    return render(
        request,
        "admin/followers.html",
        {
            **await admin_context(request, session),
            "pending": pending,
            "followers": accepted,
            "follower_count": await follower_store.count_followers(ctx.db),
        },
    )


async def approve_follower(request: Request) -> Response:
    ctx = context(request)
    _session, form = await owner_form(request)
    with _answerable():
        await follows.approve_follower(ctx.db, ctx.urls, _actor_field(form))
    ctx.wake_delivery()
    return RedirectResponse("/admin/followers?done=approved", status_code=303)


async def remove_follower(request: Request) -> Response:
    ctx = context(request)
    _session, form = await owner_form(request)
    with _answerable():
        await follows.remove_follower(ctx.db, ctx.urls, _actor_field(form))
    ctx.wake_delivery()
    return RedirectResponse("/admin/followers?done=removed", status_code=303)


async def _following_page(
    request: Request, *, error: str = "", handle: str = "", status: int = 200
) -> Response:
    ctx = context(request)
    session = await require_owner(request)
    rows = await follower_store.following_page(
        ctx.db, None, LIST_LIMIT, states=(follower_store.ACCEPTED, follower_store.PENDING)
    )
    return render(
        request,
        "admin/following.html",
        {**await admin_context(request, session), "following": rows, "error": error,
         "handle": handle},
        status_code=status,
    )  # fmt: skip


async def following_page(request: Request) -> Response:
    return await _following_page(request)


async def follow(request: Request) -> Response:
    ctx = context(request)
    _session, form = await owner_form(request)
    handle = form.get("handle")
    handle = handle if isinstance(handle, str) else ""
    if ctx.directory is None:
        return await _following_page(request, error="Federation is not running.", status=503)
    try:
        await follows.follow(ctx.db, ctx.directory, ctx.urls, handle)
    except FedistreamError as exc:
        return await _following_page(
            request, error=exc.public_message, handle=handle, status=exc.status
        )
    except LookupError as exc:
        return await _following_page(request, error=str(exc), handle=handle, status=404)
    ctx.wake_delivery()
    return RedirectResponse("/admin/following?done=followed", status_code=303)


async def unfollow(request: Request) -> Response:
    ctx = context(request)
    _session, form = await owner_form(request)
    await follows.unfollow(ctx.db, ctx.urls, _actor_field(form))
    ctx.wake_delivery()
    return RedirectResponse("/admin/following?done=unfollowed", status_code=303)


async def timeline(request: Request) -> Response:
    ctx = context(request)
    session = await require_owner(request)
    before = request.query_params.get("before")
    rows = await remote_posts.timeline(ctx.db, before, TIMELINE_PAGE + 1)
    older = rows[TIMELINE_PAGE - 1]["published"] if len(rows) > TIMELINE_PAGE else None
    notes = rows[:TIMELINE_PAGE]
    # What the owner already liked or boosted, for the Like/Boost buttons (one query).
    mine = await interaction_store.own_for(ctx.db, [note["id"] for note in notes])
    return render(
        request,
        "admin/timeline.html",
        {**await admin_context(request, session), "notes": notes, "older": older, "mine": mine},
    )


async def deliveries(request: Request) -> Response:
    ctx = context(request)
    session = await require_owner(request)
    post_id = request.path_params["post_id"]
    if not looks_like_id(post_id):
        raise NotFound("No thought has this address.")
    post = await post_service.get_live(ctx.db, post_id)
    rows = await delivery_store.status_for_post(ctx.db, post_id)
    kept = housekeeping.RECORDS_KEPT
    return render(
        request,
        "admin/deliveries.html",
        {
            **await admin_context(request, session),
            "post": post,
            "rows": rows,
            "records_kept_days": kept.days,
            # Older than the records are kept: an empty list means cleared, not "never sent".
            "records_cleared": datetime.now(UTC) - post.created_at > kept,
        },
    )


routes = [
    Route("/admin/followers", followers_page, methods=["GET", "HEAD"]),
    Route("/admin/followers/approve", approve_follower, methods=["POST"]),
    Route("/admin/followers/remove", remove_follower, methods=["POST"]),
    Route("/admin/following", following_page, methods=["GET", "HEAD"]),
    Route("/admin/following", follow, methods=["POST"]),
    Route("/admin/following/remove", unfollow, methods=["POST"]),
    Route("/admin/timeline", timeline, methods=["GET", "HEAD"]),
    Route("/admin/posts/{post_id}/deliveries", deliveries, methods=["GET", "HEAD"]),
]
