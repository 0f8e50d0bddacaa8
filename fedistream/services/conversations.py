"""Conversations around our thoughts (services layer): applying inbound likes, boosts, reactions,
replies, mentions and quotes; assembling the public thread under a permalink; the owner's reply,
and hiding or removing a remote reply.

The inbox calls the `apply_*`/`note_*` functions inside its transaction (every effect is an
upsert or a delete, so applying twice is harmless); pages call `conversation_for`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiosqlite

from fedistream.core import inbound
from fedistream.core.as2 import as_list, first_str, id_of
from fedistream.core.ids import looks_like_id
from fedistream.core.models import Post
from fedistream.core.remote_note import RemoteNote
from fedistream.core.timefmt import parse_iso, to_iso
from fedistream.core.urls import Urls
from fedistream.errors import BadInput, NotFound
from fedistream.services import posts as post_service
from fedistream.services.ports import ActorDirectory
from fedistream.store import interactions, notifications
from fedistream.store import remote_media as remote_media_store
from fedistream.store.db import Database

MAX_DEPTH = 50  # how far up a chain of the owner's replies we look for the thought it hangs under
REPLIES_PAGE = 100  # ids listed in a Note's `replies` collection page


class Unrelated(Exception):
    """Well-formed, but about nothing of ours: the inbox records the activity as 'ignored'."""


def our_post_id(urls: Urls, object_id: str | None) -> str | None:
    """The thought id when `object_id` is one of our Note ids (`{base}/p/{id}`), else None."""
    prefix = urls.post("")
    if not object_id or not object_id.startswith(prefix):
        return None
    rest = object_id[len(prefix) :]
    return rest if looks_like_id(rest) else None


def note_anchor(note_id: str) -> str:
    """A stable HTML id for a remote note in a thread (its URI may hold any character)."""
    return "r-" + hashlib.sha256(note_id.encode("utf-8")).hexdigest()[:12]


async def thread_root(target: interactions.Reader, urls: Urls, post_id: str) -> str | None:
    """The thought a conversation hangs under: climb the owner's replies up to the first thought
    that answers nothing of ours (or answers a remote note threaded under one of ours). None when
    `post_id` is not a live thought."""
    row = await interactions.post_parent(target, post_id)
    if row is None or row["deleted_at"]:
        return None
    root = post_id
    for _ in range(MAX_DEPTH):
        parent = row["in_reply_to"]
        if parent is None:
            return root
        ours = our_post_id(urls, parent)
        if ours is None:
            note = await interactions.remote_note(target, parent)
            return note["thread_post_id"] if note and note["thread_post_id"] else root
        row = await interactions.post_parent(target, ours)
        if row is None or row["deleted_at"]:
            return root
        root = ours
    return root


# --- inbound: likes, boosts, reactions ----------------------------------------------------------


def _emoji_url(activity: dict[str, Any], content: str | None) -> str | None:
    """A custom emoji reaction (`:blobcat:`) names its image in an `Emoji` tag (R68, R114)."""
    if not content or not content.startswith(":"):
        return None
    for tag in as_list(activity.get("tag")):
        if not isinstance(tag, dict) or first_str(tag.get("type")) != "Emoji":
            continue
        # Misskey names the tag ":blobcat:", some software "blobcat".
        if f":{str(tag.get('name')).strip(':')}:" == content:
            icon = tag.get("icon")
            url = icon.get("url") if isinstance(icon, dict) else id_of(icon)
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                return url
    return None


async def _live_post(conn: aiosqlite.Connection, urls: Urls, object_id: str) -> str | None:
    post_id = our_post_id(urls, object_id)
    if post_id is None:
        return None
    row = await interactions.post_parent(conn, post_id)
    return post_id if row is not None and not row["deleted_at"] else None


async def _add(
    conn: aiosqlite.Connection, urls: Urls, *, kind: str, actor: str, activity_id: str,
    object_id: str, content: str | None, emoji_url: str | None, now: datetime,
) -> None:  # fmt: skip
    post_id = await _live_post(conn, urls, object_id)
    if post_id is None:
        raise Unrelated(f"{kind} of something that is not one of our thoughts")
    stamp = to_iso(now)
    if await interactions.add(
        conn, activity_id=activity_id, kind=kind, actor_id=actor, post_id=post_id,
        content=content, emoji_url=emoji_url, created_at=stamp,
    ):  # fmt: skip
        await notifications.add(
            conn, kind=kind, actor_id=actor, object_id=activity_id, post_id=post_id,
            content=content, created_at=stamp,
        )  # fmt: skip
        if emoji_url:  # a custom emoji reaction: its image is shown from our cache
            await remote_media_store.enqueue_emoji(conn, emoji_url)


async def _undo(
    conn: aiosqlite.Connection, urls: Urls, actor: str, activity_id: str | None,
    object_id: str | None, kinds: tuple[str, ...],
) -> None:  # fmt: skip
    removed = await interactions.remove(conn, activity_id, actor) if activity_id else []
    post_id = our_post_id(urls, object_id)
    if not removed and post_id is not None:
        removed = await interactions.remove_matching(conn, actor, kinds, post_id)
    if not removed:
        raise Unrelated("Undo of a like, boost or reaction we do not have")
    for removed_id in removed:
        await notifications.remove_for_object(conn, actor, removed_id)


async def apply_interaction(
    conn: aiosqlite.Connection,
    command: inbound.Command,
    activity: dict[str, Any],
    urls: Urls,
    now: datetime,
) -> None:
    """Like / Announce / EmojiReact and their Undo. Raises Unrelated for what is not ours."""
    like, boost, react = interactions.LIKE, interactions.ANNOUNCE, interactions.REACTION
    match command:
        # Misskey sends its reactions as a Like with the emoji as `content` (R68).
        case (
            inbound.Like(actor=a, activity_id=i, object_id=o, reaction=r)
            | inbound.EmojiReact(actor=a, activity_id=i, object_id=o, reaction=r)
        ):
            emoji = _emoji_url(activity, r)
            await _add(conn, urls, kind=react if r else like, actor=a, activity_id=i,
                       object_id=o, content=r, emoji_url=emoji, now=now)  # fmt: skip
        case inbound.Announce(actor=a, activity_id=i, object_id=o):
            await _add(conn, urls, kind=boost, actor=a, activity_id=i, object_id=o,
                       content=None, emoji_url=None, now=now)  # fmt: skip
        case inbound.UndoLike(actor=a, activity_id=i, object_id=o):
            await _undo(conn, urls, a, i, o, (like, react))
        case inbound.UndoEmojiReact(actor=a, activity_id=i, object_id=o):
            await _undo(conn, urls, a, i, o, (react, like))
        case inbound.UndoAnnounce(actor=a, activity_id=i, object_id=o):
            await _undo(conn, urls, a, i, o, (boost,))
        case _:
            raise Unrelated(f"{type(command).__name__} is not an interaction")


async def undo_reference(conn: aiosqlite.Connection, actor: str, object_id: str) -> bool:
    """`Undo` naming only an id (R50): True when it was one of the actor's likes/boosts."""
    removed = await interactions.remove(conn, object_id, actor)
    for removed_id in removed:
        await notifications.remove_for_object(conn, actor, removed_id)
    return bool(removed)


