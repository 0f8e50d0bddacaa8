"""Inbound activities: persist first (idempotent by id), then apply from the stored row.

The web edge verifies the signature and calls `receive`; `InboxProcessor` applies pending rows in
the background, each in one transaction with its outcome, so a crash mid-way re-applies the row
(every effect is an upsert or a delete, so applying twice is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from fedistream.core import inbound
from fedistream.core.intake import IntakeFirst
from fedistream.core.remote_actor import parse_actor
from fedistream.core.sanitize import sanitize_remote_html
from fedistream.core.timefmt import parse_iso, to_iso
from fedistream.core.urls import Urls
from fedistream.services import conversations, moderation, remote_media
from fedistream.services.follows import UnknownActor, accept_follower
from fedistream.store import actors as actor_store
from fedistream.store import followers as follower_store
from fedistream.store import inbox as inbox_store
from fedistream.store import remote_posts
from fedistream.store.db import Database

log = logging.getLogger("fedistream.inbox")

POLL_SECONDS = 2.0
BATCH = 100
MAX_TRIES = 3  # unexpected errors on one row before it is marked 'failed'


def activity_key(activity: dict[str, Any]) -> str:
    """The inbox row's key: the activity id, or for an activity without one (GoToSocial's
    documented Delete, Socialhome's `"id": ""`) a digest of its content, so a replay of it
    is still recognised and two different ones never collide."""
    activity_id = activity.get("id")
    if isinstance(activity_id, str) and activity_id:
        return activity_id
    canonical = json.dumps(activity, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "urn:sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def receive(
    db: Database,
    activity: dict[str, Any],
    actor_id: str,
    now: datetime | None = None,
    *,
    json_text: str | None = None,
) -> bool:
    """Store a verified activity for processing. False when it was already received (replay).
    `json_text` is the activity already serialised (the inbox has it from its checks)."""
    return await inbox_store.insert(
        db,
        activity_key(activity),
        actor_id,
        str(activity.get("type")),
        json_text if json_text is not None else json.dumps(activity, ensure_ascii=False),
        to_iso(now or datetime.now(UTC)),
    )


@dataclass(frozen=True, slots=True)
class InboxPolicy:
    urls: Urls
    manually_approves_followers: bool


class _Ignored(Exception):
    """The activity is well-formed but nothing we act on; recorded as 'ignored' with the reason."""


async def _is_relevant_note(conn: aiosqlite.Connection, note: Any, urls: Urls) -> bool:
    """Keep notes from accounts we follow, replies to our thoughts, and mentions of the owner."""
    cursor = await conn.execute(
        "SELECT 1 FROM following WHERE actor_id = ? AND state = 'accepted'", (note.actor_id,)
    )
    if await cursor.fetchone():
        return True
    if note.in_reply_to and note.in_reply_to.startswith(urls.base + "/"):
        return True
    return urls.actor in note.mentions or urls.actor in note.to or urls.actor in note.cc


async def _store_note(conn: aiosqlite.Connection, note: Any, raw: dict[str, Any], now: str) -> None:
    await remote_posts.upsert(
        conn,
        id=note.id,
        actor_id=note.actor_id,
        url=note.url,
        in_reply_to=note.in_reply_to,
        content_html=sanitize_remote_html(note.content_html),
        summary=note.summary,
        sensitive=note.sensitive,
        published=to_iso(note.published),
        updated=to_iso(note.updated) if note.updated else None,
        json_text=json.dumps(raw, ensure_ascii=False),
        now=now,
    )
    await remote_media.note_stored(conn, note)  # its images and author's avatar get fetched


async def apply(
    conn: aiosqlite.Connection,
    command: inbound.Command,
    activity: dict[str, Any],
    policy: InboxPolicy,
    now: datetime,
) -> str:
    """Apply one classified activity inside `conn`'s transaction. Returns the resulting state."""
    urls = policy.urls
    stamp = to_iso(now)
    match command:
        case inbound.FollowUs(follow_id=follow_id, actor=actor, follow=follow):
            state = (
                follower_store.PENDING
                if policy.manually_approves_followers
                else follower_store.ACCEPTED
            )
            cursor = await conn.execute("SELECT state FROM followers WHERE actor_id = ?", (actor,))
            existing = await cursor.fetchone()
            await follower_store.upsert_follower(conn, actor, follow_id, state, stamp)
            if state == follower_store.ACCEPTED or (existing and existing[0] == "accepted"):
                await accept_follower(conn, urls, follow, actor, now)
            if existing is None:  # a re-Follow (R48) is not news
                pending = state == follower_store.PENDING
                await conversations.follow_noticed(conn, actor, follow_id, pending=pending, now=now)
        case inbound.UndoFollow(actor=actor):
            await follower_store.remove_follower(conn, actor)
        case inbound.UndoReference(actor=actor, object_id=object_id):
            # R50: an Undo naming only an id. Mastodon guesses what it was; a Follow, like or
            # boost we can tell by the id we stored.
            cursor = await conn.execute(
                "DELETE FROM followers WHERE actor_id = ? AND follow_id = ?", (actor, object_id)
            )
            if not cursor.rowcount and not await conversations.undo_reference(
                conn, actor, object_id
            ):
                raise _Ignored("Undo of an activity we do not know by that id")
        case inbound.FollowAccepted(actor=actor, follow_id=follow_id):
            if not await follower_store.set_following_state(
                conn, actor, follower_store.ACCEPTED, follow_id
            ):
                raise _Ignored("Accept for a Follow we did not send")
        case inbound.FollowRejected(actor=actor):
            # A refused request, or they removed us as a follower (R49): either way, we no
            # longer follow them. Matched by actor, as Mastodon does when the id differs.
            if not await follower_store.remove_following(conn, actor):
                raise _Ignored("Reject for a Follow we did not send")
        case inbound.DeleteActor(actor=actor):
            await follower_store.remove_follower(conn, actor)
            await follower_store.remove_following(conn, actor)
            await remote_posts.delete_by_actor(conn, actor)
            await conversations.forget_actor(conn, actor)
            await actor_store.delete(conn, actor)
        case inbound.DeleteObject(actor=actor, object_id=object_id):
            if not await remote_posts.delete(conn, object_id, actor):
                raise _Ignored("Delete of an object we do not have")
            await conversations.note_deleted(conn, actor, object_id)
        case inbound.UpdateActor(actor=actor, document=document):
            parsed = parse_actor(document)
            if parsed.id != actor:
                raise _Ignored("Update of another actor")
            await actor_store.upsert(conn, parsed, document, now)
        case inbound.CreateNote(note=note) | inbound.UpdateNote(note=note):
            placement = await conversations.place(conn, urls, note)
            if not placement.related and not await _is_relevant_note(conn, note, urls):
                raise _Ignored("note from an account the owner does not follow")
            await _store_note(conn, note, activity.get("object", {}), stamp)
            await conversations.note_stored(conn, urls, note, placement, now)
        case (
            inbound.Like() | inbound.UndoLike() | inbound.Announce() | inbound.UndoAnnounce()
            | inbound.EmojiReact() | inbound.UndoEmojiReact()
        ):  # fmt: skip
            await conversations.apply_interaction(conn, command, activity, urls, now)
        case inbound.Ignore(reason=reason):
            raise _Ignored(reason)
        case _:
            raise _Ignored(f"{type(command).__name__} is not handled yet")
    return "done"


