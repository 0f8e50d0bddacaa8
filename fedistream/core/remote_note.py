"""Remote posts as we keep them: `parse_note` reads a Note (or Article, Page…) from any peer. Pure.

Peers disagree on shapes (INTEROP R54, R102–R108): single values where arrays belong, `content`
only in `contentMap`, links as strings or objects, dates with any offset. The HTML is kept RAW
here; `core.sanitize.sanitize_remote_html` cleans it before storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from fedistream.core.as2 import as_list, first_str, first_value, id_of, ids_of, is_public
from fedistream.core.timefmt import parse_iso

# Object types Mastodon shows as posts (R54); the non-Note ones it shows as title + link.
NOTE_TYPES = frozenset({"Note", "Article", "Page", "Question", "Image", "Video", "Audio", "Event"})
ATTACHMENT_TYPES = frozenset({"Document", "Image", "Video", "Audio"})
# Where quote posts name the quoted post (R102, R118), in Mastodon's order of preference.
_QUOTE_KEYS = ("quote", "_misskey_quote", "quoteUrl", "quoteUri")


@dataclass(frozen=True, slots=True)
class RemoteAttachment:
    url: str
    media_type: str | None
    name: str | None  # alt text
    width: int | None
    height: int | None
    blurhash: str | None


@dataclass(frozen=True, slots=True)
class RemoteNote:
    id: str
    type: str
    actor_id: str  # attributedTo
    url: str  # the HTML permalink, else the id (R113)
    in_reply_to: str | None
    content_html: str  # RAW remote HTML: sanitise before storing or showing
    name: str | None  # title of an Article/Page
    summary: str | None  # content warning
    sensitive: bool
    language: str | None
    published: datetime
    updated: datetime | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    tags: tuple[str, ...]  # hashtag names without '#'
    mentions: tuple[str, ...]  # hrefs of Mention tags (actor ids)
    attachments: tuple[RemoteAttachment, ...]
    quote_of: str | None

    @property
    def is_public(self) -> bool:
        return is_public(list(self.to) + list(self.cc))


def _is_web_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _web_url_or_none(value: str | None) -> str | None:
    # The owner UI links to what a note answers: a `javascript:` "reply target" must not become
    # a link, and no post we could thread it under has an id that is not an http(s) URL.
    return value if _is_web_url(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _date(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value)
    except (ValueError, OverflowError):  # garbage, or a year that leaves 1..9999 in UTC
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _link_href(value: Any, prefer_html: bool) -> tuple[str | None, str | None]:
    """(href, mediaType) from a URL string, a Link object or a list of either (R113, R59)."""
    candidates: list[tuple[str, str | None]] = []
    for item in as_list(value):
        if isinstance(item, str):
            candidates.append((item, None))
        elif isinstance(item, dict):
            href = item.get("href") if isinstance(item.get("href"), str) else id_of(item)
            media_type = item.get("mediaType")
            candidates.append((href or "", media_type if isinstance(media_type, str) else None))
    web = [(href, media) for href, media in candidates if _is_web_url(href)]
    if prefer_html:
        for href, media in web:
            if media == "text/html":
                return href, media
    return web[0] if web else (None, None)


def _attributed_to(obj: dict[str, Any]) -> str | None:
    # PeerTube lists the channel (a Group) beside the Person; the Person is the author.
    items = as_list(obj.get("attributedTo"))
    authors = [i for i in items if not (isinstance(i, dict) and i.get("type") == "Group")]
    return next((found for found in map(id_of, authors or items) if found), None)


def _content(obj: dict[str, Any]) -> tuple[str, str | None]:
    """(HTML, language): `content`, else the first `contentMap` value (Friendica, R54)."""
    content_map = obj.get("contentMap")
    languages = content_map if isinstance(content_map, dict) else {}
    if isinstance(obj.get("content"), str):
        language = next((k for k, v in languages.items() if v == obj["content"]), None)
        return obj["content"], language or next(iter(languages), None)
    for language, value in languages.items():
        if isinstance(value, str):
            return value, language
    return "", None


def _attachment(item: Any) -> RemoteAttachment | None:
    if not isinstance(item, dict) or first_str(item.get("type")) not in ATTACHMENT_TYPES:
        return None
    url, link_media_type = _link_href(item.get("url"), prefer_html=False)
    if url is None:
        return None
    media_type = item.get("mediaType") if isinstance(item.get("mediaType"), str) else None
    return RemoteAttachment(
        url=url,
        media_type=media_type or link_media_type,
        name=_text(item.get("summary")) or _text(item.get("name")),  # Mastodon's order (R59)
        width=_int(item.get("width")),
        height=_int(item.get("height")),
        blurhash=_text(item.get("blurhash")),
    )


def _tags(obj: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(hashtag names, mention hrefs); `tag` may be a single object (Pixelfed, GtS, R103)."""
    hashtags: list[str] = []
    mentions: list[str] = []
    for tag in as_list(obj.get("tag")):
        if not isinstance(tag, dict):
            continue
        kind = first_str(tag.get("type"))
        if kind == "Hashtag":
            name = _text(tag.get("name"))
            if name and name.lstrip("#"):
                hashtags.append(name.lstrip("#"))
        elif kind == "Mention":
            href = tag.get("href") if isinstance(tag.get("href"), str) else id_of(tag)
            if href:
                mentions.append(href)
    return tuple(dict.fromkeys(hashtags)), tuple(dict.fromkeys(mentions))


def parse_note(obj: Any) -> RemoteNote:
    """Read a remote post. Raises ValueError saying why when it cannot be used."""
    if not isinstance(obj, dict):
        raise ValueError("the object is not a JSON object (a bare reference needs a fetch)")
    kinds = [k for k in as_list(obj.get("type")) if isinstance(k, str)]
    kind = next((k for k in kinds if k in NOTE_TYPES), None)
    if kind is None:
        raise ValueError(f"not a post type: {kinds or None}")
    note_id = obj.get("id")
    if not isinstance(note_id, str) or not _is_web_url(note_id):
        raise ValueError("the post has no http(s) id")
    actor_id = _attributed_to(obj)
    if not actor_id:
        raise ValueError("the post has no attributedTo")
    published = _date(obj.get("published"))
    if published is None:
        raise ValueError(f"the post has no readable published date: {obj.get('published')!r}")
    content, language = _content(obj)
    attachments = tuple(a for a in map(_attachment, as_list(obj.get("attachment"))) if a)
    name = _text(obj.get("name"))
    if not content.strip() and not attachments and not name:
        raise ValueError("the post has no content, attachment or name")
    summary = _text(obj.get("summary"))
    url, _ = _link_href(obj.get("url"), prefer_html=True)
    hashtags, mentions = _tags(obj)
    quote_of = next((q for q in (id_of(first_value(obj.get(k))) for k in _QUOTE_KEYS) if q), None)
    return RemoteNote(
        id=note_id,
        type=kind,
        actor_id=actor_id,
        url=url or note_id,
        in_reply_to=_web_url_or_none(id_of(first_value(obj.get("inReplyTo")))),
        content_html=content,
        name=name,
        summary=summary,
        # Mastodon marks a post with a content warning sensitive whatever the flag says.
        sensitive=obj.get("sensitive") is True or summary is not None,
        language=language,
        published=published,
        updated=_date(obj.get("updated")),
        to=tuple(ids_of(obj.get("to"))),
        cc=tuple(ids_of(obj.get("cc"))),
        tags=hashtags,
        mentions=mentions,
        attachments=attachments,
        quote_of=quote_of,
    )
