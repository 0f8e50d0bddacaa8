"""Peers that misbehave during one fan-out: down, slow, 5xx, 429 with Retry-After, 410, 404.

The app's real delivery worker and its SSRF-guarded client deliver one activity to followers on
loopback sinks (tests/federation/sink.py, child processes), one sink per behaviour. The worker's
clock is injected, so every recorded `next_attempt_at` is checked to the second and the retry
schedule is walked to its three-day end without sleeping. Figures are printed with `-s`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from fedistream.core.timefmt import parse_iso
from fedistream.federation.delivery import DeliveryWorker
from fedistream.federation.delivery_client import DeliveryClient
from fedistream.federation.signing import Signer
from fedistream.services.follows import forget_follower
from fedistream.store import activities, deliveries
from fedistream.store import followers as follower_store
from fedistream.store.db import Database
from tests.federation.peer import rsa_key_pair
from tests.federation.sink import Sink, free_ports, seed_followers

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ACTIVITY_ID = "http://127.0.0.1:9/p/0001/activity"
ACTIVITY_JSON = '{"id": "http://127.0.0.1:9/p/0001/activity", "type": "Create"}'
KEY_ID = "http://127.0.0.1:9/#main-key"
CLIENT_TIMEOUT_S = 0.5  # the slow sink answers after 3 s: every attempt there times out
HEALTHY = 200  # inboxes on the healthy sink (4 ports)
PER_BEHAVIOUR = 3  # inboxes on each misbehaving sink
WAIT_S = 20.0

# name → how its sink starts (None: not at all, the peer is down)
BEHAVIOURS: dict[str, dict[str, Any] | None] = {
    "healthy": {},
    "down": None,
    "slow": {"delay_ms": 3000},
    "500": {"status": 500},
    "503-forever": {"status": 503},
    "429-seconds": {"status": 429, "retry_after": "600"},
    "429-date": {"status": 429, "retry_after": format_datetime(T0 + timedelta(hours=2), True)},
    "429-week": {"status": 429, "retry_after": str(7 * 86400)},
    "410": {"status": 410},
    "404": {"status": 404},
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[dict[str, Sink]]:
    ports = free_ports(4 + len(BEHAVIOURS) - 1)
    made = {"healthy": Sink(tmp_path / "healthy", ports=ports[:4])}
    for n, name in enumerate(b for b in BEHAVIOURS if b != "healthy"):
        made[name] = Sink(tmp_path / name, ports=[ports[4 + n]])
    try:
        for name, sink in made.items():
            mode = BEHAVIOURS[name]
            if mode is not None:
                sink.start(**mode)
        yield made
    finally:
        for sink in made.values():
            sink.stop()


@pytest.fixture
async def queue(tmp_path: Path, sinks: dict[str, Sink]) -> AsyncIterator[Database]:
    """A database whose followers live on the sinks, with one Create queued for all of them."""
    path = tmp_path / "a.sqlite3"
    inboxes = [sinks["healthy"].inbox(n) for n in range(HEALTHY)]
    for name, sink in sinks.items():
        if name != "healthy":
            host = sink.host(0)
            inboxes += [f"http://{host}/users/{name}-{n}/inbox" for n in range(PER_BEHAVIOUR)]
    await asyncio.to_thread(seed_followers, path, inboxes)  # it runs its own event loop
    database = await Database.open(path)
    try:
        async with database.transaction() as conn:
            await activities.insert(conn, ACTIVITY_ID, "Create", None, ACTIVITY_JSON, T0)
            targets = await follower_store.delivery_targets(conn)
            assert await deliveries.enqueue(conn, ACTIVITY_ID, targets, T0) == len(inboxes)
        yield database
    finally:
        await database.close()


async def _rows(db: Database, sink: Sink) -> list[dict[str, Any]]:
    hosts = [f"127.0.0.1:{port}" for port in sink.ports]
    marks = ", ".join("?" * len(hosts))
    rows = await db.fetchall(f"SELECT * FROM deliveries WHERE host IN ({marks}) ORDER BY id", hosts)
    return [dict(r) for r in rows]


async def _wait(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _at(**delta: float) -> str:
    return (T0 + timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_misbehaving_peers_are_handled_per_the_retry_policy(
    queue: Database, sinks: dict[str, Sink]
) -> None:
    db = queue
    clock = Clock()
    private_pem, _ = rsa_key_pair()
    signer = Signer(KEY_ID, private_pem)
    client = DeliveryClient(
        allow_private_networks=True, user_agent="hostile-test", deadline=CLIENT_TIMEOUT_S
    )

    async def gone(actor_id: str) -> None:
        await forget_follower(db, actor_id)

    worker = DeliveryWorker(db, client, signer, now=clock, on_gone=gone, rand=lambda: 0.5)
    try:
        # --- one fan-out, all behaviours at once: the healthy peer is not held up ---------
        started = time.monotonic()
        runner = asyncio.create_task(worker.run())

        async def healthy_done() -> bool:
            return all(r["state"] == "sent" for r in await _rows(db, sinks["healthy"]))

        await _wait(healthy_done, "the healthy sink's 200 deliveries")
        healthy_s = time.monotonic() - started

        async def all_attempted() -> bool:
            rows = await db.fetchall("SELECT attempts FROM deliveries")
            return all(r["attempts"] >= 1 for r in rows)

        await _wait(all_attempted, "a first attempt at every inbox")
        first_round_s = time.monotonic() - started
        await worker.stop()
        runner.cancel()
        print(
            f"\n{HEALTHY} healthy inboxes sent in {healthy_s:.2f} s beside down/slow/5xx/429/"
            f"410/404 peers; every inbox attempted once in {first_round_s:.2f} s"
        )
        assert healthy_s < 10

        expected_first = {
            # name: (state, last_status, next_attempt_at, words in last_error)
            "down": ("pending", None, _at(seconds=30), "retry in 30s"),
            "slow": ("pending", None, _at(seconds=30), "retry in 30s"),
            "500": ("pending", 500, _at(seconds=30), "HTTP 500"),
            "503-forever": ("pending", 503, _at(seconds=30), "HTTP 503"),
            "429-seconds": ("pending", 429, _at(seconds=600), "retry in 10m"),
            "429-date": ("pending", 429, _at(hours=2), "retry in 2h"),
            "429-week": ("pending", 429, _at(hours=24), "retry in 24h"),  # capped at a day
            "410": ("dead", 410, _at(), "gone"),
            "404": ("dead", 404, _at(), "refused (HTTP 404)"),
        }
        for name, (state, status, next_at, words) in expected_first.items():
            for row in await _rows(db, sinks[name]):
                got = (row["state"], row["last_status"], row["attempts"], row["lease_until"])
                assert got == (state, status, 1, None), (name, row)
                assert words in row["last_error"], (name, row["last_error"])
                if state == "pending":
                    assert row["next_attempt_at"] == next_at, (name, row)
        for row in await _rows(db, sinks["slow"]):
            assert "timed out" in row["last_error"].lower() or "timeout" in row["last_error"]
        # 410 from a personal inbox: that follower is gone and is not delivered to again.
        for row in await _rows(db, sinks["410"]):
            assert await follower_store.get_follower(db, row["recipient"]) is None
        for row in await _rows(db, sinks["404"]):
            assert await follower_store.get_follower(db, row["recipient"]) is not None

        # --- the peers recover; each row is retried when its time comes, not before --------
        forever = sinks["503-forever"]
        delays: list[float] = [30.0]  # what each attempt at the 503 sink scheduled next

        async def step(at: datetime) -> None:
            clock.now = at
            before = (await _rows(db, forever))[0]["attempts"]
            await worker.run_once()
            row = (await _rows(db, forever))[0]
            if row["attempts"] > before and row["state"] == "pending":
                delays.append((parse_iso(row["next_attempt_at"]) - at).total_seconds())

        sinks["down"].start()
        for name in ("slow", "500", "429-seconds", "429-date", "429-week"):
            sinks[name].set_mode(status=202)
        schedule = [
            (timedelta(seconds=29), set()),
            (timedelta(seconds=30), {"down", "slow", "500"}),
            (timedelta(seconds=599), set()),
            (timedelta(seconds=600), {"429-seconds"}),
            (timedelta(hours=2), {"429-date"}),
            (timedelta(hours=24), {"429-week"}),
        ]
        recovered: set[str] = set()
        for offset, recovering in schedule:
            await step(T0 + offset)
            recovered |= recovering
            for name in ("down", "slow", "500", "429-seconds", "429-date", "429-week"):
                rows = await _rows(db, sinks[name])
                if name in recovered:
                    assert all(r["state"] == "sent" for r in rows), (offset, name, rows)
                    assert all(r["attempts"] == 2 and r["last_status"] == 202 for r in rows)
                else:
                    assert all(r["state"] == "pending" for r in rows), (offset, name, rows)

        # --- a peer that never recovers: the whole schedule, then give up at three days -----
        for _ in range(40):  # far more steps than the schedule has
            row = (await _rows(db, forever))[0]
            if row["state"] != "pending":
                break
            await step(parse_iso(row["next_attempt_at"]))
        rows = await _rows(db, forever)
        print(f"503 forever: dead after {rows[0]['attempts']} attempts; back-off {delays} s")
        assert all(r["state"] == "dead" for r in rows)
        assert all("gave up after 3d" in r["last_error"] for r in rows)
        assert clock.now == T0 + timedelta(days=3)  # one last try at the deadline, then no more
        assert delays[:10] == [30.0 * 2**n for n in range(10)]  # 30 s doubling …
        assert set(delays[10:-1]) == {6 * 3600.0}  # … capped at six hours, cut at the deadline
        assert rows[0]["attempts"] == len(delays) + 1
        arrived = [r for r in forever.records() if r.activity_id == ACTIVITY_ID]
        assert len(arrived) == PER_BEHAVIOUR * rows[0]["attempts"]
        assert all(r.signed and r.status == 503 for r in arrived)

        # Nothing is left owed, and each healthy or recovered inbox got exactly one copy.
        assert await worker.run_once() == 0
        for name in ("healthy", "down", "500", "429-seconds", "429-date", "429-week"):
            accepted = sinks[name].delivered(ACTIVITY_ID)
            expected = HEALTHY if name == "healthy" else PER_BEHAVIOUR
            assert len(accepted) == expected and set(accepted.values()) == {1}, name
        # A timed-out POST may still have been taken in by the slow peer: at least once.
        assert len(sinks["slow"].delivered(ACTIVITY_ID)) == PER_BEHAVIOUR
    finally:
        await client.aclose()
        signer.close()
