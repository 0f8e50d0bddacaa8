"""Follow relationships, both ways: answering followers (Accept/Reject, R46–R49) and the owner
following others (Follow, Undo). Each change and its delivery rows commit in one transaction."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from fedistream.core import activities
from fedistream.core.timefmt import to_iso
from fedistream.core.urls import Urls
from fedistream.errors import BadInput, NotFound
from fedistream.services import outbox
from fedistream.services.ports import ActorDirectory
from fedistream.store import followers as follower_store
from fedistream.store.db import Database


class UnknownActor(LookupError):
    """The remote actor is not in our cache, so we do not know its inbox."""


async def actor_inbox(conn: aiosqlite.Connection, actor_id: str) -> str:
    cursor = await conn.execute("SELECT inbox FROM actors WHERE id = ?", (actor_id,))
    row = await cursor.fetchone()
    if row is None:
        raise UnknownActor(f"actor {actor_id} is not cached; its inbox is unknown")
    return str(row[0])


def stored_follow(follow_id: str, actor_id: str, urls: Urls) -> dict[str, Any]:
    """A follower's Follow rebuilt from the stored id, to embed in a later Accept/Reject."""
    return {"id": follow_id, "type": "Follow", "actor": actor_id, "object": urls.actor}


async def accept_follower(
    conn: aiosqlite.Connection, urls: Urls, follow: dict[str, Any], actor_id: str, now: datetime
) -> None:
    """Mark the follower accepted and queue the Accept, embedding their Follow (R46)."""
    await follower_store.set_follower_state(conn, actor_id, follower_store.ACCEPTED)
    accept = activities.accept_follow(urls, follow, secrets.token_hex(8))
    inbox = await actor_inbox(conn, actor_id)
    await outbox.emit(conn, accept, post_id=None, targets=[(inbox, actor_id)], now=now)


async def reject_follower(
    conn: aiosqlite.Connection, urls: Urls, follow: dict[str, Any], actor_id: str, now: datetime
) -> None:
    """Refuse a request or remove a follower: a Reject of their Follow (R49)."""
    reject = activities.reject_follow(urls, follow, secrets.token_hex(8))
    inbox = await actor_inbox(conn, actor_id)
    await follower_store.remove_follower(conn, actor_id)
    await outbox.emit(conn, reject, post_id=None, targets=[(inbox, actor_id)], now=now)


async def _follower_follow(db: Database, urls: Urls, actor_id: str) -> dict[str, Any]:
    row = await follower_store.get_follower(db, actor_id)
    if row is None:
        raise NotFound("That account does not follow you.")
    return stored_follow(row["follow_id"], actor_id, urls)


async def approve_follower(db: Database, urls: Urls, actor_id: str) -> None:
    follow = await _follower_follow(db, urls, actor_id)
    async with db.transaction() as conn:
        await accept_follower(conn, urls, follow, actor_id, datetime.now(UTC))


async def remove_follower(db: Database, urls: Urls, actor_id: str) -> None:
    """Reject a pending request, or remove an accepted follower (their server unfollows)."""
    follow = await _follower_follow(db, urls, actor_id)
    async with db.transaction() as conn:
        await reject_follower(conn, urls, follow, actor_id, datetime.now(UTC))


async def follow(db: Database, directory: ActorDirectory, urls: Urls, handle: str) -> str:
    """Follow `@user@domain` (WebFinger → actor → Follow to their personal inbox, R45).
    Returns the actor id. The network lookup happens before the transaction."""
    cleaned = handle.strip()
    if cleaned.count("@") not in (1, 2) or " " in cleaned:
        raise BadInput("Give the account as @user@domain.")
    actor = await directory.lookup_handle(cleaned)
    if actor.id == urls.actor:
        raise BadInput("That is you.")
    now = datetime.now(UTC)
    activity = activities.follow_activity(urls, actor.id, secrets.token_hex(8))
    async with db.transaction() as conn:
        await follower_store.upsert_following(
            conn, actor.id, activity["id"], follower_store.PENDING, to_iso(now)
        )
        await outbox.emit(conn, activity, post_id=None, targets=[(actor.inbox, actor.id)], now=now)
    return actor.id


async def unfollow(db: Database, urls: Urls, actor_id: str) -> None:
    row = await follower_store.get_following(db, actor_id)
    if row is None:
        raise NotFound("You do not follow that account.")
    now = datetime.now(UTC)
    original = {"id": row["follow_id"], "type": "Follow", "actor": urls.actor, "object": actor_id}
    undo = activities.undo_activity(urls, original, secrets.token_hex(8))
    async with db.transaction() as conn:
        inbox = await actor_inbox(conn, actor_id)
        await follower_store.remove_following(conn, actor_id)
        await outbox.emit(conn, undo, post_id=None, targets=[(inbox, actor_id)], now=now)


async def forget_follower(db: Database, actor_id: str) -> None:
    """Their server says the actor is gone (410 on delivery): stop delivering to it."""
    async with db.transaction() as conn:
        await follower_store.remove_follower(conn, actor_id)
