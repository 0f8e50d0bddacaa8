"""Use cases for thoughts: publish, edit, delete (validation, rendering, one transaction each)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from fedistream.core import activitypub
from fedistream.core.ids import make_id
from fedistream.core.models import Post
from fedistream.core.render import render_markdown
from fedistream.core.timefmt import to_iso
from fedistream.core.urls import Urls
from fedistream.errors import BadInput, Gone, NotFound
from fedistream.services import outbox
from fedistream.store import meta
from fedistream.store import posts as post_store
from fedistream.store.db import Database

MAX_TITLE_CHARS = 200
MAX_SUMMARY_CHARS = 500


@dataclass(frozen=True, slots=True)
class Draft:
    """What the owner typed. Whitespace around each field is insignificant."""

    source: str
    title: str = ""
    summary: str = ""


def validate(draft: Draft, max_chars: int) -> Draft:
    """Return the cleaned draft or raise BadInput with a message fit for the form."""
    source = draft.source.replace("\r\n", "\n").strip()
    title = " ".join(draft.title.split())
    summary = " ".join(draft.summary.split())
    if not source:
        raise BadInput("The thought is empty: write something before posting.")
    if len(source) > max_chars:
        raise BadInput(
            f"The thought is {len(source):,} characters long; the limit is {max_chars:,}. "
            "Shorten it or split it into two thoughts."
        )
    if len(title) > MAX_TITLE_CHARS:
        raise BadInput(f"The title is {len(title)} characters; the limit is {MAX_TITLE_CHARS}.")
    if len(summary) > MAX_SUMMARY_CHARS:
        raise BadInput(
            f"The content warning is {len(summary)} characters; the limit is {MAX_SUMMARY_CHARS}."
        )
    return Draft(source=source, title=title, summary=summary)


def build_post(draft: Draft, post_id: str, created_at: datetime) -> Post:
    rendered = render_markdown(draft.source)
    return Post(
        id=post_id,
        source=draft.source,
        html=rendered.html,
        text=rendered.text,
        title=draft.title or None,
        summary=draft.summary or None,
        created_at=created_at,
        tags=rendered.tags,
    )


def new_post_id(created_at: datetime) -> str:
    return make_id(created_at, secrets.randbits(32))


async def publish(
    db: Database,
    draft: Draft,
    *,
    max_chars: int,
    now: datetime | None = None,
    urls: Urls | None = None,
) -> Post:
    """Store a new thought. With `urls`, its Create is queued for every follower in the same
    transaction (imports pass no urls: old thoughts are not pushed into timelines)."""
    clean = validate(draft, max_chars)
    created = now or datetime.now(UTC)
    post = build_post(clean, new_post_id(created), created)
    async with db.transaction() as conn:
        await post_store.insert_post(conn, post)
        await meta.bump_stream_version(conn)
        if urls is not None:
            create = activitypub.create_activity(urls, activitypub.note_object(urls, post))
            await outbox.emit_to_followers(conn, create, post_id=post.id, now=created)
    return post


async def get_live(db: Database, post_id: str) -> Post:
    post = await post_store.get_post(db, post_id)
    if post is None:
        raise NotFound("No thought has this address.")
    if post.is_deleted:
        raise Gone("This thought was deleted.")
    return post


async def edit(
    db: Database,
    post_id: str,
    draft: Draft,
    *,
    max_chars: int,
    now: datetime | None = None,
    urls: Urls | None = None,
) -> Post:
    current = await get_live(db, post_id)
    clean = validate(draft, max_chars)
    when = now or datetime.now(UTC)
    edited = replace(build_post(clean, current.id, current.created_at), updated_at=when)
    async with db.transaction() as conn:
        await post_store.update_post(conn, edited)
        await meta.bump_stream_version(conn)
        if urls is not None:
            update = activitypub.update_activity(urls, activitypub.note_object(urls, edited), when)
            await outbox.emit_to_followers(conn, update, post_id=edited.id, now=when)
    return edited


async def delete(
    db: Database, post_id: str, *, now: datetime | None = None, urls: Urls | None = None
) -> None:
    await get_live(db, post_id)
    when = now or datetime.now(UTC)
    async with db.transaction() as conn:
        await post_store.mark_deleted(conn, post_id, to_iso(when))
        await meta.bump_stream_version(conn)
        if urls is not None:
            delete_activity = activitypub.delete_activity(urls, post_id, when)
            await outbox.emit_to_followers(conn, delete_activity, post_id=post_id, now=when)
