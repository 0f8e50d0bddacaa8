"""The owner's notifications (`notifications`): follows, likes, boosts, reactions, replies,
mentions and quotes, newest first, with a read mark. Layer: store.

A notification is unique per (kind, actor, object): a peer repeating an activity adds nothing.
The unread count walks the partial index `notifications_unread`, so the admin header stays cheap.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import aiosqlite

from fedistream.store.db import Database

KINDS = ("follow", "follow_request", "like", "announce", "reaction", "reply", "mention", "quote")
# Notifications whose object is a remote note (shown with its text).
NOTE_KINDS = ("reply", "mention", "quote")


async def add(
    conn: aiosqlite.Connection, *, kind: str, actor_id: str, object_id: str,
    post_id: str | None, content: str | None, created_at: str,
) -> bool:  # fmt: skip
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    cursor = await conn.execute(
        "INSERT OR IGNORE INTO notifications (kind, actor_id, post_id, object_id, content, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (kind, actor_id, post_id, object_id, content, created_at),
    )
    return cursor.rowcount > 0


async def remove_for_object(conn: aiosqlite.Connection, actor_id: str, object_id: str) -> int:
    """An undone like or a deleted reply: its notification goes too."""
    cursor = await conn.execute(
        "DELETE FROM notifications WHERE actor_id = ? AND object_id = ?", (actor_id, object_id)
    )
    return cursor.rowcount


async def remove_by_actor(conn: aiosqlite.Connection, actor_id: str) -> int:
    cursor = await conn.execute("DELETE FROM notifications WHERE actor_id = ?", (actor_id,))
    return cursor.rowcount


async def unread_count(db: Database) -> int:
    row = await db.fetchone("SELECT count(*) FROM notifications WHERE read_at IS NULL")
    return int(row[0]) if row else 0


async def page(db: Database, before: int | None, limit: int) -> list[sqlite3.Row]:
    """Newest first, with the actor, the thought it is about and, for replies, mentions and
    quotes, the remote note (keyset on the id)."""
    return await db.fetchall(
        "SELECT n.id, n.kind, n.actor_id, n.post_id, n.object_id, n.content, n.created_at, "
        "n.read_at, a.username, a.domain, a.name, a.icon_url, a.url AS actor_url, "
        "p.title AS post_title, p.text AS post_text, p.deleted_at AS post_deleted, "
        "r.content_html, r.summary AS note_summary, r.url AS note_url, r.hidden AS note_hidden, "
        "r.thread_post_id "
        "FROM notifications n "
        "LEFT JOIN actors a ON a.id = n.actor_id "
        "LEFT JOIN posts p ON p.id = n.post_id "
        "LEFT JOIN remote_posts r "
        "ON r.id = n.object_id AND n.kind IN ('reply', 'mention', 'quote') "
        "WHERE n.id < ? ORDER BY n.id DESC LIMIT ?",
        (before if before is not None else 2**62, limit),
    )


async def mark_read(conn: aiosqlite.Connection, ids: Sequence[int], now: str) -> int:
    if not ids:
        return 0
    cursor = await conn.execute(
        f"UPDATE notifications SET read_at = ? WHERE read_at IS NULL "
        f"AND id IN ({','.join('?' * len(ids))})",
        (now, *ids),
    )
    return cursor.rowcount


async def mark_all_read(conn: aiosqlite.Connection, now: str) -> int:
    cursor = await conn.execute(
        "UPDATE notifications SET read_at = ? WHERE read_at IS NULL", (now,)
    )
    return cursor.rowcount
