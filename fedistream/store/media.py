"""Rows describing uploaded media files."""

from __future__ import annotations

from fedistream.store.db import Database


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
) -> None:
    await db.execute(
        "INSERT INTO media (name, kind, mime_type, size, width, height, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (name, kind, mime_type, size, width, height, created_at),
    )


async def mime_type(db: Database, name: str) -> str | None:
    row = await db.fetchone("SELECT mime_type FROM media WHERE name = ?", (name,))
    return row["mime_type"] if row else None
