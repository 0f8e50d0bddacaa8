"""What-if runs (`python bench/run.py --what-if`): the DeliveryWorker in this process, with
settings it already accepts, against the same many-host sink — to size a proposed change
before anyone makes it. Not a substitute for the real-server numbers in fanout.py.

Each run queues one activity for N inboxes (one host each) in a fresh database, starts
`DeliveryWorker.run()` and times it until every row is sent. Varied: the worker's
max_concurrency (with the delivery client's connection limit above it) and the sink's delay.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.common import Metric, event_loop_runner
from bench.fanout import SLOW_MS
from fedistream.federation.delivery import MAX_CONCURRENCY, DeliveryWorker
from fedistream.federation.delivery_client import DeliveryClient
from fedistream.federation.signing import Signer
from fedistream.store import activities, deliveries
from fedistream.store.db import Database
from tests.federation.sink import Sink

ACTIVITY_ID = "http://127.0.0.1:9/p/whatif/activity"


@dataclass(frozen=True, slots=True)
class Variant:
    label: str
    max_concurrency: int
    delay_ms: float


VARIANTS = (
    Variant(f"as the app runs it ({MAX_CONCURRENCY} at once)", MAX_CONCURRENCY, 0),
    Variant("48 at once", 48, 0),
    Variant(f"as the app runs it, sink +{SLOW_MS:.0f} ms", MAX_CONCURRENCY, SLOW_MS),
    Variant(f"192 at once, sink +{SLOW_MS:.0f} ms", 192, SLOW_MS),
)


def _private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


async def _one(
    work: Path, sink: Sink, inboxes: list[str], pem: str, variant: Variant, give_up_after: float
) -> tuple[int, float]:
    """Deliver one activity to every inbox; returns (rows sent, seconds)."""
    db = await Database.open(work / "whatif.sqlite3")
    # About the size of a real Create with a short thought in it.
    body = json.dumps({"id": ACTIVITY_ID, "type": "Create", "pad": "x" * 1500})
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        await activities.insert(conn, ACTIVITY_ID, "Create", None, body, "2025-01-01T00:00:00Z")
        await deliveries.enqueue(conn, ACTIVITY_ID, [(inbox, None) for inbox in inboxes], now)
    client = DeliveryClient(
        allow_private_networks=True,
        user_agent="fedistream-bench",
        max_connections=variant.max_concurrency + 32,
    )
    signer = Signer("http://127.0.0.1:9/#main-key", pem)
    worker = DeliveryWorker(db, client, signer, max_concurrency=variant.max_concurrency)
    started = time.perf_counter()
    task = asyncio.create_task(worker.run())
    sent = 0
    try:
        deadline = time.monotonic() + give_up_after
        while time.monotonic() < deadline:
            sent = (await deliveries.counts(db))["sent"]
            if sent >= len(inboxes):
                break
            await asyncio.sleep(0.05)
        return sent, time.perf_counter() - started
    finally:
        await worker.stop()
        await task
        await client.aclose()
        signer.close()
        await db.close()


def run(work: Path, *, followers: int, timeout: float) -> list[Metric]:
    sink = Sink(work / "whatif-sink", hosts=followers)
    inboxes = [sink.inbox(n) for n in range(followers)]
    pem = _private_pem()
    results: list[tuple[Variant, int, float]] = []
    sink.start()
    try:
        for n, variant in enumerate(VARIANTS):
            sink.set_mode(delay_ms=variant.delay_ms)
            run_dir = work / f"whatif-{n}"
            run_dir.mkdir(parents=True)
            with event_loop_runner() as runner:
                sent, seconds = runner.run(_one(run_dir, sink, inboxes, pem, variant, timeout))
            results.append((variant, sent, seconds))
    finally:
        sink.stop()
    as_is = results[0][1] / results[0][2]
    return [
        Metric(
            f"what-if, in-process worker: {variant.label}",
            sent / seconds,
            "deliv/s",
            as_is if i else None,
            "in-process, as the app runs it" if i else "",
            note=f"TIMED OUT: {sent}/{followers} sent" if sent < followers else "",
        )
        for i, (variant, sent, seconds) in enumerate(results)
    ]
