"""Emitting activities: store what we say, and queue one delivery per distinct inbox, in the
caller's transaction (the transactional outbox: the change and its deliveries commit together)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import aiosqlite

from fedistream.core.timefmt import to_iso
from fedistream.store import activities, deliveries
from fedistream.store import followers as follower_store


def encode(activity: dict[str, Any]) -> str:
    """The exact bytes we deliver (and serve when the activity is dereferenced)."""
    return json.dumps(activity, ensure_ascii=False, separators=(",", ":"))


async def emit(
    conn: aiosqlite.Connection,
    activity: dict[str, Any],
    *,
    post_id: str | None,
    targets: Iterable[tuple[str, str | None]],
    now: datetime,
) -> None:
    await activities.insert(
        conn, activity["id"], activity["type"], post_id, encode(activity), to_iso(now)
    )
    await deliveries.enqueue(conn, activity["id"], list(targets), now)


async def emit_to_followers(
    conn: aiosqlite.Connection,
    activity: dict[str, Any],
    *,
    post_id: str | None,
    now: datetime,
    extra: Iterable[tuple[str, str | None]] = (),
) -> None:
    """Deliver to every accepted follower's (shared) inbox plus `extra` targets (mentions)."""
    targets = dict(await follower_store.delivery_targets(conn))
    for inbox, recipient in extra:
        targets.setdefault(inbox, recipient)
    await emit(conn, activity, post_id=post_id, targets=targets.items(), now=now)
