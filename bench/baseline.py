"""Baselines for the fan-out benchmark, run in the bench process: the same client POSTing
pre-signed bodies at the worker's limits, and the signing ceiling through fedistream's Signer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from fedistream.federation.http import ACTIVITY_JSON
from fedistream.federation.signing import Signer

SIGNING_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class ClientRun:
    label: str
    sent: int
    ok: int
    seconds: float
    cpu_s: float = 0.0  # this process's CPU time (every thread) while posting

    @property
    def cpu_ms_each(self) -> float:
        return 1000 * self.cpu_s / self.ok if self.ok else 0.0

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


async def post_presigned(
    client: httpx.AsyncClient,
    inboxes: Sequence[str],
    body: bytes,
    signer: Signer,
    *,
    concurrency: int,
    per_host: int,
    give_up_after: float,
    label: str,
) -> ClientRun:
    """POST `body` to every inbox, signed beforehand (not timed), at most `concurrency` at once
    and `per_host` per host — the worker's limits — and count the 2xx answers."""
    now = datetime.now(UTC)
    signed = [
        (inbox, signer.sign_now("POST", inbox, {"Content-Type": ACTIVITY_JSON}, body, now))
        for inbox in inboxes
    ]
    everything = asyncio.Semaphore(concurrency)
    hosts: dict[str, asyncio.Semaphore] = {}
    ok = 0

    async def one(inbox: str, headers: dict[str, str]) -> None:
        nonlocal ok
        host = httpx.URL(inbox).netloc.decode()
        slot = hosts.setdefault(host, asyncio.Semaphore(per_host))
        async with slot, everything:
            response = await client.post(inbox, content=body, headers=headers)
            ok += 200 <= response.status_code < 300

    started = time.perf_counter()
    cpu_before = time.process_time()
    try:
        async with asyncio.timeout(give_up_after):
            await asyncio.gather(*(one(inbox, headers) for inbox, headers in signed))
    except TimeoutError:
        pass  # report what got through in the time allowed
    cpu = time.process_time() - cpu_before
    return ClientRun(label, len(signed), ok, time.perf_counter() - started, cpu)


async def signing_rate(signer: Signer, inboxes: Sequence[str], body: bytes) -> float:
    """Signatures/s through the Signer's thread pool (the worker's path), for ~2 s."""
    now = datetime.now(UTC)
    batch = list(inboxes[:64])
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < SIGNING_SECONDS:
        await asyncio.gather(
            *(signer.sign("POST", u, {"Content-Type": ACTIVITY_JSON}, body, now) for u in batch)
        )
        done += len(batch)
    return done / (time.perf_counter() - started)