# --- inbound: replies, mentions, quotes ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a remote note belongs in our conversations."""

    thread_post_id: str | None  # the thought it is shown under (public notes only)
    replied_post_id: str | None  # our thought it answers directly
    in_thread: bool  # it answers a remote note already in one of our threads
    quoted_post_id: str | None

    @property
    def related(self) -> bool:
        return bool(self.replied_post_id or self.in_thread or self.quoted_post_id)


async def place(conn: aiosqlite.Connection, urls: Urls, note: RemoteNote) -> Placement:
    replied = await _live_post(conn, urls, note.in_reply_to) if note.in_reply_to else None
    root = await thread_root(conn, urls, replied) if replied else None
    in_thread = False
    if root is None and note.in_reply_to and replied is None:
        parent = await interactions.remote_note(conn, note.in_reply_to)
        if parent is not None and parent["thread_post_id"]:
            root, in_thread = parent["thread_post_id"], True
    quoted = await _live_post(conn, urls, note.quote_of) if note.quote_of else None
    if root is None and quoted:
        root = await thread_root(conn, urls, quoted)
    # A direct message must never show on a public page; the owner still gets the notification.
    return Placement(root if note.is_public else None, replied, in_thread, quoted)


async def note_stored(
    conn: aiosqlite.Connection, urls: Urls, note: RemoteNote, placement: Placement, now: datetime
) -> None:
    """After the inbox stored a Create/Update: thread it, and tell the owner what concerns them."""
    await interactions.set_thread(
        conn, note.id, note.actor_id, placement.thread_post_id, note.quote_of
    )
    if await interactions.keep_removed(conn, note.id):
        return  # the owner removed it: an edit by its author brings nothing back
    stamp = to_iso(now)

    async def notify(kind: str, post_id: str | None) -> None:
        await notifications.add(conn, kind=kind, actor_id=note.actor_id, object_id=note.id,
                                post_id=post_id, content=None, created_at=stamp)  # fmt: skip

    if placement.replied_post_id or placement.in_thread:
        await notify("reply", placement.replied_post_id or placement.thread_post_id)
    elif urls.actor in note.mentions:
        await notify("mention", None)
    if placement.quoted_post_id:
        await notify("quote", placement.quoted_post_id)


