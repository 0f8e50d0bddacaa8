"""Applying stored inbound activities (services/inbox.py) on a real SQLite file.

The follow flows as the processor runs them (R45–R50): re-Follow, manual approval, every Undo
shape, and what a crash in the middle leaves behind: the row pending, applied exactly once later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fedistream.core.intake import MAX_LAG
from fedistream.core.remote_actor import RemoteActor
from fedistream.core.urls import Urls
from fedistream.services import follows
from fedistream.services import inbox as inbox_service
from fedistream.services.inbox import InboxPolicy, InboxProcessor
from fedistream.store import actors as actor_store
from fedistream.store.db import Database
from tests.services.actors import cached_actor

BASE = "https://blog.example.test"
URLS = Urls(BASE)
OUR_ACTOR = URLS.actor
AS = "https://www.w3.org/ns/activitystreams"
ALICE = "http://127.0.0.1:9/users/alice"
BOB = "http://127.0.0.1:9/users/bob"
AUTO = InboxPolicy(URLS, manually_approves_followers=False)
MANUAL = InboxPolicy(URLS, manually_approves_followers=True)


def actor(actor_id: str) -> RemoteActor:
    return cached_actor(actor_id)


async def cache(db: Database, *actor_ids: str) -> None:
    """What the signature check leaves behind: the sender in the actor cache."""
    for actor_id in actor_ids:
        await actor_store.upsert(db, actor(actor_id), {"id": actor_id}, datetime.now(UTC))


def follow(actor_id: str = ALICE, n: int = 1, target: str = OUR_ACTOR) -> dict[str, Any]:
    return {
        "@context": AS,
        "id": f"{actor_id}/follows/{n}",
        "type": "Follow",
        "actor": actor_id,
        "object": target,
    }


def undo(inner: Any, actor_id: str = ALICE, n: int = 1) -> dict[str, Any]:
    return {
        "@context": AS,
        "id": f"{actor_id}/undo/{n}",
        "type": "Undo",
        "actor": actor_id,
        "object": inner,
    }


async def deliver(db: Database, activity: dict[str, Any], policy: InboxPolicy = AUTO) -> str:
    """Receive (as the web edge does after the signature check) and process; the row's state."""
    assert await inbox_service.receive(db, activity, activity["actor"])
    await InboxProcessor(db, policy).run_once()
    return await state_of(db, inbox_service.activity_key(activity))


async def state_of(db: Database, activity_id: str) -> str:
    row = await db.fetchone("SELECT state FROM inbox WHERE id = ?", (activity_id,))
    assert row is not None
    return str(row["state"])


async def followers(db: Database) -> list[tuple[str, str, str]]:
    rows = await db.fetchall("SELECT actor_id, follow_id, state FROM followers ORDER BY actor_id")
    return [(r["actor_id"], r["follow_id"], r["state"]) for r in rows]


async def emitted(db: Database, kind: str) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT json FROM activities WHERE type = ? ORDER BY rowid", (kind,))
    return [json.loads(r["json"]) for r in rows]


async def deliveries(db: Database) -> list[tuple[str, str, str | None]]:
    rows = await db.fetchall("SELECT activity_id, inbox, recipient FROM deliveries ORDER BY id")
    return [(r["activity_id"], r["inbox"], r["recipient"]) for r in rows]


def embedded(activity: dict[str, Any]) -> dict[str, Any]:
    return {key: activity[key] for key in ("id", "type", "actor", "object")}


# --- receiving ---------------------------------------------------------------------------------


async def test_receive_stores_once(db: Database) -> None:
    assert await inbox_service.receive(db, follow(), ALICE)
    assert not await inbox_service.receive(db, follow(), ALICE)
    rows = await db.fetchall("SELECT id, actor_id, type, state FROM inbox")
    assert [tuple(r) for r in rows] == [(follow()["id"], ALICE, "Follow", "pending")]


async def test_activities_without_an_id_are_keyed_by_content(db: Database) -> None:
    delete = {"@context": AS, "type": "Delete", "actor": ALICE, "object": ALICE + "/s/1"}
    assert await inbox_service.receive(db, delete, ALICE)
    assert not await inbox_service.receive(db, dict(reversed(delete.items())), ALICE)
    assert await inbox_service.receive(db, {**delete, "object": ALICE + "/s/2"}, ALICE)
    assert await inbox_service.receive(db, {**delete, "id": ""}, ALICE)
    keys = [r["id"] for r in await db.fetchall("SELECT id FROM inbox")]
    assert len(keys) == 3 and all(k.startswith("urn:sha256:") for k in keys)


# --- Follow (R45–R48, R51) ---------------------------------------------------------------------


async def test_follow_is_accepted_with_the_follow_embedded(db: Database) -> None:
    await cache(db, ALICE)
    assert await deliver(db, follow()) == "done"
    assert await followers(db) == [(ALICE, follow()["id"], "accepted")]
    [accept] = await emitted(db, "Accept")
    assert accept["actor"] == OUR_ACTOR
    assert accept["object"] == embedded(follow())
    # R45/R46: to the follower's personal inbox, not the shared one.
    assert await deliveries(db) == [(accept["id"], ALICE + "/inbox", ALICE)]