ROWS_PER_TRANSACTION = 50  # one commit for many rows; the write lock is held some 10 ms


async def process_rows(
    db: Database,
    rows: Sequence[Any],
    policy: InboxPolicy,
    now: datetime,
    *,
    last_try: Callable[[str], bool] = lambda _id: True,
) -> list[str]:
    """Apply stored rows in one transaction; returns each row's new state.

    Each row runs under its own savepoint: an ignored or failing row is rolled back alone, and
    an unexpected error leaves it 'pending' to be applied again unless `last_try(id)` says this
    was its last chance. The whole batch runs inside the writer's thread
    (`Database.transaction_in_thread`): applying one activity is ~15 statements, and paying a
    thread hop for each cost more than the SQL itself (bench/README.md). If the database itself
    fails (disk full), the transaction is rolled back and this raises: every row stays pending.
    """
    stamp = to_iso(now)

    async def work(conn: aiosqlite.Connection) -> list[str]:
        return [
            await _process_row_in(conn, row, policy, now, stamp, last_try=last_try(row["id"]))
            for row in rows
        ]

    return await db.transaction_in_thread(work)


async def _process_row_in(
    conn: aiosqlite.Connection,
    row: Any,
    policy: InboxPolicy,
    now: datetime,
    stamp: str,
    *,
    last_try: bool,
) -> str:
    try:
        # Reading the row is inside the try: one that cannot be read (nested past the parser's
        # limit, say) is marked failed instead of stopping every row queued behind it.
        activity = json.loads(row["json"])
        command = inbound.classify(activity, our_actor=policy.urls.actor)
    except Exception as exc:  # pure and deterministic: trying again would fail again
        reason = (
            str(exc) if isinstance(exc, inbound.BadActivity) else f"{type(exc).__name__}: {exc}"
        )
        await inbox_store.mark(conn, row["id"], "failed", reason, stamp)
        return "failed"
    await conn.execute("SAVEPOINT activity")
    try:
        # Received just before the owner blocked them: the block wins.
        if await moderation.is_blocked_in(conn, row["actor_id"]):
            raise _Ignored("the actor is blocked")
        state = await apply(conn, command, activity, policy, now)
        await inbox_store.mark(conn, row["id"], state, None, stamp)
        await conn.execute("RELEASE activity")
        return state
    except (_Ignored, UnknownActor, conversations.Unrelated) as exc:
        await _roll_back_row(conn)
        await inbox_store.mark(conn, row["id"], "ignored", str(exc), stamp)
        return "ignored"
    except Exception as exc:
        if not conn.in_transaction:  # the database gave up the whole transaction
            raise
        await _roll_back_row(conn)
        if not last_try:  # e.g. the disk was full or the database locked: try again later
            log.warning("inbox activity %s failed, will retry: %s", row["id"], exc)
            return "pending"
        # A row that keeps failing must not stay pending and be retried forever.
        log.warning("inbox activity %s failed: %s", row["id"], exc)
        await inbox_store.mark(conn, row["id"], "failed", f"{type(exc).__name__}: {exc}", stamp)
        return "failed"


