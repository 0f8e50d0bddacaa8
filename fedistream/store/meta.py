"""The `meta` key/value table: owner password hash, profile, session secret, stream version."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from fedistream.store.db import Database

PASSWORD_HASH = "owner_password_hash"
PROFILE = "profile"
STREAM_VERSION = "stream_version"
CREATED_AT = "created_at"


async def get(db: Database, key: str) -> str | None:
    row = await db.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
    return row["value"] if row else None


async def put(conn: aiosqlite.Connection, key: str, value: str) -> None:
    await conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


async def get_json(db: Database, key: str) -> Any:
    value = await get(db, key)
    return json.loads(value) if value is not None else None


async def put_json(conn: aiosqlite.Connection, key: str, value: Any) -> None:
    await put(conn, key, json.dumps(value, ensure_ascii=False))


async def bump_stream_version(conn: aiosqlite.Connection) -> None:
    """Called in every transaction that changes what public pages show (cache validators)."""
    await conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        (STREAM_VERSION,),
    )


async def stream_version(db: Database) -> str:
    return await get(db, STREAM_VERSION) or "0"


async def versions(db: Database) -> tuple[str, int]:
    """(stream_version, the reader connection's `data_version`) in one query. `data_version`
    changes whenever another connection commits anything (our writer, another process): a
    validator for cached pages that no write path can forget to bump. Per connection only."""
    row = await db.fetchone(
        "SELECT (SELECT value FROM meta WHERE key = ?) AS stream, "
        "(SELECT data_version FROM pragma_data_version()) AS data",
        (STREAM_VERSION,),
    )
    if row is None:
        return "0", 0
    return str(row["stream"] or "0"), int(row["data"])
