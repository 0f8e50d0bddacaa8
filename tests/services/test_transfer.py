"""Import, export and backup on real SQLite files: round trips, duplicates, bad chunks, batches,
and a backup taken while another connection keeps writing."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fedistream.core.ids import make_id
from fedistream.core.stream_file import parse_stream
from fedistream.errors import BadInput
from fedistream.services import transfer
from fedistream.services.posts import Draft, publish
from fedistream.store import meta
from fedistream.store import posts as post_store
from fedistream.store.db import Database

NOW = datetime(2025, 3, 1, 12, 0, 30, 500_000, tzinfo=UTC)
MAX = 2_000


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(tmp_path / "a" / "fedistream.sqlite3")
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def other(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(tmp_path / "b" / "fedistream.sqlite3")
    try:
        yield db
    finally:
        await db.close()


async def stream(db: Database) -> list[tuple[str, str | None, str | None, datetime]]:
    return [(p.source, p.title, p.summary, p.created_at) async for p in post_store.iter_all(db)]


async def run_import(db: Database, text: str, **kwargs: object) -> transfer.ImportReport:
    return await transfer.import_stream(db, text, max_chars=MAX, now=NOW, **kwargs)  # type: ignore[arg-type]


# Shapes of a real stream: an epigraph, a titled essay, a numbered list, a one-liner.
SAMPLE = """\
date: 2023-02-01T08:00Z
> Slow is smooth, and smooth is fast.
>
> — a carpenter's saying

---
# Notes on learning in public
date: 2023-03-15T18:30:00+01:00

Write down what you learn the day you learn it. Nobody else needs it yet; you will.

A second paragraph with a #Habit tag.

---
date: 2023-01-10
cw: lists
Three things I keep relearning:

1. Sleep first.
2. Write the test.
3. Ask early.
---
A one-liner without a date.
"""


async def test_import_keeps_titles_dates_warnings_and_orders_ids_by_date(
    database: Database,
) -> None:
    report = await run_import(database, SAMPLE)
    assert (report.imported, report.duplicates, report.empty, report.failures) == (4, 0, 0, [])
    posts = [p async for p in post_store.iter_all(database)]  # id order
    assert [p.created_at for p in posts] == [
        datetime(2023, 1, 10, tzinfo=UTC),
        datetime(2023, 2, 1, 8, tzinfo=UTC),
        datetime(2023, 3, 15, 17, 30, tzinfo=UTC),
        NOW.replace(microsecond=0),
    ]
    # ids sort by original date, not by file order, and encode that date
    assert [p.id for p in posts] == sorted(report.ids) != report.ids
    assert all(p.id[:9] == make_id(p.created_at, 0)[:9] for p in posts)
    lists, epigraph, essay, one_liner = posts
    assert (lists.summary, lists.title) == ("lists", None)
    assert lists.source.endswith("3. Ask early.")
    assert epigraph.source.startswith("> Slow is smooth")
    assert essay.title == "Notes on learning in public"
    assert essay.tags == ("habit",)
    assert one_liner.source == "A one-liner without a date."


async def test_undated_thoughts_get_increasing_times_ending_now_in_file_order(
    database: Database,
) -> None:
    await run_import(database, "first\n---\nsecond\n---\ndate: 2020-01-01\nold\n---\nthird\n")
    got = [(source, created) for source, _, _, created in await stream(database)]
    end = NOW.replace(microsecond=0)
    assert got == [
        ("old", datetime(2020, 1, 1, tzinfo=UTC)),
        ("first", end - timedelta(seconds=2)),
        ("second", end - timedelta(seconds=1)),
        ("third", end),
    ]


async def test_reimporting_the_same_file_adds_nothing(database: Database) -> None:
    first = await run_import(database, SAMPLE)
    version = await meta.stream_version(database)
    again = await transfer.import_stream(
        database, SAMPLE, max_chars=MAX, now=NOW + timedelta(hours=5)
    )
    assert (again.imported, again.duplicates, again.failures) == (0, 4, [])
    assert len(await stream(database)) == first.imported == 4
    assert await meta.stream_version(database) == version  # nothing changed, nothing bumped


async def test_duplicates_within_one_file_are_imported_once(database: Database) -> None:
    text = "date: 2024-01-01\nsame\n---\ndate: 2024-01-01\nsame\n---\nx\n---\nx\n"
    report = await run_import(database, text)
    assert (report.imported, report.duplicates) == (2, 2)


async def test_same_text_at_another_date_or_same_date_other_text_is_new(
    database: Database,
) -> None:
    await run_import(database, "date: 2024-01-01\nGood morning.\n")
    report = await run_import(
        database, "date: 2024-01-02\nGood morning.\n---\ndate: 2024-01-01\nGood evening.\n"
    )
    assert (report.imported, report.duplicates) == (2, 0)


async def test_bad_chunks_are_reported_and_the_rest_import(database: Database) -> None:
    text = (
        "ok one\n"
        "---\n"
        "date: 2024-02-30\nimpossible day\n"
        "---\n"
        f"{'long ' * 500}\n"
        "---\n"
        "date: 2999-01-01\nfrom the future\n"
        "---\n"
        "# Only a title\n"
        "---\n"
        "\n\n"
        "---\n"
        "ok two\n"
    )
    report = await run_import(database, text)
    assert (report.imported, report.empty) == (2, 1)
    assert [s for s, *_ in await stream(database)] == ["ok one", "ok two"]
    numbers = [(f.number, f.line, f.first_line) for f in report.failures]
    assert numbers == [
        (2, 3, "date: 2024-02-30"),
        (3, 6, "long long long long long long long long long long long long…"),
        (4, 8, "date: 2999-01-01"),
        (5, 11, "# Only a title"),
    ]
    reasons = [f.reason for f in report.failures]
    assert "2024-02-30" in reasons[0]
    assert "limit is 2,000" in reasons[1]
    assert "future" in reasons[2]
    assert "empty" in reasons[3]
    assert not report.ok


async def test_each_batch_commits_once_with_one_version_bump(database: Database) -> None:
    seen: list[tuple[int, int]] = []
    text = "\n---\n".join(f"thought {i}" for i in range(5))
    before = int(await meta.stream_version(database))
    report = await run_import(
        database, text, batch_size=2, on_progress=lambda d, t: seen.append((d, t))
    )
    assert report.imported == 5
    assert int(await meta.stream_version(database)) == before + 3  # batches of 2, 2, 1
    assert seen == [(i, 5) for i in range(1, 6)]


async def test_a_failing_batch_rolls_back_whole(database: Database, monkeypatch) -> None:
    calls = 0
    real_insert = post_store.insert_post

    async def flaky_insert(conn, post):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 3:
            raise sqlite3.OperationalError("disk full")
        await real_insert(conn, post)

    monkeypatch.setattr(post_store, "insert_post", flaky_insert)
    text = "\n---\n".join(f"thought {i}" for i in range(4))
    with pytest.raises(sqlite3.OperationalError):
        await run_import(database, text, batch_size=2)
    # The first batch committed; the second rolled back as one.
    assert [s for s, *_ in await stream(database)] == ["thought 0", "thought 1"]


# --- export ---------------------------------------------------------------------------------

TRICKY = [
    Draft("Plain one-liner #hello"),
    Draft("# Heading, not a title\n\nbody", title=""),
    Draft("Setext heading\n---\n\ntext", title="With a title", summary="spoilers: it ends"),
    Draft("```yaml\n---\nkey: value\n---\n```\n\n\\--- literal", title="Code"),
    Draft("date: this line is text\ncw: so is this"),
    Draft("Trailing spaces make a break  \nhere\r\nand CRLF became LF"),
]


async def _publish_all(db: Database) -> None:
    for i, draft in enumerate(TRICKY):
        when = datetime(2022, 6, 1, 9, 0, 0, 123_000, tzinfo=UTC) + timedelta(days=i)
        await publish(db, draft, max_chars=MAX, now=when)


async def test_markdown_export_then_import_round_trips_exactly(
    database: Database, other: Database
) -> None:
    await _publish_all(database)
    out = io.StringIO()
    assert await transfer.export_markdown(database, out) == len(TRICKY)
    report = await run_import(other, out.getvalue())
    assert (report.imported, report.failures) == (len(TRICKY), [])
    assert await stream(other) == await stream(database)
    # ...and exporting the copy gives the same file, byte for byte.
    again = io.StringIO()
    await transfer.export_markdown(other, again)
    assert again.getvalue() == out.getvalue()


async def test_export_skips_deleted_thoughts(database: Database) -> None:
    kept = await publish(database, Draft("kept"), max_chars=MAX, now=NOW)
    gone = await publish(database, Draft("gone"), max_chars=MAX, now=NOW)
    from fedistream.services.posts import delete

    await delete(database, gone.id)
    out = io.StringIO()
    assert await transfer.export_markdown(database, out) == 1
    assert [e.source for e in parse_stream(out.getvalue()).entries] == [kept.source]


async def test_split_export_writes_one_file_per_thought(
    database: Database, other: Database, tmp_path: Path
) -> None:
    await _publish_all(database)
    folder = tmp_path / "out" / "split"
    assert await transfer.export_markdown_split(database, folder) == len(TRICKY)
    ids = [p.id async for p in post_store.iter_all(database)]
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"2022-06-{1 + i:02d}-{post_id}.md" for i, post_id in enumerate(ids)]
    for name in names:
        assert len(parse_stream((folder / name).read_text("utf-8")).entries) == 1
        await run_import(other, (folder / name).read_text("utf-8"))
    assert await stream(other) == await stream(database)
    # Exporting again rewrites the same files instead of adding copies.
    await transfer.export_markdown_split(database, folder)
    assert sorted(p.name for p in folder.iterdir()) == names


async def test_jsonl_export_has_one_object_per_line(database: Database) -> None:
    await _publish_all(database)
    out = io.StringIO()
    count = await transfer.export_jsonl(database, out, lambda path: "https://me.test" + path)
    lines = out.getvalue().splitlines()
    assert count == len(lines) == len(TRICKY)
    records = [json.loads(line) for line in lines]
    assert set(records[0]) == {
        "id", "title", "content_warning", "markdown", "html", "created_at", "updated_at",
        "tags", "url",
    }  # fmt: skip
    first, third = records[0], records[2]
    assert first["tags"] == ["hello"] and first["title"] is None
    assert first["url"] == f"https://me.test/p/{first['id']}"
    assert first["created_at"] == "2022-06-01T09:00:00Z" and first["updated_at"] is None
    assert (third["title"], third["content_warning"]) == ("With a title", "spoilers: it ends")
    assert third["markdown"].startswith("Setext heading\n---")


# --- backup ---------------------------------------------------------------------------------


async def test_backup_while_another_connection_keeps_writing(tmp_path: Path) -> None:
    path = tmp_path / "live" / "fedistream.sqlite3"
    writer = await Database.open(path)
    reader = await Database.open(path)  # the "server": a second Database on the same file
    per_txn = 5
    try:
        body = "A paragraph of a longer essay, repeated so the file has some size. " * 12
        for start in range(0, 600, per_txn):
            async with writer.transaction() as conn:
                for i in range(start, start + per_txn):
                    when = datetime(2021, 1, 1, tzinfo=UTC) + timedelta(minutes=i)
                    await conn.execute(
                        "INSERT INTO posts (id, source, html, text, created_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (f"{i:016d}", body, body, body, when.isoformat()),
                    )
        committed_before = await post_store.count_live(reader)
        stop = asyncio.Event()
        written = 0

        async def keep_writing() -> None:
            nonlocal written
            n = 10_000
            while not stop.is_set():
                async with writer.transaction() as conn:
                    for _ in range(per_txn):
                        await conn.execute(
                            "INSERT INTO posts (id, source, html, text, created_at) "
                            "VALUES (?, ?, ?, ?, '2024-01-01T00:00:00Z')",
                            (f"{n:016d}", body, body, body),
                        )
                        n += 1
                written += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(keep_writing())
        await asyncio.sleep(0.05)
        written_at_start = written
        result = await transfer.backup(path, tmp_path / "copy.sqlite3")
        written_during = written - written_at_start
        stop.set()
        await task
    finally:
        await reader.close()
        await writer.close()
    assert written_during > 0  # the writer really ran alongside the backup
    assert result.path == tmp_path / "copy.sqlite3"
    assert result.size == result.path.stat().st_size > 100_000
    copy = sqlite3.connect(result.path)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        count = copy.execute("SELECT count(*) FROM posts").fetchone()[0]
        # Every row committed before the backup is there, and no transaction is half there.
        assert count >= committed_before == 600
        assert count % per_txn == 0
        assert result.posts == count
        copy.execute("INSERT INTO posts_fts(posts_fts) VALUES ('integrity-check')")
    finally:
        copy.close()
    assert not (tmp_path / "copy.sqlite3-wal").exists()


async def test_backup_refuses_to_overwrite_unless_forced(
    database: Database, tmp_path: Path
) -> None:
    await publish(database, Draft("one"), max_chars=MAX, now=NOW)
    live = tmp_path / "a" / "fedistream.sqlite3"
    target = tmp_path / "b.sqlite3"
    target.write_text("precious")
    with pytest.raises(BadInput, match="already exists"):
        await transfer.backup(live, target)
    assert target.read_text() == "precious"
    result = await transfer.backup(live, target, force=True)
    assert result.posts == 1
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []


async def test_backup_into_a_folder_uses_a_dated_name(database: Database, tmp_path: Path) -> None:
    live = tmp_path / "a" / "fedistream.sqlite3"
    folder = tmp_path / "backups"
    folder.mkdir()
    result = await transfer.backup(live, folder, now=NOW)
    assert result.path == folder / "fedistream-20250301-120030.sqlite3"
    assert result.posts == 0


async def test_backup_refuses_the_live_file_and_a_missing_database(
    database: Database, tmp_path: Path
) -> None:
    live = tmp_path / "a" / "fedistream.sqlite3"
    with pytest.raises(BadInput, match="live database"):
        await transfer.backup(live, live, force=True)
    with pytest.raises(BadInput, match="no database"):
        await transfer.backup(tmp_path / "nowhere.sqlite3", tmp_path / "x.sqlite3")
    with pytest.raises(BadInput, match="does not exist"):
        await transfer.backup(live, tmp_path / "no" / "such" / "x.sqlite3")
