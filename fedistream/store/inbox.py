"""Accepted inbound activities: stored before processing so a crash loses nothing, and keyed by
activity id so a replay is a no-op."""

from __future__ import annotations

import sqlite3

import aiosqlite

from fedistream.store.db import Database


async def insert(
    db: Database, activity_id: str, actor_id: str, type_: str, json_text: str, now: str
) -> bool:
    """True when the activity is new; False for a duplicate (already received). Committed
    before returning, in a group with the POSTs that arrived meanwhile."""
    changed = await db.execute_grouped(
        "INSERT OR IGNORE INTO inbox (id, actor_id, type, json, state, received_at) "
        "VALUES (?, ?, ?, ?, 'pending', ?)",
        (activity_id, actor_id, type_, json_text, now),
    )
    return changed > 0


async def pending(db: Database, limit: int) -> list[sqlite3.Row]:
    return await db.fetchall(
        "SELECT id, actor_id, type, json FROM inbox WHERE state = 'pending' "
        "ORDER BY received_at, rowid LIMIT ?",
        (limit,),
    )


async def oldest_pending_received_at(db: Database) -> str | None:
    """When the oldest activity still waiting to be applied arrived (ISO 8601), None if none."""
    row = await db.fetchone(
        "SELECT received_at FROM inbox WHERE state = 'pending' ORDER BY received_at LIMIT 1"
    )
    return str(row["received_at"]) if row else None


async def mark(
    conn: aiosqlite.Connection, activity_id: str, state: str, error: str | None, now: str
) -> None:
    """Record the outcome inside the transaction that applied the effects (all or nothing)."""
    await conn.execute(
        "UPDATE inbox SET state = ?, error = ?, processed_at = ? WHERE id = ?",
        (state, error, now, activity_id),
    )


async def get(db: Database, activity_id: str) -> sqlite3.Row | None:
    return await db.fetchone(
        "SELECT id, actor_id, type, state, error FROM inbox WHERE id = ?", (activity_id,)
    )


async def forget_processed(db: Database, before: str, limit: int) -> int:
    """Delete up to `limit` applied, ignored or failed rows processed before `before` (ISO
    time), oldest first; returns how many. Pending rows stay until they are applied."""
    return await db.execute(
        "DELETE FROM inbox WHERE rowid IN (SELECT rowid FROM inbox "
        "WHERE state != 'pending' AND processed_at < ? ORDER BY processed_at LIMIT ?)",
        (before, limit),
    )