async def _roll_back_row(conn: aiosqlite.Connection) -> None:
    await conn.execute("ROLLBACK TO activity")
    await conn.execute("RELEASE activity")


class InboxProcessor:
    """Applies pending inbox rows in the background; `run_once()` steps it in tests.

    `wake()` is called for each stored activity. While they arrive in a burst, `run()` waits
    (at most core.intake.MAX_LAG for the oldest) so accepting keeps the interpreter to itself.
    """

    def __init__(
        self,
        db: Database,
        policy: InboxPolicy,
        *,
        on_change: Callable[[], None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
        intake: IntakeFirst | None = None,
    ) -> None:
        self._db = db
        self._policy = policy
        self._on_change = on_change
        self._now = now
        self._clock = clock
        self._intake = intake or IntakeFirst()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        # Failed tries per row in this process: a row that raised is tried again on the next
        # pass (its transaction rolled back, so nothing was half done), at most MAX_TRIES times.
        self._tries: dict[str, int] = {}

    def wake(self) -> None:
        """An activity was stored: apply it (now, or after the burst it arrived in)."""
        self._intake.arrived(self._clock())
        self._wake.set()

    async def _wait_for_intake(self) -> bool:
        """While a burst arrives, wait a moment (True) instead of applying; see core.intake."""
        if not self._intake.busy(self._clock()):
            return False  # the ordinary case: no query at all
        oldest = await inbox_store.oldest_pending_received_at(self._db)
        if oldest is None:
            return False
        waited = (self._now() - parse_iso(oldest)).total_seconds()
        delay = self._intake.wait_before_applying(self._clock(), waited)
        if delay <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), delay)
        return True

    async def run_once(self) -> int:
        rows = await inbox_store.pending(self._db, BATCH)
        changed = False
        for start in range(0, len(rows), ROWS_PER_TRANSACTION):
            chunk = rows[start : start + ROWS_PER_TRANSACTION]
            tries = {row["id"]: self._tries.get(row["id"], 0) + 1 for row in chunk}

            def is_last_try(activity_id: str, tries: dict[str, int] = tries) -> bool:
                return tries[activity_id] >= MAX_TRIES

            try:
                states = await process_rows(
                    self._db,
                    chunk,
                    self._policy,
                    self._now(),
                    last_try=is_last_try,
                )
            except Exception:
                log.exception("inbox processing failed; the rows stay pending")
                states = ["pending"] * len(chunk)
            for row, state in zip(chunk, states, strict=True):
                if state == "pending":
                    self._tries[row["id"]] = tries[row["id"]]
                else:
                    self._tries.pop(row["id"], None)
                changed = changed or state == "done"
        if changed and self._on_change:
            self._on_change()  # e.g. wake the delivery worker for queued Accepts
        return len(rows)

    async def run(self) -> None:
        while not self._stopped.is_set():
            try:
                if await self._wait_for_intake():
                    continue
                if await self.run_once() >= BATCH:
                    continue
            except Exception:  # keep the loop alive; the row stays pending and is retried
                log.exception("inbox processing failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
