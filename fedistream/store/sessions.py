"""Owner login sessions. Only a hash of the cookie value is stored."""

from __future__ import annotations

import sqlite3

from fedistream.store.db import Database


async def insert(db: Database, token_hash: str, csrf: str, created: str, expires: str) -> None:
    await db.execute(
        "INSERT INTO sessions (token_hash, csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (token_hash, csrf, created, expires),
    )


async def find(db: Database, token_hash: str, now: str) -> sqlite3.Row | None:
    return await db.fetchone(
        "SELECT token_hash, csrf_token, expires_at FROM sessions "
        "WHERE token_hash = ? AND expires_at > ?",
        (token_hash, now),
    )


async def delete(db: Database, token_hash: str) -> None:
    await db.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))


async def delete_expired(db: Database, now: str) -> None:
    await db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))


async def delete_all(db: Database) -> None:
    await db.execute("DELETE FROM sessions")
