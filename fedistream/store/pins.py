"""The `pins` table: thoughts the owner pinned (the `featured` collection). Layer: store.

A deleted thought is a tombstone row, not a deleted row, so `ON DELETE CASCADE` never fires for
it: the service removes the pin when it deletes the thought, and every read here joins on live
thoughts anyway, so a stale pin could never show.
"""

from __future__ import annotations

import aiosqlite

from fedistream.store.db import Database

# Newest pin first; the rowid breaks ties between pins made in the same second. CROSS JOIN
# makes SQLite walk the few pins and look each thought up: with a plain JOIN it chose to scan
# every live thought and probe pins (O(thoughts): 70 ms per `/` at 1M, bench/README.md).
_LIVE_PINS = (
    "SELECT p.post_id FROM pins p CROSS JOIN posts t ON t.id = p.post_id "
    "WHERE t.deleted_at IS NULL ORDER BY p.pinned_at DESC, p.rowid DESC"
)


async def add(conn: aiosqlite.Connection, post_id: str, now: str) -> bool:
    """False when the thought was already pinned."""
    cursor = await conn.execute(
        "INSERT OR IGNORE INTO pins (post_id, pinned_at) VALUES (?, ?)", (post_id, now)
    )
    return cursor.rowcount > 0


async def remove(conn: aiosqlite.Connection, post_id: str) -> bool:
    cursor = await conn.execute("DELETE FROM pins WHERE post_id = ?", (post_id,))
    return cursor.rowcount > 0


async def is_pinned(conn: aiosqlite.Connection, post_id: str) -> bool:
    cursor = await conn.execute("SELECT 1 FROM pins WHERE post_id = ?", (post_id,))
    return await cursor.fetchone() is not None


async def count_live(conn: aiosqlite.Connection) -> int:
    """Pins of live thoughts, inside the caller's transaction (for the limit check)."""
    cursor = await conn.execute(f"SELECT count(*) FROM ({_LIVE_PINS})")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def pinned_ids(db: Database) -> list[str]:
    """Ids of the pinned live thoughts, newest pin first."""
    return [str(row[0]) for row in await db.fetchall(_LIVE_PINS)]
