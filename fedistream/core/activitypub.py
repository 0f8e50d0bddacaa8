"""Outgoing ActivityStreams JSON: our actor, Notes, the activities about them, collections. Pure.

The shapes copy what Mastodon itself emits (INTEROP R9–R18, R45–R62, R83–R87, R111–R113), since
a document Mastodon accepts from Mastodon is one every other peer has learned to read. Time and
random tokens are passed in; ids come from `Urls`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fedistream.core.as2 import AS_CONTEXT, PUBLIC
from fedistream.core.models import Post
from fedistream.core.timefmt import to_iso
from fedistream.core.urls import Urls

SECURITY_CONTEXT = "https://w3id.org/security/v1"
# FEP-2c59: the context that defines the actor's `webfinger` property (Mastodon 4.6, R6, R13).
WEBFINGER_CONTEXT = "https://purl.archive.org/socialweb/webfinger"

# Term definitions exactly as Mastodon's context_helper emits them for actors (R13). The
# `schema` IRI without a slash before '#' is wrong but is what every peer expects to see.
ACTOR_CONTEXT: list[Any] = [
    AS_CONTEXT,
    SECURITY_CONTEXT,
    WEBFINGER_CONTEXT,
    {
        "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
        "toot": "http://joinmastodon.org/ns#",
        "featured": {"@id": "toot:featured", "@type": "@id"},
        "featuredTags": {"@id": "toot:featuredTags", "@type": "@id"},
        "alsoKnownAs": {"@id": "as:alsoKnownAs", "@type": "@id"},
        "movedTo": {"@id": "as:movedTo", "@type": "@id"},
        "schema": "http://schema.org#",
        "PropertyValue": "schema:PropertyValue",
        "value": "schema:value",
        "discoverable": "toot:discoverable",
        "indexable": "toot:indexable",
        "memorial": "toot:memorial",
        "suspended": "toot:suspended",
        "Emoji": "toot:Emoji",
        "focalPoint": {"@container": "@list", "@id": "toot:focalPoint"},
        "blurhash": "toot:blurhash",
        "Hashtag": "as:Hashtag",
        "sensitive": "as:sensitive",
    },
]

# What a Note (and the activities and collections carrying one) needs beyond plain AS2.
NOTE_CONTEXT: list[Any] = [
    AS_CONTEXT,
    {
        "sensitive": "as:sensitive",
        "Hashtag": "as:Hashtag",
        "toot": "http://joinmastodon.org/ns#",
        "Emoji": "toot:Emoji",
        "blurhash": "toot:blurhash",
        "focalPoint": {"@container": "@list", "@id": "toot:focalPoint"},
    },
]

# Mastodon's shortened-link display: 30 visible characters after the scheme (R82).
_LINK_DISPLAY_CHARS = 30
_LINK_PREFIX = re.compile(r"\A(https?://)(www\.)?", re.IGNORECASE)
# Our renderer links hashtags (and may link other local pages) by path; peers drop relative
# links (Mastodon's sanitizer turns them into text, R81), so outgoing HTML gets absolute ones.
_ROOT_RELATIVE_ATTR = re.compile(r'(\s(?:href|src)=")/(?!/)')


@dataclass(frozen=True, slots=True)
class MediaRef:
    """An image the actor document points at (avatar, header)."""

    url: str
    media_type: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """A media file attached to a Note, serialised as Mastodon's `Document` (R59)."""

    url: str
    media_type: str
    name: str | None = None  # alt text
    width: int | None = None
    height: int | None = None
    blurhash: str | None = None
    focal_point: tuple[float, float] | None = None


def embedded(document: dict[str, Any]) -> dict[str, Any]:
    """A document as it sits inside another: the outer one carries the `@context`."""
    return {key: value for key, value in document.items() if key != "@context"}


# --- the actor ----------------------------------------------------------------------------------


def _image(media: MediaRef) -> dict[str, str]:
    return {"type": "Image", "mediaType": media.media_type, "url": media.url}


def _has_host(url: str) -> bool:
    try:
        return bool(urlsplit(url).netloc)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return False


