"""The posts store on a real SQLite file: pages, tags, search, tombstones, migrations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fedistream.core.ids import make_id
from fedistream.services.posts import Draft, build_post
from fedistream.store import meta
from fedistream.store import posts as store
from fedistream.store.db import Database
from fedistream.store.migrations import MIGRATIONS

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


async def add(db: Database, source: str, minutes: int, title: str = "", summary: str = "") -> str:
    when = T0 + timedelta(minutes=minutes)
    post = build_post(Draft(source, title, summary), make_id(when, minutes), when)
    async with db.transaction() as conn:
        await store.insert_post(conn, post)
    return post.id


async def test_round_trip_keeps_every_field(db: Database) -> None:
    post_id = await add(db, "Hello #World", 1, title="A title", summary="cw")
    post = await store.get_post(db, post_id)
    assert post is not None
    assert (post.source, post.title, post.summary, post.tags) == (
        "Hello #World",
        "A title",
        "cw",
        ("world",),
    )
    assert post.created_at == T0 + timedelta(minutes=1)
    assert '<a href="/tags/world"' in post.html
    assert not post.is_deleted


async def test_keyset_pages_walk_the_whole_stream_newest_first(db: Database) -> None:
    ids = [await add(db, f"thought {i}", i) for i in range(45)]
    seen: list[str] = []
    before = None
    while True:
        page = await store.latest_page(db, before, 20)
        seen.extend(p.id for p in page.posts)
        if page.older is None:
            break
        before = page.older
    assert seen == list(reversed(ids))


async def test_last_full_page_has_no_older_link(db: Database) -> None:
    for i in range(20):
        await add(db, f"t{i}", i)
    page = await store.latest_page(db, None, 20)
    assert len(page.posts) == 20 and page.older is None


async def test_page_query_uses_the_index_not_a_scan(db: Database) -> None:
    plan = await db.fetchall(
        "EXPLAIN QUERY PLAN SELECT id FROM posts WHERE deleted_at IS NULL AND id < ? "
        "ORDER BY id DESC LIMIT 21",
        ("zzzz",),
    )
    details = " ".join(row["detail"] for row in plan)
    assert "USING" in details and "INDEX" in details and "TEMP B-TREE" not in details


async def test_tag_pages(db: Database) -> None:
    a = await add(db, "#art one", 1)
    await add(db, "#music", 2)
    c = await add(db, "#Art two", 3)
    page = await store.tag_page(db, "art", None, 20)
    assert [p.id for p in page.posts] == [c, a]
    page = await store.tag_page(db, "art", None, 1)
    assert [p.id for p in page.posts] == [c] and page.older == c
    assert [p.id for p in (await store.tag_page(db, "art", page.older, 1)).posts] == [a]


async def test_edit_replaces_tags_and_search_text(db: Database) -> None:
    post_id = await add(db, "old words #old", 1)
    post = await store.get_post(db, post_id)
    assert post is not None
    edited = replace(
        build_post(Draft("fresh words #new"), post_id, post.created_at),
        updated_at=T0 + timedelta(days=1),
    )
    async with db.transaction() as conn:
        await store.update_post(conn, edited)
    assert (await store.tag_page(db, "old", None, 5)).posts == []
    assert [p.id for p in (await store.tag_page(db, "new", None, 5)).posts] == [post_id]
    assert await store.search(db, "old", 5) == []
    assert [h.post.id for h in await store.search(db, "fresh", 5)] == [post_id]


async def test_search_highlights_and_ranks(db: Database) -> None:
    await add(db, "nothing to see", 1)
    weak = await add(db, "a garden is mentioned once", 2)
    strong = await add(db, "about gardens", 3, title="Gardening notes")
    hits = await store.search(db, "garden", 10)
    assert [h.post.id for h in hits] == [strong, weak]
    assert "<mark>" in hits[1].snippet_html


async def test_search_pages_through_every_match_once_best_first(db: Database) -> None:
    """The page is ranked first and its snippets made after: pages must tile the results."""
    ids = [await add(db, "word " * (1 + i % 4) + f"thought {i}", i) for i in range(23)]
    gone = ids[5]
    async with db.transaction() as conn:
        await store.mark_deleted(conn, gone, "2024-06-01T00:00:00Z")
    everything = await store.search(db, "word", 100)
    pages = [await store.search(db, "word", 7, offset) for offset in range(0, 28, 7)]
    assert [h.post.id for page in pages for h in page] == [h.post.id for h in everything]
    assert len(everything) == 22 and gone not in {h.post.id for h in everything}
    assert all("<mark>word</mark>" in h.snippet_html for h in everything)
    # bm25 puts the thoughts that repeat the word most first.
    counts = [h.post.text.count("word") for h in everything]
    assert counts == sorted(counts, reverse=True)


async def test_search_escapes_html_and_survives_fts_syntax(db: Database) -> None:
    await add(db, "use `<b>` tags carefully", 1)
    hits = await store.search(db, "tags", 5)
    assert "&lt;b&gt;" in hits[0].snippet_html and "<b>" not in hits[0].snippet_html
    for query in ['"', "AND", "NEAR(", "a OR", "*", "col:x", "((", "-x", "^", ""]:
        await store.search(db, query, 5)  # must not raise


async def test_delete_leaves_a_tombstone_and_drops_everything_else(db: Database) -> None:
    post_id = await add(db, "secret #tag words", 1, title="t")
    async with db.transaction() as conn:
        assert await store.mark_deleted(conn, post_id, "2024-06-01T00:00:00Z")
        assert not await store.mark_deleted(conn, post_id, "2024-06-02T00:00:00Z")
    post = await store.get_post(db, post_id)
    assert post is not None and post.is_deleted and post.source == "" and post.title is None
    assert (await store.latest_page(db, None, 10)).posts == []
    assert (await store.tag_page(db, "tag", None, 10)).posts == []
    assert await store.search(db, "secret", 10) == []
    assert await store.count_live(db) == 0


async def test_iter_all_is_oldest_first_and_skips_deleted(db: Database) -> None:
    ids = [await add(db, f"x{i}", i) for i in range(7)]
    async with db.transaction() as conn:
        await store.mark_deleted(conn, ids[3], "2024-06-01T00:00:00Z")
    assert [p.id async for p in store.iter_all(db, batch=2)] == ids[:3] + ids[4:]


async def test_stream_version_changes_with_each_bump(db: Database) -> None:
    first = await meta.stream_version(db)
    async with db.transaction() as conn:
        await meta.bump_stream_version(conn)
    second = await meta.stream_version(db)
    assert first != second


async def test_migrations_record_version_and_reopen_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    db = await Database.open(path)
    post_id = await add(db, "kept", 1)
    await db.close()
    db = await Database.open(path)
    try:
        row = await db.fetchone("PRAGMA user_version")
        assert row is not None and row[0] == len(MIGRATIONS)
        assert (await store.get_post(db, post_id)) is not None
        mode = await db.fetchone("PRAGMA journal_mode")
        assert mode is not None and mode[0] == "wal"
    finally:
        await db.close()


async def test_failed_transaction_writes_nothing(db: Database) -> None:
    when = T0
    post = build_post(Draft("a"), make_id(when, 1), when)
    try:
        async with db.transaction() as conn:
            await store.insert_post(conn, post)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert await store.get_post(db, post.id) is None
