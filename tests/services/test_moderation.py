"""Blocks (services/moderation.py) on a real SQLite file: what a block matches, and everything it
does in one transaction — follows removed with Reject/Undo, a Block sent to a blocked actor (R70),
their notes, interactions, notifications and queued activities cleared — and unblocking."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from fedistream.core.remote_actor import RemoteActor, domain_of
from fedistream.core.urls import Urls
from fedistream.errors import BadInput, NotFound, RemoteFetchFailed
from fedistream.services import inbox as inbox_service
from fedistream.services import moderation
from fedistream.services import posts as post_service
from fedistream.services.inbox import InboxPolicy, InboxProcessor
from fedistream.services.posts import Draft
from fedistream.store import actors as actor_store
from fedistream.store import blocks as block_store
from fedistream.store import deliveries as delivery_store
from fedistream.store import followers as follower_store
from fedistream.store import meta
from fedistream.store.db import Database

URLS = Urls("https://blog.example.test")
EVIL = "https://evil.example/users/troll"
EVIL_SUB = "https://social.evil.example/users/minion"
FRIEND = "https://friendly.example/users/pal"
NOT_EVIL = "https://notevil.example/users/neighbour"  # shares a suffix, not a parent domain
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _actor(actor_id: str, *, shared: str | None = None) -> RemoteActor:
    return RemoteActor(
        id=actor_id, type="Person", inbox=actor_id + "/inbox", shared_inbox=shared,
        key_id=actor_id + "#main-key", public_key_pem=None,
        username=actor_id.rsplit("/", 1)[-1], domain=domain_of(actor_id),
        name=None, url=None, icon_url=None, summary=None,
    )  # fmt: skip


@dataclass
class Directory:
    """`ActorDirectory` from a dict, caching what it hands out like the real resolver."""

    db: Database
    actors: dict[str, RemoteActor] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    async def _hand_out(self, actor: RemoteActor) -> RemoteActor:
        await actor_store.upsert(self.db, actor, {"id": actor.id}, T0)
        return actor

    async def lookup_handle(self, handle: str) -> RemoteActor:
        for actor in self.actors.values():
            if actor.handle == "@" + handle.lstrip("@"):
                return await self._hand_out(actor)
        raise RemoteFetchFailed(f"WebFinger found nobody for {handle}")

    async def get_actor(self, actor_id: str, *, refresh: bool = False) -> RemoteActor:
        self.fetched.append(actor_id)
        if actor_id not in self.actors:
            raise RemoteFetchFailed("their server is down")
        return await self._hand_out(self.actors[actor_id])

    async def actor_for_key(self, key_id: str, *, refresh: bool = False) -> RemoteActor:
        raise NotImplementedError

    def known_actor(self, actor_id: str) -> bool:
        return actor_id in self.actors


# --- building a world ---------------------------------------------------------------------------


async def _cache(db: Database, *actor_ids: str, shared: str | None = None) -> None:
    for actor_id in actor_ids:
        await actor_store.upsert(db, _actor(actor_id, shared=shared), {"id": actor_id}, T0)


async def _follows_both_ways(db: Database, actor_id: str) -> None:
    async with db.transaction() as conn:
        await follower_store.upsert_follower(
            conn, actor_id, actor_id + "#follows/1", follower_store.ACCEPTED, "2024-01-01T00:00:00Z"
        )
        await follower_store.upsert_following(
            conn, actor_id, URLS.follow_activity("ours"), follower_store.ACCEPTED,
            "2024-01-01T00:00:00Z",
        )  # fmt: skip


async def _their_traces(db: Database, actor_id: str, post_id: str) -> None:
    """A note, a like, a notification and a not-yet-applied activity from `actor_id`."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO remote_posts (id, actor_id, content_html, published, json, received_at) "
            "VALUES (?, ?, '<p>hi</p>', '2024-01-01T00:00:00Z', '{}', '2024-01-01T00:00:00Z')",
            (actor_id + "/notes/1", actor_id),
        )
        await conn.execute(
            "INSERT INTO interactions (id, kind, actor_id, post_id, created_at) "
            "VALUES (?, 'like', ?, ?, '2024-01-01T00:00:00Z')",
            (actor_id + "/likes/1", actor_id, post_id),
        )
        await conn.execute(
            "INSERT INTO notifications (kind, actor_id, post_id, object_id, created_at) "
            "VALUES ('like', ?, ?, ?, '2024-01-01T00:00:00Z')",
            (actor_id, post_id, actor_id + "/likes/1"),
        )
        await conn.execute(
            "INSERT INTO inbox (id, actor_id, type, json, state, received_at) "
            "VALUES (?, ?, 'Create', '{}', 'pending', '2024-01-01T00:00:00Z')",
            (actor_id + "/create/9", actor_id),
        )


