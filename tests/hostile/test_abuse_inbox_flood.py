"""A flood of signed inbox requests from one host cannot starve the public page or the worker.

A real `fedistream serve` process has 500 followers on a loopback sink (tests/federation/sink.py,
10 ports). Twice it publishes a thought while a probe thread reads the public page over and over:
once in calm, once while a child process floods /inbox with 2,000 validly signed activities
(Create Notes mentioning the owner: each is verified, stored and applied) from 8 concurrent
clients, bounded to 20 s. The figures — page latency, page throughput, fan-out time, what the
flood got — are printed with `-s` and bounded by the asserts.

The flooder's actor is written into the server's actor cache before it starts (a peer we have
talked to before: the costly case, every request reaches verification and storage).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sqlite3
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fedistream.core import httpsig
from fedistream.core.timefmt import to_iso
from tests.federation.sink import Sink, free_ports, seed_followers
from tests.live import LiveServer, OwnerBrowser, running_server

FEDERATION_ENV = {"FEDISTREAM_ALLOW_PRIVATE_NETWORKS": "true"}
DB_NAME = "fedistream.sqlite3"
FOLLOWERS = 500
SINK_HOSTS = 10
FLOOD_REQUESTS = 2000
FLOOD_CLIENTS = 8
FLOOD_LIMIT_S = 20.0
FLOODER = "http://127.0.0.1:9/users/flooder"  # nothing listens there: its key is cached
FAN_OUT_LIMIT_S = 60.0


# --- the flood (runs in a child process, so its CPU is not the probe's) --------------------


@dataclass(slots=True)
class FloodResult:
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    seconds: float = 0.0
    backlog: int = 0  # inbox rows still to apply when the flood ended
    drain_s: float = 0.0  # how long applying them took
    states: dict[str, int] = field(default_factory=dict)  # inbox rows by state at the end


def _note(base_url: str, n: int) -> dict[str, Any]:
    note_id = f"{FLOODER}/notes/{n}"
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": note_id + "/activity",
        "type": "Create",
        "actor": FLOODER,
        "to": [base_url + "/"],
        "object": {
            "id": note_id,
            "type": "Note",
            "attributedTo": FLOODER,
            "to": [base_url + "/"],
            "content": f"<p>@owner flood {n}</p>",
            "published": "2026-01-01T00:00:00Z",
            "tag": [{"type": "Mention", "href": base_url + "/"}],
        },
    }


def _flood_process(
    base_url: str, private_pem: str, ready: Any, go: Any, results: Any, count: int
) -> None:
    """Sign `count` requests, say ready, wait for go, send them FLOOD_CLIENTS at a time."""
    url = base_url + "/inbox"
    key = httpsig.load_private_key(private_pem)  # once: parsing a PEM costs ~30 ms
    requests = []
    for n in range(count):
        body = json.dumps(_note(base_url, n)).encode()
        headers = httpsig.sign_request(
            "POST", url, {"content-type": "application/activity+json"}, body,
            key, FLOODER + "#main-key", datetime.now(UTC),
        )  # fmt: skip
        requests.append((body, headers))
    ready.set()
    go.wait(30)

    async def flood() -> FloodResult:
        result = FloodResult()
        started = time.monotonic()
        deadline = started + FLOOD_LIMIT_S
        queue = iter(requests)
        limits = httpx.Limits(max_connections=FLOOD_CLIENTS)
        async with httpx.AsyncClient(timeout=10, trust_env=False, limits=limits) as http:

            async def client() -> None:
                for body, headers in queue:
                    if time.monotonic() > deadline:
                        return
                    try:
                        status = (await http.post(url, content=body, headers=headers)).status_code
                        result.statuses[status] = result.statuses.get(status, 0) + 1
                    except httpx.HTTPError:
                        result.errors += 1

            await asyncio.gather(*(client() for _ in range(FLOOD_CLIENTS)))
        result.seconds = time.monotonic() - started
        return result

    results.put(asyncio.run(flood()))


# --- the probe ------------------------------------------------------------------------------


class Probe(threading.Thread):
    """Reads the public page back to back until stopped; keeps (latency, status) per read."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, int]] = []
        self.stopping = threading.Event()
        self.started_at = self.stopped_at = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        with httpx.Client(timeout=10, trust_env=False) as http:
            while not self.stopping.is_set() and time.monotonic() - self.started_at < 90:
                begun = time.monotonic()
                try:
                    status = http.get(self.url).status_code
                except httpx.HTTPError:
                    status = 0
                self.samples.append((time.monotonic() - begun, status))
        self.stopped_at = time.monotonic()

    def stop(self) -> None:
        self.stopping.set()
        self.join(15)

    def figures(self) -> dict[str, float]:
        latencies = sorted(s for s, _ in self.samples)
        span = max(self.stopped_at - self.started_at, 1e-9)
        return {
            "reads": len(latencies),
            "per_s": len(latencies) / span,
            "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
            "max_ms": 1000 * latencies[-1],
            "not_200": sum(1 for _, status in self.samples if status != 200),
        }


# --- the measurement ------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    fan_out_s: float
    page: dict[str, float]
    flood: FloodResult | None = None


