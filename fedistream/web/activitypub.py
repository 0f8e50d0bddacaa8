"""ActivityStreams renderers for servers: the actor, Notes, activities and collections (R83–R87).

Reached through `negotiated(...)` for URLs shared with the HTML pages, directly for the rest.
Public reads are unsigned (R17, R97).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedistream.core import activities, activitypub
from fedistream.core.ids import looks_like_id
from fedistream.core.negotiation import AS2_CONTENT_TYPE
from fedistream.errors import BadInput, NotFound
from fedistream.services import actor as actor_service
from fedistream.services import attachments as attachment_service
from fedistream.services import conversations
from fedistream.services import pins as pin_service
from fedistream.services import posts as post_service
from fedistream.store import followers as follower_store
from fedistream.store import interactions as interaction_store
from fedistream.store import posts as post_store
from fedistream.web.context import WebContext, context

OUTBOX_PAGE_SIZE = 20
ACTORS_PAGE_SIZE = 40


def as2_response(document: dict[str, Any], *, status: int = 200, max_age: int = 60) -> Response:
    return Response(
        json.dumps(document, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        media_type=AS2_CONTENT_TYPE,
        headers={"Cache-Control": f"public, max-age={max_age}", "Access-Control-Allow-Origin": "*"},
    )


async def actor(request: Request) -> Response:
    ctx = context(request)
    document = await actor_service.actor_document(ctx.db, ctx.settings, ctx.public_key_pem)
    return as2_response(document, max_age=180)


async def _note_counts(ctx: WebContext, post_ids: list[str]) -> dict[str, activitypub.NoteCounts]:
    """`likes`/`shares` totals for Notes, one query for all of them. Reactions count as likes,
    as Mastodon counts a Misskey reaction as a favourite (R68)."""
    found = await interaction_store.counts_for(ctx.db, post_ids)
    return {
        post_id: activitypub.NoteCounts(
            likes=c.likes + sum(r.count for r in c.reactions), shares=c.boosts
        )
        for post_id, c in found.items()
    }


async def _note_or_tombstone(request: Request) -> dict[str, Any] | Response:
    """The thought's Note, or the 410 Tombstone to answer when it was deleted (404 unknown)."""
    ctx = context(request)
    post_id = request.path_params["post_id"]
    post = await post_store.get_post(ctx.db, post_id) if looks_like_id(post_id) else None
    if post is None:
        raise NotFound("No thought has this address.")
    if post.is_deleted:
        assert post.deleted_at is not None
        return as2_response(activitypub.tombstone(ctx.urls, post.id, post.deleted_at), status=410)
    documents = await attachment_service.documents_for(ctx.db, ctx.urls, [post.id])
    counts = (await _note_counts(ctx, [post.id])).get(post.id, activitypub.NoteCounts())
    return activitypub.note_object(
        ctx.urls, post, attachments=documents.get(post.id, ()), counts=counts
    )


async def note(request: Request) -> Response:
    found = await _note_or_tombstone(request)
    return found if isinstance(found, Response) else as2_response(found)


async def create_activity(request: Request) -> Response:
    found = await _note_or_tombstone(request)
    if isinstance(found, Response):
        return found
    return as2_response(activitypub.create_activity(context(request).urls, found))


async def outbox(request: Request) -> Response:
    """Root: totalItems, first, last. `?page=true[&max_id=ID]`: 20 Creates, newest first (R84)."""
    ctx = context(request)
    urls = ctx.urls
    if request.query_params.get("page") != "true":
        total = await post_store.count_live(ctx.db)
        return as2_response(
            activities.ordered_collection(
                urls.outbox,
                total,
                first=urls.outbox + "?page=true",
                last=urls.outbox + "?min_id=0&page=true",
            ),
            max_age=180,
        )
    max_id = request.query_params.get("max_id")
    if max_id and not looks_like_id(max_id):
        raise BadInput("max_id must be the id of a thought.")
    page = await post_store.latest_page(ctx.db, max_id, OUTBOX_PAGE_SIZE)
    documents = await attachment_service.documents_for(ctx.db, urls, [p.id for p in page.posts])
    counts = await _note_counts(ctx, [p.id for p in page.posts])
    items = [
        activitypub.create_activity(
            urls,
            activitypub.note_object(
                urls, p, attachments=documents.get(p.id, ()),
                counts=counts.get(p.id, activitypub.NoteCounts()),
            ),
        )
        for p in page.posts
    ]  # fmt: skip
    page_id = urls.outbox + "?page=true" + (f"&max_id={max_id}" if max_id else "")
    return as2_response(
        activities.ordered_collection_page(
            page_id,
            urls.outbox,
            items,
            next=f"{urls.outbox}?max_id={page.older}&page=true" if page.older else None,
            prev=(f"{urls.outbox}?min_id={page.posts[0].id}&page=true" if page.posts else None),
        )
    )