async def note_deleted(conn: aiosqlite.Connection, actor: str, object_id: str) -> None:
    """The author deleted a note the inbox just removed: its notifications go with it."""
    await notifications.remove_for_object(conn, actor, object_id)


async def forget_actor(conn: aiosqlite.Connection, actor: str) -> None:
    """The actor deleted their account: their likes, boosts and notifications go too."""
    await interactions.remove_by_actor(conn, actor)
    await notifications.remove_by_actor(conn, actor)


async def follow_noticed(
    conn: aiosqlite.Connection, actor: str, follow_id: str, *, pending: bool, now: datetime
) -> None:
    await notifications.add(
        conn, kind="follow_request" if pending else "follow", actor_id=actor,
        object_id=follow_id, post_id=None, content=None, created_at=to_iso(now),
    )  # fmt: skip


# --- the thread under a permalink ---------------------------------------------------------------


@dataclass(slots=True)
class ThreadNode:
    """One reply in a thread: a remote note or one of the owner's replies."""

    key: str  # the note's id (ours: our Note id)
    parent: str | None  # the id it answers
    own: bool
    post_id: str | None  # ours: the thought id
    anchor: str  # the HTML id on the permalink page
    url: str  # the original (remote permalink, or our /p/…)
    author_name: str
    author_handle: str
    author_url: str
    avatar: str | None  # remote: the remote URL (templates proxy it); ours: a media file name
    content_html: str
    summary: str | None
    published: datetime
    updated: datetime | None
    hidden: bool = False
    quote: bool = False
    attachments: str | None = None  # remote: the stored JSON; templates use |remote_attachments
    sensitive: bool = False  # remote: its media are collapsed
    children: list[ThreadNode] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Conversation:
    thread: list[ThreadNode]  # top-level replies, each with its nested children
    counts: dict[str, interactions.Counts]
    root_id: str | None  # the thought this one's conversation hangs under, when not itself
    reply_count: int
    parent_url: str | None = None  # what this thought answers (a reply of the owner's)
    parent_author: str | None = None


