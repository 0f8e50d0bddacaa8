"""Conversations in SQL: likes, boosts and reactions on our thoughts (`interactions`), the remote
replies threaded under them (`remote_posts.thread_post_id`), the owner's own replies found by what
they answer (`posts.in_reply_to`), and what the owner liked or boosted elsewhere. Layer: store.

Pages fetch their counts in one query for the whole page (one thread hop, DESIGN.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from fedistream.store.db import Database

LIKE, ANNOUNCE, REACTION = "like", "announce", "reaction"
# remote_posts.hidden: 0 shown, 1 hidden by the owner (they may unhide it), 2 removed by the
# owner (content wiped; the row stays so a later Update from its author cannot bring it back).
SHOWN, HIDDEN, REMOVED = 0, 1, 2

Reader = aiosqlite.Connection | Database


async def _one(target: Reader, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
    """One row, from the reader (pages) or inside the caller's transaction (inbox)."""
    if isinstance(target, Database):
        return await target.fetchone(sql, params)
    async with target.execute(sql, params) as cursor:
        row: sqlite3.Row | None = await cursor.fetchone()
        return row


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


# --- likes, boosts, reactions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reaction:
    content: str  # a Unicode emoji, or a custom emoji's :shortcode:
    emoji_url: str | None  # the custom emoji's image (remote URL: proxy it, never hot-link)
    count: int


@dataclass(frozen=True, slots=True)
class Counts:
    likes: int = 0
    boosts: int = 0
    replies: int = 0
    reactions: tuple[Reaction, ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.likes or self.boosts or self.replies or self.reactions)


NO_COUNTS = Counts()


async def add(
    conn: aiosqlite.Connection, *, activity_id: str, kind: str, actor_id: str, post_id: str,
    content: str | None, emoji_url: str | None, created_at: str,
) -> bool:  # fmt: skip
    """Record a like/boost/reaction; False when it is already there. One like and one boost per
    account per thought, one of each emoji: a peer repeating itself under a new id adds nothing."""
    existing = await _one(
        conn,
        "SELECT 1 FROM interactions WHERE post_id = ? AND kind = ? AND actor_id = ? "
        "AND coalesce(content, '') = coalesce(?, '')",
        (post_id, kind, actor_id, content),
    )
    if existing:
        return False
    cursor = await conn.execute(
        "INSERT OR IGNORE INTO interactions (id, kind, actor_id, post_id, content, emoji_url, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (activity_id, kind, actor_id, post_id, content, emoji_url, created_at),
    )
    return cursor.rowcount > 0


async def remove(conn: aiosqlite.Connection, activity_id: str, actor_id: str) -> list[str]:
    """Remove the actor's interaction with this activity id; the ids removed (0 or 1)."""
    cursor = await conn.execute(
        "DELETE FROM interactions WHERE id = ? AND actor_id = ? RETURNING id",
        (activity_id, actor_id),
    )
    return [row[0] for row in await cursor.fetchall()]


async def remove_matching(
    conn: aiosqlite.Connection, actor_id: str, kinds: Iterable[str], post_id: str
) -> list[str]:
    """An Undo whose inner id we never saw: match by actor, kind and thought (as Mastodon does)."""
    wanted = list(kinds)
    cursor = await conn.execute(
        f"DELETE FROM interactions WHERE actor_id = ? AND post_id = ? "
        f"AND kind IN ({_marks(wanted)}) RETURNING id",
        (actor_id, post_id, *wanted),
    )
    return [row[0] for row in await cursor.fetchall()]


async def remove_by_actor(conn: aiosqlite.Connection, actor_id: str) -> int:
    cursor = await conn.execute("DELETE FROM interactions WHERE actor_id = ?", (actor_id,))
    return cursor.rowcount


