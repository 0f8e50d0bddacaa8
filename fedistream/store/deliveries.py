"""The `deliveries` table: the persistent outgoing queue, one row per (activity, inbox).

Rows are enqueued in the same transaction as the change they announce, claimed by the worker with
a lease (a crashed worker's rows come back when the lease runs out: at-least-once), and recorded
as sent, dead, or pending again with a later `next_attempt_at`. Every function here is one short
transaction; none may be held across a network call. Layer: store.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import aiosqlite

from fedistream.core.retry import GIVE_UP_AFTER, Outcome
from fedistream.core.timefmt import parse_iso, to_iso
from fedistream.store.db import Database

if sqlite3.sqlite_version_info < (3, 35, 0):  # claim_due is one UPDATE … RETURNING statement
    raise RuntimeError(f"fedistream needs SQLite ≥ 3.35 (this Python has {sqlite3.sqlite_version})")

PENDING, SENT, DEAD = "pending", "sent", "dead"
STATES = (PENDING, SENT, DEAD)
MAX_ERROR_CHARS = 500  # enough for an error message or the start of a peer's error body

_STATE_FOR = {Outcome.SENT: SENT, Outcome.RETRY: PENDING, Outcome.GIVE_UP: DEAD}


@dataclass(frozen=True, slots=True)
class Claimed:
    """A leased row, with the activity's stored JSON as the exact bytes to POST."""

    id: int
    activity_id: str
    inbox: str
    host: str
    recipient: str | None  # the actor behind a personal inbox; None for a shared inbox
    attempts: int  # attempts made before this one
    created_at: datetime  # when it was enqueued: the retry policy's clock starts here
    body: bytes


@dataclass(frozen=True, slots=True)
class HostStatus:
    """How one activity fared at one host (several personal inboxes on a host fold into one)."""

    activity_id: str
    activity_type: str
    host: str
    state: str  # pending while any inbox there is pending, else dead if any died, else sent
    inboxes: int
    attempts: int  # the most any inbox there took
    last_status: int | None
    last_error: str | None
    updated_at: datetime


def _iso(when: datetime | str) -> str:
    return when if isinstance(when, str) else to_iso(when)


def inbox_host(inbox: str) -> str:
    """The host an inbox URL lives on, lower-cased, with the port when it is not the default
    (so two test servers on one loopback address count as two hosts). ValueError if not http(s)."""
    parts = urlsplit(inbox)
    hostname = parts.hostname
    if parts.scheme not in ("http", "https") or not hostname:
        raise ValueError(f"not an http(s) inbox URL: {inbox!r}")
    port = parts.port  # raises ValueError for a malformed port
    host = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None and port != (443 if parts.scheme == "https" else 80):
        host += f":{port}"
    return host


async def enqueue(
    conn: aiosqlite.Connection,
    activity_id: str,
    targets: Iterable[tuple[str, str | None]],
    now: datetime | str,
) -> int:
    """Queue `activity_id` for each distinct inbox, due now; returns how many rows were added.

    `targets` are (inbox URL, recipient actor id or None). Call inside the transaction that
    stored the activity. An inbox listed twice with different recipients is a shared inbox, so
    its recipient becomes None (a 410 from it must not remove either follower).
    """
    recipients: dict[str, str | None] = {}
    for inbox, recipient in targets:
        if inbox in recipients and recipients[inbox] != recipient:
            recipients[inbox] = None
        else:
            recipients.setdefault(inbox, recipient)
    if not recipients:
        return 0
    stamp = _iso(now)
    rows = [
        (activity_id, inbox, inbox_host(inbox), recipient, stamp, stamp, stamp)
        for inbox, recipient in recipients.items()
    ]
    before = conn.total_changes
    # OR IGNORE: UNIQUE(activity_id, inbox) makes a repeated enqueue (a retried publish) a no-op.
    await conn.executemany(
        "INSERT OR IGNORE INTO deliveries (activity_id, inbox, host, recipient, state, attempts, "
        "next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
        rows,
    )
    return conn.total_changes - before


