"""Housekeeping keeps the delivery and inbox tables bounded without losing anything owed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from fedistream.core.retry import Outcome
from fedistream.core.timefmt import to_iso
from fedistream.services import housekeeping
from fedistream.store import activities, deliveries
from fedistream.store import inbox as inbox_store
from fedistream.store.db import Database

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
OLD = NOW - housekeeping.RECORDS_KEPT - timedelta(days=1)
RECENT = NOW - timedelta(days=2)


async def _deliveries(db: Database, n: int, when: datetime, outcome: Outcome | None) -> None:
    """`n` rows of one activity, enqueued and (unless `outcome` is None) finished at `when`."""
    activity_id = f"https://blog.example.test/p/{when:%Y%m%d}{outcome}/activity"
    async with db.transaction() as conn:
        await activities.insert(conn, activity_id, "Create", None, "{}", when)
        await deliveries.enqueue(
            conn, activity_id, [(f"https://h{i}.example/inbox", None) for i in range(n)], when
        )
    rows = await db.fetchall("SELECT id FROM deliveries WHERE activity_id = ?", (activity_id,))
    if outcome is not None:
        retry_at = when + timedelta(hours=1) if outcome is Outcome.RETRY else None
        await deliveries.record_many(
            db,
            [deliveries.Attempt(r["id"], outcome, 500, None, retry_at, when) for r in rows],
        )


async def _inbox(db: Database, key: str, when: datetime, state: str) -> None:
    await inbox_store.insert(db, key, "https://peer.example/u", "Like", "{}", to_iso(when))
    if state != "pending":
        async with db.transaction() as conn:
            await inbox_store.mark(conn, key, state, None, to_iso(when))


async def _count(db: Database, sql: str) -> int:
    row = await db.fetchone(sql)
    assert row is not None
    return int(row[0])


async def test_tidy_clears_only_old_finished_records(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(housekeeping, "BATCH", 3)  # several batches, each its own transaction
    await _deliveries(db, 7, OLD, Outcome.SENT)
    await _deliveries(db, 2, OLD, Outcome.GIVE_UP)
    await _deliveries(db, 4, OLD, Outcome.RETRY)  # still owed: kept however old
    await _deliveries(db, 3, OLD, None)  # never tried yet: kept
    await _deliveries(db, 5, RECENT, Outcome.SENT)  # the owner may still look at these
    for n, (when, state) in enumerate(
        [(OLD, "done"), (OLD, "ignored"), (OLD, "failed"), (OLD, "pending"), (RECENT, "done")]
    ):
        await _inbox(db, f"https://peer.example/a/{n}", when, state)

    done = await housekeeping.tidy(db, NOW)

    assert done == housekeeping.Tidied(deliveries=9, inbox=3)
    left = await db.fetchall("SELECT state, updated_at FROM deliveries ORDER BY id")
    assert sorted({(r["state"], r["updated_at"] < to_iso(RECENT)) for r in left}) == [
        ("pending", True),
        ("sent", False),
    ]
    assert len(left) == 4 + 3 + 5
    states = await db.fetchall("SELECT id, state FROM inbox ORDER BY id")
    assert [(r["id"][-1], r["state"]) for r in states] == [("3", "pending"), ("4", "done")]
    # Nothing more to do the second time.
    assert await housekeeping.tidy(db, NOW) == housekeeping.Tidied(0, 0)


async def test_the_housekeeper_runs_after_start_up_and_stops(db: Database) -> None:
    await _deliveries(db, 2, OLD, Outcome.SENT)
    keeper = housekeeping.Housekeeper(db, now=lambda: NOW, first_after=0.01, every=3600)
    task = asyncio.create_task(keeper.run())
    for _ in range(200):
        if await _count(db, "SELECT count(*) FROM deliveries") == 0:
            break
        await asyncio.sleep(0.01)
    assert await _count(db, "SELECT count(*) FROM deliveries") == 0
    keeper.stop()
    await asyncio.wait_for(task, 5)


async def test_the_oldest_finished_deliveries_are_found_by_an_index(db: Database) -> None:
    plan = await db.fetchall(
        "EXPLAIN QUERY PLAN SELECT id FROM deliveries WHERE state != 'pending' "
        "AND updated_at < ? ORDER BY updated_at LIMIT 10",
        (to_iso(NOW),),
    )
    assert any("deliveries_finished" in str(row["detail"]) for row in plan), [dict(r) for r in plan]
