"""The owner as an ActivityPub actor: the Person document, and telling followers it changed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fedistream.core import activitypub
from fedistream.core.timefmt import parse_iso
from fedistream.core.urls import Urls
from fedistream.services import outbox, owner
from fedistream.settings import Settings
from fedistream.store import meta
from fedistream.store.db import Database

_MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}


def media_ref(urls: Urls, name: str | None) -> activitypub.MediaRef | None:
    if not name:
        return None
    media_type = _MEDIA_TYPES.get(name.rsplit(".", 1)[-1], "image/jpeg")
    return activitypub.MediaRef(url=urls.media(name), media_type=media_type)


async def actor_document(db: Database, settings: Settings, public_key_pem: str) -> dict[str, Any]:
    urls = Urls(settings.base_url)
    profile = await owner.get_profile(db, settings)
    created = await meta.get(db, meta.CREATED_AT) or "2024-01-01T00:00:00Z"
    return activitypub.actor_document(
        urls,
        username=settings.username,
        display_name=profile.display_name,
        summary_html=profile.bio_html,
        avatar=media_ref(urls, profile.avatar),
        header=media_ref(urls, profile.header),
        links=[(link.label, link.url) for link in profile.links],
        public_key_pem=public_key_pem,
        published=parse_iso(created),
        manually_approves_followers=settings.manually_approves_followers,
    )


async def announce_profile_update(
    db: Database, settings: Settings, public_key_pem: str, now: datetime | None = None
) -> None:
    """Send `Update{Person}` to every follower so their servers refresh name, bio, avatar (R18)."""
    when = now or datetime.now(UTC)
    urls = Urls(settings.base_url)
    document = await actor_document(db, settings, public_key_pem)
    update = activitypub.update_actor_activity(urls, document, when)
    async with db.transaction() as conn:
        await outbox.emit_to_followers(conn, update, post_id=None, now=when)
