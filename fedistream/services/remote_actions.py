"""The owner likes or boosts a post from another server, or takes it back (services layer).

Each action and its delivery rows commit in one transaction (the transactional outbox): a Like
goes to the author's inbox; a boost (Announce) to the author and to every follower; an Undo to
the same audience as what it undoes (R50, R66, R67).
"""

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
from fedistream.services.follows import UnknownActor, actor_inbox
from fedistream.store import interactions
from fedistream.store.db import Database

KINDS = (interactions.LIKE, interactions.ANNOUNCE)


async def _author(db: Database, note_id: str) -> str:
    row = await interactions.remote_note(db, note_id)
    if row is None or row["hidden"] == interactions.REMOVED:
        raise NotFound("That post is not one we have received.")
    return str(row["actor_id"])


async def react(
    db: Database, urls: Urls, note_id: str, kind: str, now: datetime | None = None
) -> bool:
    """Like or boost `note_id`; False when the owner already had."""
    if kind not in KINDS:
        raise BadInput("Only a like or a boost can be sent.")
    author = await _author(db, note_id)
    when = now or datetime.now(UTC)
    token = secrets.token_hex(8)
    activity = (
        activities.like_activity(urls, note_id, token)
        if kind == interactions.LIKE
        else activities.announce_activity(urls, note_id, author, token, when)
    )
    async with db.transaction() as conn:
        if not await interactions.own_add(conn, note_id, kind, activity["id"], to_iso(when)):
            return False
        await _deliver(conn, activity, author, kind, when)
    return True


async def undo(
    db: Database, urls: Urls, note_id: str, kind: str, now: datetime | None = None
) -> bool:
    """Take back a like or boost; False when there was none."""
    if kind not in KINDS:
        raise BadInput("Only a like or a boost can be taken back.")
    author = await _author(db, note_id)
    when = now or datetime.now(UTC)
    async with db.transaction() as conn:
        activity_id = await interactions.own_remove(conn, note_id, kind)
        if activity_id is None:
            return False
        # Peers match the Undo by the embedded activity's id, falling back to actor + object.
        inner = (
            activities.like_activity(urls, note_id, "")
            if kind == interactions.LIKE
            else activities.announce_activity(urls, note_id, author, "", when)
        )
        inner = {**inner, "id": activity_id}
        inner.pop("published", None)
        undo_activity = activities.undo_activity(urls, inner, secrets.token_hex(8))
        await _deliver(conn, undo_activity, author, kind, when)
    return True


async def _deliver(
    conn: aiosqlite.Connection, activity: dict[str, Any], author: str, kind: str, when: datetime
) -> None:
    try:
        target = [(await actor_inbox(conn, author), author)]
    except UnknownActor as exc:
        raise NotFound("The author's server is unknown to us; try again later.") from exc
    if kind == interactions.ANNOUNCE:
        await outbox.emit_to_followers(conn, activity, post_id=None, now=when, extra=target)
    else:
        await outbox.emit(conn, activity, post_id=None, targets=target, now=when)
