"""The remote actor cache on a real SQLite file."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

from fedistream.core.remote_actor import RemoteActor
from fedistream.store import actors
from fedistream.store.db import Database

WHEN = datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC)

ALICE = RemoteActor(
    id="https://peer.example/users/alice",
    type="Person",
    inbox="https://peer.example/users/alice/inbox",
    shared_inbox="https://peer.example/inbox",
    key_id="https://peer.example/users/alice#main-key",
    public_key_pem="-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----\n",
    username="alice",
    domain="peer.example",
    name="Alice ✨",
    url="https://peer.example/@alice",
    icon_url="https://peer.example/a.png",
    summary="<p>hi</p>",
)
BOB = RemoteActor(
    id="https://other.example/u/bob",
    type="Service",
    inbox="https://other.example/u/bob/inbox",
    shared_inbox=None,
    key_id=None,
    public_key_pem=None,
    username=None,
    domain="other.example",
    name=None,
    url=None,
    icon_url=None,
    summary=None,
)


async def test_upsert_then_get_round_trips_every_field(db: Database) -> None:
    await actors.upsert(db, ALICE, {"id": ALICE.id, "type": "Person"}, WHEN)
    await actors.upsert(db, BOB, json.dumps({"id": BOB.id}), WHEN)
    cached = await actors.get(db, ALICE.id)
    assert cached is not None
    assert cached.actor == ALICE
    assert cached.fetched_at == WHEN
    assert (await actors.get(db, BOB.id)).actor == BOB  # type: ignore[union-attr]
    assert await actors.get(db, "https://nobody.example/") is None
    assert await actors.get_document(db, ALICE.id) == {"id": ALICE.id, "type": "Person"}
    assert sorted(await actors.all_ids(db)) == sorted([ALICE.id, BOB.id])


async def test_upsert_inside_a_transaction_replaces_the_row(db: Database) -> None:
    await actors.upsert(db, ALICE, {}, WHEN)
    rotated = dataclasses.replace(ALICE, key_id=ALICE.id + "#key-2", name="Alice")
    later = WHEN.replace(hour=13)
    async with db.transaction() as conn:
        await actors.upsert(conn, rotated, {"v": 2}, later)
    cached = await actors.get(db, ALICE.id)
    assert cached is not None and cached.actor == rotated and cached.fetched_at == later
    assert await actors.get_document(db, ALICE.id) == {"v": 2}
    assert await actors.get_by_key_id(db, ALICE.key_id or "") is None
    assert (await actors.get_by_key_id(db, ALICE.id + "#key-2")).actor == rotated  # type: ignore[union-attr]
    rows = await db.fetchall("SELECT id FROM actors")
    assert len(rows) == 1


async def test_get_by_key_id(db: Database) -> None:
    await actors.upsert(db, ALICE, {}, WHEN)
    await actors.upsert(db, BOB, {}, WHEN)
    found = await actors.get_by_key_id(db, "https://peer.example/users/alice#main-key")
    assert found is not None and found.actor.id == ALICE.id
    assert await actors.get_by_key_id(db, "https://peer.example/users/alice") is None


async def test_delete(db: Database) -> None:
    await actors.upsert(db, ALICE, {}, WHEN)
    async with db.transaction() as conn:
        assert await actors.delete(conn, ALICE.id) is True
        assert await actors.delete(conn, ALICE.id) is False
    assert await actors.get(db, ALICE.id) is None


async def test_upsert_queues_the_avatar_for_the_media_cache(db: Database) -> None:
    """Pages only show cached avatars, so the row naming one queues it (no table scans)."""
    await actors.upsert(db, ALICE, {"id": ALICE.id}, WHEN)  # through the database
    async with db.transaction() as conn:  # and inside a caller's transaction
        await actors.upsert(conn, BOB, {"id": BOB.id}, WHEN)  # no icon: nothing queued
        await actors.upsert(
            conn, dataclasses.replace(BOB, icon_url="javascript:alert(1)"), {"id": BOB.id}, WHEN
        )
    rows = await db.fetchall("SELECT url, state FROM remote_media")
    assert [(r["url"], r["state"]) for r in rows] == [(ALICE.icon_url, "pending")]
