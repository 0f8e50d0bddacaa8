"""Use cases for thoughts: publish, edit, delete (validation, rendering, one transaction each)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import aiosqlite

from fedistream.core import activitypub
from fedistream.core.ids import make_id
from fedistream.core.models import Mention, Post
from fedistream.core.render import render_markdown
from fedistream.core.timefmt import to_iso
from fedistream.core.urls import Urls
from fedistream.errors import BadInput, FedistreamError, Gone, NotFound
from fedistream.services import attachments as attachment_service
from fedistream.services import moderation, outbox
from fedistream.services.follows import UnknownActor, actor_inbox
from fedistream.services.ports import ActorDirectory
from fedistream.store import meta
from fedistream.store import pins as pin_store
from fedistream.store import posts as post_store
from fedistream.store.db import Database

MAX_TITLE_CHARS = 200
MAX_SUMMARY_CHARS = 500
MAX_MENTIONS = 10  # resolved per thought; more stay plain text


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


def build_post(
    draft: Draft, post_id: str, created_at: datetime, mentions: Mapping[str, Mention] | None = None
) -> Post:
    """Render a validated draft. `mentions` are the resolved accounts (by "user@domain"); any
    other @user@domain stays plain text."""
    known = dict(mentions or {})
    rendered = render_markdown(draft.source, {h: m.url for h, m in known.items()})
    return Post(
        id=post_id,
        source=draft.source,
        html=rendered.html,
        text=rendered.text,
        title=draft.title or None,
        summary=draft.summary or None,
        created_at=created_at,
        tags=rendered.tags,
        mentions=tuple(known[h] for h in rendered.mentions if h in known),
    )


def new_post_id(created_at: datetime) -> str:
    return make_id(created_at, secrets.randbits(32))


async def resolve_mentions(source: str, directory: ActorDirectory | None) -> dict[str, Mention]:
    """Look up every @user@domain in the text by WebFinger (in parallel, before any transaction).
    An account that cannot be found is simply not linked: the thought still publishes."""
    if directory is None:
        return {}
    handles = render_markdown(source).mentions[:MAX_MENTIONS]

    async def lookup(handle: str) -> Mention | None:
        try:
            actor = await directory.lookup_handle(handle)
        except (FedistreamError, LookupError, ValueError):
            return None
        return Mention(handle=handle, actor_id=actor.id, url=actor.url or actor.id)

    found = await asyncio.gather(*(lookup(h) for h in handles))
    return {m.handle: m for m in found if m is not None}


async def _mention_targets(conn: aiosqlite.Connection, post: Post) -> list[tuple[str, str | None]]:
    """Personal inboxes of the mentioned accounts (cached when they were resolved)."""
    targets: list[tuple[str, str | None]] = []
    for mention in post.mentions:
        if await moderation.is_blocked_in(conn, mention.actor_id):
            continue  # the owner blocked them: a mention stays a link, nothing is delivered
        try:
            targets.append((await actor_inbox(conn, mention.actor_id), mention.actor_id))
        except UnknownActor:
            continue
    if post.in_reply_to:
        # A reply also goes to the author of the post it answers, mentioned or not.
        cursor = await conn.execute(
            "SELECT actor_id FROM remote_posts WHERE id = ?", (post.in_reply_to,)
        )
        row = await cursor.fetchone()
        if row and not await moderation.is_blocked_in(conn, row[0]):
            with contextlib.suppress(UnknownActor):
                targets.append((await actor_inbox(conn, row[0]), row[0]))
    return targets


async def publish(
    db: Database,
    draft: Draft,
    *,
    max_chars: int,
    now: datetime | None = None,
    urls: Urls | None = None,
    directory: ActorDirectory | None = None,
    attachments: Sequence[attachment_service.ImageAttachment] = (),
    in_reply_to: str | None = None,
) -> Post:
    """Store a new thought. With `urls`, its Create is queued for every follower (and mentioned
    account) in the same transaction; imports pass no urls, so old thoughts are not pushed into
    timelines. `attachments`: stored images (services.attachments.resolve), in order.
    `in_reply_to`: the Note it answers (the owner's reply; its author is delivered to too)."""
    clean = validate(draft, max_chars)
    created = now or datetime.now(UTC)
    mentions = await resolve_mentions(clean.source, directory)
    post = build_post(clean, new_post_id(created), created, mentions)
    if in_reply_to:
        post = replace(post, in_reply_to=in_reply_to)
    async with db.transaction() as conn:
        await post_store.insert_post(conn, post)
        await attachment_service.attach(conn, post.id, attachments)
        await meta.bump_stream_version(conn)
        if urls is not None:
            note = activitypub.note_object(
                urls, post, attachments=attachment_service.note_attachments(urls, attachments)
            )
            create = activitypub.create_activity(urls, note)
            await outbox.emit_to_followers(
                conn, create, post_id=post.id, now=created,
                extra=await _mention_targets(conn, post),
            )  # fmt: skip
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
    directory: ActorDirectory | None = None,
    attachments: Sequence[attachment_service.ImageAttachment] | None = None,
) -> Post:
    """`attachments`: the thought's images after the edit, in order; None keeps them as they are
    (the Update still carries them: a Note without them would drop them on Mastodon)."""
    current = await get_live(db, post_id)
    clean = validate(draft, max_chars)
    if attachments is None:
        attachments = await attachment_service.for_post(db, post_id)
    when = now or datetime.now(UTC)
    mentions = await resolve_mentions(clean.source, directory)
    edited = replace(
        build_post(clean, current.id, current.created_at, mentions),
        updated_at=when,
        in_reply_to=current.in_reply_to,  # an edited reply still answers the same note
    )
    async with db.transaction() as conn:
        await post_store.update_post(conn, edited)
        await attachment_service.attach(conn, edited.id, attachments)
        await meta.bump_stream_version(conn)
        if urls is not None:
            note = activitypub.note_object(
                urls, edited, attachments=attachment_service.note_attachments(urls, attachments)
            )
            update = activitypub.update_activity(urls, note, when)
            # Accounts mentioned before or after the edit both need to see it.
            audience = replace(edited, mentions=(*current.mentions, *edited.mentions))
            await outbox.emit_to_followers(
                conn, update, post_id=edited.id, now=when,
                extra=await _mention_targets(conn, audience),
            )  # fmt: skip
    return edited


async def delete(
    db: Database, post_id: str, *, now: datetime | None = None, urls: Urls | None = None
) -> None:
    current = await get_live(db, post_id)
    when = now or datetime.now(UTC)
    async with db.transaction() as conn:
        await post_store.mark_deleted(conn, post_id, to_iso(when))
        await attachment_service.attach(conn, post_id, [])  # its images go with it
        await pin_store.remove(conn, post_id)  # a soft delete: ON DELETE CASCADE never fires
        await meta.bump_stream_version(conn)
        if urls is not None:
            delete_activity = activitypub.delete_activity(urls, post_id, when)
            await outbox.emit_to_followers(
                conn, delete_activity, post_id=post_id, now=when,
                extra=await _mention_targets(conn, current),
            )  # fmt: skip