async def _count(db: Database, sql: str, *params: Any) -> int:
    row = await db.fetchone(f"SELECT count(*) FROM ({sql})", params)
    assert row is not None
    return int(row[0])


async def _traces_of(db: Database, actor_id: str) -> dict[str, int]:
    return {
        table: await _count(db, f"SELECT 1 FROM {table} WHERE actor_id = ?", actor_id)
        for table in ("followers", "following", "remote_posts", "interactions", "notifications")
    } | {
        "pending inbox": await _count(
            db, "SELECT 1 FROM inbox WHERE actor_id = ? AND state = 'pending'", actor_id
        )
    }


async def _sent_to(db: Database, inbox: str) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT a.json FROM deliveries d JOIN activities a ON a.id = d.activity_id "
        "WHERE d.inbox = ? AND d.state = 'pending' ORDER BY d.id",
        (inbox,),
    )
    return [json.loads(r["json"]) for r in rows]


async def _a_thought(db: Database) -> str:
    return (await post_service.publish(db, Draft("mine"), max_chars=500, now=T0)).id


# --- matching (pure) ----------------------------------------------------------------------------


def test_domain_keys_cover_the_host_and_its_parents() -> None:
    assert moderation.domain_keys("a.b.example.com") == [
        "a.b.example.com", "b.example.com", "example.com", "com",
    ]  # fmt: skip
    assert moderation.domain_keys("social.example:8443") == [
        "social.example:8443", "social.example", "example",
    ]  # fmt: skip
    assert moderation.domain_keys("127.0.0.1:8001") == ["127.0.0.1:8001", "127.0.0.1"]
    assert moderation.domain_keys("[::1]:8000") == ["[::1]:8000", "[::1]"]


@pytest.mark.parametrize(
    ("blocked", "host", "covered"),
    [
        ("evil.example", "evil.example", True),
        ("evil.example", "social.evil.example", True),
        ("evil.example", "evil.example:8443", True),  # a domain block covers every port
        ("evil.example", "notevil.example", False),
        ("social.evil.example", "evil.example", False),
        ("127.0.0.1:8001", "127.0.0.1:8001", True),  # with a port: that server only
        ("127.0.0.1:8001", "127.0.0.1:8002", False),
        ("127.0.0.1", "127.0.0.1:8002", True),
    ],
)
def test_covers(blocked: str, host: str, covered: bool) -> None:
    assert moderation.covers(blocked, host) is covered


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("@troll@evil.example", ("handle", "@troll@evil.example")),
        ("troll@evil.example", ("handle", "@troll@evil.example")),
        (" https://evil.example/users/troll ", ("url", EVIL)),
        ("Evil.Example.", ("domain", "evil.example")),
        ("127.0.0.1:8001", ("domain", "127.0.0.1:8001")),
    ],
)
def test_parse_target(text: str, parsed: tuple[str, str]) -> None:
    assert moderation.parse_target(text) == parsed


@pytest.mark.parametrize("text", ["", "   ", "two words", "@@x", "user@", "evil..example", "a/b"])
def test_parse_target_refuses_what_is_neither(text: str) -> None:
    with pytest.raises(BadInput):
        moderation.parse_target(text)


# --- blocking an actor --------------------------------------------------------------------------


async def test_block_actor_removes_follows_content_and_queues_goodbyes(db: Database) -> None:
    post_id = await _a_thought(db)
    await _cache(db, EVIL, FRIEND)
    for actor_id in (EVIL, FRIEND):
        await _follows_both_ways(db, actor_id)
        await _their_traces(db, actor_id, post_id)
    # Something queued for them before the block (e.g. a mention) must not go out any more.
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO activities (id, type, json, created_at) VALUES ('x', 'Create', '{}', ?)",
            ("2024-01-01T00:00:00Z",),
        )
        await delivery_store.enqueue(conn, "x", [(EVIL + "/inbox", EVIL)], T0)
    version = await meta.stream_version(db)

    outcome = await moderation.block(db, URLS, EVIL, now=T0)

    assert outcome.added and (outcome.removed_followers, outcome.removed_following) == (1, 1)
    assert await _traces_of(db, EVIL) == dict.fromkeys(
        ("followers", "following", "remote_posts", "interactions", "notifications",
         "pending inbox"), 0,
    )  # fmt: skip
    assert set((await _traces_of(db, FRIEND)).values()) == {1}  # nobody else is touched
    assert await meta.stream_version(db) != version

    old = await db.fetchone("SELECT state, last_error FROM deliveries WHERE activity_id = 'x'")
    assert old is not None and (old["state"], old["last_error"]) == ("dead", "recipient blocked")

    sent = await _sent_to(db, EVIL + "/inbox")
    assert [a["type"] for a in sent] == ["Reject", "Undo", "Block"]
    reject, undo, block = sent
    assert reject["object"] == {
        "id": EVIL + "#follows/1", "type": "Follow", "actor": EVIL, "object": URLS.actor,
    }  # fmt: skip
    assert undo["object"]["type"] == "Follow" and undo["object"]["object"] == EVIL
    assert undo["object"]["id"] == URLS.follow_activity("ours")
    assert (block["actor"], block["object"], block["to"]) == (URLS.actor, EVIL, [EVIL])

    rows = await db.fetchall("SELECT target, kind FROM blocks")
    assert [tuple(r) for r in rows] == [(EVIL, "actor")]