_RETURNING = "RETURNING id, activity_id, inbox, host, recipient, attempts, created_at"
_DUE = (
    "state = 'pending' AND next_attempt_at <= :now AND (lease_until IS NULL OR lease_until < :now)"
)

_CLAIM = f"""
UPDATE deliveries SET lease_until = :lease WHERE id IN (
    SELECT id FROM deliveries WHERE {_DUE}
    ORDER BY next_attempt_at, id LIMIT :limit
) {_RETURNING}
"""

# Per-host fairness: number the due rows of each host and take at most `room` of each, where a
# host's room is what the caller says it can still take (hosts it is already busy with) or
# `per_host`. One host with a thousand due rows then cannot crowd the rest out of a claim.
# The room list is joined once (not looked up per row), and hosts with no room are dropped
# before the rows are numbered: 2-4x faster with 2,000 due rows (bench/README.md).
_CLAIM_FAIR = f"""
WITH room(host, free) AS MATERIALIZED (SELECT key, value FROM json_each(:room))
UPDATE deliveries SET lease_until = :lease WHERE id IN (
    SELECT id FROM (
        SELECT d.id, d.next_attempt_at, coalesce(room.free, :per_host) AS free,
               ROW_NUMBER() OVER (PARTITION BY d.host ORDER BY d.next_attempt_at, d.id) AS n
        FROM deliveries AS d LEFT JOIN room ON room.host = d.host
        WHERE d.state = 'pending' AND d.next_attempt_at <= :now
          AND (d.lease_until IS NULL OR d.lease_until < :now)
          AND coalesce(room.free, 1) > 0
    ) WHERE n <= free ORDER BY next_attempt_at, id LIMIT :limit
) {_RETURNING}
"""


async def claim_due(
    db: Database,
    now: datetime,
    lease_seconds: float,
    limit: int,
    *,
    per_host: int | None = None,
    host_room: Mapping[str, int] | None = None,
) -> list[Claimed]:
    """Lease up to `limit` due rows (oldest due first) in one write statement.

    Two claimers never get the same row: the UPDATE runs under the write lock, and a leased row
    is not due again until `now + lease_seconds` has passed. With `per_host`, at most that many
    rows per host are taken, or `host_room[host]` for the hosts listed there (0 skips a host).
    Runs in the writer's thread (one hop); each activity's JSON is read once, not per row.
    """
    if limit <= 0:
        return []
    params: dict[str, object] = {
        "now": to_iso(now),
        "lease": to_iso(now + timedelta(seconds=lease_seconds)),
        "limit": limit,
    }
    if per_host is None:
        sql = _CLAIM
    else:
        sql = _CLAIM_FAIR
        params["per_host"] = per_host
        params["room"] = json.dumps(dict(host_room or {}))

    async def claim(conn: aiosqlite.Connection) -> tuple[list[sqlite3.Row], dict[str, bytes]]:
        cursor = await conn.execute(sql, params)
        rows = list(await cursor.fetchall())
        bodies: dict[str, bytes] = {}
        for activity_id in {row["activity_id"] for row in rows}:
            found = await conn.execute("SELECT json FROM activities WHERE id = ?", (activity_id,))
            stored = await found.fetchone()
            if stored is not None:
                bodies[activity_id] = stored["json"].encode("utf-8")
        return rows, bodies

    rows, bodies = await db.transaction_in_thread(claim)
    claimed = [
        Claimed(
            id=row["id"],
            activity_id=row["activity_id"],
            inbox=row["inbox"],
            host=row["host"],
            recipient=row["recipient"],
            attempts=row["attempts"],
            created_at=parse_iso(row["created_at"]),
            body=bodies[row["activity_id"]],
        )
        for row in rows
    ]
    claimed.sort(key=lambda c: c.id)  # RETURNING order is unspecified
    return claimed


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt's result, as `record_many` writes it."""

    delivery_id: int
    outcome: Outcome
    status: int | None
    error: str | None
    next_attempt_at: datetime | None  # required for RETRY
    at: datetime


