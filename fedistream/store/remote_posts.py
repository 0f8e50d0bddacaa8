"""Notes received from other servers (from accounts the owner follows, and conversations)."""

from __future__ import annotations

import sqlite3

import aiosqlite

from fedistream.store.db import Database


async def upsert(
    conn: aiosqlite.Connection, *, id: str, actor_id: str, url: str | None,
    in_reply_to: str | None, content_html: str, summary: str | None, sensitive: bool,
    published: str, updated: str | None, json_text: str, now: str,
) -> None:  # fmt: skip
    await conn.execute(
        "INSERT INTO remote_posts (id, actor_id, url, in_reply_to, content_html, summary, "
        "sensitive, published, updated, json, received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT(id) DO UPDATE SET url = excluded.url, in_reply_to = excluded.in_reply_to, "
        "content_html = excluded.content_html, summary = excluded.summary, "
        "sensitive = excluded.sensitive, updated = excluded.updated, json = excluded.json "
        "WHERE remote_posts.actor_id = excluded.actor_id",
        (id, actor_id, url, in_reply_to, content_html, summary, int(sensitive), published,
         updated, json_text, now),
    )  # fmt: skip


async def delete(conn: aiosqlite.Connection, object_id: str, actor_id: str) -> bool:
    """Only the author may delete their note (R30)."""
    cursor = await conn.execute(
        "DELETE FROM remote_posts WHERE id = ? AND actor_id = ?", (object_id, actor_id)
    )
    return cursor.rowcount > 0


async def delete_by_actor(conn: aiosqlite.Connection, actor_id: str) -> int:
    cursor = await conn.execute("DELETE FROM remote_posts WHERE actor_id = ?", (actor_id,))
    return cursor.rowcount


async def get(db: Database, object_id: str) -> sqlite3.Row | None:
    return await db.fetchone("SELECT * FROM remote_posts WHERE id = ?", (object_id,))


async def timeline(db: Database, before: str | None, limit: int) -> list[sqlite3.Row]:
    """Newest first by published time (keyset on (published, id))."""
    return await db.fetchall(
        "SELECT r.*, a.username, a.domain, a.name, a.icon_url, a.url AS actor_url "
        "FROM remote_posts r LEFT JOIN actors a ON a.id = r.actor_id "
        "WHERE r.published < ? ORDER BY r.published DESC, r.id DESC LIMIT ?",
        (before or "9999", limit),
    )
