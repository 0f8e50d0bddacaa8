"""Per-instance delivery health and "retry now" (store.deliveries, for /admin/federation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fedistream.core.retry import Outcome
from fedistream.store import activities, deliveries
from fedistream.store.db import Database

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


async def queue(db: Database, n: int, inboxes: list[str], at: datetime) -> None:
    activity_id = f"https://blog.example.test/p/{n:04d}/activity"
    async with db.transaction() as conn:
        await activities.insert(conn, activity_id, "Create", None, "{}", at)
        await deliveries.enqueue(conn, activity_id, [(i, None) for i in inboxes], at)


async def attempt(
    db: Database,
    host: str,
    at: datetime,
    outcome: Outcome,
    status: int | None,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> None:
    """Claim every due row of `host` and record one attempt's result for each."""
    for row in await deliveries.claim_due(db, at, 60, 100):
        if row.host == host:
            await deliveries.record(db, row.id, outcome, status, error, retry_at, at)
        else:  # not this host's turn: give the lease back
            await db.execute("UPDATE deliveries SET lease_until = NULL WHERE id = ?", (row.id,))


async def scenario(db: Database) -> None:
    # ok.test: delivered. flaky.test: delivered once, now backing off on 503s.
    # gone.test: given up on a 410. fresh.test: queued, never tried.
    await queue(db, 1, ["https://ok.test/inbox", "https://flaky.test/inbox",
                        "https://gone.test/users/a/inbox"], T0)  # fmt: skip
    await attempt(db, "ok.test", T0 + MIN, Outcome.SENT, 202)
    await attempt(db, "flaky.test", T0 + MIN, Outcome.SENT, 202)
    await attempt(db, "gone.test", T0 + 2 * MIN, Outcome.GIVE_UP, 410, "gone (HTTP 410)")
    await queue(db, 2, ["https://flaky.test/inbox", "https://fresh.test/inbox"], T0 + 10 * MIN)
    await attempt(db, "flaky.test", T0 + 11 * MIN, Outcome.RETRY, 503, "HTTP 503: try 1",
                  T0 + 20 * MIN)  # fmt: skip
    await attempt(db, "flaky.test", T0 + 20 * MIN, Outcome.RETRY, 503, "HTTP 503: try 2",
                  T0 + 80 * MIN)  # fmt: skip
    await db.execute("UPDATE deliveries SET next_attempt_at = ? WHERE host = 'fresh.test'",
                     ((T0 + 99 * MIN).isoformat().replace("+00:00", "Z"),))  # fmt: skip


async def test_health_per_host_troubled_first(db: Database) -> None:
    await scenario(db)
    health = {h.host: h for h in await deliveries.instance_health(db)}
    order = [h.host for h in await deliveries.instance_health(db)]
    assert order == ["flaky.test", "gone.test", "fresh.test", "ok.test"]

    flaky = health["flaky.test"]
    assert (flaky.sent, flaky.pending, flaky.dead) == (1, 1, 0)
    assert flaky.last_success == T0 + MIN
    assert flaky.last_failure == T0 + 20 * MIN
    assert flaky.next_attempt_at == T0 + 80 * MIN  # the back-off the second failure chose
    assert flaky.backoff_attempts == 2
    assert (flaky.last_status, flaky.last_error) == (503, "HTTP 503: try 2")
    assert flaky.state == "retrying"

    gone = health["gone.test"]
    assert (gone.sent, gone.pending, gone.dead) == (0, 0, 1)
    assert gone.last_success is None and gone.last_failure == T0 + 2 * MIN
    assert (gone.last_status, gone.last_error, gone.state) == (410, "gone (HTTP 410)", "failing")

    fresh = health["fresh.test"]
    assert (fresh.pending, fresh.backoff_attempts, fresh.last_failure) == (1, 0, None)
    assert fresh.next_attempt_at == T0 + 99 * MIN and fresh.state == "ok"

    ok = health["ok.test"]
    assert (ok.sent, ok.pending, ok.dead, ok.state) == (1, 0, 0, "ok")
    assert ok.last_error is None and ok.last_status is None


