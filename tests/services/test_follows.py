"""Follow relationships both ways (services/follows.py) on a real SQLite file (R45–R50).

Answering followers: approve (Accept) and remove or refuse (Reject), each queued in the same
transaction as the change. Following others: Follow to their personal inbox, their Accept or
Reject arriving through the inbox, and Undo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from fedistream.core.remote_actor import RemoteActor
from fedistream.core.urls import Urls
from fedistream.errors import BadInput, NotFound
from fedistream.services import follows
from fedistream.services import inbox as inbox_service
from fedistream.services.inbox import InboxPolicy, InboxProcessor
from fedistream.store import actors as actor_store
from fedistream.store.db import Database
from tests.services.actors import cached_actor

URLS = Urls("https://blog.example.test")
AS = "https://www.w3.org/ns/activitystreams"
ALICE = "http://127.0.0.1:9/users/alice"
MANUAL = InboxPolicy(URLS, manually_approves_followers=True)
AUTO = InboxPolicy(URLS, manually_approves_followers=False)


def actor(actor_id: str = ALICE) -> RemoteActor:
    return cached_actor(actor_id)


@dataclass
class Directory:
    """`ActorDirectory` answering handles from a dict, caching like the real resolver."""

    db: Database
    handles: dict[str, RemoteActor] = field(default_factory=dict)

    async def lookup_handle(self, handle: str) -> RemoteActor:
        found = self.handles[handle.lstrip("@")]
        await actor_store.upsert(self.db, found, {"id": found.id}, datetime.now(UTC))
        return found

    async def get_actor(self, actor_id: str, *, refresh: bool = False) -> RemoteActor:
        raise AssertionError("not needed")

    async def actor_for_key(self, key_id: str, *, refresh: bool = False) -> RemoteActor:
        raise AssertionError("not needed")

    def known_actor(self, actor_id: str) -> bool:
        return False


async def cache(db: Database, actor_id: str = ALICE) -> None:
    await actor_store.upsert(db, actor(actor_id), {"id": actor_id}, datetime.now(UTC))


async def inbound(db: Database, activity: dict[str, Any], policy: InboxPolicy = AUTO) -> str:
    await inbox_service.receive(db, activity, activity["actor"])
    await InboxProcessor(db, policy).run_once()
    row = await db.fetchone(
        "SELECT state FROM inbox WHERE id = ?", (inbox_service.activity_key(activity),)
    )
    assert row is not None
    return str(row["state"])


def their_follow(n: int = 1) -> dict[str, Any]:
    return {
        "@context": AS,
        "id": f"{ALICE}/follows/{n}",
        "type": "Follow",
        "actor": ALICE,
        "object": URLS.actor,
    }


async def rows(db: Database, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await db.fetchall(sql, params)]


async def emitted(db: Database, kind: str) -> list[dict[str, Any]]:
    found = await db.fetchall("SELECT json FROM activities WHERE type = ? ORDER BY rowid", (kind,))
    return [json.loads(r["json"]) for r in found]


async def queued_to(db: Database, activity_id: str) -> list[tuple[Any, ...]]:
    return await rows(
        db, "SELECT inbox, recipient, state FROM deliveries WHERE activity_id = ?", activity_id
    )


# --- answering followers -----------------------------------------------------------------------


async def test_approve_a_pending_follower_queues_the_accept(db: Database) -> None:
    await cache(db)
    await inbound(db, their_follow(), MANUAL)
    assert await rows(db, "SELECT state FROM followers") == [("pending",)]

    await follows.approve_follower(db, URLS, ALICE)

    assert await rows(db, "SELECT actor_id, state FROM followers") == [(ALICE, "accepted")]
    [accept] = await emitted(db, "Accept")
    assert accept["actor"] == URLS.actor
    assert accept["object"] == {k: their_follow()[k] for k in ("id", "type", "actor", "object")}
    assert await queued_to(db, accept["id"]) == [(ALICE + "/inbox", ALICE, "pending")]


async def test_refuse_a_pending_request_queues_a_reject(db: Database) -> None:
    await cache(db)
    await inbound(db, their_follow(), MANUAL)
    await follows.remove_follower(db, URLS, ALICE)
    assert await rows(db, "SELECT * FROM followers") == []
    [reject] = await emitted(db, "Reject")
    assert reject["object"]["id"] == their_follow()["id"]
    assert reject["object"]["actor"] == ALICE
    assert await queued_to(db, reject["id"]) == [(ALICE + "/inbox", ALICE, "pending")]


async def test_remove_an_accepted_follower_queues_a_reject_of_their_latest_follow(
    db: Database,
) -> None:
    await cache(db)
    await inbound(db, their_follow(1))
    await inbound(db, their_follow(2))  # R48: the newest Follow id is what they know
    await follows.remove_follower(db, URLS, ALICE)
    assert await rows(db, "SELECT * FROM followers") == []
    [reject] = await emitted(db, "Reject")
    assert reject["object"]["id"] == their_follow(2)["id"]
    assert len(await queued_to(db, reject["id"])) == 1


async def test_approve_or_remove_someone_who_does_not_follow(db: Database) -> None:
    with pytest.raises(NotFound):
        await follows.approve_follower(db, URLS, ALICE)
    with pytest.raises(NotFound):
        await follows.remove_follower(db, URLS, ALICE)
    assert await rows(db, "SELECT * FROM activities") == []


async def test_approving_an_uncached_follower_changes_nothing(db: Database) -> None:
    await inbound(db, their_follow(), MANUAL)  # pending needs no inbox yet
    await db.execute("DELETE FROM actors")
    with pytest.raises(follows.UnknownActor):
        await follows.approve_follower(db, URLS, ALICE)
    assert await rows(db, "SELECT state FROM followers") == [("pending",)]  # rolled back
    assert await rows(db, "SELECT * FROM deliveries") == []


async def test_forget_follower(db: Database) -> None:
    await cache(db)
    await inbound(db, their_follow())
    await follows.forget_follower(db, ALICE)
    assert await rows(db, "SELECT * FROM followers") == []


# --- following others --------------------------------------------------------------------------


async def test_follow_sends_a_follow_to_the_personal_inbox(db: Database) -> None:
    directory = Directory(db, {"alice@127.0.0.1:9": actor()})
    assert await follows.follow(db, directory, URLS, " @alice@127.0.0.1:9 ") == ALICE
    [(actor_id, follow_id, state)] = await rows(
        db, "SELECT actor_id, follow_id, state FROM following"
    )
    assert (actor_id, state) == (ALICE, "pending")
    [sent] = await emitted(db, "Follow")
    assert sent == {
        "@context": AS,
        "id": follow_id,
        "type": "Follow",
        "actor": URLS.actor,
        "object": ALICE,
    }
    # R45: Mastodon sends Follow to the personal inbox, not the shared one; so do we.
    assert await queued_to(db, follow_id) == [(ALICE + "/inbox", ALICE, "pending")]


@pytest.mark.parametrize("handle", ["alice", "a b@127.0.0.1:9", "@a@b@c@d", ""])
async def test_follow_refuses_what_is_no_handle(db: Database, handle: str) -> None:
    with pytest.raises(BadInput, match="@user@domain"):
        await follows.follow(db, Directory(db), URLS, handle)


async def test_follow_refuses_ourselves(db: Database) -> None:
    me = replace(actor(), id=URLS.actor)
    with pytest.raises(BadInput, match="That is you"):
        await follows.follow(
            db, Directory(db, {"owner@blog.example.test": me}), URLS, "@owner@blog.example.test"
        )
    assert await rows(db, "SELECT * FROM following") == []


async def _following(db: Database) -> str:
    await follows.follow(
        db, Directory(db, {"alice@127.0.0.1:9": actor()}), URLS, "alice@127.0.0.1:9"
    )
    [(follow_id,)] = await rows(db, "SELECT follow_id FROM following")
    return str(follow_id)


def _answer(kind: str, obj: Any, n: int = 1) -> dict[str, Any]:
    return {
        "@context": AS,
        "id": f"{ALICE}#{kind.lower()}s/{n}",
        "type": kind,
        "actor": ALICE,
        "object": obj,
    }


@pytest.mark.parametrize(
    "shape",
    ["embedded", "by-id", "embedded-with-another-id"],
)
async def test_their_accept_of_our_follow(db: Database, shape: str) -> None:
    follow_id = await _following(db)
    ours = {"id": follow_id, "type": "Follow", "actor": URLS.actor, "object": ALICE}
    obj = {
        "embedded": ours,
        "by-id": follow_id,
        # R46: matched by the actor pair even when the id differs (Mastodon does the same).
        "embedded-with-another-id": {**ours, "id": URLS.actor + "#follows/elsewhere"},
    }[shape]
    assert await inbound(db, _answer("Accept", obj)) == "done"
    assert await rows(db, "SELECT actor_id, state FROM following") == [(ALICE, "accepted")]


async def test_their_reject_of_our_follow(db: Database) -> None:
    follow_id = await _following(db)
    assert await inbound(db, _answer("Reject", follow_id)) == "done"
    assert await rows(db, "SELECT * FROM following") == []


async def test_their_reject_after_accepting_unfollows_us(db: Database) -> None:
    follow_id = await _following(db)
    await inbound(db, _answer("Accept", follow_id))
    ours = {"id": follow_id, "type": "Follow", "actor": URLS.actor, "object": ALICE}
    assert await inbound(db, _answer("Reject", ours, n=2)) == "done"  # R49: they removed us
    assert await rows(db, "SELECT * FROM following") == []


async def test_accept_or_reject_of_a_follow_we_never_sent_is_ignored(db: Database) -> None:
    assert await inbound(db, _answer("Accept", URLS.actor + "#follows/1")) == "ignored"
    assert await inbound(db, _answer("Reject", URLS.actor + "#follows/1")) == "ignored"
    assert await rows(db, "SELECT * FROM following") == []


async def test_accept_of_someone_elses_follow_changes_nothing(db: Database) -> None:
    await _following(db)
    theirs = {
        "id": "http://127.0.0.1:9/users/bob/follows/1",
        "type": "Follow",
        "actor": "http://127.0.0.1:9/users/bob",
        "object": ALICE,
    }
    assert await inbound(db, _answer("Accept", theirs)) == "ignored"
    assert await rows(db, "SELECT state FROM following") == [("pending",)]


async def test_unfollow_sends_undo_embedding_our_follow(db: Database) -> None:
    follow_id = await _following(db)
    await follows.unfollow(db, URLS, ALICE)
    assert await rows(db, "SELECT * FROM following") == []
    [undo] = await emitted(db, "Undo")
    assert undo["actor"] == URLS.actor
    assert undo["object"]["id"] == follow_id
    assert (undo["object"]["type"], undo["object"]["object"]) == ("Follow", ALICE)
    assert await queued_to(db, undo["id"]) == [(ALICE + "/inbox", ALICE, "pending")]


async def test_unfollow_someone_we_do_not_follow(db: Database) -> None:
    with pytest.raises(NotFound):
        await follows.unfollow(db, URLS, ALICE)
