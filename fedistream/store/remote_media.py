"""The remote media cache (`remote_media`): what to fetch, and what was fetched.

A row is queued `pending` with just its URL; the fetcher (federation/media_fetch.py) marks it
`ok` with the stored file's name, or `failed` with the reason. INSERT OR IGNORE everywhere: a
URL is fetched once whoever asks for it first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import aiosqlite

from fedistream.store.db import Database

PENDING, OK, FAILED = "pending", "ok", "failed"
MAX_URL_CHARS = 2048
# An URL worth queueing: http(s), not absurdly long (a peer could send anything).
_FETCHABLE = "({col} LIKE 'http://%' OR {col} LIKE 'https://%') AND length({col}) <= {n}"


def _fetchable(column: str) -> str:
    return _FETCHABLE.format(col=column, n=MAX_URL_CHARS)


async def enqueue(conn: aiosqlite.Connection, urls: Sequence[str]) -> None:
    await conn.executemany(
        "INSERT OR IGNORE INTO remote_media (url) VALUES (?)", [(url,) for url in urls]
    )


async def enqueue_actor_icon(conn: aiosqlite.Connection, actor_id: str) -> None:
    await conn.execute(
        "INSERT OR IGNORE INTO remote_media (url) SELECT icon_url FROM actors "
        f"WHERE id = ? AND {_fetchable('icon_url')}",
        (actor_id,),
    )


async def enqueue_emoji(conn: aiosqlite.Connection, url: str) -> None:
    await conn.execute(
        f"INSERT OR IGNORE INTO remote_media (url) SELECT :url WHERE {_fetchable(':url')}",
        {"url": url},
    )


async def set_post_attachments(
    conn: aiosqlite.Connection, post_id: str, attachments: str | None
) -> None:
    await conn.execute(
        "UPDATE remote_posts SET attachments = ? WHERE id = ?", (attachments, post_id)
    )


async def discover(conn: aiosqlite.Connection, *, posts: bool) -> None:
    """Queue every avatar and custom emoji we know of and have not queued yet; with `posts`,
    also every image attachment of the stored remote notes. A catch-up pass over whole tables
    (the fetcher runs it at start-up and then rarely): the rows that name an image queue it
    as they are written (actors.upsert, note_stored, enqueue_emoji)."""
    await conn.execute(
        "INSERT OR IGNORE INTO remote_media (url) SELECT DISTINCT a.icon_url FROM actors a "
        f"WHERE {_fetchable('a.icon_url')} "
        "AND NOT EXISTS (SELECT 1 FROM remote_media m WHERE m.url = a.icon_url)"
    )
    await conn.execute(
        "INSERT OR IGNORE INTO remote_media (url) SELECT DISTINCT i.emoji_url FROM interactions i "
        f"WHERE {_fetchable('i.emoji_url')} "
        "AND NOT EXISTS (SELECT 1 FROM remote_media m WHERE m.url = i.emoji_url)"
    )
    if posts:
        url = _fetchable("json_extract(j.value, '$.url')")
        # json_each on a malformed value would abort the whole statement: read '[]' instead.
        await conn.execute(
            "INSERT OR IGNORE INTO remote_media (url) "
            "SELECT DISTINCT json_extract(j.value, '$.url') AS u FROM remote_posts r, "
            "json_each(CASE WHEN json_valid(r.attachments) THEN r.attachments ELSE '[]' END) j "
            "WHERE r.attachments IS NOT NULL AND j.type = 'object' "
            "AND coalesce(json_extract(j.value, '$.media_type'), 'image/') LIKE 'image/%' "
            f"AND {url}"
        )


async def due(db: Database, limit: int) -> list[str]:
    rows = await db.fetchall(
        "SELECT url FROM remote_media WHERE state = ? ORDER BY rowid LIMIT ?", (PENDING, limit)
    )
    return [row["url"] for row in rows]


async def mark_ok(
    db: Database, url: str, *, name: str, mime_type: str, size: int, now: str
) -> None:
    await db.execute(
        "UPDATE remote_media SET state = ?, name = ?, mime_type = ?, size = ?, error = NULL, "
        "fetched_at = ? WHERE url = ?",
        (OK, name, mime_type, size, now, url),
    )


async def mark_failed(db: Database, url: str, error: str, now: str) -> None:
    await db.execute(
        "UPDATE remote_media SET state = ?, error = ?, fetched_at = ? WHERE url = ?",
        (FAILED, error[:500], now, url),
    )


async def get(db: Database, url: str) -> sqlite3.Row | None:
    return await db.fetchone("SELECT * FROM remote_media WHERE url = ?", (url,))