def _seed_flooder(db_path: Path, public_pem: str) -> None:
    document = {"id": FLOODER, "type": "Person", "inbox": FLOODER + "/inbox"}
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO actors (id, type, inbox, shared_inbox, key_id, public_key_pem, "
            "username, domain, name, url, icon_url, summary, json, fetched_at) "
            "VALUES (?, 'Person', ?, NULL, ?, ?, 'flooder', '127.0.0.1:9', 'Flooder', ?, NULL, "
            "NULL, ?, ?)",
            (FLOODER, FLOODER + "/inbox", FLOODER + "#main-key", public_pem, FLOODER,
             json.dumps(document), to_iso(datetime.now(UTC))),
        )  # fmt: skip
    conn.close()


def _inbox_states(data_dir: Path) -> dict[str, int]:
    conn = sqlite3.connect(data_dir / DB_NAME, timeout=10)
    try:
        return dict(conn.execute("SELECT state, count(*) FROM inbox GROUP BY state").fetchall())
    finally:
        conn.close()


def _measure(
    server: LiveServer, sink: Sink, owner: OwnerBrowser, label: str, flood_key: str | None
) -> Run:
    context = multiprocessing.get_context("spawn")
    flooder = None
    if flood_key is not None:
        ready, go, results = context.Event(), context.Event(), context.Queue()
        flooder = context.Process(
            target=_flood_process,
            args=(server.base_url, flood_key, ready, go, results, FLOOD_REQUESTS),
            daemon=True,
        )
        flooder.start()
        assert ready.wait(60), "the flood process did not get ready"
    probe = Probe(server.url("/"))
    probe.start()
    try:
        time.sleep(0.5)  # the probe's calm (or flooded) state before the thought
        if flooder is not None:
            go.set()
            time.sleep(0.5)  # the flood is in full swing when the thought goes out
        started = time.monotonic()
        post_id = owner.publish(f"{label}: one thought for five hundred followers.")
        activity = f"{server.base_url}/p/{post_id}/activity"
        while len(sink.delivered(activity)) < FOLLOWERS:
            assert time.monotonic() - started < FAN_OUT_LIMIT_S, f"{label}: fan-out starved"
            time.sleep(0.05)
        fan_out_s = time.monotonic() - started
        flood = None
        if flooder is not None:
            flood = results.get(timeout=FLOOD_LIMIT_S + 30)
            flooder.join(10)
            flood.backlog = _inbox_states(server.data_dir).get("pending", 0)
            flood_ended = time.monotonic()
            while _inbox_states(server.data_dir).get("pending", 0):
                assert time.monotonic() - flood_ended < FAN_OUT_LIMIT_S, "inbox never drained"
                time.sleep(0.1)
            flood.drain_s = time.monotonic() - flood_ended
            flood.states = _inbox_states(server.data_dir)
        else:
            time.sleep(1.0)
    finally:
        probe.stop()
        if flooder is not None and flooder.is_alive():
            flooder.kill()
    return Run(fan_out_s, probe.figures(), flood)


def _print(label: str, run: Run) -> None:
    page = run.page
    print(
        f"  {label:>6}: fan-out to {FOLLOWERS} in {run.fan_out_s:5.2f} s; public page "
        f"{page['per_s']:5.1f} reads/s, p50 {page['p50_ms']:6.1f} ms, p95 {page['p95_ms']:6.1f} "
        f"ms, max {page['max_ms']:6.1f} ms, not 200: {page['not_200']:.0f}"
    )
    if run.flood is not None:
        sent = sum(run.flood.statuses.values())
        statuses = dict(sorted(run.flood.statuses.items()))
        print(
            f"          flood: {sent} answered in {run.flood.seconds:.1f} s "
            f"({sent / run.flood.seconds:.0f}/s), statuses {statuses}, errors {run.flood.errors}"
        )
        print(
            f"          inbox: {run.flood.backlog} rows still to apply when it ended, applied "
            f"{run.flood.drain_s:.1f} s later; rows by state {run.flood.states}"
        )


def test_an_inbox_flood_does_not_starve_the_page_or_the_worker(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    *sink_ports, port = free_ports(SINK_HOSTS + 1)
    sink = Sink(tmp_path / "sink", ports=sink_ports)
    data_dir = tmp_path / "a" / "data"
    seed_followers(data_dir / DB_NAME, [sink.inbox(n) for n in range(FOLLOWERS)])
    _seed_flooder(data_dir / DB_NAME, public_pem)
    sink.start()
    try:
        with running_server(
            tmp_path / "a", data_dir=data_dir, port=port, extra_env=FEDERATION_ENV
        ) as a:
            owner = OwnerBrowser(a)
            try:
                owner.log_in()
                calm = _measure(a, sink, owner, "calm", None)
                flooded = _measure(a, sink, owner, "flood", private_pem)
            finally:
                owner.close()
            output = a.output()
    finally:
        sink.stop()

    print("\ninbox flood from one host:")
    _print("calm", calm)
    _print("flood", flooded)
    assert flooded.flood is not None
    assert calm.page["not_200"] == 0 and flooded.page["not_200"] == 0
    assert 500 not in flooded.flood.statuses, flooded.flood.statuses
    assert "Traceback" not in output
    # Every accepted activity was applied (none failed), soon after the flood.
    assert sum(flooded.flood.states.values()) == flooded.flood.statuses[202]
    assert "failed" not in flooded.flood.states and "pending" not in flooded.flood.states
    # Not starved: the page keeps answering promptly and the fan-out still completes.
    assert flooded.page["p95_ms"] < 1000
    assert flooded.page["per_s"] >= 5
    assert flooded.fan_out_s < 30
