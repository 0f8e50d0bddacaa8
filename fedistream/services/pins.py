"""Pinned thoughts: pin and unpin (at most `MAX_PINS`), each change announced to followers as
`Add`/`Remove` on the featured collection (R86) in the same transaction. Layer: services."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime

from fedistream.core import activities
from fedistream.core.models import Page, Post
from fedistream.core.timefmt import to_iso
from fedistream.core.urls import Urls
from fedistream.errors import BadInput
from fedistream.services import outbox
from fedistream.services import posts as post_service
from fedistream.store import meta
from fedistream.store import pins as pin_store
from fedistream.store import posts as post_store
from fedistream.store.db import Database

# Mastodon allows 5 pinned posts per account; peers that mirror our featured collection
# expect no more.
MAX_PINS = 5


async def pin(
    db: Database, post_id: str, *, urls: Urls | None = None, now: datetime | None = None
) -> bool:
    """Pin a live thought. False when it was already pinned; BadInput beyond `MAX_PINS`.
    With `urls`, an `Add` goes to every follower."""
    await post_service.get_live(db, post_id)  # NotFound / Gone
    when = now or datetime.now(UTC)
    async with db.transaction() as conn:
        # Checked inside the write transaction, so two quick clicks cannot both squeeze past
        # the limit.
        if await pin_store.is_pinned(conn, post_id):
            return False
        if await pin_store.count_live(conn) >= MAX_PINS:
            raise BadInput(
                f"You can pin at most {MAX_PINS} thoughts. Unpin one before pinning another."
            )
        await pin_store.add(conn, post_id, to_iso(when))
        await meta.bump_stream_version(conn)
        if urls is not None:
            add = activities.add_featured_activity(urls, post_id, secrets.token_hex(8))
            await outbox.emit_to_followers(conn, add, post_id=post_id, now=when)
    return True


async def unpin(
    db: Database, post_id: str, *, urls: Urls | None = None, now: datetime | None = None
) -> bool:
    """Unpin a thought. False when it was not pinned. With `urls`, a `Remove` goes to every
    follower."""
    when = now or datetime.now(UTC)
    async with db.transaction() as conn:
        if not await pin_store.remove(conn, post_id):
            return False
        await meta.bump_stream_version(conn)
        if urls is not None:
            remove = activities.remove_featured_activity(urls, post_id, secrets.token_hex(8))
            await outbox.emit_to_followers(conn, remove, post_id=post_id, now=when)
    return True


async def pinned_ids(db: Database) -> list[str]:
    """Ids of pinned live thoughts, newest pin first."""
    return await pin_store.pinned_ids(db)


async def pinned_posts(db: Database) -> list[Post]:
    """The pinned live thoughts, newest pin first (at most `MAX_PINS`, so one read each)."""
    found: list[Post] = []
    for post_id in await pin_store.pinned_ids(db):
        post = await post_store.get_post(db, post_id)
        if post is not None and not post.is_deleted:
            found.append(post)
    return found


async def lead_stream(db: Database, page: Page, *, first_page: bool) -> tuple[list[Post], Page]:
    """The pinned thoughts that lead the stream, and the page to show under them. They lead
    only the first page, and there they are not repeated in the chronological list (Mastodon
    shows them twice; on one screen that reads as a mistake). Older pages keep every thought
    in its place, so paging through the archive still finds a pinned one where it belongs."""
    if not first_page:
        return [], page
    pinned = await pinned_posts(db)
    if not pinned:
        return [], page
    ids = {post.id for post in pinned}
    rest = [post for post in page.posts if post.id not in ids]
    return pinned, replace(page, posts=rest)
