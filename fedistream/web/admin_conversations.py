"""Owner pages for conversations: notifications, answering a reply, hiding or removing a remote
reply, and liking or boosting posts from the timeline. Layer: web.

Every handler starts with `require_owner`; every POST checks the CSRF token (`owner_form`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedistream.core.ids import looks_like_id
from fedistream.core.render import render_markdown
from fedistream.core.timefmt import to_iso
from fedistream.errors import BadInput, NotFound
from fedistream.services import attachments as attachment_service
from fedistream.services import conversations, remote_actions
from fedistream.services import posts as post_service
from fedistream.services.posts import Draft
from fedistream.store import interactions
from fedistream.store import notifications as notification_store
from fedistream.web.admin import admin_context, owner_form
from fedistream.web.context import context
from fedistream.web.security import OwnerSession, require_owner
from fedistream.web.templating import render

NOTIFICATIONS_PAGE = 40
# What each notification says after the account's name.
VERBS = {
    "follow": "followed you",
    "follow_request": "asked to follow you",
    "like": "liked",
    "announce": "boosted",
    "reaction": "reacted to",
    "reply": "replied to",
    "mention": "mentioned you",
    "quote": "quoted",
}


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _note_field(form: FormData, name: str = "note") -> str:
    value = _field(form, name)
    if not value.startswith(("https://", "http://")):
        raise BadInput("The form names no post.")
    return value


def _safe_back(value: str, default: str) -> str:
    """Only our own pages: never an open redirect."""
    ok = value.startswith(("/admin", "/p/")) and "//" not in value and "\\" not in value
    return value if ok else default


# --- notifications ------------------------------------------------------------------------------


def _notification_item(row: Any) -> dict[str, Any]:
    item = dict(row)
    item["verb"] = VERBS.get(row["kind"], row["kind"])
    if row["kind"] == "reaction" and row["content"]:
        item["verb"] = f"reacted {row['content']} to"
    item["created"] = row["created_at"]
    item["unread"] = row["read_at"] is None
    item["is_note"] = row["kind"] in notification_store.NOTE_KINDS
    if item["is_note"]:
        thread, anchor = (
            row["thread_post_id"] or row["post_id"],
            conversations.note_anchor(row["object_id"]),
        )
    else:
        thread, anchor = row["post_id"], f"p-{row['post_id']}"
    item["thread"] = thread_url(thread, anchor) if thread and not row["post_deleted"] else ""
    item["about"] = (
        (row["post_title"] or (row["post_text"] or "")[:80] or "a thought")
        if row["post_id"]
        else None
    )
    return item


async def notifications_page(request: Request) -> Response:
    """Newest first; the ones shown are marked read (the unread count then drops)."""
    ctx = context(request)
    session = await require_owner(request)
    before_text = request.query_params.get("before", "")
    # ASCII digits only ("²".isdigit() is true, int("²") fails) and no more than an SQLite
    # integer holds: any other cursor shows the first page.
    digits = before_text.isascii() and before_text.isdigit() and len(before_text) <= 18
    before = int(before_text) if digits else None
    rows = await notification_store.page(ctx.db, before, NOTIFICATIONS_PAGE + 1)
    shown = rows[:NOTIFICATIONS_PAGE]
    items = [_notification_item(row) for row in shown]
    unread_ids = [row["id"] for row in shown if row["read_at"] is None]
    if unread_ids and request.method == "GET":
        async with ctx.db.transaction() as conn:
            await notification_store.mark_read(conn, unread_ids, to_iso(datetime.now(UTC)))
    older = shown[-1]["id"] if len(rows) > NOTIFICATIONS_PAGE else None
    return render(
        request,
        "admin/notifications.html",
        {**await admin_context(request, session), "items": items, "older": older},
    )


async def mark_all_read(request: Request) -> Response:
    ctx = context(request)
    await owner_form(request)
    async with ctx.db.transaction() as conn:
        await notification_store.mark_all_read(conn, to_iso(datetime.now(UTC)))
    return RedirectResponse("/admin/notifications", status_code=303)


# --- a thought's thread, as the owner sees it -----------------------------------------------------


def thread_url(post_id: str, anchor: str = "replies") -> str:
    return f"/admin/posts/{post_id}/thread#{anchor}"


async def thread_page(request: Request) -> Response:
    """The permalink's thread with hidden replies and the buttons to answer and moderate."""
    ctx = context(request)
    session = await require_owner(request)
    post_id = request.path_params["post_id"]
    if not looks_like_id(post_id):
        raise NotFound("No thought has this address.")
    post = await post_service.get_live(ctx.db, post_id)
    page = await admin_context(request, session)
    conversation = await conversations.conversation_for(
        ctx.db, ctx.urls, post, owner_view=True, author_name=page["profile"].display_name,
        author_handle=ctx.settings.handle, author_avatar=page["profile"].avatar,
    )  # fmt: skip
    if conversation.root_id:  # one of the owner's replies: its thread is under another thought
        return RedirectResponse(thread_url(conversation.root_id, f"p-{post.id}"), status_code=303)
    return render(
        request,
        "admin/thread.html",
        {
            **page,
            "post": post,
            "permalink_page": True,
            "conversation": conversation,
            "counts": conversation.counts,
            "attachments": await attachment_service.for_posts(ctx.db, [post.id]),
            "owner_csrf": session.csrf_token,
        },
    )


