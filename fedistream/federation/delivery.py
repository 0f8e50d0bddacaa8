"""The delivery worker: drains the `deliveries` queue with signed POSTs. Layer: federation.

Each row is leased (store.deliveries.claim_due), signed off the event loop, POSTed as the
stored activity bytes through federation.delivery_client (SSRF-guarded), classified by
core.retry and recorded in a short transaction shared with the deliveries that finished at
the same time; no transaction is ever open while a request is in flight. A crash
mid-send leaves the lease to run out and the row is sent again later: delivery is at-least-once
(peers dedupe by activity id).

Concurrency: many hosts at once (real inboxes are 50–300 ms away, so waiting on them one by one
is what makes fan-out slow), at most `per_host` requests to any one host, `max_concurrency` in all.
`run()` holds up to HELD_PER_SLOT times `max_concurrency` rows in memory (HELD_PER_HOST_SLOT
times `per_host` for one host), so the next row starts the moment a slot frees instead of after
a claim (a write) per finished delivery, and claims again once a quarter of what it held has
finished. A held row waits at most HELD_PER_HOST_SLOT rounds of the HTTP client's deadline for
its host, and HELD_PER_SLOT more for a slot: keep `lease_seconds` above that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from fedistream.core.logfmt import LogfmtLine
from fedistream.core.retry import Decision, Outcome, classify
from fedistream.core.timefmt import to_iso
from fedistream.errors import RemoteFetchFailed
from fedistream.federation.delivery_client import DeliveryClient, sign_post
from fedistream.federation.http import FetchRefused
from fedistream.federation.signing import Signer
from fedistream.store import deliveries
from fedistream.store.db import Database
from fedistream.store.deliveries import Claimed

log = logging.getLogger("fedistream.delivery")

# Requests in flight at once, across hosts. Real inboxes are 50–300 ms away: concurrency across
# hosts is what makes a fan-out fast (bench/README.md: with peers 50 ms away, 96 → 128 took
# 1,080–1,146 → 1,205–1,375 deliveries/s; beyond that this machine's CPU is the limit). Keep
# it below the delivery client's connection limit (delivery_client.MAX_CONNECTIONS).
MAX_CONCURRENCY = 128
PER_HOST = 4  # requests at once to one host: a fan-out must not flood a small server
HELD_PER_SLOT = 2  # rows held in memory per concurrency slot (see the module docstring)
# Rows held per per-host slot: 6 × 4 = 24 for one host. With 2 it was a claim (a write) every
# 2 deliveries when one host has many rows (a backlog after its outage, a server without a
# shared inbox): 651 → 1,155 deliveries/s to one host (bench/README.md).
HELD_PER_HOST_SLOT = 6
LEASE_SECONDS = 300.0  # > (HELD_PER_HOST_SLOT + HELD_PER_SLOT) × the client's 30 s deadline
ERROR_BODY_BYTES = 2048  # enough of a refusal ({"error": "Verification failed…"}) to explain it
STOP_GRACE_SECONDS = 5.0

Clock = Callable[[], datetime]
OnGone = Callable[[str], Awaitable[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _SaveFailed(Exception):
    """An attempt's result could not be written (its batch failed or was interrupted)."""


@dataclass(frozen=True, slots=True)
class _Result:
    """What came back from one POST: a status, or an error when there was no answer."""

    status: int | None
    error: str | None
    retry_after: str | None = None
    permanent: bool = False  # the request cannot ever be made (bad URL): no point retrying


