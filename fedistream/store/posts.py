"""Queries on thoughts (`posts`, `post_tags`, `posts_fts`): hand-written SQL, one function each.

Pages are keyset-paginated on the time-sortable id: the cost of a page does not grow with the
number of thoughts.
"""

from __future__ import annotations

import html
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import aiosqlite

from fedistream.core.models import Mention, Page, Post, SearchHit, Visibility
from fedistream.core.timefmt import parse_iso, to_iso
from fedistream.store.db import Database

_COLUMNS = (
    "id, source, html, text, title, summary, visibility, in_reply_to, "
    "created_at, updated_at, deleted_at"
)
_P_COLUMNS = ", ".join("p." + c.strip() for c in _COLUMNS.split(","))


def _row_to_post(row: sqlite3.Row, tags: Sequence[str] = ()) -> Post:
    return Post(
        id=row["id"],
        source=row["source"],
        html=row["html"],
        text=row["text"],
        title=row["title"],
        summary=row["summary"],
        visibility=Visibility(row["visibility"]),
        in_reply_to=row["in_reply_to"],
        created_at=parse_iso(row["created_at"]),
        updated_at=parse_iso(row["updated_at"]) if row["updated_at"] else None,
        deleted_at=parse_iso(row["deleted_at"]) if row["deleted_at"] else None,
        tags=tuple(tags),
    )


async def _posts_with_tags(db: Database, rows: list[sqlite3.Row]) -> list[Post]:
    """Attach tags and mentions, fetched for the whole page in one query (one thread hop)."""
    ids = [r["id"] for r in rows]
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    extras = await db.fetchall(
        f"SELECT post_id, 't' AS kind, tag AS a, NULL AS b, NULL AS c FROM post_tags "
        f"WHERE post_id IN ({marks}) UNION ALL "
        f"SELECT post_id, 'm', handle, actor_id, url FROM post_mentions WHERE post_id IN ({marks})",
        [*ids, *ids],
    )
    tags: dict[str, list[str]] = {}
    mentions: dict[str, list[Mention]] = {}
    for row in extras:
        if row["kind"] == "t":
            tags.setdefault(row["post_id"], []).append(row["a"])
        else:
            mentions.setdefault(row["post_id"], []).append(
                Mention(handle=row["a"], actor_id=row["b"], url=row["c"])
            )
    return [
        replace(
            _row_to_post(r, sorted(tags.get(r["id"], ()))),
            mentions=tuple(sorted(mentions.get(r["id"], ()), key=lambda m: m.handle)),
        )
        for r in rows
    ]


async def _write_mentions(conn: aiosqlite.Connection, post: Post) -> None:
    await conn.execute("DELETE FROM post_mentions WHERE post_id = ?", (post.id,))
    await conn.executemany(
        "INSERT OR IGNORE INTO post_mentions (post_id, handle, actor_id, url) VALUES (?, ?, ?, ?)",
        [(post.id, m.handle, m.actor_id, m.url) for m in post.mentions],
    )


async def insert_post(conn: aiosqlite.Connection, post: Post) -> None:
    """Insert inside the caller's transaction (so related rows commit together)."""
    await conn.execute(
        f"INSERT INTO posts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            post.id,
            post.source,
            post.html,
            post.text,
            post.title,
            post.summary,
            post.visibility.value,
            post.in_reply_to,
            to_iso(post.created_at),
            to_iso(post.updated_at) if post.updated_at else None,
            to_iso(post.deleted_at) if post.deleted_at else None,
        ),
    )
    await conn.executemany(
        "INSERT OR IGNORE INTO post_tags (tag, post_id) VALUES (?, ?)",
        [(tag, post.id) for tag in post.tags],
    )
    await _write_mentions(conn, post)


async def update_post(conn: aiosqlite.Connection, post: Post) -> None:
    await conn.execute(
        "UPDATE posts SET source = ?, html = ?, text = ?, title = ?, summary = ?, updated_at = ? "
        "WHERE id = ? AND deleted_at IS NULL",
        (
            post.source,
            post.html,
            post.text,
            post.title,
            post.summary,
            to_iso(post.updated_at) if post.updated_at else None,
            post.id,
        ),
    )
    await conn.execute("DELETE FROM post_tags WHERE post_id = ?", (post.id,))
    await conn.executemany(
        "INSERT OR IGNORE INTO post_tags (tag, post_id) VALUES (?, ?)",
        [(tag, post.id) for tag in post.tags],
    )
    await _write_mentions(conn, post)


async def mark_deleted(conn: aiosqlite.Connection, post_id: str, when: str) -> bool:
    """Turn a thought into a tombstone: its content is wiped, its id stays (410, not 404)."""
    cursor = await conn.execute(
        "UPDATE posts SET source = '', html = '', text = '', title = NULL, summary = NULL, "
        "deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
        (when, post_id),
    )
    await conn.execute("DELETE FROM post_tags WHERE post_id = ?", (post_id,))
    await conn.execute("DELETE FROM post_mentions WHERE post_id = ?", (post_id,))
    return cursor.rowcount > 0


async def get_post(db: Database, post_id: str) -> Post | None:
    """A thought by id, including tombstones (check `is_deleted`)."""
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM posts WHERE id = ?", (post_id,))
    if row is None:
        return None
    return (await _posts_with_tags(db, [row]))[0]


