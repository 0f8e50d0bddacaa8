"""`blocks.find` answers from memory (it runs twice per inbox POST); `forget_cached` after a
commit makes the next answer read the table again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from fedistream.store import blocks
from fedistream.store.db import Database

ACTOR = "https://peer.example/users/mallory"


async def test_find_sees_a_block_once_the_cache_is_forgotten(db: Database) -> None:
    assert await blocks.find(db, ACTOR, ["peer.example"]) is None
    async with db.transaction() as conn:
        await blocks.add(conn, "peer.example", blocks.DOMAIN, "2026-11-26T00:00:00Z")
    # Held in memory until told: services/moderation calls forget_cached after each commit.
    assert await blocks.find(db, ACTOR, ["peer.example"]) is None
    blocks.forget_cached(db)
    assert await blocks.find(db, ACTOR, ["peer.example"]) == blocks.Match(
        "peer.example", blocks.DOMAIN
    )
    assert await blocks.find(db, "", ["other.example"]) is None

    async with db.transaction() as conn:
        await blocks.add(conn, ACTOR, blocks.ACTOR, "2026-11-26T00:00:00Z")
        await blocks.remove(conn, "peer.example")
    blocks.forget_cached(db)
    assert await blocks.find(db, ACTOR, ["peer.example"]) == blocks.Match(ACTOR, blocks.ACTOR)
    assert await blocks.find(db, ACTOR + "2", ["peer.example"]) is None


async def test_a_read_overtaken_by_a_change_is_not_kept(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load that read the table before a block was committed must not be cached after it."""
    real_fetchall = db.fetchall

    async def read_then_someone_blocks(sql: str, params: Sequence[Any] = ()) -> list[Any]:
        rows = await real_fetchall(sql, params)  # the table as it was
        async with db.transaction() as conn:
            await blocks.add(conn, ACTOR, blocks.ACTOR, "2026-11-26T00:00:00Z")
        blocks.forget_cached(db)
        return rows

    monkeypatch.setattr(db, "fetchall", read_then_someone_blocks)
    assert await blocks.find(db, ACTOR, []) is None  # this answer predates the block…
    monkeypatch.undo()
    assert await blocks.find(db, ACTOR, []) == blocks.Match(ACTOR, blocks.ACTOR)  # …not kept