async def test_refollow_is_idempotent_and_accepted_again(db: Database) -> None:
    await cache(db, ALICE)
    await deliver(db, follow(n=1))
    assert await deliver(db, follow(n=2)) == "done"
    assert await followers(db) == [(ALICE, follow(n=2)["id"], "accepted")]
    accepts = await emitted(db, "Accept")
    assert [a["object"]["id"] for a in accepts] == [follow(n=1)["id"], follow(n=2)["id"]]
    assert len(await deliveries(db)) == 2


async def test_follow_of_someone_else_is_ignored(db: Database) -> None:
    await cache(db, ALICE)
    assert await deliver(db, follow(target=BOB)) == "ignored"
    assert await followers(db) == []


async def test_follow_from_an_actor_we_cannot_answer_is_ignored_with_the_reason(
    db: Database,
) -> None:
    assert await deliver(db, follow()) == "ignored"  # not in the actor cache: no inbox
    row = await db.fetchone("SELECT error FROM inbox")
    assert row is not None and "inbox is unknown" in row["error"]
    assert await followers(db) == []  # the follower row rolled back with the missing Accept


async def test_manual_approval_holds_the_request(db: Database) -> None:
    await cache(db, ALICE)
    assert await deliver(db, follow(n=1), MANUAL) == "done"
    assert await followers(db) == [(ALICE, follow(n=1)["id"], "pending")]
    assert await emitted(db, "Accept") == []
    # Asking again while pending: the newest Follow id is kept, still no answer.
    await deliver(db, follow(n=2), MANUAL)
    assert await followers(db) == [(ALICE, follow(n=2)["id"], "pending")]
    assert await deliveries(db) == []


async def test_approved_follower_who_follows_again_is_accepted_again(db: Database) -> None:
    await cache(db, ALICE)
    await deliver(db, follow(n=1), MANUAL)
    await follows.approve_follower(db, URLS, ALICE)
    await deliver(db, follow(n=2), MANUAL)
    assert await followers(db) == [(ALICE, follow(n=2)["id"], "accepted")]
    assert [a["object"]["id"] for a in await emitted(db, "Accept")] == [
        follow(n=1)["id"],
        follow(n=2)["id"],
    ]


# --- Undo Follow, in every shape R50 lists -----------------------------------------------------


@pytest.mark.parametrize(
    "inner",
    [
        pytest.param(follow(), id="embedded"),
        pytest.param(follow()["id"], id="bare-id"),
        pytest.param({**follow(), "id": ALICE + "/follows/unknown"}, id="mismatched-id"),
        pytest.param({k: v for k, v in follow().items() if k != "id"}, id="embedded-no-id"),
    ],
)
async def test_undo_follow(db: Database, inner: Any) -> None:
    await cache(db, ALICE, BOB)
    await deliver(db, follow())
    await deliver(db, follow(BOB))
    assert await deliver(db, undo(inner)) == "done"
    assert [f[0] for f in await followers(db)] == [BOB]  # only Alice left


async def test_undo_by_an_id_we_do_not_know_changes_nothing(db: Database) -> None:
    await cache(db, ALICE)
    await deliver(db, follow())
    assert await deliver(db, undo(ALICE + "/likes/9")) == "ignored"
    assert len(await followers(db)) == 1


async def test_undo_of_someone_elses_follow_is_refused(db: Database) -> None:
    await cache(db, ALICE, BOB)
    await deliver(db, follow())
    assert await deliver(db, undo(follow(), actor_id=BOB)) == "failed"  # R30
    assert await deliver(db, undo(follow()["id"], actor_id=BOB, n=2)) == "ignored"
    assert len(await followers(db)) == 1


async def test_undo_of_a_follow_of_someone_else_changes_nothing(db: Database) -> None:
    await cache(db, ALICE)
    await deliver(db, follow())
    assert await deliver(db, undo(follow(target=BOB))) == "ignored"
    assert len(await followers(db)) == 1


# --- crashes ------------------------------------------------------------------------------------


async def test_a_crash_mid_processing_leaves_the_row_pending_then_applies_it_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await cache(db, ALICE)
    real_apply = inbox_service.apply
    crashes = 0

    async def crash_once(conn: Any, *args: Any) -> str:
        nonlocal crashes
        if crashes == 0:
            crashes += 1
            await real_apply(conn, *args)  # the effects are written, then it breaks
            raise OSError("disk I/O error")
        return await real_apply(conn, *args)

    monkeypatch.setattr(inbox_service, "apply", crash_once)
    processor = InboxProcessor(db, AUTO)
    assert await inbox_service.receive(db, follow(), ALICE)

    assert await processor.run_once() == 1
    assert await state_of(db, follow()["id"]) == "pending"
    assert await followers(db) == []  # rolled back with the transaction
    assert await emitted(db, "Accept") == [] and await deliveries(db) == []

    assert await processor.run_once() == 1
    assert await state_of(db, follow()["id"]) == "done"
    assert await followers(db) == [(ALICE, follow()["id"], "accepted")]
    assert len(await emitted(db, "Accept")) == 1
    assert len(await deliveries(db)) == 1

    assert await processor.run_once() == 0  # nothing left to do
    assert len(await emitted(db, "Accept")) == 1


