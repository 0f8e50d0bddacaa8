"""Public pages: the stream, a thought's permalink, tag pages, search, media and static files."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from fedistream.core.ids import looks_like_id
from fedistream.core.models import Post, Profile
from fedistream.core.render import excerpt, normalize_tag
from fedistream.errors import BadInput, NotFound
from fedistream.services import attachments as attachment_service
from fedistream.services import conversations, owner
from fedistream.services import pins as pin_service
from fedistream.services import posts as post_service
from fedistream.services import remote_media as remote_media_service
from fedistream.store import interactions as interaction_store
from fedistream.store import posts as post_store
from fedistream.web.context import context
from fedistream.web.page_cache import cached_page
from fedistream.web.templating import render, templates_dir

PAGE_SIZE = 20
SEARCH_PAGE_SIZE = 20
MAX_QUERY_CHARS = 200
_MEDIA_NAME = re.compile(r"^[a-z]+-[0-9a-f]{16}\.(jpg|png|webp|gif)$")
_STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(css|svg|ico|png|woff2)$")
_LONG_CACHE = "public, max-age=31536000, immutable"


async def site_context(request: Request) -> dict[str, Any]:
    """What every public page needs: settings and the owner's profile."""
    ctx = context(request)
    profile: Profile = await owner.get_profile(ctx.db, ctx.settings)
    return {"settings": ctx.settings, "profile": profile}


def _cursor(request: Request) -> str | None:
    before = request.query_params.get("before")
    if before is None or before == "":
        return None
    if not looks_like_id(before):
        raise BadInput("The 'before' parameter must be the id of a thought (16 letters/digits).")
    return before


@cached_page
async def stream(request: Request) -> Response:
    ctx = context(request)
    cursor = _cursor(request)
    page = await post_store.latest_page(ctx.db, cursor, PAGE_SIZE, with_replies=False)
    pinned, page = await pin_service.lead_stream(ctx.db, page, first_page=cursor is None)
    shown_ids = [p.id for p in (*pinned, *page.posts)]
    return render(
        request,
        "stream.html",
        {
            **await site_context(request),
            "page": page,
            "pinned": pinned,
            "attachments": await attachment_service.for_posts(
                ctx.db, [p.id for p in (*pinned, *page.posts)]
            ),
            "counts": await interaction_store.counts_for(ctx.db, shown_ids),
            "is_home": True,
            "post_count": await post_store.count_live(ctx.db),
        },
    )


@cached_page
async def permalink(request: Request) -> Response:
    ctx = context(request)
    post_id = request.path_params["post_id"]
    if not looks_like_id(post_id):
        raise NotFound("No thought has this address.")
    post: Post = await post_service.get_live(ctx.db, post_id)
    site = await site_context(request)
    # The owner answers and moderates from /admin/posts/{id}/thread (the session cookie is
    # scoped to /admin); readers see the same thread without hidden replies.
    conversation = await conversations.conversation_for(
        ctx.db, ctx.urls, post, owner_view=False, author_name=site["profile"].display_name,
        author_handle=ctx.settings.handle, author_avatar=site["profile"].avatar,
    )  # fmt: skip
    return render(
        request,
        "post.html",
        {
            **site,
            "post": post,
            "conversation": conversation,
            "counts": conversation.counts,
            "attachments": await attachment_service.for_posts(ctx.db, [post.id]),
            "description": excerpt(post.summary or post.text, 200),
        },
    )


@cached_page
async def tag(request: Request) -> Response:
    ctx = context(request)
    name = normalize_tag(request.path_params["tag"])
    if not name or len(name) > 100:
        raise NotFound("No such tag.")
    page = await post_store.tag_page(ctx.db, name, _cursor(request), PAGE_SIZE)
    attachments = await attachment_service.for_posts(ctx.db, [p.id for p in page.posts])
    counts = await interaction_store.counts_for(ctx.db, [p.id for p in page.posts])
    return render(
        request,
        "tag.html",
        {**await site_context(request), "page": page, "tag": name, "attachments": attachments,
         "counts": counts},
    )  # fmt: skip


async def search(request: Request) -> Response:
    ctx = context(request)
    query = request.query_params.get("q", "").strip()
    if len(query) > MAX_QUERY_CHARS:
        raise BadInput(f"The search is too long: at most {MAX_QUERY_CHARS} characters.")
    try:
        page_number = max(1, min(int(request.query_params.get("page", "1")), 500))
    except ValueError as exc:
        raise BadInput("The 'page' parameter must be a number.") from exc
    hits = []
    if query:
        hits = await post_store.search(
            ctx.db, query, SEARCH_PAGE_SIZE + 1, (page_number - 1) * SEARCH_PAGE_SIZE
        )
    return render(
        request,
        "search.html",
        {
            **await site_context(request),
            "query": query,
            "hits": hits[:SEARCH_PAGE_SIZE],
            "page_number": page_number,
            "has_more": len(hits) > SEARCH_PAGE_SIZE,
        },
    )


async def media(request: Request) -> Response:
    ctx = context(request)
    name = request.path_params["name"]
    path = ctx.settings.media_dir / name
    if not _MEDIA_NAME.match(name) or not path.is_file():
        raise NotFound("No such file.")
    return FileResponse(path, headers={"Cache-Control": _LONG_CACHE})


async def remote_media(request: Request) -> Response:
    """A cached copy of another server's image (avatar, attachment): served from our origin so
    readers' browsers never contact that server. The name is a hash, so the file never changes."""
    ctx = context(request)
    name = request.path_params["name"]
    if not remote_media_service.NAME_PATTERN.match(name):
        raise NotFound("No such file.")
    path = remote_media_service.remote_dir(ctx.settings.media_dir) / name
    if not path.is_file():
        raise NotFound("No such file.")
    return FileResponse(path, headers={"Cache-Control": _LONG_CACHE})


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    path = templates_dir() / "static" / name
    if not _STATIC_NAME.match(name) or not path.is_file():
        raise NotFound("No such file.")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})


routes = [
    Route("/", stream, methods=["GET", "HEAD"]),
    Route("/p/{post_id}", permalink, methods=["GET", "HEAD"]),
    Route("/tags/{tag}", tag, methods=["GET", "HEAD"]),
    Route("/search", search, methods=["GET", "HEAD"]),
    Route("/media/{name}", media, methods=["GET", "HEAD"]),
    Route("/media/remote/{name}", remote_media, methods=["GET", "HEAD"]),
    Route("/static/{name}", static, methods=["GET", "HEAD"]),
]
