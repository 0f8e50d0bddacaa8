"""The `activities` table: every activity we emitted, stored exactly as delivered. Layer: store.

Peers dereference these ids (`/p/{id}/activity`), and the delivery worker POSTs the stored JSON
text byte for byte, so the Digest it signs matches what the services built.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from fedistream.core.timefmt import parse_iso, to_iso
from fedistream.store.db import Database


@dataclass(frozen=True, slots=True)
class StoredActivity:
    id: str
    type: str
    post_id: str | None
    json: str
    created_at: datetime


async def insert(
    conn: aiosqlite.Connection,
    activity_id: str,
    type: str,  # the ActivityStreams word, as the column is named
    post_id: str | None,
    json_text: str,
    created_at: datetime | str,
) -> bool:
    """Store an activity inside the caller's transaction; False if that id was already stored
    (the first version wins: it is what peers may already have received)."""
    when = created_at if isinstance(created_at, str) else to_iso(created_at)
    cursor = await conn.execute(
        "INSERT OR IGNORE INTO activities (id, type, post_id, json, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (activity_id, type, post_id, json_text, when),
    )
    return cursor.rowcount > 0


async def get(db: Database, activity_id: str) -> StoredActivity | None:
    row = await db.fetchone(
        "SELECT id, type, post_id, json, created_at FROM activities WHERE id = ?",
        (activity_id,),
    )
    if row is None:
        return None
    return StoredActivity(
        id=row["id"],
        type=row["type"],
        post_id=row["post_id"],
        json=row["json"],
        created_at=parse_iso(row["created_at"]),
    )
