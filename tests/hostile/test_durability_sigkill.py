"""A sender SIGKILLed over and over in the middle of fan-outs to 500 inboxes loses nothing.

One real `fedistream serve` process works on one data directory through 20 kill/restart cycles;
500 followers' inboxes live on a loopback sink (tests/federation/sink.py) spread over 10 ports.
Each cycle starts the server, publishes a new thought through the owner UI whenever fewer than
500 deliveries are owed (so several thoughts are in flight at once), and SIGKILLs the process at
a random moment: after a random number of answers from the sink, or after a random delay. After
the last cycle a final run drains the queue, and every (activity, inbox) pair is counted at the
sink: losses must be 0; duplicates are reported, and each must come from a row the killed
process held with its result unrecorded.

What is simulated, and why: a killed process's leases run for 120 s, so after each kill the test
sets them to have run out (the time passing) instead of waiting. Everything else is real: the
process, the SIGKILL, the HTTP, the SQLite file. Set FEDISTREAM_HOSTILE_SEED to replay a run.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fedistream.core.timefmt import to_iso
from tests.federation.sink import Sink, free_ports, seed_followers
from tests.live import LiveServer, OwnerBrowser, running_server, wait_until

FEDERATION_ENV = {"FEDISTREAM_ALLOW_PRIVATE_NETWORKS": "true"}
DB_NAME = "fedistream.sqlite3"
FOLLOWERS = 500
SINK_HOSTS = 10  # per_host 4 × 10 hosts: the worker's 32 slots can all be busy
SINK_DELAY_MS = 20  # each answer takes a little while, as a real inbox's does
CYCLES = 20
MAX_KILL_AFTER_ANSWERS = 400
WAIT_S = 15.0  # every wait for the sink or the database gives up after this long

Pair = tuple[str, str]  # (activity id, inbox URL)


@dataclass(frozen=True, slots=True)
class Cycle:
    """What one kill left behind."""

    trigger: str
    owed_at_start: int  # pending rows when the server started (after any publish)
    answered: int  # requests the sink answered during this run
    held: int  # rows the dead process had claimed and not recorded
    held_and_arrived: int  # of those, how many the sink had already accepted: one duplicate each
    recorded_sent: int  # rows recorded as sent during this run


def _connect(data_dir: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(data_dir / DB_NAME, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def _query(data_dir: Path, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
    conn = _connect(data_dir)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _write(data_dir: Path, sql: str, params: tuple[object, ...] = ()) -> int:
    conn = _connect(data_dir)
    try:
        with conn:
            return conn.execute(sql, params).rowcount
    finally:
        conn.close()


def _owed(data_dir: Path) -> int:
    return int(_query(data_dir, "SELECT count(*) FROM deliveries WHERE state = 'pending'")[0][0])


def _sent_pairs(data_dir: Path) -> set[Pair]:
    rows = _query(data_dir, "SELECT activity_id, inbox FROM deliveries WHERE state = 'sent'")
    return {(r["activity_id"], r["inbox"]) for r in rows}


def _arrived(sink: Sink) -> Counter[Pair]:
    """Complete activities each inbox accepted. A body cut short by the kill is logged by the
    sink with the activity id "-" (it could not parse it): that one was not delivered."""
    return Counter(
        (r.activity_id, r.inbox) for r in sink.records() if r.delivered and r.activity_id != "-"
    )


def _publish(server: LiveServer, text: str) -> str:
    owner = OwnerBrowser(server)
    try:
        owner.log_in()
        post_id = owner.publish(text)
    finally:
        owner.close()
    return f"{server.base_url}/p/{post_id}/activity"


def _wait_for_answers(sink: Sink, target: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while sink.count() < target and time.monotonic() < deadline:
        time.sleep(0.002)


def test_twenty_sigkills_mid_fan_out_lose_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("FEDISTREAM_HOSTILE_SEED") or random.randrange(1 << 32))
    rng = random.Random(seed)
    *sink_ports, port = free_ports(SINK_HOSTS + 1)  # the restarts keep A's base URL (its ids)
    sink = Sink(tmp_path / "sink", ports=sink_ports)
    inboxes = [sink.inbox(n) for n in range(FOLLOWERS)]
    data_dir = tmp_path / "a" / "data"
    seed_followers(data_dir / DB_NAME, inboxes)
    activities: list[str] = []
    cycles: list[Cycle] = []
    may_repeat: Counter[Pair] = Counter()  # pairs that may arrive once more per kill
    started = time.monotonic()
    sink.start(delay_ms=SINK_DELAY_MS)
    try:
        for number in range(CYCLES):
            run_dir = tmp_path / f"run-{number:02d}"
            run_dir.mkdir()
            answered_before = sink.count()
            sent_before = _sent_pairs(data_dir)
            with running_server(
                run_dir, data_dir=data_dir, port=port, extra_env=FEDERATION_ENV
            ) as a:
                if _owed(data_dir) < FOLLOWERS:
                    text = f"Thought {len(activities) + 1}, published in cycle {number}."
                    activities.append(_publish(a, text))
                owed = _owed(data_dir)
                if rng.random() < 0.2:
                    delay = rng.uniform(0.0, 0.8)
                    trigger = f"after {delay:.2f} s"
                    time.sleep(delay)
                else:
                    answers = rng.randint(1, min(owed, MAX_KILL_AFTER_ANSWERS))
                    trigger = f"after {answers} answers"
                    _wait_for_answers(sink, answered_before + answers)
                a.process.kill()  # SIGKILL: no shutdown, no grace, no last transaction
                a.process.wait(timeout=5)
            time.sleep(3 * SINK_DELAY_MS / 1000)  # requests the sink was still answering land

            conn = _connect(data_dir)
            try:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            finally:
                conn.close()
            held = {
                (r["activity_id"], r["inbox"])
                for r in _query(
                    data_dir,
                    "SELECT activity_id, inbox FROM deliveries "
                    "WHERE state = 'pending' AND lease_until IS NOT NULL",
                )
            }
            arrived = _arrived(sink)
            sent_now = _sent_pairs(data_dir)
            # Recorded as sent means the inbox accepted it: the record follows the answer.
            assert sent_now <= set(arrived), "a row is recorded sent that never arrived"
            held_and_arrived = {pair for pair in held if arrived[pair]}
            may_repeat.update(held_and_arrived)
            cycles.append(
                Cycle(
                    trigger=trigger,
                    owed_at_start=owed,
                    answered=sink.count() - answered_before,
                    held=len(held),
                    held_and_arrived=len(held_and_arrived),
                    recorded_sent=len(sent_now - sent_before),
                )
            )
            # The dead process's leases would run out after 120 s: simulate that time passing.
            _write(
                data_dir,
                "UPDATE deliveries SET lease_until = ? "
                "WHERE state = 'pending' AND lease_until IS NOT NULL",
                (to_iso(datetime.now(UTC) - timedelta(seconds=1)),),
            )

        owed_pairs = {(activity, inbox) for activity in activities for inbox in inboxes}
        final_dir = tmp_path / "run-final"
        final_dir.mkdir()
        with running_server(final_dir, data_dir=data_dir, port=port, extra_env=FEDERATION_ENV):
            wait_until(
                lambda: set(_arrived(sink)) >= owed_pairs,
                "every owed (thought, inbox) pair to arrive after the last restart",
                timeout=60,
            )
            wait_until(lambda: _owed(data_dir) == 0, "every row recorded as sent", timeout=15)
        time.sleep(3 * SINK_DELAY_MS / 1000)
    finally:
        sink.stop()

    arrived = _arrived(sink)
    losses = sum(1 for pair in owed_pairs if arrived[pair] == 0)
    duplicates = sum(times - 1 for times in arrived.values() if times > 1)
    cut_short = sum(1 for r in sink.records() if r.activity_id == "-")
    _report(seed, cycles, len(activities), len(owed_pairs), losses, duplicates, started)
    print(f"  bodies cut short by a kill (not delivered, sent again): {cut_short}")

    assert len(cycles) >= 20
    assert losses == 0
    assert set(arrived) == owed_pairs  # and nothing went anywhere else
    assert {r.inbox for r in sink.records()} <= set(inboxes)
    assert {r["state"] for r in _query(data_dir, "SELECT DISTINCT state FROM deliveries")} == {
        "sent"
    }
    # At-least-once, and no worse: an extra copy only for a row a killed process had sent
    # without recording it, at most once per such kill.
    for pair, times in arrived.items():
        assert times <= 1 + may_repeat[pair], (pair, times, may_repeat[pair])
    assert duplicates <= sum(c.held_and_arrived for c in cycles)
    # The kills landed mid-fan-out: work was owed and the sink was answering in most cycles.
    mid_fan_out = sum(1 for c in cycles if c.answered > 0 and c.owed_at_start > c.recorded_sent)
    assert mid_fan_out >= CYCLES * 3 // 4, cycles
    assert len(activities) >= 3  # several thoughts were in flight across the kills


def _report(
    seed: int,
    cycles: list[Cycle],
    thoughts: int,
    owed: int,
    losses: int,
    duplicates: int,
    started: float,
) -> None:
    print(f"\nseed={seed}: {len(cycles)} SIGKILL cycles, {thoughts} thoughts × {FOLLOWERS} inboxes")
    for n, c in enumerate(cycles):
        print(
            f"  cycle {n:2d}: kill {c.trigger:>17}; owed {c.owed_at_start:4d}, sink answered "
            f"{c.answered:3d}, recorded sent {c.recorded_sent:3d}, held {c.held:2d} "
            f"(already arrived: {c.held_and_arrived:2d})"
        )
    print(
        f"  total: {owed} owed deliveries, losses={losses}, duplicates={duplicates} "
        f"({duplicates / owed:.2%}), {time.monotonic() - started:.0f} s"
    )