# --- answering ----------------------------------------------------------------------------------


async def _reply_page(
    request: Request,
    session: OwnerSession,
    note_id: str,
    draft: Draft | None = None,
    *,
    error: str = "",
    preview: str = "",
    status: int = 200,
) -> Response:
    ctx = context(request)
    target = await conversations.reply_target(ctx.db, ctx.urls, note_id)
    return render(
        request,
        "admin/reply.html",
        {
            **await admin_context(request, session),
            "target": target,
            "draft": draft or Draft(source=target.prefill),
            "error": error,
            "preview": preview,
        },
        status_code=status,
    )


async def reply_form(request: Request) -> Response:
    session = await require_owner(request)
    note_id = request.query_params.get("to", "")
    if not note_id.startswith(("https://", "http://")):
        raise BadInput("Say which post to answer (?to=…).")
    return await _reply_page(request, session, note_id)


async def reply(request: Request) -> Response:
    ctx = context(request)
    session, form = await owner_form(request)
    note_id = _note_field(form, "in_reply_to")
    draft = Draft(source=_field(form, "source"), title=_field(form, "title"),
                  summary=_field(form, "summary"))  # fmt: skip
    if form.get("action") == "preview":
        html = render_markdown(draft.source).html if draft.source else ""
        return await _reply_page(request, session, note_id, draft, preview=html)
    try:
        post, root = await conversations.publish_reply(
            ctx.db, ctx.urls, draft, note_id,
            max_chars=ctx.settings.max_post_chars, directory=ctx.directory,
        )  # fmt: skip
    except BadInput as exc:
        return await _reply_page(
            request, session, note_id, draft, error=exc.public_message, status=400
        )
    ctx.wake_delivery()
    return RedirectResponse(thread_url(root, f"p-{post.id}"), status_code=303)


# --- moderating a thread ------------------------------------------------------------------------


async def _moderate(request: Request, action: str) -> Response:
    ctx = context(request)
    _session, form = await owner_form(request)
    note_id = _note_field(form)
    if action == "remove":
        post_id = await conversations.remove_reply(ctx.db, note_id)
        anchor = "replies"
    else:
        post_id = await conversations.set_hidden(ctx.db, note_id, action == "hide")
        anchor = conversations.note_anchor(note_id)
    return RedirectResponse(thread_url(post_id, anchor), status_code=303)


async def hide_reply(request: Request) -> Response:
    return await _moderate(request, "hide")


async def unhide_reply(request: Request) -> Response:
    return await _moderate(request, "unhide")


async def remove_reply(request: Request) -> Response:
    return await _moderate(request, "remove")


# --- liking and boosting from the timeline ------------------------------------------------------


async def _timeline_action(request: Request, kind: str, *, take_back: bool) -> Response:
    ctx = context(request)
    _session, form = await owner_form(request)
    note_id = _note_field(form)
    act = remote_actions.undo if take_back else remote_actions.react
    await act(ctx.db, ctx.urls, note_id, kind)
    ctx.wake_delivery()
    back = _safe_back(_field(form, "next"), "/admin/timeline")
    return RedirectResponse(back, status_code=303)


async def like(request: Request) -> Response:
    return await _timeline_action(request, interactions.LIKE, take_back=False)


async def unlike(request: Request) -> Response:
    return await _timeline_action(request, interactions.LIKE, take_back=True)


async def boost(request: Request) -> Response:
    return await _timeline_action(request, interactions.ANNOUNCE, take_back=False)


async def unboost(request: Request) -> Response:
    return await _timeline_action(request, interactions.ANNOUNCE, take_back=True)


routes = [
    Route("/admin/notifications", notifications_page, methods=["GET", "HEAD"]),
    Route("/admin/notifications/read", mark_all_read, methods=["POST"]),
    Route("/admin/posts/{post_id}/thread", thread_page, methods=["GET", "HEAD"]),
    Route("/admin/reply", reply_form, methods=["GET", "HEAD"]),
    Route("/admin/reply", reply, methods=["POST"]),
    Route("/admin/replies/hide", hide_reply, methods=["POST"]),
    Route("/admin/replies/unhide", unhide_reply, methods=["POST"]),
    Route("/admin/replies/remove", remove_reply, methods=["POST"]),
    Route("/admin/remote/like", like, methods=["POST"]),
    Route("/admin/remote/unlike", unlike, methods=["POST"]),
    Route("/admin/remote/boost", boost, methods=["POST"]),
    Route("/admin/remote/unboost", unboost, methods=["POST"]),
]
