"""Rows describing uploaded media files: avatars, headers and the images attached to thoughts."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import aiosqlite

from fedistream.store.db import Database

ATTACHMENT = "attachment"
_COLUMNS = "name, kind, mime_type, size, width, height, alt, post_id, blurhash, position"


async def insert(
    db: Database,
    *,
    name: str,
    kind: str,
    mime_type: str,
    size: int,
    width: int,
    height: int,
    created_at: str,
    blurhash: str | None = None,
) -> None:
    await db.execute(
        "INSERT INTO media (name, kind, mime_type, size, width, height, created_at, blurhash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (name, kind, mime_type, size, width, height, created_at, blurhash),
    )


async def mime_type(db: Database, name: str) -> str | None:
    row = await db.fetchone("SELECT mime_type FROM media WHERE name = ?", (name,))
    return row["mime_type"] if row else None


async def get_many(db: Database, names: Sequence[str]) -> list[sqlite3.Row]:
    """The rows of these files (any order; unknown names are simply absent)."""
    if not names:
        return []
    marks = ",".join("?" * len(names))
    return await db.fetchall(f"SELECT {_COLUMNS} FROM media WHERE name IN ({marks})", tuple(names))


async def for_posts(db: Database, post_ids: Sequence[str]) -> list[sqlite3.Row]:
    """Every attachment of these thoughts in one query, by thought then position."""
    if not post_ids:
        return []
    marks = ",".join("?" * len(post_ids))
    return await db.fetchall(
        f"SELECT {_COLUMNS} FROM media WHERE kind = ? AND post_id IN ({marks}) "
        "ORDER BY post_id, position",
        (ATTACHMENT, *post_ids),
    )


async def attach(
    conn: aiosqlite.Connection, post_id: str, items: Sequence[tuple[str, str]]
) -> None:
    """Make `items` ((name, alt) in order) the thought's attachments, at positions 0, 1, …"""
    for position, (name, alt) in enumerate(items):
        await conn.execute(
            "UPDATE media SET post_id = ?, alt = ?, position = ? "
            "WHERE name = ? AND kind = ? AND (post_id IS NULL OR post_id = ?)",
            (post_id, alt, position, name, ATTACHMENT, post_id),
        )


async def release_others(
    conn: aiosqlite.Connection, post_id: str, keep: Sequence[str]
) -> list[str]:
    """Unattach the thought's attachments not in `keep`; returns their names."""
    marks = ",".join("?" * len(keep)) or "''"
    cursor = await conn.execute(
        f"UPDATE media SET post_id = NULL WHERE kind = ? AND post_id = ? AND name NOT IN ({marks}) "
        "RETURNING name",
        (ATTACHMENT, post_id, *keep),
    )
    return [row[0] for row in await cursor.fetchall()]


async def unattached_before(db: Database, created_before: str, limit: int) -> list[str]:
    """Uploads never attached to a thought (a preview the owner abandoned), oldest first."""
    rows = await db.fetchall(
        "SELECT name FROM media WHERE kind = ? AND post_id IS NULL AND created_at < ? "
        "ORDER BY created_at LIMIT ?",
        (ATTACHMENT, created_before, limit),
    )
    return [row["name"] for row in rows]


async def delete(db: Database, names: Sequence[str]) -> None:
    if names:
        marks = ",".join("?" * len(names))
        await db.execute(f"DELETE FROM media WHERE name IN ({marks})", tuple(names))
