"""Baselines for the fan-out benchmark, run in the bench process: a client POSTing pre-signed
bodies at the worker's limits, and the signing ceiling through fedistream's Signer.

Two clients can be measured that way: the app's httpx client (`build_http_client`, what issue 6
names as the baseline) and the worker's own delivery client (`DeliveryClient`), so the report
can say both how the server compares with httpx and what the queue, signing and bookkeeping
cost on top of the client the worker really uses."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from fedistream.federation.delivery_client import DeliveryClient
from fedistream.federation.http import ACTIVITY_JSON
from fedistream.federation.signing import Signer

# POST the body to an inbox with these (signed) headers; the answer's status. `last_to_host`:
# no other POST to that host follows (the worker closes such connections; so do the baselines).
Send = Callable[[str, dict[str, str], bool], Awaitable[int]]

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


def httpx_sender(client: httpx.AsyncClient, body: bytes) -> Send:
    async def send(inbox: str, headers: dict[str, str], _last_to_host: bool) -> int:
        return (await client.post(inbox, content=body, headers=headers)).status_code

    return send


def delivery_sender(client: DeliveryClient, body: bytes) -> Send:
    async def send(inbox: str, headers: dict[str, str], last_to_host: bool) -> int:
        return (await client.post(inbox, body, headers, keep_alive=not last_to_host)).status

    return send


async def post_presigned(
    send: Send,
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
        (
            inbox,
            httpx.URL(inbox).netloc.decode(),  # its host, parsed untimed too
            signer.sign_now("POST", inbox, {"Content-Type": ACTIVITY_JSON}, body, now),
        )
        for inbox in inboxes
    ]
    everything = asyncio.Semaphore(concurrency)
    hosts: dict[str, asyncio.Semaphore] = {}
    left = Counter(host for _inbox, host, _headers in signed)
    ok = 0

    async def one(inbox: str, host: str, headers: dict[str, str]) -> None:
        nonlocal ok
        slot = hosts.setdefault(host, asyncio.Semaphore(per_host))
        async with slot, everything:
            left[host] -= 1
            status = await send(inbox, headers, left[host] <= 0)
            ok += 200 <= status < 300

    started = time.perf_counter()
    cpu_before = time.process_time()
    try:
        async with asyncio.timeout(give_up_after):
            await asyncio.gather(*(one(*request) for request in signed))
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
