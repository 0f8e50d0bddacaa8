"""The `blocks` table (actors and whole domains the owner blocked) and the SQL that clears a
blocked account's traces. Layer: store.

Domain matching (a block on `example.com` covers `social.example.com`) is decided by the caller,
which passes the candidate domains of a host; here they are only looked up.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import aiosqlite

from fedistream.store.db import Database

ACTOR, DOMAIN = "actor", "domain"
# Well under SQLite's limit on bound parameters, for `IN (…)` lists of many actors.
_CHUNK = 400


def _match_sql(domains: Sequence[str]) -> str:
    marks = ",".join("?" * len(domains)) or "NULL"
    return (
        "SELECT target, kind FROM blocks WHERE (kind = 'actor' AND target = ?) "
        f"OR (kind = 'domain' AND target IN ({marks})) LIMIT 1"
    )


@dataclass(frozen=True, slots=True)
class Match:
    target: str
    kind: str


_MEMO = "blocks.targets"
_MEMO_GENERATION = "blocks.generation"


async def find(db: Database, actor_id: str, domains: Sequence[str]) -> Match | None:
    """The block covering `actor_id` (by id, or one of its `domains`), if any.

    Asked on every inbox POST (twice), so it answers from the whole table held in memory: a
    few hundred rows at most, changed only by services/moderation, which calls `forget_cached`
    after committing. (`find_in` reads the table inside a transaction, for the inbox processor
    and deliveries.)
    """
    targets = db.memo.get(_MEMO)
    if targets is None:
        generation = db.memo.get(_MEMO_GENERATION, 0)
        rows = await db.fetchall("SELECT target, kind FROM blocks")
        targets = {row["target"]: row["kind"] for row in rows}
        if db.memo.get(_MEMO_GENERATION, 0) == generation:  # no change committed meanwhile
            db.memo[_MEMO] = targets
    if actor_id and targets.get(actor_id) == ACTOR:
        return Match(actor_id, ACTOR)
    for domain in domains:
        if targets.get(domain) == DOMAIN:
            return Match(domain, DOMAIN)
    return None


def forget_cached(db: Database) -> None:
    """The blocks table changed (call after the commit): `find` reads it again."""
    db.memo[_MEMO_GENERATION] = db.memo.get(_MEMO_GENERATION, 0) + 1
    db.memo.pop(_MEMO, None)


async def find_in(
    conn: aiosqlite.Connection, actor_id: str, domains: Sequence[str]
) -> sqlite3.Row | None:
    """`find` inside the caller's transaction."""
    cursor = await conn.execute(_match_sql(domains), (actor_id, *domains))
    row: sqlite3.Row | None = await cursor.fetchone()
    return row


async def add(conn: aiosqlite.Connection, target: str, kind: str, now: str) -> bool:
    """False when the target was already blocked."""
    cursor = await conn.execute(
        "INSERT OR IGNORE INTO blocks (target, kind, created_at) VALUES (?, ?, ?)",
        (target, kind, now),
    )
    return cursor.rowcount > 0


async def remove(conn: aiosqlite.Connection, target: str) -> sqlite3.Row | None:
    """Delete the block; returns the removed row (None when there was none)."""
    cursor = await conn.execute(
        "DELETE FROM blocks WHERE target = ? RETURNING target, kind", (target,)
    )
    row: sqlite3.Row | None = await cursor.fetchone()
    return row


async def list_all(db: Database) -> list[sqlite3.Row]:
    """Every block, newest first, with what the actor cache knows about blocked actors."""
    return await db.fetchall(
        "SELECT b.target, b.kind, b.created_at, a.username, a.domain, a.name, a.url "
        "FROM blocks b LEFT JOIN actors a ON b.kind = 'actor' AND a.id = b.target "
        "ORDER BY b.created_at DESC, b.rowid DESC"
    )