async def record(
    db: Database,
    delivery_id: int,
    outcome: Outcome,
    status: int | None,
    error: str | None,
    next_attempt_at: datetime | None,
    now: datetime,
) -> bool:
    """Write one attempt's result and release the lease; False if the row was no longer pending
    (another worker finished it after this one's lease ran out: the first final word stands)."""
    attempt = Attempt(delivery_id, outcome, status, error, next_attempt_at, now)
    return await record_many(db, [attempt]) > 0


async def record_many(db: Database, attempts: Sequence[Attempt]) -> int:
    """`record` for several rows in one transaction (the worker's group commit: one write per
    burst of finished deliveries instead of one per delivery). Returns the rows changed."""
    params = []
    for a in attempts:
        state = _STATE_FOR[Outcome(a.outcome)]
        if state == PENDING and a.next_attempt_at is None:
            raise ValueError("a retried delivery needs next_attempt_at")
        params.append(
            (
                state,
                a.status,
                a.error[:MAX_ERROR_CHARS] if a.error else None,
                to_iso(a.next_attempt_at) if a.next_attempt_at is not None else None,
                to_iso(a.at),
                a.delivery_id,
            )
        )
    if not params:
        return 0

    async def record(conn: aiosqlite.Connection) -> int:
        before = conn.total_changes
        await conn.executemany(
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, lease_until = NULL, "
            "last_status = ?, last_error = ?, next_attempt_at = coalesce(?, next_attempt_at), "
            "updated_at = ? WHERE id = ? AND state = 'pending'",
            params,
        )
        return conn.total_changes - before

    return await db.transaction_in_thread(record)  # one thread hop for the whole burst


_STATE_RANK = {PENDING: 0, DEAD: 1, SENT: 2}  # which state speaks for a host: the least done


async def status_for_post(db: Database, post_id: str) -> list[HostStatus]:
    """Per activity about this thought (Create, Updates, Delete), how each host fared."""
    rows = await db.fetchall(
        "SELECT a.id AS activity_id, a.type AS activity_type, d.host, d.state, d.attempts, "
        "d.last_status, d.last_error, d.updated_at "
        "FROM activities a JOIN deliveries d ON d.activity_id = a.id "
        "WHERE a.post_id = ? ORDER BY a.created_at, a.id, d.host, d.updated_at",
        (post_id,),
    )
    groups: dict[tuple[str, str], list[sqlite3.Row]] = {}
    for row in rows:
        groups.setdefault((row["activity_id"], row["host"]), []).append(row)
    summary: list[HostStatus] = []
    for (activity_id, host), members in groups.items():
        state = min((m["state"] for m in members), key=lambda s: _STATE_RANK.get(s, 0))
        # The newest row in that state explains it (e.g. the latest error of a pending inbox).
        speaker = max((m for m in members if m["state"] == state), key=lambda m: m["updated_at"])
        summary.append(
            HostStatus(
                activity_id=activity_id,
                activity_type=members[0]["activity_type"],
                host=host,
                state=state,
                inboxes=len(members),
                attempts=max(m["attempts"] for m in members),
                last_status=speaker["last_status"],
                last_error=speaker["last_error"],
                updated_at=parse_iso(max(m["updated_at"] for m in members)),
            )
        )
    return summary


async def counts(db: Database) -> dict[str, int]:
    """Rows per state, every state present (0 when none): for the admin dashboard."""
    rows = await db.fetchall("SELECT state, count(*) AS n FROM deliveries GROUP BY state")
    result = dict.fromkeys(STATES, 0)
    for row in rows:
        result[row["state"]] = row["n"]
    return result


# --- per-instance health (/admin/federation) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceHealth:
    """How deliveries to one host are going, over every row ever queued for it."""

    host: str
    sent: int
    pending: int
    dead: int
    last_success: datetime | None
    last_failure: datetime | None  # the latest attempt that did not deliver (or a give-up)
    next_attempt_at: datetime | None  # the earliest pending row's turn
    backoff_attempts: int  # the most attempts a pending row has made: how deep in back-off
    last_status: int | None  # of the latest failure
    last_error: str | None

    @property
    def state(self) -> str:
        """`retrying` (rows in back-off), `failing` (the latest word was a failure), or `ok`."""
        if self.pending and self.backoff_attempts:
            return "retrying"
        if self.last_failure and (not self.last_success or self.last_failure > self.last_success):
            return "failing"
        return "ok"