def profile_link_html(url: str) -> str:
    """A profile field value as Mastodon writes one: rel="me" link with its display shortened."""
    match = _LINK_PREFIX.match(url)
    if not match or not _has_host(url):
        return html.escape(url)  # not a web link: plain (escaped) text
    prefix, rest = match.group(0), url[match.end() :]
    visible, hidden = rest[:_LINK_DISPLAY_CHARS], rest[_LINK_DISPLAY_CHARS:]
    return (
        f'<a href="{html.escape(url)}" target="_blank" rel="nofollow noopener noreferrer me"'
        f' translate="no"><span class="invisible">{html.escape(prefix)}</span>'
        f'<span class="{"ellipsis" if hidden else ""}">{html.escape(visible)}</span>'
        f'<span class="invisible">{html.escape(hidden)}</span></a>'
    )


def actor_document(
    urls: Urls,
    *,
    username: str,
    display_name: str,
    summary_html: str,
    avatar: MediaRef | None,
    header: MediaRef | None,
    links: Sequence[tuple[str, str]],
    public_key_pem: str,
    published: datetime,
    manually_approves_followers: bool,
    discoverable: bool = True,
    indexable: bool = True,
    also_known_as: Iterable[str] = (),
) -> dict[str, Any]:
    """The Person at our actor id (R10–R16). The site is the person, so `url` is the id too."""
    # Mastodon publishes the account's creation *day* (R12).
    created = published.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    document: dict[str, Any] = {
        "@context": ACTOR_CONTEXT,
        "id": urls.actor,
        "type": "Person",
        "following": urls.following,
        "followers": urls.followers,
        "inbox": urls.inbox,
        "outbox": urls.outbox,
        "featured": urls.featured,
        "featuredTags": urls.featured_tags,
        "preferredUsername": username,
        "name": display_name or username,
        "summary": summary_html,
        "url": urls.actor,
        "manuallyApprovesFollowers": manually_approves_followers,
        "discoverable": discoverable,
        "indexable": indexable,
        "published": to_iso(created),
        "memorial": False,
        # FEP-2c59: lets Mastodon 4.6+ find our handle without guessing it from the host (R6).
        "webfinger": f"{username}@{urlsplit(urls.base).netloc}",
        "publicKey": {"id": urls.key_id, "owner": urls.actor, "publicKeyPem": public_key_pem},
        "tag": [],
        "attachment": [
            {"type": "PropertyValue", "name": label, "value": profile_link_html(url)}
            for label, url in links
        ],
        "endpoints": {"sharedInbox": urls.inbox},
    }
    also = list(also_known_as)
    if also:
        document["alsoKnownAs"] = also
    if avatar:
        document["icon"] = _image(avatar)
    if header:
        document["image"] = _image(header)
    return document