async def known_actor_ids(conn: aiosqlite.Connection) -> list[str]:
    """Every remote actor id anything of ours refers to (for a domain block to sift)."""
    cursor = await conn.execute(
        "SELECT actor_id FROM followers UNION SELECT actor_id FROM following "
        "UNION SELECT actor_id FROM remote_posts UNION SELECT actor_id FROM interactions "
        "UNION SELECT actor_id FROM notifications UNION SELECT id FROM actors "
        "UNION SELECT actor_id FROM inbox WHERE state = 'pending'"
    )
    return [str(row[0]) for row in await cursor.fetchall()]


async def take_follower(conn: aiosqlite.Connection, actor_id: str) -> str | None:
    """Remove the actor as a follower; returns their Follow id (None if they did not follow)."""
    cursor = await conn.execute(
        "DELETE FROM followers WHERE actor_id = ? RETURNING follow_id", (actor_id,)
    )
    row = await cursor.fetchone()
    return str(row[0]) if row else None


async def take_following(conn: aiosqlite.Connection, actor_id: str) -> str | None:
    """Stop following the actor; returns our Follow id (None if we did not follow them)."""
    cursor = await conn.execute(
        "DELETE FROM following WHERE actor_id = ? RETURNING follow_id", (actor_id,)
    )
    row = await cursor.fetchone()
    return str(row[0]) if row else None


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


async def purge_content(conn: aiosqlite.Connection, actor_ids: Sequence[str], now: str) -> int:
    """Delete the actors' notes, interactions and notifications, and set aside their inbound
    activities still waiting to be applied (so nothing of theirs comes back after the block).
    Returns the number of rows changed."""
    changed = 0
    for chunk in _chunks(actor_ids):
        marks = ",".join("?" * len(chunk))
        for sql in (
            f"DELETE FROM remote_posts WHERE actor_id IN ({marks})",
            f"DELETE FROM interactions WHERE actor_id IN ({marks})",
            f"DELETE FROM notifications WHERE actor_id IN ({marks})",
        ):
            cursor = await conn.execute(sql, tuple(chunk))
            changed += cursor.rowcount
        cursor = await conn.execute(
            "UPDATE inbox SET state = 'ignored', error = 'the actor is blocked', processed_at = ? "
            f"WHERE state = 'pending' AND actor_id IN ({marks})",
            (now, *chunk),
        )
        changed += cursor.rowcount
    return changed


async def pending_hosts(conn: aiosqlite.Connection) -> list[str]:
    cursor = await conn.execute("SELECT DISTINCT host FROM deliveries WHERE state = 'pending'")
    return [str(row[0]) for row in await cursor.fetchall()]


async def cancel_deliveries(
    conn: aiosqlite.Connection, *, recipients: Sequence[str], hosts: Sequence[str], now: str
) -> int:
    """Give up queued deliveries to the blocked: their personal inboxes (`recipients`) and,
    for a domain block, every inbox on its `hosts`. A shared inbox of an actor-blocked peer
    also serves other followers there, so it is left alone."""
    changed = 0
    for column, values in (("recipient", recipients), ("host", hosts)):
        for chunk in _chunks(values):
            marks = ",".join("?" * len(chunk))
            cursor = await conn.execute(
                "UPDATE deliveries SET state = 'dead', last_error = 'recipient blocked', "
                f"lease_until = NULL, updated_at = ? WHERE state = 'pending' AND {column} IN "
                f"({marks})",
                (now, *chunk),
            )
            changed += cursor.rowcount
    return changed


async def last_block_activity(conn: aiosqlite.Connection, actor_id: str) -> str | None:
    """The JSON of the newest Block we sent to `actor_id` (what an Undo embeds)."""
    cursor = await conn.execute(
        "SELECT json FROM activities WHERE type = 'Block' AND json_extract(json, '$.object') = ? "
        "ORDER BY created_at DESC, rowid DESC LIMIT 1",
        (actor_id,),
    )
    row = await cursor.fetchone()
    return str(row[0]) if row else None
