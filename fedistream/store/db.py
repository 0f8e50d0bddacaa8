"""The SQLite database: connections, pragmas, migrations and the write lock.

One writer connection guarded by an asyncio lock (so a transaction never interleaves with another
request's statements) and one reader connection; WAL lets them run side by side, and other processes
(`fedistream post` beside a running server) wait on the busy timeout instead of failing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from fedistream.store.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 10_000
T = TypeVar("T")


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = NORMAL")
    await conn.execute("PRAGMA foreign_keys = ON")
    return conn


class Database:
    """Owns the connections. Build with `await Database.open(path)`; close with `await close()`."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        # Values derived from the data and remembered per database (see store/posts.count_live).
        self.memo: dict[str, Any] = {}
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        # execute_grouped: statements waiting for the next group commit, and its writer task.
        self._grouped: list[tuple[str, Sequence[Any], asyncio.Future[int]]] = []
        self._group_writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path)
        try:
            await apply_migrations(writer)
            reader = await _connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    # aiosqlite runs every awaited call in its connection thread and wakes the loop after each:
    # execute + fetch + close through a cursor is three hops; these are one (the read queries
    # of a page or an inbox POST cost about a third less, bench/README.md).

    async def fetchall(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[sqlite3.Row]:
        return list(await self._reader.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        # aiosqlite has no public one-hop fetchone; `_execute` queues a function on the
        # connection's own thread, exactly as its public methods do.
        return await self._reader._execute(_fetch_one, self._reader._conn, sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A short write transaction (BEGIN IMMEDIATE). Never await network I/O inside it."""
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            else:
                await self._writer.execute("COMMIT")

    async def transaction_in_thread(
        self, work: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]]
    ) -> T:
        """Run `work(conn)` as one write transaction entirely inside the writer's thread.

        `transaction()` pays a thread hop (and an event-loop wake-up) for every statement; a
        transaction of many small statements (applying an inbox activity is ~15) spends more
        on hops than on SQL. Here the whole coroutine is driven to completion in the thread:
        one hop. `work` gets a connection with the same `execute`/`executemany`/cursor surface
        as aiosqlite's, answering at once; it may await *only* that connection (awaiting
        anything else raises RuntimeError, and the transaction is rolled back).
        """
        async with self._write_lock:
            return await self._writer._execute(_drive_transaction, self._writer._conn, work)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write statement in its own transaction; returns the number of changed rows."""
        async with self.transaction() as conn:
            cursor = await conn.execute(sql, params)
            return cursor.rowcount

    async def execute_grouped(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write statement, committed together with whatever other callers queued while
        the previous group was being written (group commit): one transaction and one thread
        hop for the lot instead of three hops and a commit each. Returns the changed rows.

        For independent single-statement writes arriving at a high rate (inbox POSTs). A
        statement that fails fails only its own caller; the others still commit.
        """
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._grouped.append((sql, params, done))
        if self._group_writer is None:
            # Its own task, so a caller that goes away (a client hanging up) cannot strand
            # the statements queued behind its own.
            self._group_writer = asyncio.create_task(self._write_groups(), name="group-commit")
        return await done

    async def _write_groups(self) -> None:
        try:
            while self._grouped:
                group, self._grouped = self._grouped, []
                try:
                    async with self._write_lock:
                        outcomes = await self._writer._execute(
                            _run_group, self._writer._conn, [(sql, p) for sql, p, _ in group]
                        )
                except Exception as exc:  # the group's transaction failed: so did each write
                    _fail(group, exc)
                    continue
                except BaseException:  # cancelled (shutdown): nothing of the group is known
                    _fail(group, RuntimeError("the write was interrupted"))
                    raise
                for (_, _, waiter), outcome in zip(group, outcomes, strict=True):
                    if waiter.done():
                        continue
                    if isinstance(outcome, BaseException):
                        waiter.set_exception(outcome)
                    else:
                        waiter.set_result(outcome)
        finally:
            self._group_writer = None
            leftover, self._grouped = self._grouped, []
            _fail(leftover, RuntimeError("the write was interrupted"))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as conn:
            await conn.executemany(sql, rows)


def _fetch_one(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> sqlite3.Row | None:
    """Runs in the reader's thread: the first row, with the cursor closed before returning."""
    cursor = conn.execute(sql, params)
    try:
        row: sqlite3.Row | None = cursor.fetchone()
        return row
    finally:
        cursor.close()


class _InThreadCursor:
    """aiosqlite's Cursor surface over a sqlite3 cursor, for code run in the connection's own
    thread (`Database.transaction_in_thread`): each method answers without suspending."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class _Ready:
    """What `_InThreadConnection.execute` returns: awaitable (at once) and usable as
    `async with`, like aiosqlite's own result."""

    def __init__(self, cursor: _InThreadCursor) -> None:
        self._cursor = cursor

    def __await__(self) -> Generator[Any, None, _InThreadCursor]:
        return self._cursor
        yield  # a generator that finishes without suspending

    async def __aenter__(self) -> _InThreadCursor:
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        await self._cursor.close()


class _InThreadConnection:
    """aiosqlite's Connection surface (as the store modules use it) over the raw connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Ready:
        return _Ready(_InThreadCursor(self._conn.execute(sql, params)))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> _Ready:
        return _Ready(_InThreadCursor(self._conn.executemany(sql, rows)))

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction


def _run_to_completion(coroutine: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends (it awaits only `_InThreadConnection`)."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError(
        "transaction_in_thread: the work awaited something other than the database connection"
    )


def _in_transaction(conn: sqlite3.Connection, run: Callable[[], T]) -> T:
    """In the writer's thread: BEGIN IMMEDIATE, `run()`, COMMIT (ROLLBACK if it raises)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = run()
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _drive_transaction(
    conn: sqlite3.Connection, work: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]]
) -> T:
    """Runs in the writer's thread: the whole of `work` in one transaction."""
    # The stand-in has every method the store's functions call on an aiosqlite.Connection.
    stand_in = cast(aiosqlite.Connection, _InThreadConnection(conn))
    return _in_transaction(conn, lambda: _run_to_completion(work(stand_in)))


def _run_group(
    conn: sqlite3.Connection, statements: Sequence[tuple[str, Sequence[Any]]]
) -> list[int | sqlite3.Error]:
    """Runs in the writer's thread: every statement in one transaction. A failing statement
    is undone by SQLite on its own (the transaction stays open) and reported in its place."""

    def run() -> list[int | sqlite3.Error]:
        outcomes: list[int | sqlite3.Error] = []
        for sql, params in statements:
            try:
                outcomes.append(conn.execute(sql, params).rowcount)
            except sqlite3.Error as exc:
                if not conn.in_transaction:  # SQLite gave up the whole transaction
                    raise
                outcomes.append(exc)
        return outcomes

    return _in_transaction(conn, run)


def _fail(group: Iterable[tuple[str, Sequence[Any], asyncio.Future[int]]], exc: Exception) -> None:
    for _, _, waiter in group:
        if not waiter.done():
            waiter.set_exception(exc)


async def apply_migrations(conn: aiosqlite.Connection) -> int:
    """Bring the schema up to date; returns the resulting version."""
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {version} is newer than this fedistream "
            f"({len(MIGRATIONS)}); upgrade fedistream before opening it"
        )
    for number in range(version, len(MIGRATIONS)):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_statements(MIGRATIONS[number]):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {number + 1}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
    return len(MIGRATIONS)


def _split_statements(script: str) -> list[str]:
    """Split a migration into complete statements (triggers contain ';' inside BEGIN…END)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