async def latest_page(
    db: Database, before: str | None, limit: int, *, with_replies: bool = True
) -> Page:
    """Newest live thoughts, `limit` per page, older than the `before` cursor when given.
    `with_replies=False` leaves out the owner's replies (they show in their threads instead);
    the page still walks `posts_live_id` in id order, filtering as it goes."""
    replies = "" if with_replies else "AND in_reply_to IS NULL "
    if before:
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM posts WHERE deleted_at IS NULL {replies}AND id < ? "
            "ORDER BY id DESC LIMIT ?",
            (before, limit + 1),
        )
    else:
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM posts WHERE deleted_at IS NULL {replies}"
            "ORDER BY id DESC LIMIT ?",
            (limit + 1,),
        )
    return await _page(db, rows, limit)


async def tag_page(db: Database, tag: str, before: str | None, limit: int) -> Page:
    """Live top-level thoughts with `tag` (the owner's replies stay in their threads)."""
    rows = await db.fetchall(
        f"SELECT {_P_COLUMNS} FROM post_tags t JOIN posts p ON p.id = t.post_id "
        "WHERE t.tag = ? AND t.post_id < ? AND p.deleted_at IS NULL AND p.in_reply_to IS NULL "
        "ORDER BY t.post_id DESC LIMIT ?",
        (tag, before or "\uffff", limit + 1),
    )
    return await _page(db, rows, limit)


async def _page(db: Database, rows: list[sqlite3.Row], limit: int) -> Page:
    more = len(rows) > limit
    posts = await _posts_with_tags(db, rows[:limit])
    return Page(posts=posts, older=posts[-1].id if more and posts else None)


# Control characters that cannot appear in stored text mark the highlighted spans, so the snippet
# can be HTML-escaped first and the markers turned into <mark> afterwards.
_MARK_OPEN, _MARK_CLOSE = "\x02", "\x03"


def fts_query(user_query: str) -> str | None:
    """Turn what a reader typed into a safe FTS5 query: every word must match (prefix on the last).

    Quoting each word means FTS5 operators and syntax errors cannot come from user input.
    """
    # A NUL would end the query string inside SQLite's FTS5 parser ("unterminated string").
    words = [w.replace('"', "").replace("\x00", "") for w in user_query.split()]
    words = [w for w in words if w.strip()][:20]
    if not words:
        return None
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def _snippet_html(raw: str) -> str:
    return html.escape(raw).replace(_MARK_OPEN, "<mark>").replace(_MARK_CLOSE, "</mark>")


async def search(db: Database, user_query: str, limit: int, offset: int = 0) -> list[SearchHit]:
    """Full-text search over title, content warning and text, best matches first."""
    query = fts_query(user_query)
    if query is None:
        return []
    # Two steps: rank every match, then make snippets for the page only. In one step SQLite
    # builds the snippet of every match before sorting; this is 1.5–2× faster for a common word
    # at 1M thoughts, with the same results (bench/README.md).
    rows = await db.fetchall(
        "WITH page AS MATERIALIZED ("
        " SELECT posts_fts.rowid AS seq, bm25(posts_fts, 5.0, 2.0, 1.0) AS score, p.id AS pid"
        " FROM posts_fts JOIN posts p ON p.seq = posts_fts.rowid"
        " WHERE posts_fts MATCH :q AND p.deleted_at IS NULL"
        " ORDER BY score, p.id DESC LIMIT :limit OFFSET :offset"
        f") SELECT {_P_COLUMNS}, "
        f"snippet(posts_fts, 2, '{_MARK_OPEN}', '{_MARK_CLOSE}', '…', 40) AS snip "
        "FROM page JOIN posts_fts ON posts_fts.rowid = page.seq JOIN posts p ON p.seq = page.seq "
        "WHERE posts_fts MATCH :q ORDER BY page.score, page.pid DESC",
        {"q": query, "limit": limit, "offset": offset},
    )
    posts = await _posts_with_tags(db, rows)
    return [
        SearchHit(post=post, snippet_html=_snippet_html(row["snip"]))
        for post, row in zip(posts, rows, strict=True)
    ]


# Counting live thoughts walks the whole posts_live_id index: ~0.1–0.3 s at 1M thoughts, on
# every `/` and outbox request. The count only changes when a thought is added (max(seq) moves)
# or deleted (the services bump stream_version), so it is remembered on the Database until then.
_LIVE_COUNT = "live_count"
_COUNT_KEY = (
    "SELECT coalesce((SELECT value FROM meta WHERE key = 'stream_version'), '0') || '/' || "
    "coalesce((SELECT max(seq) FROM posts), 0)"
)


async def count_live(db: Database) -> int:
    row = await db.fetchone(_COUNT_KEY)
    key = str(row[0]) if row else ""
    known = db.memo.get(_LIVE_COUNT)
    if known is not None and known[0] == key:
        return known[1]
    # Key and count in one statement (one snapshot): a count is never filed under an older key.
    row = await db.fetchone(f"SELECT ({_COUNT_KEY}), count(*) FROM posts WHERE deleted_at IS NULL")
    if row is None:
        return 0
    db.memo[_LIVE_COUNT] = (str(row[0]), int(row[1]))
    return int(row[1])


async def iter_all(db: Database, batch: int = 500) -> AsyncIterator[Post]:
    """Every live thought, oldest first, in batches (for export)."""
    after = ""
    while True:
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM posts WHERE deleted_at IS NULL AND id > ? ORDER BY id LIMIT ?",
            (after, batch),
        )
        if not rows:
            return
        for post in await _posts_with_tags(db, rows):
            yield post
        after = rows[-1]["id"]


async def find_duplicate(db: Database, created_at: str, source: str) -> str | None:
    """Id of a live thought with this exact creation time and source (re-import guard)."""
    row = await db.fetchone(
        "SELECT id FROM posts WHERE created_at = ? AND source = ? AND deleted_at IS NULL",
        (created_at, source),
    )
    return row["id"] if row else None
