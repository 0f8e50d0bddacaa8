"""The delivery queue and the activities it sends (store.deliveries, store.activities)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fedistream.core.retry import Outcome
from fedistream.store import activities, deliveries
from fedistream.store.db import Database

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CREATE_ID = "https://blog.example.test/p/0001/activity"
CREATE_JSON = json.dumps({"id": CREATE_ID, "type": "Create", "content": "naïve café ✓"})


async def add_activity(
    db: Database,
    targets: Sequence[tuple[str, str | None]],
    *,
    activity_id: str = CREATE_ID,
    type_: str = "Create",
    post_id: str | None = "0001",
    json_text: str = CREATE_JSON,
    now: datetime = T0,
) -> int:
    async with db.transaction() as conn:
        await activities.insert(conn, activity_id, type_, post_id, json_text, now)
        return await deliveries.enqueue(conn, activity_id, targets, now)


async def rows(db: Database) -> list[dict[str, object]]:
    found = await db.fetchall("SELECT * FROM deliveries ORDER BY id")
    return [dict(row) for row in found]


# --- activities ---


async def test_activity_insert_and_get(db: Database) -> None:
    async with db.transaction() as conn:
        assert await activities.insert(conn, CREATE_ID, "Create", "0001", CREATE_JSON, T0)
        # The first version wins: it may already have been delivered.
        assert not await activities.insert(conn, CREATE_ID, "Create", "0001", "{}", T0)
    stored = await activities.get(db, CREATE_ID)
    assert stored is not None
    assert (stored.id, stored.type, stored.post_id, stored.json) == (
        CREATE_ID,
        "Create",
        "0001",
        CREATE_JSON,
    )
    assert stored.created_at == T0
    assert await activities.get(db, CREATE_ID + "x") is None


# --- enqueue ---


async def test_enqueue_one_row_per_distinct_inbox(db: Database) -> None:
    added = await add_activity(
        db,
        [
            ("https://a.example/inbox", None),
            ("https://b.example/users/bo/inbox", "https://b.example/users/bo"),
            ("https://a.example/inbox", None),
            ("http://127.0.0.1:9/inbox", None),
        ],
    )
    assert added == 3
    found = await rows(db)
    assert [(r["inbox"], r["host"], r["recipient"]) for r in found] == [
        ("https://a.example/inbox", "a.example", None),
        ("https://b.example/users/bo/inbox", "b.example", "https://b.example/users/bo"),
        ("http://127.0.0.1:9/inbox", "127.0.0.1:9", None),
    ]
    assert all(r["state"] == "pending" and r["attempts"] == 0 for r in found)
    assert all(r["next_attempt_at"] == "2026-03-01T12:00:00Z" for r in found)


async def test_enqueue_again_is_a_no_op(db: Database) -> None:
    await add_activity(db, [("https://a.example/inbox", None)])
    async with db.transaction() as conn:
        added = await deliveries.enqueue(
            conn, CREATE_ID, [("https://a.example/inbox", None), ("https://c.example/i", None)], T0
        )
    assert added == 1
    assert len(await rows(db)) == 2


async def test_an_inbox_shared_by_two_recipients_has_none(db: Database) -> None:
    await add_activity(
        db,
        [
            ("https://a.example/inbox", "https://a.example/users/one"),
            ("https://a.example/inbox", "https://a.example/users/two"),
        ],
    )
    assert [r["recipient"] for r in await rows(db)] == [None]


@pytest.mark.parametrize(
    ("inbox", "host"),
    [
        ("https://Mastodon.Example/inbox", "mastodon.example"),
        ("https://a.example:443/inbox", "a.example"),
        ("http://a.example:80/inbox", "a.example"),
        ("https://a.example:8443/inbox", "a.example:8443"),
        ("http://[::1]:8080/inbox", "[::1]:8080"),
    ],
)
def test_inbox_host(inbox: str, host: str) -> None:
    assert deliveries.inbox_host(inbox) == host


@pytest.mark.parametrize("inbox", ["ftp://a.example/inbox", "/inbox", "https:///inbox"])
async def test_enqueue_refuses_a_non_http_inbox(db: Database, inbox: str) -> None:
    with pytest.raises(ValueError):
        await add_activity(db, [("https://a.example/inbox", None), (inbox, None)])
    assert await rows(db) == []  # the whole transaction rolled back


# --- claim ---


async def test_claim_leases_due_rows_with_their_activity_bytes(db: Database) -> None:
    await add_activity(db, [("https://a.example/inbox", None), ("https://b.example/inbox", None)])
    claimed = await deliveries.claim_due(db, T0, 60, 10)
    assert [c.inbox for c in claimed] == ["https://a.example/inbox", "https://b.example/inbox"]
    first = claimed[0]
    assert first.body == CREATE_JSON.encode("utf-8")
    assert (first.activity_id, first.attempts, first.created_at) == (CREATE_ID, 0, T0)
    assert all(r["lease_until"] == "2026-03-01T12:01:00Z" for r in await rows(db))
    # Leased: not due again until the lease has passed.
    assert await deliveries.claim_due(db, T0 + timedelta(seconds=59), 60, 10) == []
    assert await deliveries.claim_due(db, T0 + timedelta(seconds=60), 60, 10) == []


async def test_an_expired_lease_is_claimed_again(db: Database) -> None:
    """A worker that crashed mid-send loses nothing: the row comes back (at-least-once)."""
    await add_activity(db, [("https://a.example/inbox", None)])
    assert len(await deliveries.claim_due(db, T0, 60, 10)) == 1
    again = await deliveries.claim_due(db, T0 + timedelta(seconds=61), 60, 10)
    assert [c.inbox for c in again] == ["https://a.example/inbox"]
    assert again[0].attempts == 0  # a lost attempt is not counted


async def test_claim_skips_rows_not_yet_due_and_honours_the_limit(db: Database) -> None:
    await add_activity(db, [(f"https://h{i}.example/inbox", None) for i in range(5)])
    await db.execute(
        "UPDATE deliveries SET next_attempt_at = '2026-03-01T13:00:00Z' WHERE host = 'h0.example'"
    )
    claimed = await deliveries.claim_due(db, T0, 7200, 3)
    assert [c.host for c in claimed] == ["h1.example", "h2.example", "h3.example"]
    rest = await deliveries.claim_due(db, T0, 7200, 10)
    assert [c.host for c in rest] == ["h4.example"]
    later = await deliveries.claim_due(db, T0 + timedelta(hours=1), 60, 10)
    assert [c.host for c in later] == ["h0.example"]


async def test_claim_takes_the_longest_waiting_first(db: Database) -> None:
    await add_activity(db, [(f"https://h{i}.example/inbox", None) for i in range(3)])
    await db.execute(
        "UPDATE deliveries SET next_attempt_at = '2026-03-01T11:00:00Z' WHERE host = 'h2.example'"
    )
    claimed = await deliveries.claim_due(db, T0, 60, 1)
    assert [c.host for c in claimed] == ["h2.example"]


async def test_two_concurrent_claimers_never_share_a_row(db: Database, tmp_path: Path) -> None:
    """Two connections (as two processes would have) race claims; every row goes to one only."""
    await add_activity(db, [(f"https://h{i}.example/inbox", None) for i in range(120)])
    other = await Database.open(tmp_path / "store.sqlite3")
    try:

        async def claimer(database: Database) -> list[int]:
            got: list[int] = []
            for _ in range(40):  # bounded
                batch = await deliveries.claim_due(database, T0, 60, 7)
                if not batch:
                    break
                got += [c.id for c in batch]
                await asyncio.sleep(0.01)  # let the other side's busy-wait win the lock too
            return got

        first, second = await asyncio.gather(claimer(db), claimer(other))
    finally:
        await other.close()
    assert first and second, "both claimers should have won some rows"
    assert not set(first) & set(second)
    assert len(first) + len(second) == 120
    assert len(set(first) | set(second)) == 120


async def test_per_host_claims_are_fair(db: Database) -> None:
    targets = [(f"https://big.example/users/u{i}/inbox", None) for i in range(10)]
    targets += [("https://small.example/inbox", None), ("https://tiny.example/inbox", None)]
    await add_activity(db, targets)
    claimed = await deliveries.claim_due(db, T0, 60, 100, per_host=3)
    hosts = [c.host for c in claimed]
    assert hosts.count("big.example") == 3
    assert hosts.count("small.example") == 1 and hosts.count("tiny.example") == 1


async def test_host_room_limits_hosts_already_busy(db: Database) -> None:
    targets = [(f"https://big.example/users/u{i}/inbox", None) for i in range(10)]
    targets += [(f"https://mid.example/users/u{i}/inbox", None) for i in range(10)]
    await add_activity(db, targets)
    claimed = await deliveries.claim_due(
        db, T0, 60, 100, per_host=4, host_room={"big.example": 0, "mid.example": 1}
    )
    assert [c.host for c in claimed] == ["mid.example"]
    claimed = await deliveries.claim_due(db, T0, 60, 100, per_host=4, host_room={})
    assert sorted(c.host for c in claimed) == ["big.example"] * 4 + ["mid.example"] * 4


# --- record ---


async def test_record_sent(db: Database) -> None:
    await add_activity(db, [("https://a.example/inbox", None)])
    (row,) = await deliveries.claim_due(db, T0, 60, 10)
    later = T0 + timedelta(seconds=1)
    assert await deliveries.record(db, row.id, Outcome.SENT, 202, None, None, later)
    (stored,) = await rows(db)
    assert stored["state"] == "sent"
    assert (stored["attempts"], stored["last_status"], stored["lease_until"]) == (1, 202, None)
    assert stored["updated_at"] == "2026-03-01T12:00:01Z"
    assert await deliveries.claim_due(db, T0 + timedelta(days=1), 60, 10) == []
    # A late second word (another worker's, after its lease ran out) does not undo it.
    assert not await deliveries.record(db, row.id, Outcome.RETRY, 500, "x", later, later)
    assert (await rows(db))[0]["state"] == "sent"


async def test_record_retry_reschedules(db: Database) -> None:
    await add_activity(db, [("https://a.example/inbox", None)])
    (row,) = await deliveries.claim_due(db, T0, 60, 10)
    retry_at = T0 + timedelta(seconds=30)
    assert await deliveries.record(db, row.id, Outcome.RETRY, 503, "busy", retry_at, T0)
    (stored,) = await rows(db)
    assert stored["state"] == "pending" and stored["lease_until"] is None
    assert (stored["attempts"], stored["last_status"], stored["last_error"]) == (1, 503, "busy")
    assert stored["next_attempt_at"] == "2026-03-01T12:00:30Z"
    assert await deliveries.claim_due(db, T0 + timedelta(seconds=29), 60, 10) == []
    (again,) = await deliveries.claim_due(db, retry_at, 60, 10)
    assert again.attempts == 1


async def test_record_give_up_and_error_truncation(db: Database) -> None:
    await add_activity(db, [("https://a.example/inbox", None)])
    (row,) = await deliveries.claim_due(db, T0, 60, 10)
    assert await deliveries.record(db, row.id, Outcome.GIVE_UP, 403, "x" * 5000, None, T0)
    (stored,) = await rows(db)
    assert stored["state"] == "dead"
    assert len(str(stored["last_error"])) == deliveries.MAX_ERROR_CHARS


async def test_record_retry_needs_a_time(db: Database) -> None:
    await add_activity(db, [("https://a.example/inbox", None)])
    (row,) = await deliveries.claim_due(db, T0, 60, 10)
    with pytest.raises(ValueError):
        await deliveries.record(db, row.id, Outcome.RETRY, 500, None, None, T0)


# --- summaries ---


async def test_status_for_post_and_counts(db: Database) -> None:
    await add_activity(
        db,
        [
            ("https://a.example/inbox", None),
            ("https://b.example/users/one/inbox", "https://b.example/users/one"),
            ("https://b.example/users/two/inbox", "https://b.example/users/two"),
            ("https://c.example/inbox", None),
        ],
    )
    update_id = CREATE_ID.replace("/activity", "#updates/1772366400")
    await add_activity(
        db,
        [("https://a.example/inbox", None)],
        activity_id=update_id,
        type_="Update",
        json_text="{}",
        now=T0 + timedelta(minutes=5),
    )
    await add_activity(db, [("https://z.example/inbox", None)], activity_id="other", post_id="0002")
    claimed = {(c.activity_id, c.inbox): c for c in await deliveries.claim_due(db, T0, 60, 10)}
    t1 = T0 + timedelta(seconds=10)

    async def rec(activity_id: str, inbox: str, outcome: Outcome, status: int, err: str | None):
        row = claimed[(activity_id, inbox)]
        nxt = t1 + timedelta(minutes=1) if outcome is Outcome.RETRY else None
        assert await deliveries.record(db, row.id, outcome, status, err, nxt, t1)

    await rec(CREATE_ID, "https://a.example/inbox", Outcome.SENT, 202, None)
    await rec(CREATE_ID, "https://b.example/users/one/inbox", Outcome.SENT, 202, None)
    await rec(CREATE_ID, "https://b.example/users/two/inbox", Outcome.RETRY, 503, "busy")
    await rec(CREATE_ID, "https://c.example/inbox", Outcome.GIVE_UP, 403, "blocked")

    summary = await deliveries.status_for_post(db, "0001")
    assert [(s.activity_type, s.host, s.state, s.inboxes) for s in summary] == [
        ("Create", "a.example", "sent", 1),
        ("Create", "b.example", "pending", 2),
        ("Create", "c.example", "dead", 1),
        ("Update", "a.example", "pending", 1),
    ]
    b = summary[1]
    assert (b.attempts, b.last_status, b.last_error, b.updated_at) == (1, 503, "busy", t1)
    assert summary[2].last_error == "blocked"
    assert summary[3].attempts == 0 and summary[3].last_status is None
    assert await deliveries.status_for_post(db, "9999") == []

    assert await deliveries.counts(db) == {"pending": 3, "sent": 2, "dead": 1}


async def test_counts_of_an_empty_queue(db: Database) -> None:
    assert await deliveries.counts(db) == {"pending": 0, "sent": 0, "dead": 0}
