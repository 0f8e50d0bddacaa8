"""Queries every public page makes must not grow with the archive (bench/README.md, issue 6)."""

from __future__ import annotations

from datetime import UTC, datetime

from fedistream.services import posts as post_service
from fedistream.store import meta
from fedistream.store import pins as pin_store
from fedistream.store import posts as post_store
from fedistream.store.db import Database

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def test_live_pins_walk_the_pins_not_the_thoughts(db: Database) -> None:
    plan = " | ".join(
        str(row[3]) for row in await db.fetchall("EXPLAIN QUERY PLAN " + pin_store._LIVE_PINS)
    )
    assert plan.startswith("SCAN p"), plan
    assert "SCAN t" not in plan, plan


async def test_remembered_count_follows_publish_and_delete(db: Database) -> None:
    assert await post_store.count_live(db) == 0
    first = await post_service.publish(db, post_service.Draft("one"), max_chars=500, now=NOW)
    assert await post_store.count_live(db) == 1
    await post_service.publish(db, post_service.Draft("two"), max_chars=500, now=NOW)
    assert await post_store.count_live(db) == 2
    await post_service.delete(db, first.id, now=NOW)
    assert await post_store.count_live(db) == 1


async def test_versions_move_on_any_commit(db: Database) -> None:
    stream, data = await meta.versions(db)
    await db.execute("INSERT INTO meta (key, value) VALUES ('unrelated', 'x')")
    stream_after, data_after = await meta.versions(db)
    assert stream_after == stream
    assert data_after != data
