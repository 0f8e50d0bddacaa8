"""Public feeds at the HTTP edge: `/feed.xml` (Atom 1.0) and `/feed.json` (JSON Feed 1.1).

Web layer: reads the 20 newest live thoughts and the profile, hands them to the pure builders in
`core.feeds`, and answers conditional GETs with 304 so polling readers cost one tiny query.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedistream.core import feeds as feed_core
from fedistream.core.models import Post, Profile
from fedistream.services import owner
from fedistream.store import meta
from fedistream.store import posts as post_store
from fedistream.web.context import WebContext, context

FEED_SIZE = 20
CACHE_CONTROL = "public, max-age=60"

# A builder turns the site, the posts and `now` into the response body.
_Builder = Callable[[feed_core.FeedSite, Sequence[Post], datetime], str]


def _atom_body(site: feed_core.FeedSite, posts: Sequence[Post], now: datetime) -> str:
    return feed_core.build_atom(site, posts, now)


def _json_body(site: feed_core.FeedSite, posts: Sequence[Post], now: datetime) -> str:
    return json.dumps(feed_core.build_json_feed(site, posts), ensure_ascii=False, indent=1)


# Feed kind → (media type, builder); the kind also prefixes the ETag so the two never collide.
_KINDS: dict[str, tuple[str, _Builder]] = {
    "atom": (feed_core.ATOM_MEDIA_TYPE, _atom_body),
    "json": (feed_core.JSON_FEED_MEDIA_TYPE, _json_body),
}


def feed_etag(kind: str, stream_version: str, base_url: str, handle: str) -> str:
    """A strong validator. The stream version changes with every post and profile change; the
    base URL and handle come from settings, which can change across a restart without a bump."""
    digest = hashlib.sha256(f"{base_url}\n{handle}".encode()).hexdigest()[:12]
    return f'"{kind}-{stream_version}-{digest}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2): a W/ prefix is ignored."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(
        candidate.strip().removeprefix("W/") == wanted for candidate in if_none_match.split(",")
    )


def _site(ctx: WebContext, profile: Profile) -> feed_core.FeedSite:
    settings = ctx.settings
    return feed_core.FeedSite(
        base_url=settings.base_url,
        title=profile.display_name,
        author_name=profile.display_name,
        handle=settings.handle,
        avatar_url=settings.url("/media/" + profile.avatar) if profile.avatar else None,
    )


async def _serve(request: Request, kind: str) -> Response:
    ctx = context(request)
    media_type, build = _KINDS[kind]
    # The version is read before the posts: if a thought lands in between, the body is newer
    # than its ETag and the next poll merely refetches, never the reverse (a stale body kept).
    version = await meta.stream_version(ctx.db)
    etag = feed_etag(kind, version, ctx.settings.base_url, ctx.settings.handle)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    # Check the validator before loading anything: most feed polls end here.
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    profile = await owner.get_profile(ctx.db, ctx.settings)
    page = await post_store.latest_page(ctx.db, None, FEED_SIZE, with_replies=False)
    body = build(_site(ctx, profile), page.posts, datetime.now(UTC))
    return Response(body, media_type=media_type, headers=headers)


async def atom(request: Request) -> Response:
    return await _serve(request, "atom")


async def json_feed(request: Request) -> Response:
    return await _serve(request, "json")


routes = [
    Route(feed_core.ATOM_PATH, atom, methods=["GET", "HEAD"]),
    Route(feed_core.JSON_FEED_PATH, json_feed, methods=["GET", "HEAD"]),
]
