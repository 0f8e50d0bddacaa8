"""Who follows the owner (`followers`) and whom the owner follows (`following`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import aiosqlite

from fedistream.store.db import Database

PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"


async def upsert_follower(
    conn: aiosqlite.Connection, actor_id: str, follow_id: str, state: str, now: str
) -> None:
    """A Follow (or a re-Follow, R48): remember the newest Follow id, keep the original date."""
    await conn.execute(
        "INSERT INTO followers (actor_id, follow_id, state, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(actor_id) DO UPDATE SET follow_id = excluded.follow_id, "
        "state = CASE WHEN followers.state = 'accepted' THEN 'accepted' ELSE excluded.state END",
        (actor_id, follow_id, state, now),
    )


async def set_follower_state(conn: aiosqlite.Connection, actor_id: str, state: str) -> bool:
    cursor = await conn.execute(
        "UPDATE followers SET state = ? WHERE actor_id = ?", (state, actor_id)
    )
    return cursor.rowcount > 0


async def remove_follower(conn: aiosqlite.Connection, actor_id: str) -> bool:
    cursor = await conn.execute("DELETE FROM followers WHERE actor_id = ?", (actor_id,))
    return cursor.rowcount > 0


async def get_follower(db: Database, actor_id: str) -> sqlite3.Row | None:
    return await db.fetchone(
        "SELECT actor_id, follow_id, state, created_at FROM followers WHERE actor_id = ?",
        (actor_id,),
    )


async def delivery_targets(conn: aiosqlite.Connection) -> list[tuple[str, str | None]]:
    """(inbox, recipient) per accepted follower: the shared inbox when the peer has one
    (recipient None: many followers behind it), else the personal inbox (recipient = actor)."""
    cursor = await conn.execute(
        "SELECT a.shared_inbox, a.inbox, f.actor_id FROM followers f "
        "JOIN actors a ON a.id = f.actor_id WHERE f.state = 'accepted'"
    )
    rows = await cursor.fetchall()
    targets: dict[str, str | None] = {}
    for shared, personal, actor_id in rows:
        if shared:
            targets[shared] = None
        else:
            targets.setdefault(personal, actor_id)
    return list(targets.items())


async def count_followers(db: Database) -> int:
    row = await db.fetchone("SELECT count(*) FROM followers WHERE state = 'accepted'")
    return int(row[0]) if row else 0


async def follower_page(
    db: Database, state: str, after: str | None, limit: int
) -> Sequence[sqlite3.Row]:
    """Followers in `state` ordered by actor id (keyset on the primary key), with cached details."""
    return await db.fetchall(
        "SELECT f.actor_id, f.state, f.created_at, a.username, a.domain, a.name, a.icon_url, a.url "
        "FROM followers f LEFT JOIN actors a ON a.id = f.actor_id "
        "WHERE f.state = ? AND f.actor_id > ? ORDER BY f.actor_id LIMIT ?",
        (state, after or "", limit),
    )


async def upsert_following(
    conn: aiosqlite.Connection, actor_id: str, follow_id: str, state: str, now: str
) -> None:
    await conn.execute(
        "INSERT INTO following (actor_id, follow_id, state, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(actor_id) DO UPDATE SET "
        "follow_id = excluded.follow_id, state = excluded.state",
        (actor_id, follow_id, state, now),
    )


async def set_following_state(
    conn: aiosqlite.Connection, actor_id: str, state: str, follow_id: str | None = None
) -> bool:
    """Accept/Reject of our Follow: matched by actor, and by Follow id when the peer names it."""
    if follow_id:
        cursor = await conn.execute(
            "UPDATE following SET state = ? WHERE actor_id = ? AND follow_id = ?",
            (state, actor_id, follow_id),
        )
        if cursor.rowcount:
            return True
    cursor = await conn.execute(
        "UPDATE following SET state = ? WHERE actor_id = ?", (state, actor_id)
    )
    return cursor.rowcount > 0


async def remove_following(conn: aiosqlite.Connection, actor_id: str) -> bool:
    cursor = await conn.execute("DELETE FROM following WHERE actor_id = ?", (actor_id,))
    return cursor.rowcount > 0


async def get_following(db: Database, actor_id: str) -> sqlite3.Row | None:
    return await db.fetchone(
        "SELECT actor_id, follow_id, state, created_at FROM following WHERE actor_id = ?",
        (actor_id,),
    )


async def is_followed(db: Database, actor_id: str) -> bool:
    row = await db.fetchone(
        "SELECT 1 FROM following WHERE actor_id = ? AND state = 'accepted'", (actor_id,)
    )
    return row is not None


async def count_following(db: Database) -> int:
    row = await db.fetchone("SELECT count(*) FROM following WHERE state = 'accepted'")
    return int(row[0]) if row else 0


async def following_page(
    db: Database, after: str | None, limit: int, *, states: Sequence[str] = (ACCEPTED,)
) -> Sequence[sqlite3.Row]:
    marks = ",".join("?" * len(states))
    return await db.fetchall(
        "SELECT f.actor_id, f.state, f.created_at, a.username, a.domain, a.name, a.icon_url, a.url "
        f"FROM following f LEFT JOIN actors a ON a.id = f.actor_id "
        f"WHERE f.state IN ({marks}) AND f.actor_id > ? ORDER BY f.actor_id LIMIT ?",
        (*states, after or "", limit),
    )