async def test_health_reads_only_the_index(db: Database) -> None:
    plan = " | ".join(
        row["detail"] for row in await db.fetchall("EXPLAIN QUERY PLAN " + deliveries._HEALTH, (9,))
    )
    assert "SCAN deliveries USING COVERING INDEX deliveries_host" in plan
    assert "SEARCH f USING COVERING INDEX deliveries_host" in plan


async def test_retry_now_makes_that_hosts_pending_rows_due(db: Database) -> None:
    await scenario(db)
    now = T0 + 30 * MIN
    before = {r["id"]: dict(r) for r in await db.fetchall("SELECT * FROM deliveries")}
    assert [r.host for r in await deliveries.claim_due(db, now, 60, 10)] == []  # all waiting

    result = await deliveries.retry_host_now(db, "flaky.test", now)

    assert result == deliveries.Retried(rescheduled=1, revived=0)
    after = {r["id"]: dict(r) for r in await db.fetchall("SELECT * FROM deliveries")}
    changed = {i for i in after if after[i] != before[i]}
    (row_id,) = changed
    assert after[row_id]["host"] == "flaky.test"
    assert after[row_id]["next_attempt_at"] == "2026-03-01T12:30:00Z"
    # History stays: attempts, last answer and updated_at are what the page shows.
    for column in ("attempts", "last_status", "last_error", "updated_at", "state"):
        assert after[row_id][column] == before[row_id][column]
    assert [r.host for r in await deliveries.claim_due(db, now, 60, 10)] == ["flaky.test"]


async def test_retry_now_revives_recent_dead_rows_but_never_blocked_ones(db: Database) -> None:
    day = 24 * 60 * MIN
    await queue(db, 1, ["https://peer.test/a/inbox"], T0)
    await queue(db, 2, ["https://peer.test/b/inbox"], T0 + 2 * day)
    await queue(db, 3, ["https://peer.test/c/inbox"], T0 + 3 * day)
    await attempt(db, "peer.test", T0 + 3 * day + 60 * MIN, Outcome.GIVE_UP, 400, "refused")
    await db.execute(  # what store.blocks does to a blocked recipient's rows
        "UPDATE deliveries SET last_error = 'recipient blocked' WHERE inbox LIKE '%/c/inbox'"
    )
    now = T0 + 3 * day + 120 * MIN  # row a is older than 3 days; row b is not

    untouched = await deliveries.retry_host_now(db, "peer.test", now)
    assert untouched == deliveries.Retried(0, 0)
    assert {r["state"] for r in await db.fetchall("SELECT state FROM deliveries")} == {"dead"}

    result = await deliveries.retry_host_now(db, "peer.test", now, revive_dead=True)

    assert result == deliveries.Retried(rescheduled=0, revived=1)
    rows = {
        r["inbox"].split("/")[-2]: dict(r)
        for r in await db.fetchall("SELECT * FROM deliveries ORDER BY id")
    }
    assert rows["a"]["state"] == "dead"  # would die again at once: past the give-up age
    assert rows["c"]["state"] == "dead"  # blocked: a retry must not undo a block
    assert rows["b"]["state"] == "pending" and rows["b"]["lease_until"] is None
    assert rows["b"]["next_attempt_at"] == "2026-03-04T14:00:00Z"
    assert rows["b"]["attempts"] == 1
    assert [r.inbox for r in await deliveries.claim_due(db, now, 60, 10)] == [
        "https://peer.test/b/inbox"
    ]


async def test_no_deliveries_no_hosts(db: Database) -> None:
    assert await deliveries.instance_health(db) == []
    assert await deliveries.retry_host_now(db, "nobody.test", T0, revive_dead=True) == (
        deliveries.Retried(0, 0)
    )
