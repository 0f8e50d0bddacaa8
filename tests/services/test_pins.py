"""Pinned thoughts (services/pins.py) on a real SQLite file: the limit, the order, the `Add` and
`Remove` queued for followers in the same transaction, and deletion unpinning (R86)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from fedistream.core.remote_actor import RemoteActor
from fedistream.core.urls import Urls
from fedistream.errors import BadInput, Gone, NotFound
from fedistream.services import pins
from fedistream.services import posts as post_service
from fedistream.services.posts import Draft
from fedistream.store import actors as actor_store
from fedistream.store import followers as follower_store
from fedistream.store import meta
from fedistream.store import posts as post_store
from fedistream.store.db import Database

URLS = Urls("https://blog.example.test")
FOLLOWER = "http://127.0.0.1:9/users/alice"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def _publish(db: Database, text: str, when: datetime = T0) -> str:
    post = await post_service.publish(db, Draft(text), max_chars=5000, now=when)
    return post.id


async def _follower(db: Database) -> None:
    actor = RemoteActor(
        id=FOLLOWER, type="Person", inbox=FOLLOWER + "/inbox", shared_inbox=None,
        key_id=None, public_key_pem=None, username="alice", domain="127.0.0.1:9",
        name=None, url=None, icon_url=None, summary=None,
    )  # fmt: skip
    await actor_store.upsert(db, actor, {"id": FOLLOWER}, T0)
    async with db.transaction() as conn:
        await follower_store.upsert_follower(
            conn, FOLLOWER, FOLLOWER + "#follow/1", follower_store.ACCEPTED, "2024-05-01T00:00:00Z"
        )


async def _emitted(db: Database, kind: str) -> list[dict[str, object]]:
    rows = await db.fetchall(
        "SELECT a.json, d.inbox FROM activities a JOIN deliveries d ON d.activity_id = a.id "
        "WHERE a.type = ? ORDER BY a.created_at, a.rowid",
        (kind,),
    )
    return [{**json.loads(r["json"]), "_inbox": r["inbox"]} for r in rows]


async def test_pin_lists_newest_pin_first_and_unpin_removes(db: Database) -> None:
    first = await _publish(db, "first")
    second = await _publish(db, "second", T0 + timedelta(minutes=1))
    assert await pins.pin(db, second, now=T0)
    assert await pins.pin(db, first, now=T0 + timedelta(hours=1))
    assert await pins.pinned_ids(db) == [first, second]  # the newest *pin*, not the newest thought
    assert [p.source for p in await pins.pinned_posts(db)] == ["first", "second"]

    assert await pins.pin(db, first) is False  # already pinned: nothing changes
    assert await pins.unpin(db, first)
    assert await pins.unpin(db, first) is False
    assert await pins.pinned_ids(db) == [second]


async def test_pins_made_in_one_second_keep_their_order(db: Database) -> None:
    ids = [await _publish(db, f"n{i}") for i in range(3)]
    for post_id in ids:
        await pins.pin(db, post_id, now=T0)
    assert await pins.pinned_ids(db) == list(reversed(ids))


async def test_at_most_five_pins_with_a_clear_message(db: Database) -> None:
    ids = [await _publish(db, f"thought {i}") for i in range(pins.MAX_PINS + 1)]
    for post_id in ids[: pins.MAX_PINS]:
        assert await pins.pin(db, post_id)
    with pytest.raises(BadInput) as caught:
        await pins.pin(db, ids[-1])
    assert "at most 5" in caught.value.public_message
    assert "Unpin one" in caught.value.public_message
    assert ids[-1] not in await pins.pinned_ids(db)
    # Pinning one that is already pinned is not "a sixth".
    assert await pins.pin(db, ids[0]) is False
    await pins.unpin(db, ids[0])
    assert await pins.pin(db, ids[-1])


async def test_unknown_and_deleted_thoughts_cannot_be_pinned(db: Database) -> None:
    with pytest.raises(NotFound):
        await pins.pin(db, "0000000000000000")
    post_id = await _publish(db, "soon gone")
    await post_service.delete(db, post_id)
    with pytest.raises(Gone):
        await pins.pin(db, post_id)


async def test_deleting_a_pinned_thought_unpins_it(db: Database) -> None:
    kept = await _publish(db, "kept")
    gone = await _publish(db, "gone")
    await pins.pin(db, kept)
    await pins.pin(db, gone)
    await post_service.delete(db, gone)
    assert await pins.pinned_ids(db) == [kept]
    # The row itself is gone (a soft delete does not cascade), so it no longer counts.
    assert [tuple(r) for r in await db.fetchall("SELECT post_id FROM pins")] == [(kept,)]


async def test_a_stale_pin_of_a_tombstone_never_shows(db: Database) -> None:
    """Even if a thought is tombstoned by a path that forgets its pin, reads skip it."""
    post_id = await _publish(db, "tombstoned elsewhere")
    await pins.pin(db, post_id)
    async with db.transaction() as conn:
        await post_store.mark_deleted(conn, post_id, "2024-05-02T00:00:00Z")
    assert await pins.pinned_ids(db) == []
    assert await pins.pinned_posts(db) == []


async def test_pin_and_unpin_send_add_and_remove_to_followers(db: Database) -> None:
    await _follower(db)
    post_id = await _publish(db, "pin me")
    before = await meta.stream_version(db)
    await pins.pin(db, post_id, urls=URLS)
    assert await meta.stream_version(db) != before  # public pages change: caches must see it

    (add,) = await _emitted(db, "Add")
    assert add["actor"] == URLS.actor
    assert add["object"] == URLS.post(post_id)
    assert add["target"] == URLS.featured
    assert add["_inbox"] == FOLLOWER + "/inbox"
    assert str(add["id"]).startswith(URLS.post(post_id) + "#")

    await pins.unpin(db, post_id, urls=URLS)
    (remove,) = await _emitted(db, "Remove")
    assert (remove["object"], remove["target"]) == (URLS.post(post_id), URLS.featured)
    assert remove["id"] != add["id"]

    # Pin again: a fresh id, so the peer's inbox does not drop it as a replay.
    await pins.pin(db, post_id, urls=URLS)
    assert len({a["id"] for a in await _emitted(db, "Add")}) == 2


async def test_refused_pin_queues_nothing(db: Database) -> None:
    await _follower(db)
    ids = [await _publish(db, f"t{i}") for i in range(pins.MAX_PINS + 1)]
    for post_id in ids[:-1]:
        await pins.pin(db, post_id, urls=URLS)
    with pytest.raises(BadInput):
        await pins.pin(db, ids[-1], urls=URLS)
    assert len(await _emitted(db, "Add")) == pins.MAX_PINS


async def test_the_stream_is_led_by_pins_on_its_first_page_only(db: Database) -> None:
    old = await _publish(db, "old", T0)
    new = await _publish(db, "new", T0 + timedelta(days=1))
    await pins.pin(db, old)
    page = await post_store.latest_page(db, None, 20)
    lead, rest = await pins.lead_stream(db, page, first_page=True)
    assert [p.id for p in lead] == [old]
    assert [p.id for p in rest.posts] == [new]  # not repeated under the pinned lead
    older = await post_store.latest_page(db, new, 20)
    lead, rest = await pins.lead_stream(db, older, first_page=False)
    assert lead == [] and [p.id for p in rest.posts] == [old]  # in its place in the archive