async def _actor_collection(request: Request, *, followers: bool) -> Response:
    ctx = context(request)
    urls = ctx.urls
    collection_id = urls.followers if followers else urls.following
    if "page" not in request.query_params:
        total = await (
            follower_store.count_followers(ctx.db)
            if followers
            else follower_store.count_following(ctx.db)
        )
        return as2_response(
            activities.ordered_collection(collection_id, total, first=collection_id + "?page=1")
        )
    after = request.query_params.get("after")
    rows = await (
        follower_store.follower_page(ctx.db, follower_store.ACCEPTED, after, ACTORS_PAGE_SIZE + 1)
        if followers
        else follower_store.following_page(ctx.db, after, ACTORS_PAGE_SIZE + 1)
    )
    ids = [row["actor_id"] for row in rows[:ACTORS_PAGE_SIZE]]
    next_url = None
    if len(rows) > ACTORS_PAGE_SIZE:
        next_url = f"{collection_id}?page=1&after={quote(ids[-1], safe='')}"
    page_id = collection_id + "?page=1" + (f"&after={quote(after, safe='')}" if after else "")
    return as2_response(
        activities.ordered_collection_page(page_id, collection_id, ids, next=next_url)
    )


async def followers(request: Request) -> Response:
    return await _actor_collection(request, followers=True)


async def following(request: Request) -> Response:
    return await _actor_collection(request, followers=False)


async def featured(request: Request) -> Response:
    """Pinned thoughts as full Notes, newest pin first (R86: no paging)."""
    ctx = context(request)
    pinned = await pin_service.pinned_posts(ctx.db)
    documents = await attachment_service.documents_for(ctx.db, ctx.urls, [p.id for p in pinned])
    notes = [
        activitypub.note_object(ctx.urls, p, attachments=documents.get(p.id, ())) for p in pinned
    ]
    return as2_response(activities.featured_collection(ctx.urls, notes))


async def featured_tags(request: Request) -> Response:
    return as2_response(activities.featured_tags_collection(context(request).urls, []))


async def replies(request: Request) -> Response:
    """The Note's `replies` collection in Mastodon's shape (R60): the first page lists the
    owner's own replies, `?only_other_accounts=true&page=true` the others' that are shown on
    the public page (direct replies only, as Mastodon lists them)."""
    ctx = context(request)
    post_id = request.path_params["post_id"]
    if not looks_like_id(post_id):
        raise NotFound("No thought has this address.")
    await post_service.get_live(ctx.db, post_id)
    collection_id = ctx.urls.replies(post_id)
    own, others = await conversations.replies_collection(ctx.db, ctx.urls, post_id)
    if "page" not in request.query_params:
        return as2_response(
            {
                "@context": "https://www.w3.org/ns/activitystreams",
                "id": collection_id,
                "type": "Collection",
                "first": {
                    "type": "CollectionPage",
                    "next": collection_id + "?only_other_accounts=true&page=true",
                    "partOf": collection_id,
                    "items": own,
                },
            }
        )
    only_others = request.query_params.get("only_other_accounts") == "true"
    return as2_response(
        {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{collection_id}?{request.url.query}",
            "type": "CollectionPage",
            "partOf": collection_id,
            "items": others if only_others else own,
        }
    )


async def _interaction_total(request: Request, *, shares: bool) -> Response:
    """`/p/{id}/likes` and `/p/{id}/shares`: the totals only, as Mastodon serves them."""
    ctx = context(request)
    post_id = request.path_params["post_id"]
    if not looks_like_id(post_id):
        raise NotFound("No thought has this address.")
    await post_service.get_live(ctx.db, post_id)
    counts = (await _note_counts(ctx, [post_id])).get(post_id, activitypub.NoteCounts())
    note_id = ctx.urls.post(post_id)
    return as2_response(
        {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": note_id + ("/shares" if shares else "/likes"),
            "type": "Collection",
            "totalItems": counts.shares if shares else counts.likes,
        }
    )


async def likes(request: Request) -> Response:
    return await _interaction_total(request, shares=False)


async def shares(request: Request) -> Response:
    return await _interaction_total(request, shares=True)


routes = [
    Route("/p/{post_id}/activity", create_activity, methods=["GET", "HEAD"]),
    Route("/p/{post_id}/replies", replies, methods=["GET", "HEAD"]),
    Route("/p/{post_id}/likes", likes, methods=["GET", "HEAD"]),
    Route("/p/{post_id}/shares", shares, methods=["GET", "HEAD"]),
    Route("/outbox", outbox, methods=["GET", "HEAD"]),
    Route("/followers", followers, methods=["GET", "HEAD"]),
    Route("/following", following, methods=["GET", "HEAD"]),
    Route("/featured", featured, methods=["GET", "HEAD"]),
    Route("/featured/tags", featured_tags, methods=["GET", "HEAD"]),
]