async def _parent(db: Database, urls: Urls, post: Post) -> tuple[str | None, str | None]:
    """(link, author name) of what an owner's reply answers, for "in reply to …"."""
    if not post.in_reply_to:
        return None, None
    ours = our_post_id(urls, post.in_reply_to)
    if ours is not None:
        return f"/p/{ours}", None
    row = await interactions.remote_note(db, post.in_reply_to)
    if row is None:
        return post.in_reply_to, None
    return row["url"] or row["id"], row["name"] or _handle(row["username"], row["domain"]) or None


def _handle(username: str | None, domain: str | None) -> str:
    return f"@{username}@{domain}" if username and domain else ""


def _remote_node(row: Any) -> ThreadNode:
    return ThreadNode(
        key=row["id"], parent=row["in_reply_to"], own=False, post_id=None,
        anchor=note_anchor(row["id"]), url=row["url"] or row["id"],
        author_name=row["name"] or row["username"] or row["actor_id"],
        author_handle=_handle(row["username"], row["domain"]),
        author_url=row["actor_url"] or row["actor_id"], avatar=row["icon_url"],
        content_html=row["content_html"], summary=row["summary"],
        published=parse_iso(row["published"]),
        updated=parse_iso(row["updated"]) if row["updated"] else None,
        hidden=bool(row["hidden"]),
        quote=row["quote_of"] is not None and row["in_reply_to"] is None,
        attachments=row["attachments"], sensitive=bool(row["sensitive"]),
    )  # fmt: skip


def _own_node(row: Any, urls: Urls, name: str, handle: str, avatar: str | None) -> ThreadNode:
    html = row["html"]
    return ThreadNode(
        key=urls.post(row["id"]), parent=row["in_reply_to"], own=True, post_id=row["id"],
        anchor="p-" + row["id"], url=urls.post(row["id"]), author_name=name,
        author_handle=handle, author_url=urls.actor, avatar=avatar, content_html=html,
        summary=row["summary"], published=parse_iso(row["created_at"]),
        updated=parse_iso(row["updated_at"]) if row["updated_at"] else None,
    )  # fmt: skip


def _would_cycle(
    node: ThreadNode, parent: ThreadNode, placed_under: dict[str, ThreadNode | None]
) -> bool:
    """True when `parent` already hangs (directly or further up) under `node`."""
    current: ThreadNode | None = parent
    for _ in range(len(placed_under) + 2):
        if current is None:
            return False
        if current is node:
            return True
        current = placed_under.get(current.key)
    return True


def assemble(root_key: str, nodes: list[ThreadNode]) -> list[ThreadNode]:
    """Nest replies by what they answer, children oldest first. A reply goes under a note no
    later than itself; equal times are allowed (timestamps have second precision, so an answer
    written within the second sorts next to what it answers — every node is indexed before any
    is placed). A reply whose parent is missing (deleted, hidden, never received), later, or
    would close a loop goes to the top level."""
    ordered = sorted(nodes, key=lambda n: (n.published, n.key))
    by_key: dict[str, ThreadNode] = {}
    for node in ordered:
        node.children = []
        by_key.setdefault(node.key, node)
    placed_under: dict[str, ThreadNode | None] = {}
    top: list[ThreadNode] = []
    for node in ordered:
        parent = by_key.get(node.parent) if node.parent and node.parent != root_key else None
        if (
            parent is not None
            and parent is not node
            and parent.published <= node.published
            and not _would_cycle(node, parent, placed_under)
        ):
            parent.children.append(node)
            placed_under[node.key] = parent
        else:
            top.append(node)
            placed_under[node.key] = None
    return top