# One grouped walk of deliveries_host (host, state, updated_at, attempts, next_attempt_at): no
# table access, no sort. The latest failure's status and error come from one row per host,
# found by an exact seek on that same index (host, state, updated_at).
_HEALTH = """
WITH g AS (
    SELECT host,
        sum(state = 'sent') AS sent,
        sum(state = 'pending') AS pending,
        sum(state = 'dead') AS dead,
        max(CASE WHEN state = 'sent' THEN updated_at END) AS last_success,
        max(CASE WHEN state = 'dead' OR (state = 'pending' AND attempts > 0)
            THEN updated_at END) AS last_failure,
        min(CASE WHEN state = 'pending' THEN next_attempt_at END) AS next_attempt_at,
        coalesce(max(CASE WHEN state = 'pending' THEN attempts END), 0) AS backoff_attempts
    FROM deliveries GROUP BY host
)
SELECT g.*, e.last_status, e.last_error FROM g
LEFT JOIN deliveries e ON e.id = (
    SELECT f.id FROM deliveries f
    WHERE f.host = g.host AND f.state IN ('pending', 'dead') AND f.updated_at = g.last_failure
      AND (f.state = 'dead' OR f.attempts > 0)
    LIMIT 1
)
ORDER BY (g.last_failure > coalesce(g.last_success, '')) DESC, g.pending DESC, g.host
LIMIT ?
"""


def _when(value: str | None) -> datetime | None:
    return parse_iso(value) if value else None


async def instance_health(db: Database, limit: int = 1000) -> list[InstanceHealth]:
    """Every host we deliver to (troubled ones first, then by name), at most `limit`."""
    rows = await db.fetchall(_HEALTH, (limit,))
    return [
        InstanceHealth(
            host=row["host"],
            sent=row["sent"],
            pending=row["pending"],
            dead=row["dead"],
            last_success=_when(row["last_success"]),
            last_failure=_when(row["last_failure"]),
            next_attempt_at=_when(row["next_attempt_at"]),
            backoff_attempts=row["backoff_attempts"],
            last_status=row["last_status"],
            last_error=row["last_error"],
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class Retried:
    rescheduled: int  # pending rows made due now
    revived: int  # dead rows made pending again


# Rows store.blocks gave up on carry this error; a retry must never undo a block.
_BLOCKED_ERROR = "recipient blocked"


async def retry_host_now(
    db: Database, host: str, now: datetime, *, revive_dead: bool = False
) -> Retried:
    """Make `host`'s pending rows due at `now` (the worker then takes them at its per-host
    pace); with `revive_dead`, also give another chance to rows that died less than the retry
    policy's give-up age ago (older ones would die again at once), except blocked recipients.
    Attempt counts and `updated_at` are kept: they are the history the health page shows."""
    stamp = to_iso(now)
    async with db.transaction() as conn:
        cursor = await conn.execute(
            "UPDATE deliveries SET next_attempt_at = ? "
            "WHERE host = ? AND state = 'pending' AND next_attempt_at > ?",
            (stamp, host, stamp),
        )
        rescheduled = cursor.rowcount
        revived = 0
        if revive_dead:
            cursor = await conn.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, lease_until = NULL "
                "WHERE host = ? AND state = 'dead' AND created_at > ? "
                "AND coalesce(last_error, '') <> ?",
                (stamp, host, to_iso(now - GIVE_UP_AFTER), _BLOCKED_ERROR),
            )
            revived = cursor.rowcount
    return Retried(rescheduled=rescheduled, revived=revived)


async def forget_finished(db: Database, before: datetime, limit: int) -> int:
    """Delete up to `limit` sent or given-up rows last updated before `before` (oldest first);
    returns how many. Pending rows are never touched: they are still owed to someone."""
    return await db.execute(
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries "
        "WHERE state != 'pending' AND updated_at < ? ORDER BY updated_at LIMIT ?)",
        (to_iso(before), limit),
    )