async def test_block_is_all_or_nothing(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    post_id = await _a_thought(db)
    await _cache(db, EVIL)
    await _follows_both_ways(db, EVIL)
    await _their_traces(db, EVIL, post_id)

    async def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(block_store, "purge_content", broken)
    with pytest.raises(RuntimeError):
        await moderation.block(db, URLS, EVIL)
    assert set((await _traces_of(db, EVIL)).values()) == {1}
    assert await _count(db, "SELECT 1 FROM blocks") == 0
    assert await _count(db, "SELECT 1 FROM deliveries") == 0


async def test_blocking_twice_changes_nothing_more(db: Database) -> None:
    await _cache(db, EVIL)
    await moderation.block(db, URLS, EVIL)
    queued = await _count(db, "SELECT 1 FROM deliveries")
    again = await moderation.block(db, URLS, EVIL)
    assert again.added is False
    assert await _count(db, "SELECT 1 FROM deliveries") == queued


async def test_block_by_handle_uses_webfinger(db: Database) -> None:
    directory = Directory(db, {EVIL: _actor(EVIL)})
    outcome = await moderation.block(db, URLS, "@troll@evil.example", directory=directory)
    assert outcome.block == moderation.Block("actor", EVIL)
    # The lookup cached the actor, so it is told it was blocked.
    assert [a["type"] for a in await _sent_to(db, EVIL + "/inbox")] == ["Block"]


async def test_block_by_url_stands_when_their_server_is_down(db: Database) -> None:
    directory = Directory(db)
    outcome = await moderation.block(db, URLS, EVIL, directory=directory)
    assert outcome.added and directory.fetched == [EVIL]
    assert await moderation.blocked_reason(db, EVIL)
    assert await _count(db, "SELECT 1 FROM deliveries") == 0  # no inbox known: nobody to tell


async def test_an_unknown_handle_or_yourself_cannot_be_blocked(db: Database) -> None:
    directory = Directory(db)
    with pytest.raises(NotFound, match="Could not find"):
        await moderation.block(db, URLS, "@nobody@evil.example", directory=directory)
    with pytest.raises(BadInput, match="you"):
        await moderation.block(db, URLS, URLS.actor)
    with pytest.raises(BadInput, match="own domain"):
        await moderation.block(db, URLS, "blog.example.test")
    with pytest.raises(BadInput, match="own domain"):
        await moderation.block(db, URLS, "example.test")  # a parent of ours covers us too
    assert await _count(db, "SELECT 1 FROM blocks") == 0


async def test_blocked_reason_names_the_actor_or_the_domain(db: Database) -> None:
    await moderation.block(db, URLS, EVIL)
    assert (
        await moderation.blocked_reason(db, EVIL) == f"The actor {EVIL} is blocked by this server."
    )
    assert await moderation.blocked_reason(db, "https://evil.example/users/other") is None
    await moderation.block(db, URLS, "evil.example")
    reason = await moderation.blocked_reason(db, EVIL_SUB)
    assert reason == "The domain evil.example is blocked by this server."
    assert await moderation.domain_blocked_reason(db, EVIL_SUB + "#main-key") == reason
    assert await moderation.blocked_reason(db, NOT_EVIL) is None
    assert await moderation.domain_blocked_reason(db, NOT_EVIL + "#main-key") is None


# --- blocking a domain --------------------------------------------------------------------------


async def test_domain_block_clears_every_account_there(db: Database) -> None:
    post_id = await _a_thought(db)
    shared = "https://social.evil.example/inbox"
    await _cache(db, EVIL, FRIEND, NOT_EVIL)
    await _cache(db, EVIL_SUB, shared=shared)
    for actor_id in (EVIL, EVIL_SUB, FRIEND, NOT_EVIL):
        await _follows_both_ways(db, actor_id)
        await _their_traces(db, actor_id, post_id)
    async with db.transaction() as conn:  # a Create queued for the shared inbox over there
        await conn.execute(
            "INSERT INTO activities (id, type, json, created_at) VALUES ('c', 'Create', '{}', ?)",
            ("2024-01-01T00:00:00Z",),
        )
        await delivery_store.enqueue(conn, "c", [(shared, None), (FRIEND + "/inbox", None)], T0)

    outcome = await moderation.block(db, URLS, "evil.example")

    assert (outcome.removed_followers, outcome.removed_following) == (2, 2)
    for gone in (EVIL, EVIL_SUB):
        assert set((await _traces_of(db, gone)).values()) == {0}
    for kept in (FRIEND, NOT_EVIL):
        assert set((await _traces_of(db, kept)).values()) == {1}
    states = {
        r["inbox"]: r["state"]
        for r in await db.fetchall("SELECT inbox, state FROM deliveries WHERE activity_id = 'c'")
    }
    assert states == {shared: "dead", FRIEND + "/inbox": "pending"}
    # Each gets its Reject and Undo; a domain block sends no Block (as Mastodon).
    for actor_id in (EVIL, EVIL_SUB):
        assert [a["type"] for a in await _sent_to(db, actor_id + "/inbox")] == ["Reject", "Undo"]
    assert await _count(db, "SELECT 1 FROM activities WHERE type = 'Block'") == 0


# --- unblocking ---------------------------------------------------------------------------------


async def test_unblock_sends_undo_of_the_block(db: Database) -> None:
    await _cache(db, EVIL)
    await moderation.block(db, URLS, EVIL)
    (block,) = [a for a in await _sent_to(db, EVIL + "/inbox") if a["type"] == "Block"]
    lifted = await moderation.unblock(db, URLS, EVIL)
    assert lifted == moderation.Block("actor", EVIL)
    assert await moderation.blocked_reason(db, EVIL) is None
    undo = (await _sent_to(db, EVIL + "/inbox"))[-1]
    assert undo["type"] == "Undo"
    assert undo["object"]["id"] == block["id"] and undo["object"]["type"] == "Block"
    with pytest.raises(NotFound):
        await moderation.unblock(db, URLS, EVIL)


async def test_unblock_domain_sends_nothing(db: Database) -> None:
    await moderation.block(db, URLS, "evil.example")
    assert await moderation.unblock(db, URLS, "evil.example") == moderation.Block(
        "domain", "evil.example"
    )
    assert await moderation.blocked_reason(db, EVIL) is None
    assert await _count(db, "SELECT 1 FROM deliveries") == 0


async def test_list_blocks_newest_first_with_actor_details(db: Database) -> None:
    await _cache(db, EVIL)
    await moderation.block(db, URLS, "evil.example", now=T0)
    await moderation.block(db, URLS, EVIL, now=T0.replace(hour=13))
    listed = await moderation.list_blocks(db)
    assert [(b["target"], b["kind"], b["username"]) for b in listed] == [
        (EVIL, "actor", "troll"),
        ("evil.example", "domain", None),
    ]


# --- deliveries afterwards ----------------------------------------------------------------------


async def test_a_mention_of_a_blocked_actor_is_not_delivered(db: Database) -> None:
    directory = Directory(db, {EVIL: _actor(EVIL), FRIEND: _actor(FRIEND)})
    await moderation.block(db, URLS, "@troll@evil.example", directory=directory)
    await post_service.publish(
        db, Draft("hello @troll@evil.example and @pal@friendly.example"),
        max_chars=500, urls=URLS, directory=directory,
    )  # fmt: skip
    created = await db.fetchall(
        "SELECT d.inbox FROM deliveries d JOIN activities a ON a.id = d.activity_id "
        "WHERE a.type = 'Create'"
    )
    assert [r["inbox"] for r in created] == [FRIEND + "/inbox"]


async def test_an_activity_received_just_before_the_block_is_not_applied(db: Database) -> None:
    """The inbox checked the block, then the owner blocked them before the row was applied."""
    await _cache(db, EVIL)
    follow = {
        "@context": "https://www.w3.org/ns/activitystreams", "id": EVIL + "/follows/7",
        "type": "Follow", "actor": EVIL, "object": URLS.actor,
    }  # fmt: skip
    await inbox_service.receive(db, follow, EVIL, T0)
    async with db.transaction() as conn:  # the block lands between receive and apply
        await block_store.add(conn, EVIL, block_store.ACTOR, "2024-05-01T12:00:00Z")
    await InboxProcessor(db, InboxPolicy(URLS, manually_approves_followers=False)).run_once()
    row = await db.fetchone("SELECT state, error FROM inbox WHERE id = ?", (follow["id"],))
    assert row is not None and (row["state"], row["error"]) == ("ignored", "the actor is blocked")
    assert await _count(db, "SELECT 1 FROM followers") == 0