class DeliveryWorker:
    """Delivers queued activities. `run()` in the app's lifespan; `run_once()` in tests."""

    def __init__(
        self,
        db: Database,
        client: DeliveryClient,
        signer: Signer,
        *,
        now: Clock = _utcnow,
        max_concurrency: int = MAX_CONCURRENCY,
        per_host: int = PER_HOST,
        lease_seconds: float = LEASE_SECONDS,
        batch: int = 200,
        poll_seconds: float = 2.0,
        on_gone: OnGone | None = None,
        rand: Callable[[], float] = random.random,
        stop_grace_seconds: float = STOP_GRACE_SECONDS,
    ) -> None:
        if max_concurrency < 1 or per_host < 1 or batch < 1:
            raise ValueError("max_concurrency, per_host and batch must be at least 1")
        self._db = db
        self._client = client
        self._signer = signer
        self._now = now
        self._max = max_concurrency
        self._per_host = per_host
        self._lease = lease_seconds
        self._batch = batch
        self._poll = poll_seconds
        self._on_gone = on_gone
        self._rand = rand
        self._grace = stop_grace_seconds
        self._sending = asyncio.Semaphore(max_concurrency)
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._held: set[int] = set()  # row ids claimed and not yet finished, by this worker
        self._host_load: Counter[str] = Counter()  # held rows per host
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsaved: list[tuple[deliveries.Attempt, asyncio.Future[None]]] = []
        self._saving = False  # a _save call is writing a batch right now
        self._signal = asyncio.Event()  # wake(), a finished delivery with work waiting, or stop()
        self._backlog = False  # the last claim suggests more rows are due than we could take
        self._finished_since_claim = 0
        self._claim_after = 1  # finished deliveries that make the next claim worth its write
        self._stopping = False
        self._running = False
        self._stopped = asyncio.Event()

    # --- control ---

    def wake(self) -> None:
        """New rows are due (services call this after committing them); the poll is the fallback."""
        self._signal.set()

    async def run_once(self) -> int:
        """Claim up to `batch` due rows, deliver them all, return how many were attempted.

        Deterministic stepping for tests and one-shot use. Unlike `run()` it claims without
        per-host fairness, so its rows may queue behind the per-host cap: keep `batch` modest.
        """
        claimed = self._hold(
            await deliveries.claim_due(self._db, self._now(), self._lease, self._batch)
        )
        if claimed:
            await asyncio.gather(*(self._deliver(row) for row in claimed))
        return len(claimed)

    async def run(self) -> None:
        """Deliver until `stop()`: claim what can start now, then sleep until woken or polled.

        The poll picks up rows written by another process (`fedistream post` beside the server).
        """
        self._stopping = False
        self._running = True
        self._stopped.clear()
        try:
            while not self._stopping:
                self._signal.clear()  # before claiming, so a wake() during the claim is kept
                try:
                    await self._top_up()
                except Exception:  # a locked or broken database must not kill the worker
                    log.exception("claiming due deliveries failed; retrying at the next poll")
                if self._stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._signal.wait(), self._poll)
        finally:
            await self._drain(grace=self._grace if self._stopping else 0.0)
            self._running = False
            self._stopped.set()

    async def stop(self) -> None:
        """Stop claiming, let in-flight deliveries finish (briefly), and return once `run` has.

        Deliveries still unfinished after the grace period are cancelled; their leases run out
        and they are sent again later.
        """
        self._stopping = True
        self._signal.set()
        if self._running:
            await self._stopped.wait()

    # --- claiming ---

    async def _top_up(self) -> None:
        room = self._max * HELD_PER_SLOT - len(self._held)
        if room <= 0:
            self._backlog = True  # a finishing delivery frees room: claim again then
            return
        # Hosts we are busy with may take only what is left of their share; others take a full
        # share (the per-host semaphore still lets only `per_host` of them run at once).
        share = self._per_host * HELD_PER_HOST_SLOT
        host_room = {host: max(share - load, 0) for host, load in self._host_load.items() if load}
        self._finished_since_claim = 0
        claimed = self._hold(
            await deliveries.claim_due(
                self._db,
                self._now(),
                self._lease,
                min(self._batch, room),
                per_host=share,
                host_room=host_room,
            )
        )
        self._backlog = bool(claimed) or 0 in host_room.values()
        # Claim again once a quarter of what is held has finished: one write per burst of
        # finished deliveries, while what is still held keeps every slot busy.
        self._claim_after = max(1, len(self._held) // 4)
        for row in claimed:
            task = asyncio.create_task(self._deliver(row), name=f"deliver-{row.id}")
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _hold(self, claimed: Iterable[Claimed]) -> list[Claimed]:
        """Take claimed rows into memory, skipping any this worker is still delivering (a lease
        that ran out while its request was slow): that delivery will record the row itself."""
        fresh = [row for row in claimed if row.id not in self._held]
        for row in fresh:
            self._held.add(row.id)
            self._host_load[row.host] += 1
        return fresh

    def _release(self, row: Claimed) -> None:
        self._held.discard(row.id)
        self._host_load[row.host] -= 1
        if self._host_load[row.host] <= 0:
            del self._host_load[row.host]
            self._host_slots.pop(row.host, None)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._finished_since_claim += 1
        if self._backlog and (self._finished_since_claim >= self._claim_after or not self._held):
            self._signal.set()  # completions that arrive during one claim share the next

    async def _drain(self, grace: float) -> None:
        tasks = set(self._tasks)
        if not tasks:
            return
        if grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- one delivery ---

    def _host_slot(self, host: str) -> asyncio.Semaphore:
        slot = self._host_slots.get(host)
        if slot is None:
            slot = self._host_slots[host] = asyncio.Semaphore(self._per_host)
        return slot

    async def _deliver(self, row: Claimed) -> None:
        try:
            async with self._host_slot(row.host):
                started = time.perf_counter()
                result = await self._post(row)
                took_ms = round((time.perf_counter() - started) * 1000, 1)
            done_at = self._now()
            decision = self._decide(row, result, done_at)
            # With a status, `error` is the peer's own explanation; without one the reason
            # already names the network error.
            explained = _join(decision.reason, result.error if result.status is not None else None)
            last_error = None if decision.outcome is Outcome.SENT else explained
            await self._save(
                deliveries.Attempt(
                    row.id,
                    decision.outcome,
                    result.status,
                    last_error,
                    decision.next_attempt_at,
                    done_at,
                )
            )
            # One logfmt line per attempt (same shape as web.access_log's request lines).
            retry_at = decision.next_attempt_at
            fields = {
                "event": "delivery",
                "activity": row.activity_id,
                "inbox_host": row.host,
                "status": result.status,
                "outcome": str(decision.outcome),
                "attempt": row.attempts + 1,
                "duration_ms": took_ms,
                "next_attempt": to_iso(retry_at) if retry_at is not None else None,
                "reason": explained,
            }
            log.log(
                logging.WARNING if decision.outcome is Outcome.GIVE_UP else logging.INFO,
                LogfmtLine(fields),
                extra={"fields": fields},
            )
            if result.status == 410 and row.recipient and self._on_gone is not None:
                # A personal inbox answering 410: that account is gone (INTEROP R1 "gone").
                try:
                    await self._on_gone(row.recipient)
                except Exception:
                    log.exception("on_gone(%s) failed", row.recipient)
        except Exception:
            # Most likely the database: the lease runs out and the row is tried again.
            log.exception("delivery %s to %s failed unexpectedly", row.activity_id, row.host)
        finally:
            self._release(row)

    async def _save(self, attempt: deliveries.Attempt) -> None:
        """Record an attempt, sharing one transaction with whatever else finished meanwhile.

        Group commit: the first caller writes; callers arriving while it writes queue up and
        the writer takes them all in its next round. Each caller returns once its row is saved.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unsaved.append((attempt, done))
        if self._saving:
            await done
            return
        self._saving = True
        try:
            while self._unsaved:
                batch, self._unsaved = self._unsaved, []
                try:
                    await deliveries.record_many(self._db, [a for a, _ in batch])
                except BaseException as exc:
                    for _, waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(_SaveFailed(repr(exc)))
                    raise
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_result(None)
        finally:
            self._saving = False
            # Cancelled or failed with others still queued: fail them too (they were not
            # written; their leases run out and they are delivered again).
            leftover, self._unsaved = self._unsaved, []
            for _, waiter in leftover:
                if not waiter.done():
                    waiter.set_exception(_SaveFailed("not saved"))
        done.result()

    def _decide(self, row: Claimed, result: _Result, now: datetime) -> Decision:
        if result.permanent:
            return Decision(Outcome.GIVE_UP, None, f"cannot be sent: {result.error}")
        return classify(
            result.status,
            result.error,
            retry_after=result.retry_after,
            attempts=row.attempts + 1,
            first_attempt_at=row.created_at,
            now=now,
            rand=self._rand(),
        )

    async def _post(self, row: Claimed) -> _Result:
        try:
            # Signed before taking one of the `max_concurrency` slots: those are for waiting on
            # peers, and a signature can wait its turn in the Signer's threads without one.
            signed = await sign_post(self._signer, row.inbox, row.body, self._now())
            async with self._sending:
                # The exact URL signed, the stored bytes unchanged (the Digest covers them,
                # INTEROP R36); never redirected. The connection stays open only while more
                # rows for the same host are held.
                answer = await self._client.post(
                    signed.url, row.body, signed.headers, keep_alive=self._host_load[row.host] > 1
                )
        except FetchRefused as exc:  # not http(s), or an address we must not reach
            return _Result(None, exc.public_message, permanent=True)
        except RemoteFetchFailed as exc:  # timeouts, refused connections, resets, TLS…
            return _Result(None, exc.public_message)
        except ValueError as exc:  # the URL cannot even be signed
            return _Result(None, f"{type(exc).__name__}: {exc}", permanent=True)
        except Exception as exc:
            # Unknown trouble still counts as a failed attempt, so the row backs off and dies
            # after three days instead of coming back every lease period forever.
            log.exception("delivery %s to %s: unexpected error", row.activity_id, row.host)
            return _Result(None, f"unexpected {type(exc).__name__}: {exc}")
        status = answer.status
        error = None
        if not 200 <= status < 300 and answer.body:
            # The peer's own words ({"error":"Verification failed…"}) help the owner most.
            error = " ".join(answer.body[:ERROR_BODY_BYTES].decode("utf-8", "replace").split())
        return _Result(status, error[:300] if error else None, answer.headers.get("retry-after"))


def _join(reason: str, detail: str | None) -> str:
    return f"{reason}: {detail}" if detail else reason