async def counts_for(db: Database, post_ids: Sequence[str]) -> dict[str, Counts]:
    """Likes, boosts, reactions (grouped by emoji) and visible replies of each thought, in one
    query for the whole page. Thoughts with nothing are absent from the answer."""
    ids = list(dict.fromkeys(post_ids))
    if not ids:
        return {}
    marks = _marks(ids)
    rows = await db.fetchall(
        f"SELECT post_id, kind, content, max(emoji_url) AS emoji_url, count(*) AS n "
        f"FROM interactions WHERE post_id IN ({marks}) GROUP BY post_id, kind, content "
        f"UNION ALL "
        f"SELECT thread_post_id, 'reply', NULL, NULL, count(*) FROM remote_posts "
        f"WHERE thread_post_id IN ({marks}) AND hidden = {SHOWN} GROUP BY thread_post_id",
        [*ids, *ids],
    )
    parts: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = parts.setdefault(row["post_id"], {"likes": 0, "boosts": 0, "replies": 0, "r": []})
        if row["kind"] == LIKE:
            entry["likes"] += row["n"]
        elif row["kind"] == ANNOUNCE:
            entry["boosts"] += row["n"]
        elif row["kind"] == "reply":
            entry["replies"] += row["n"]
        elif row["content"]:
            entry["r"].append(Reaction(row["content"], row["emoji_url"], row["n"]))
        else:  # a reaction without an emoji is a like (Pleroma's EmojiReact, R68)
            entry["likes"] += row["n"]
    return {
        post_id: Counts(
            likes=e["likes"], boosts=e["boosts"], replies=e["replies"],
            reactions=tuple(sorted(e["r"], key=lambda r: (-r.count, r.content))),
        )
        for post_id, e in parts.items()
    }  # fmt: skip


# --- threads ------------------------------------------------------------------------------------

_REMOTE_COLUMNS = (
    "r.id, r.actor_id, r.url, r.in_reply_to, r.content_html, r.summary, r.sensitive, "
    "r.published, r.updated, r.hidden, r.quote_of, r.attachments, r.thread_post_id, "
    "a.username, a.domain, a.name, a.icon_url, a.url AS actor_url"
)


async def thread_notes(
    db: Database, post_id: str, *, with_hidden: bool, limit: int = 500
) -> list[sqlite3.Row]:
    """Remote notes threaded under one of our thoughts, oldest first (with their authors); at
    most `limit`, so a thread that went viral still renders in bounded time."""
    return await db.fetchall(
        f"SELECT {_REMOTE_COLUMNS} FROM remote_posts r LEFT JOIN actors a ON a.id = r.actor_id "
        "WHERE r.thread_post_id = ? AND r.hidden <= ? ORDER BY r.published, r.id LIMIT ?",
        (post_id, HIDDEN if with_hidden else SHOWN, limit),
    )


async def own_replies(
    db: Database, post_url_prefix: str, answered: Sequence[str]
) -> list[sqlite3.Row]:
    """The owner's live replies to any of `answered` (note ids), and their replies to those, and
    so on: one recursive query walking the `posts.in_reply_to` index."""
    if not answered:
        return []
    return await db.fetchall(
        f"WITH RECURSIVE own(id) AS ("
        f" SELECT id FROM posts WHERE in_reply_to IN ({_marks(answered)}) AND deleted_at IS NULL"
        f" UNION SELECT p.id FROM posts p JOIN own ON p.in_reply_to = ? || own.id"
        f" WHERE p.deleted_at IS NULL LIMIT 1000) "
        "SELECT p.id, p.html, p.title, p.summary, p.in_reply_to, p.created_at, p.updated_at "
        "FROM posts p JOIN own ON own.id = p.id ORDER BY p.id",
        [*answered, post_url_prefix],
    )


async def direct_replies(db: Database, note_id: str, limit: int) -> tuple[list[str], list[str]]:
    """(the owner's reply ids, others' note ids) answering `note_id` directly and shown publicly:
    what the Note's `replies` collection lists (R60)."""
    rows = await db.fetchall(
        "SELECT 'own' AS who, id FROM posts WHERE in_reply_to = ? AND deleted_at IS NULL "
        "UNION ALL SELECT 'other', id FROM remote_posts WHERE in_reply_to = ? "
        f"AND thread_post_id IS NOT NULL AND hidden = {SHOWN} LIMIT ?",
        (note_id, note_id, limit),
    )
    own = [r["id"] for r in rows if r["who"] == "own"]
    return own, [r["id"] for r in rows if r["who"] == "other"]


