"""The remote actor cache (`actors` table): one row per actor we fetched. Layer: store.

Rows are written by the resolver after a fetch (federation/resolver.py) and read whenever a
signature is checked or a delivery addressed; `fetched_at` tells the resolver when to refetch.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from fedistream.core.remote_actor import RemoteActor
from fedistream.core.timefmt import parse_iso, to_iso
from fedistream.store import remote_media
from fedistream.store.db import Database


@dataclass(frozen=True, slots=True)
class CachedActor:
    actor: RemoteActor
    fetched_at: datetime


_COLUMNS = (
    "id, type, inbox, shared_inbox, key_id, public_key_pem, username, domain, name, url, "
    "icon_url, summary"
)

_UPSERT = f"""
    INSERT INTO actors ({_COLUMNS}, json, fetched_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET
        type = excluded.type, inbox = excluded.inbox, shared_inbox = excluded.shared_inbox,
        key_id = excluded.key_id, public_key_pem = excluded.public_key_pem,
        username = excluded.username, domain = excluded.domain, name = excluded.name,
        url = excluded.url, icon_url = excluded.icon_url, summary = excluded.summary,
        json = excluded.json, fetched_at = excluded.fetched_at
"""


async def upsert(
    target: aiosqlite.Connection | Database,
    actor: RemoteActor,
    raw_json: dict[str, Any] | str,
    fetched_at: datetime,
) -> None:
    """Insert or replace the cached actor and queue its avatar for fetching. `target` is an
    open transaction or the database."""
    document = raw_json if isinstance(raw_json, str) else json.dumps(raw_json, ensure_ascii=False)
    params = (
        actor.id,
        actor.type,
        actor.inbox,
        actor.shared_inbox,
        actor.key_id,
        actor.public_key_pem,
        actor.username,
        actor.domain,
        actor.name,
        actor.url,
        actor.icon_url,
        actor.summary,
        document,
        to_iso(fetched_at),
    )

    async def write(conn: aiosqlite.Connection) -> None:
        await conn.execute(_UPSERT, params)
        # The avatar is queued for the remote media cache with the row that names it: pages
        # only ever show a cached copy (services/remote_media.py).
        await remote_media.enqueue_actor_icon(conn, actor.id)

    if isinstance(target, Database):
        async with target.transaction() as conn:
            await write(conn)
    else:
        await write(target)


async def get(db: Database, actor_id: str) -> CachedActor | None:
    row = await db.fetchone(f"SELECT {_COLUMNS}, fetched_at FROM actors WHERE id = ?", (actor_id,))
    return _cached(row) if row else None


async def get_by_key_id(db: Database, key_id: str) -> CachedActor | None:
    """The actor whose cached key is `key_id` (the newest fetch wins should two claim it)."""
    row = await db.fetchone(
        f"SELECT {_COLUMNS}, fetched_at FROM actors WHERE key_id = ? "
        "ORDER BY fetched_at DESC LIMIT 1",
        (key_id,),
    )
    return _cached(row) if row else None


async def get_document(db: Database, actor_id: str) -> dict[str, Any] | None:
    """The actor document exactly as it was fetched."""
    row = await db.fetchone("SELECT json FROM actors WHERE id = ?", (actor_id,))
    return json.loads(row["json"]) if row else None


async def all_ids(db: Database) -> list[str]:
    return [row["id"] for row in await db.fetchall("SELECT id FROM actors")]


async def delete(conn: aiosqlite.Connection, actor_id: str) -> bool:
    """Forget an actor (e.g. after its Delete); True when a row was removed."""
    cursor = await conn.execute("DELETE FROM actors WHERE id = ?", (actor_id,))
    return cursor.rowcount > 0


def _cached(row: sqlite3.Row) -> CachedActor:
    actor = RemoteActor(
        id=row["id"],
        type=row["type"],
        inbox=row["inbox"],
        shared_inbox=row["shared_inbox"],
        key_id=row["key_id"],
        public_key_pem=row["public_key_pem"],
        username=row["username"],
        domain=row["domain"],
        name=row["name"],
        url=row["url"],
        icon_url=row["icon_url"],
        summary=row["summary"],
    )
    return CachedActor(actor=actor, fetched_at=parse_iso(row["fetched_at"]))