def update_actor_activity(urls: Urls, actor_doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Profile change: the whole actor embedded in an Update (R18)."""
    return {
        "@context": ACTOR_CONTEXT,
        "id": urls.actor_update_activity(int(now.timestamp())),
        "type": "Update",
        "actor": urls.actor,
        "to": [PUBLIC],
        "object": embedded(actor_doc),
    }


# --- Notes and the activities about them ----------------------------------------------------------


def _absolute_links(urls: Urls, content: str) -> str:
    return _ROOT_RELATIVE_ATTR.sub(lambda m: m.group(1) + urls.base + "/", content)


def _attachment(item: Attachment) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": "Document",
        "mediaType": item.media_type,
        "url": item.url,
        "name": item.name,
    }
    if item.blurhash:
        document["blurhash"] = item.blurhash
    if item.focal_point is not None:
        document["focalPoint"] = list(item.focal_point)
    if item.width is not None and item.height is not None:
        document["width"] = item.width
        document["height"] = item.height
    return document


def hashtag(urls: Urls, tag: str) -> dict[str, str]:
    return {"type": "Hashtag", "href": urls.tag(tag), "name": "#" + tag}


@dataclass(frozen=True, slots=True)
class NoteCounts:
    """How many likes and boosts a thought has: the Note's `likes`/`shares` totals (R54)."""

    likes: int = 0
    shares: int = 0


def note_object(
    urls: Urls,
    post: Post,
    *,
    attachments: Sequence[Attachment] = (),
    counts: NoteCounts | None = None,
) -> dict[str, Any]:
    """A live thought as a Note (R54–R60), with its own `@context` so it can be served alone.
    With `counts`, it carries `likes`/`shares` collections with their totals, as Mastodon's do."""
    if post.is_deleted:
        raise ValueError(f"thought {post.id} is deleted: serve a Tombstone instead")
    content = _absolute_links(urls, post.html)
    if post.title:
        # The title goes into the content rather than `name`: Mastodon shows only `content` for
        # a Note (it reads `name` for Article/Page and as a poll vote), so a `name` would be
        # invisible there and shown twice by software that does display it.
        content = f"<p><strong>{html.escape(post.title)}</strong></p>" + content
    note_id = urls.post(post.id)
    replies = urls.replies(post.id)
    note: dict[str, Any] = {
        "@context": NOTE_CONTEXT,
        "id": note_id,
        "type": "Note",
        "summary": post.summary or None,
        "inReplyTo": post.in_reply_to,
        "published": to_iso(post.created_at),
        "url": note_id,
        "attributedTo": urls.actor,
        "to": [PUBLIC],
        # Mentioned accounts are addressed too, so their servers show the mention (R55).
        "cc": [urls.followers, *(m.actor_id for m in post.mentions)],
        # A content warning hides the text behind `summary`; `sensitive` also hides media (R58).
        "sensitive": bool(post.summary),
        "content": content,
        "contentMap": {"en": content},
        "attachment": [_attachment(item) for item in attachments],
        "tag": [
            *(hashtag(urls, tag) for tag in post.tags),
            *(
                {"type": "Mention", "href": m.actor_id, "name": "@" + m.handle}
                for m in post.mentions
            ),
        ],
        # Mastodon's shape (R60): the first page lists self-replies, `next` the others'.
        "replies": {
            "id": replies,
            "type": "Collection",
            "first": {
                "type": "CollectionPage",
                "next": replies + "?only_other_accounts=true&page=true",
                "partOf": replies,
                "items": [],
            },
        },
    }
    if post.updated_at is not None:
        # Without `updated` Mastodon ignores an edit's text (R61).
        note["updated"] = to_iso(post.updated_at)
    if counts is not None:
        note["likes"] = {"id": note_id + "/likes", "type": "Collection", "totalItems": counts.likes}
        note["shares"] = {
            "id": note_id + "/shares", "type": "Collection", "totalItems": counts.shares,
        }  # fmt: skip
    return note


def _post_id(urls: Urls, note: dict[str, Any]) -> str:
    note_id = note.get("id")
    prefix = urls.post("")
    if not isinstance(note_id, str) or not note_id.startswith(prefix):
        raise ValueError(f"not one of our Notes: {note_id!r}")
    return note_id[len(prefix) :]


def _addressing(note: dict[str, Any]) -> dict[str, Any]:
    """An activity's `to`/`cc` are its object's (R53)."""
    return {"to": list(note.get("to", [])), "cc": list(note.get("cc", []))}


def create_activity(urls: Urls, note: dict[str, Any]) -> dict[str, Any]:
    """The Create for a Note, the full Note embedded (R53)."""
    return {
        "@context": NOTE_CONTEXT,
        "id": urls.create_activity(_post_id(urls, note)),
        "type": "Create",
        "actor": urls.actor,
        "published": note["published"],
        **_addressing(note),
        "object": embedded(note),
    }


def update_activity(urls: Urls, note: dict[str, Any], now: datetime) -> dict[str, Any]:
    """An edit: the full new Note (which must carry `updated`, R61) in an Update."""
    return {
        "@context": NOTE_CONTEXT,
        "id": urls.update_activity(_post_id(urls, note), int(now.timestamp())),
        "type": "Update",
        "actor": urls.actor,
        "published": to_iso(now),
        **_addressing(note),
        "object": embedded(note),
    }


def delete_activity(urls: Urls, post_id: str, deleted_at: datetime) -> dict[str, Any]:
    """A deletion: a Tombstone for the Note, to the public and our followers (R62)."""
    return {
        "@context": AS_CONTEXT,
        "id": urls.delete_activity(post_id),
        "type": "Delete",
        "actor": urls.actor,
        "published": to_iso(deleted_at),
        "to": [PUBLIC],
        "cc": [urls.followers],
        "object": {"id": urls.post(post_id), "type": "Tombstone"},
    }


def tombstone(urls: Urls, post_id: str, deleted_at: datetime) -> dict[str, Any]:
    """The body served with 410 Gone at a deleted Note's URL."""
    return {
        "@context": AS_CONTEXT,
        "id": urls.post(post_id),
        "type": "Tombstone",
        "formerType": "Note",
        "deleted": to_iso(deleted_at),
    }
