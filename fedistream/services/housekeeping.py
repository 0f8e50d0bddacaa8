"""Housekeeping: what a server running for years must clear so its tables stay bounded.

Every delivery is a row (followers × activities: 10,000 followers and ten thoughts a day are
100,000 rows a day), and every received activity is a row. Once a delivery is sent or given up,
and an activity applied, the row only serves the owner's "how did this go" pages and replay
protection, for which weeks are plenty: peers stop retrying after a few days, and a replayed
activity must also carry a fresh signature Date. Rows still pending are never cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fedistream.core.timefmt import to_iso
from fedistream.store import deliveries as delivery_store
from fedistream.store import inbox as inbox_store
from fedistream.store.db import Database

log = logging.getLogger("fedistream.housekeeping")

RECORDS_KEPT = timedelta(days=30)
BATCH = 2000  # rows per transaction: the write lock is held for milliseconds, not seconds
FIRST_RUN_AFTER_SECONDS = 60.0  # not during start-up
EVERY_SECONDS = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class Tidied:
    deliveries: int
    inbox: int


async def tidy(db: Database, now: datetime, *, kept: timedelta = RECORDS_KEPT) -> Tidied:
    """Clear finished delivery rows and processed inbox rows older than `kept`."""
    before = now - kept
    cleared_deliveries = cleared_inbox = 0
    while (n := await delivery_store.forget_finished(db, before, BATCH)) > 0:
        cleared_deliveries += n
        await asyncio.sleep(0)  # let waiting writers (inbox POSTs) in between batches
    while (n := await inbox_store.forget_processed(db, to_iso(before), BATCH)) > 0:
        cleared_inbox += n
        await asyncio.sleep(0)
    return Tidied(cleared_deliveries, cleared_inbox)


class Housekeeper:
    """Runs `tidy` a minute after start-up and then every six hours (app lifespan)."""

    def __init__(
        self,
        db: Database,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        first_after: float = FIRST_RUN_AFTER_SECONDS,
        every: float = EVERY_SECONDS,
    ) -> None:
        self._db = db
        self._now = now
        self._first_after = first_after
        self._every = every
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        delay = self._first_after
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            try:
                done = await tidy(self._db, self._now())
                if done.deliveries or done.inbox:
                    log.info(
                        "cleared %d delivery and %d inbox records older than %d days",
                        done.deliveries, done.inbox, RECORDS_KEPT.days,
                    )  # fmt: skip
            except Exception:  # a locked or broken database must not end the loop
                log.exception("housekeeping failed; trying again later")
            delay = self._every

    def stop(self) -> None:
        self._stopping.set()