async def conversation_for(
    db: Database, urls: Urls, post: Post, *, owner_view: bool, author_name: str,
    author_handle: str, author_avatar: str | None,
) -> Conversation:  # fmt: skip
    """The thread under `post` (remote replies, hidden ones too for the owner, and the owner's
    replies) and the counts. A reply of the owner's that hangs under another thought gets no
    thread here: `root_id` points there instead."""
    root = await thread_root(db, urls, post.id) if post.in_reply_to else post.id
    parent_url, parent_author = await _parent(db, urls, post)
    if root is not None and root != post.id:
        counts = await interactions.counts_for(db, [post.id])
        return Conversation([], counts, root, 0, parent_url, parent_author)
    remote = await interactions.thread_notes(db, post.id, with_hidden=owner_view)
    note_id = urls.post(post.id)
    own = await interactions.own_replies(db, urls.post(""), [note_id, *(r["id"] for r in remote)])
    nodes = [_remote_node(r) for r in remote]
    nodes += [_own_node(r, urls, author_name, author_handle, author_avatar) for r in own]
    counts = await interactions.counts_for(db, [post.id])
    thread = assemble(note_id, nodes)
    return Conversation(thread, counts, None, len(nodes), parent_url, parent_author)


async def replies_collection(db: Database, urls: Urls, post_id: str) -> tuple[list[str], list[str]]:
    """(the owner's replies, others' replies) answering the thought directly, as Note ids."""
    own, others = await interactions.direct_replies(db, urls.post(post_id), REPLIES_PAGE)
    return [urls.post(i) for i in own], others


# --- the owner: reply, hide, remove -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """What the owner is answering: a remote note (or one of the owner's own thoughts)."""

    note_id: str
    url: str
    author_name: str
    author_handle: str  # "@user@domain", "" for the owner's own thought
    content_html: str
    summary: str | None
    root_id: str | None  # the thought of ours whose thread it is in

    @property
    def prefill(self) -> str:
        return f"{self.author_handle} " if self.author_handle else ""


async def reply_target(db: Database, urls: Urls, note_id: str) -> ReplyTarget:
    ours = our_post_id(urls, note_id)
    if ours is not None:
        post = await post_service.get_live(db, ours)
        return ReplyTarget(note_id, note_id, "you", "", post.html, post.summary,
                           await thread_root(db, urls, ours))  # fmt: skip
    row = await interactions.remote_note(db, note_id)
    if row is None or row["hidden"] == interactions.REMOVED:
        raise NotFound("That post is not one we have received.")
    return ReplyTarget(
        note_id=note_id, url=row["url"] or note_id,
        author_name=row["name"] or row["username"] or row["actor_id"],
        author_handle=_handle(row["username"], row["domain"]),
        content_html=row["content_html"], summary=row["summary"],
        root_id=row["thread_post_id"],
    )  # fmt: skip


async def publish_reply(
    db: Database,
    urls: Urls,
    draft: post_service.Draft,
    note_id: str,
    *,
    max_chars: int,
    directory: ActorDirectory | None,
    now: datetime | None = None,
) -> tuple[Post, str]:
    """Publish the owner's answer to `note_id`; returns it and the thought whose page shows it."""
    target = await reply_target(db, urls, note_id)
    post = await post_service.publish(
        db, draft, max_chars=max_chars, now=now, urls=urls, directory=directory,
        in_reply_to=target.note_id,
    )  # fmt: skip
    return post, await thread_root(db, urls, post.id) or post.id


async def set_hidden(db: Database, note_id: str, hidden: bool) -> str:
    """Hide a remote reply from the public page (or show it again); returns its thought id."""
    row = await interactions.remote_note(db, note_id)
    if row is None or not row["thread_post_id"]:
        raise NotFound("That reply is not in any of your threads.")
    async with db.transaction() as conn:
        if not await interactions.set_hidden(
            conn, note_id, interactions.HIDDEN if hidden else interactions.SHOWN
        ):
            raise BadInput("That reply was removed.")
    return str(row["thread_post_id"])


async def remove_reply(db: Database, note_id: str) -> str:
    """Remove a remote reply for good (its notifications too); returns its thought id."""
    row = await interactions.remote_note(db, note_id)
    if row is None or not row["thread_post_id"]:
        raise NotFound("That reply is not in any of your threads.")
    async with db.transaction() as conn:
        await interactions.remove_note(conn, note_id)
        await notifications.remove_for_object(conn, row["actor_id"], note_id)
    return str(row["thread_post_id"])
