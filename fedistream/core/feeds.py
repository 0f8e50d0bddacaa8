"""Feed builders: a page of thoughts → Atom 1.0 (RFC 4287) XML and a JSON Feed 1.1 document.

Core layer: pure. The caller passes the site's values, the posts and `now`; nothing here reads
settings, the database or the clock.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fedistream.core.models import Post
from fedistream.core.render import excerpt
from fedistream.core.timefmt import human_date, to_iso

ATOM_NS = "http://www.w3.org/2005/Atom"
ATOM_MEDIA_TYPE = "application/atom+xml; charset=utf-8"
JSON_FEED_MEDIA_TYPE = "application/feed+json; charset=utf-8"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
ATOM_PATH = "/feed.xml"
JSON_FEED_PATH = "/feed.json"
LANGUAGE = "en"
TITLE_EXCERPT_CHARS = 80

# Characters XML 1.0 forbids even when escaped (most C0 controls, lone surrogates, U+FFFE/F).
# ElementTree writes them through unchanged, which makes the whole feed unparseable, so one
# stray control character pasted into a thought must not take the feed down.
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class FeedSite:
    """What a feed says about the site and its one author (from Settings and the Profile)."""

    base_url: str  # no trailing slash, as Settings keeps it
    title: str  # the owner's display name
    author_name: str
    handle: str  # "@user@domain"
    avatar_url: str | None = None

    @property
    def home_url(self) -> str:
        return self.base_url + "/"

    def permalink(self, post_id: str) -> str:
        return f"{self.base_url}/p/{post_id}"


def entry_title(post: Post) -> str:
    """The title a feed reader lists. Atom requires one, so untitled thoughts get an excerpt.

    With a content warning the excerpt would show exactly what the warning hides, so the
    warning itself becomes the title instead.
    """
    if post.title:
        return post.title
    if post.summary:
        return f"CW: {post.summary}"
    short = excerpt(post.text, TITLE_EXCERPT_CHARS)
    return short or f"A thought of {human_date(post.created_at)}"


def content_html(post: Post) -> str:
    """The rendered thought, with its content warning (escaped) in front when it has one."""
    if post.summary:
        return f"<p><strong>CW: {html.escape(post.summary)}</strong></p>\n{post.html}"
    return post.html


def content_text(post: Post) -> str:
    if post.summary:
        return f"CW: {post.summary}\n\n{post.text}"
    return post.text


def last_modified(post: Post) -> datetime:
    return post.updated_at or post.created_at


def feed_updated(posts: Sequence[Post], now: datetime) -> datetime:
    """The feed's own date: its most recent change, or `now` for an empty feed."""
    # The max, not the first post's: an older thought edited today is the latest change.
    return max((last_modified(p) for p in posts), default=now)


def _clean(text: str) -> str:
    return _XML_INVALID.sub("", text)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: _clean(v) for k, v in attrs.items()})
    if text is not None:
        element.text = _clean(text)
    return element


def _atom_entry(feed: ET.Element, site: FeedSite, post: Post) -> None:
    entry = _sub(feed, "entry")
    url = site.permalink(post.id)
    _sub(entry, "id", url)
    _sub(entry, "title", entry_title(post), type="text")
    _sub(entry, "link", rel="alternate", type="text/html", href=url)
    _sub(entry, "published", to_iso(post.created_at))
    _sub(entry, "updated", to_iso(last_modified(post)))
    if post.summary:
        _sub(entry, "summary", f"CW: {post.summary}", type="text")
    # type="html": the markup travels as escaped text; ElementTree escapes <, & and > so a
    # "]]>" or "</content>" inside a thought stays text.
    _sub(entry, "content", content_html(post), type="html")
    for tag in post.tags:
        _sub(entry, "category", term=tag, scheme=site.base_url + "/tags/", label="#" + tag)


def build_atom(site: FeedSite, posts: Sequence[Post], now: datetime) -> str:
    """The Atom document (newest first, as given) as a UTF-8 XML string with declaration."""
    # Plain tag names plus an explicit xmlns: the Atom namespace becomes the default one without
    # ET.register_namespace, which would change process-wide state.
    feed = ET.Element("feed", {"xmlns": ATOM_NS, "xml:lang": LANGUAGE})
    _sub(feed, "id", site.home_url)
    _sub(feed, "title", site.title, type="text")
    _sub(feed, "subtitle", site.handle, type="text")
    _sub(feed, "link", rel="self", type="application/atom+xml", href=site.base_url + ATOM_PATH)
    _sub(feed, "link", rel="alternate", type="text/html", href=site.home_url)
    author = _sub(feed, "author")
    _sub(author, "name", site.author_name)
    _sub(author, "uri", site.home_url)
    _sub(feed, "updated", to_iso(feed_updated(posts, now)))
    _sub(feed, "generator", "fedistream")
    if site.avatar_url:
        _sub(feed, "icon", site.avatar_url)
    for post in posts:
        _atom_entry(feed, site, post)
    body = ET.tostring(feed, encoding="unicode")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n"


def _json_item(site: FeedSite, post: Post) -> dict[str, Any]:
    url = site.permalink(post.id)
    item: dict[str, Any] = {"id": url, "url": url}
    if post.title:
        item["title"] = post.title
    item["content_html"] = content_html(post)
    item["content_text"] = content_text(post)
    if post.summary:
        item["summary"] = post.summary
    item["date_published"] = to_iso(post.created_at)
    if post.updated_at:
        item["date_modified"] = to_iso(post.updated_at)
    if post.tags:
        item["tags"] = list(post.tags)
    return item


def build_json_feed(site: FeedSite, posts: Sequence[Post]) -> dict[str, Any]:
    """The JSON Feed 1.1 document as a dict (serialise with json.dumps)."""
    author: dict[str, str] = {"name": site.author_name, "url": site.home_url}
    document: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": site.title,
        "home_page_url": site.home_url,
        "feed_url": site.base_url + JSON_FEED_PATH,
        "description": site.handle,
    }
    if site.avatar_url:
        author["avatar"] = site.avatar_url
        document["icon"] = site.avatar_url
        document["favicon"] = site.avatar_url
    document["authors"] = [author]
    document["language"] = LANGUAGE
    document["items"] = [_json_item(site, post) for post in posts]
    return document