async def test_a_row_that_always_crashes_is_failed_after_a_few_tries(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any) -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(inbox_service, "apply", broken)
    processor = InboxProcessor(db, AUTO)
    await inbox_service.receive(db, follow(), ALICE)
    for _ in range(inbox_service.MAX_TRIES - 1):
        await processor.run_once()
        assert await state_of(db, follow()["id"]) == "pending"
    await processor.run_once()
    row = await db.fetchone("SELECT state, error FROM inbox")
    assert row is not None
    assert (row["state"], row["error"]) == ("failed", "RuntimeError: a bug")
    assert await processor.run_once() == 0


async def test_a_row_the_classifier_cannot_read_does_not_block_the_rest(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await cache(db, ALICE)
    real_classify = inbox_service.inbound.classify

    def classify(activity: Any, *, our_actor: str) -> Any:
        if activity["type"] == "Create":
            raise TypeError("unhashable type: 'dict'")
        return real_classify(activity, our_actor=our_actor)

    monkeypatch.setattr(inbox_service.inbound, "classify", classify)
    create: dict[str, Any] = {
        "@context": AS,
        "id": ALICE + "/c/1",
        "type": "Create",
        "actor": ALICE,
        "object": {"type": {}},
    }
    await inbox_service.receive(db, create, ALICE)
    await inbox_service.receive(db, follow(), ALICE)
    assert await InboxProcessor(db, AUTO).run_once() == 2
    assert await state_of(db, create["id"]) == "failed"
    assert await state_of(db, follow()["id"]) == "done"


async def test_processing_a_follow_wakes_the_delivery_worker(db: Database) -> None:
    await cache(db, ALICE)
    woken: list[bool] = []
    processor = InboxProcessor(db, AUTO, on_change=lambda: woken.append(True))
    await inbox_service.receive(db, follow(), ALICE)
    await processor.run_once()
    assert woken == [True]
    await inbox_service.receive(db, follow(target=BOB), ALICE)  # ignored: nothing to deliver
    await processor.run_once()
    assert woken == [True]


# --- intake first: applying waits while a burst arrives (core/intake.py) -------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _wait_for_state(db: Database, activity_id: str, state: str, seconds: float) -> bool:
    for _ in range(int(seconds / 0.02)):
        if await state_of(db, activity_id) == state:
            return True
        await asyncio.sleep(0.02)
    return False


@contextlib.asynccontextmanager
async def running(processor: InboxProcessor) -> AsyncIterator[None]:
    task = asyncio.create_task(processor.run())
    try:
        yield
    finally:
        processor.stop()
        await asyncio.wait_for(task, 5)


async def stored_in_a_burst(db: Database) -> tuple[InboxProcessor, FakeClock, list[datetime]]:
    """A Follow stored amid 200 arrivals within a moment; the clock and wall time to move."""
    await cache(db, ALICE)
    clock = FakeClock()
    wall = [datetime.now(UTC)]
    processor = InboxProcessor(db, AUTO, clock=clock, now=lambda: wall[0])
    await inbox_service.receive(db, follow(), ALICE, wall[0])
    for _ in range(200):
        processor.wake()
    return processor, clock, wall


async def test_a_burst_of_arrivals_is_applied_after_it_ends(db: Database) -> None:
    processor, clock, _wall = await stored_in_a_burst(db)
    async with running(processor):
        # The burst goes on (the clock does not move): the row waits, stored but not applied.
        assert not await _wait_for_state(db, follow()["id"], "done", 0.4)
        clock.now += 1.0  # the burst is over: two quiet windows have passed
        assert await _wait_for_state(db, follow()["id"], "done", 5)


async def test_during_a_long_burst_nothing_waits_past_the_lag_budget(db: Database) -> None:
    processor, _clock, wall = await stored_in_a_burst(db)
    async with running(processor):
        assert not await _wait_for_state(db, follow()["id"], "done", 0.3)
        wall[0] += timedelta(seconds=MAX_LAG)  # still busy, but it has waited long enough
        assert await _wait_for_state(db, follow()["id"], "done", 5)


async def test_an_ordinary_arrival_is_applied_at_once(db: Database) -> None:
    await cache(db, ALICE)
    processor = InboxProcessor(db, AUTO)
    async with running(processor):
        await inbox_service.receive(db, follow(), ALICE)
        processor.wake()
        assert await _wait_for_state(db, follow()["id"], "done", 1.0)