async def post_parent(target: Reader, post_id: str) -> sqlite3.Row | None:
    """(in_reply_to, deleted_at) of one of our thoughts."""
    return await _one(target, "SELECT in_reply_to, deleted_at FROM posts WHERE id = ?", (post_id,))


async def remote_note(target: Reader, note_id: str) -> sqlite3.Row | None:
    """A stored remote note with its author, or None."""
    return await _one(
        target,
        f"SELECT {_REMOTE_COLUMNS} FROM remote_posts r LEFT JOIN actors a ON a.id = r.actor_id "
        "WHERE r.id = ?",
        (note_id,),
    )


async def set_thread(
    conn: aiosqlite.Connection, note_id: str, actor_id: str, thread_post_id: str | None,
    quote_of: str | None,
) -> None:  # fmt: skip
    await conn.execute(
        "UPDATE remote_posts SET thread_post_id = ?, quote_of = ? WHERE id = ? AND actor_id = ?",
        (thread_post_id, quote_of, note_id, actor_id),
    )


async def set_hidden(conn: aiosqlite.Connection, note_id: str, hidden: int) -> bool:
    """Hide or show a remote note; a removed one stays removed."""
    cursor = await conn.execute(
        f"UPDATE remote_posts SET hidden = ? WHERE id = ? AND hidden < {REMOVED}",
        (hidden, note_id),
    )
    return cursor.rowcount > 0


async def remove_note(conn: aiosqlite.Connection, note_id: str) -> bool:
    """The owner removes a remote note from their pages: its content is wiped for good."""
    cursor = await conn.execute(
        f"UPDATE remote_posts SET hidden = {REMOVED}, content_html = '', summary = NULL, "
        f"attachments = NULL WHERE id = ? AND hidden < {REMOVED}",
        (note_id,),
    )
    return cursor.rowcount > 0


async def keep_removed(conn: aiosqlite.Connection, note_id: str) -> bool:
    """After an Update of a note the owner removed: wipe what the upsert brought back. True
    when the note is a removed one."""
    cursor = await conn.execute(
        f"UPDATE remote_posts SET content_html = '', summary = NULL, attachments = NULL "
        f"WHERE id = ? AND hidden = {REMOVED}",
        (note_id,),
    )
    return cursor.rowcount > 0


# --- what the owner liked or boosted on other servers -------------------------------------------


async def own_add(
    conn: aiosqlite.Connection, object_id: str, kind: str, activity_id: str, now: str
) -> bool:
    cursor = await conn.execute(
        "INSERT OR IGNORE INTO own_interactions (object_id, kind, activity_id, created_at) "
        "VALUES (?, ?, ?, ?)",
        (object_id, kind, activity_id, now),
    )
    return cursor.rowcount > 0


async def own_remove(conn: aiosqlite.Connection, object_id: str, kind: str) -> str | None:
    """Forget the owner's like/boost; returns the activity id that Undo must name."""
    cursor = await conn.execute(
        "DELETE FROM own_interactions WHERE object_id = ? AND kind = ? RETURNING activity_id",
        (object_id, kind),
    )
    row = await cursor.fetchone()
    return str(row[0]) if row else None


async def own_for(db: Database, object_ids: Sequence[str]) -> set[tuple[str, str]]:
    """(object id, kind) pairs the owner has liked/boosted among `object_ids` (one query)."""
    ids = list(dict.fromkeys(object_ids))
    if not ids:
        return set()
    rows = await db.fetchall(
        f"SELECT object_id, kind FROM own_interactions WHERE object_id IN ({_marks(ids)})", ids
    )
    return {(row["object_id"], row["kind"]) for row in rows}
