"""The Database's two cheap write paths: group commit and a whole transaction in the writer's
thread. Both must keep the guarantees of `transaction()`: all or nothing, and nothing lost."""

from __future__ import annotations

import asyncio
import sqlite3

import aiosqlite
import pytest

from fedistream.store import db as db_module
from fedistream.store.db import Database


async def _table(db: Database) -> None:
    await db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")


async def _rows(db: Database) -> list[tuple[str, int]]:
    return [(r["id"], r["n"]) for r in await db.fetchall("SELECT id, n FROM t ORDER BY id")]


async def test_concurrent_grouped_writes_all_commit_and_report_their_own_rowcount(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _table(db)
    groups: list[int] = []
    real_run_group = db_module._run_group

    def counting(conn: sqlite3.Connection, statements: list[object]) -> object:
        groups.append(len(statements))
        return real_run_group(conn, statements)  # type: ignore[arg-type]

    monkeypatch.setattr(db_module, "_run_group", counting)
    sql = "INSERT OR IGNORE INTO t (id, n) VALUES (?, ?)"
    # 50 at once, two of them duplicates of earlier ids: those change nothing.
    params = [(f"r{i:02}", i) for i in range(48)] + [("r00", 99), ("r01", 99)]
    changed = await asyncio.gather(*(db.execute_grouped(sql, p) for p in params))
    assert changed == [1] * 48 + [0, 0]
    assert await _rows(db) == [(f"r{i:02}", i) for i in range(48)]
    # One transaction per group, not per statement: the first goes alone, the rest wait.
    assert sum(groups) == 50 and len(groups) <= 3, groups


async def test_a_failing_grouped_statement_fails_only_its_caller(db: Database) -> None:
    await _table(db)
    sql = "INSERT INTO t (id, n) VALUES (?, ?)"
    results = await asyncio.gather(
        db.execute_grouped(sql, ("a", 1)),
        db.execute_grouped(sql, ("b", None)),  # NOT NULL: refused by SQLite
        db.execute_grouped(sql, ("c", 3)),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert await _rows(db) == [("a", 1), ("c", 3)]


async def test_a_cancelled_caller_does_not_strand_the_others(db: Database) -> None:
    await _table(db)
    sql = "INSERT INTO t (id, n) VALUES (?, ?)"
    first = asyncio.create_task(db.execute_grouped(sql, ("a", 1)))
    second = asyncio.create_task(db.execute_grouped(sql, ("b", 2)))
    await asyncio.sleep(0)  # both queued; the group writer is running
    first.cancel()
    assert await second == 1
    # The cancelled caller's statement may or may not have been written; the other was.
    assert ("b", 2) in await _rows(db)


async def test_transaction_in_thread_commits_everything_work_did(db: Database) -> None:
    await _table(db)

    async def work(conn: aiosqlite.Connection) -> int:
        await conn.execute("INSERT INTO t VALUES ('a', 1)")
        await conn.executemany("INSERT INTO t VALUES (?, ?)", [("b", 2), ("c", 3)])
        cursor = await conn.execute("UPDATE t SET n = n * 10 WHERE id != 'a'")
        assert cursor.rowcount == 2
        async with conn.execute("SELECT sum(n) FROM t") as total:  # aiosqlite's other form
            row = await total.fetchone()
        assert conn.in_transaction
        return int(row[0])

    assert await db.transaction_in_thread(work) == 51
    assert await _rows(db) == [("a", 1), ("b", 20), ("c", 30)]


async def test_transaction_in_thread_rolls_back_when_work_raises(db: Database) -> None:
    await _table(db)

    async def work(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO t VALUES ('a', 1)")
        raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        await db.transaction_in_thread(work)
    assert await _rows(db) == []
    # The connection is usable afterwards (no transaction left open).
    await db.execute("INSERT INTO t VALUES ('b', 2)")
    assert await _rows(db) == [("b", 2)]


async def test_transaction_in_thread_refuses_work_that_awaits_anything_else(
    db: Database,
) -> None:
    await _table(db)

    async def work(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO t VALUES ('a', 1)")
        await asyncio.sleep(0)  # would suspend in a thread with no event loop

    with pytest.raises(RuntimeError, match="awaited something other than the database"):
        await db.transaction_in_thread(work)
    assert await _rows(db) == []


async def test_savepoints_inside_a_thread_transaction_undo_one_part(db: Database) -> None:
    """What the inbox processor does per activity."""
    await _table(db)

    async def work(conn: aiosqlite.Connection) -> None:
        for name, fail in (("a", False), ("b", True), ("c", False)):
            await conn.execute("SAVEPOINT one")
            await conn.execute("INSERT INTO t VALUES (?, 1)", (name,))
            if fail:
                await conn.execute("ROLLBACK TO one")
            await conn.execute("RELEASE one")

    await db.transaction_in_thread(work)
    assert await _rows(db) == [("a", 1), ("c", 1)]
