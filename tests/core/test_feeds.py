"""Pure tests of the feed builders: Atom structure and escaping, JSON Feed fields, CW, tags."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime

import feedparser

from fedistream.core.feeds import (
    JSON_FEED_VERSION,
    FeedSite,
    build_atom,
    build_json_feed,
    entry_title,
    feed_updated,
)
from fedistream.core.models import Post
from fedistream.core.render import render_markdown

A = "{http://www.w3.org/2005/Atom}"
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SITE = FeedSite(
    base_url="https://blog.example",
    title="Ada & <Friends>",
    author_name="Ada & <Friends>",
    handle="@ada@blog.example",
)


def make_post(
    post_id: str = "0000000000000001",
    source: str = "Hello *world*",
    title: str | None = None,
    summary: str | None = None,
    created: datetime = datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
    updated: datetime | None = None,
) -> Post:
    rendered = render_markdown(source)
    return Post(
        id=post_id,
        source=source,
        html=rendered.html,
        text=rendered.text,
        title=title,
        summary=summary,
        created_at=created,
        updated_at=updated,
        tags=rendered.tags,
    )


def parse_atom(xml: str) -> ET.Element:
    return ET.fromstring(xml.encode("utf-8"))


# --- Atom -----------------------------------------------------------------------------------


def test_atom_feed_head_has_id_title_subtitle_links_author_and_updated() -> None:
    post = make_post(created=datetime(2024, 5, 1, 9, 30, tzinfo=UTC))
    root = parse_atom(build_atom(SITE, [post], NOW))
    assert root.tag == A + "feed"
    assert root.findtext(A + "id") == "https://blog.example/"
    assert root.findtext(A + "title") == "Ada & <Friends>"
    assert root.findtext(A + "subtitle") == "@ada@blog.example"
    links = {link.get("rel"): link for link in root.findall(A + "link")}
    assert links["self"].get("href") == "https://blog.example/feed.xml"
    assert links["alternate"].get("href") == "https://blog.example/"
    assert links["alternate"].get("type") == "text/html"
    assert root.findtext(f"{A}author/{A}name") == "Ada & <Friends>"
    assert root.findtext(f"{A}author/{A}uri") == "https://blog.example/"
    assert root.findtext(A + "updated") == "2024-05-01T09:30:00Z"
    assert root.find(A + "icon") is None


def test_atom_entry_fields() -> None:
    post = make_post(
        post_id="00000000000000ab",
        source="Thinking about #Python and #sqlite",
        title="On tools",
        created=datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
        updated=datetime(2024, 5, 2, 10, 0, tzinfo=UTC),
    )
    root = parse_atom(build_atom(SITE, [post], NOW))
    (entry,) = root.findall(A + "entry")
    assert entry.findtext(A + "id") == "https://blog.example/p/00000000000000ab"
    assert entry.findtext(A + "title") == "On tools"
    link = entry.find(A + "link")
    assert link is not None
    assert link.get("rel") == "alternate"
    assert link.get("href") == "https://blog.example/p/00000000000000ab"
    assert entry.findtext(A + "published") == "2024-05-01T09:30:00Z"
    assert entry.findtext(A + "updated") == "2024-05-02T10:00:00Z"
    content = entry.find(A + "content")
    assert content is not None and content.get("type") == "html"
    assert content.text == post.html
    assert [c.get("term") for c in entry.findall(A + "category")] == ["python", "sqlite"]
    # The feed's date is its latest change: the edit.
    assert root.findtext(A + "updated") == "2024-05-02T10:00:00Z"


def test_atom_escapes_markup_ampersands_and_cdata_end_in_titles_and_content() -> None:
    nasty = "a < b && c ]]> </title></entry><script>x</script>"
    post = make_post(source="`" + nasty + "`", title=nasty)
    xml = build_atom(replace(SITE, title=nasty), [post], NOW)
    assert "<script>" not in xml
    assert "]]>" not in xml  # ">" is escaped everywhere, so no CDATA terminator appears
    root = parse_atom(xml)
    assert root.findtext(A + "title") == nasty
    (entry,) = root.findall(A + "entry")
    assert entry.findtext(A + "title") == nasty
    content = entry.findtext(A + "content") or ""
    # Unescaped once by XML, the content is the post's HTML, still escaped once as HTML.
    assert content == post.html
    assert "a &lt; b &amp;&amp; c ]]&gt;" in content

    parsed = feedparser.parse(xml)
    assert parsed.bozo == 0
    assert parsed.entries[0].title == nasty


def test_atom_drops_characters_xml_cannot_carry() -> None:
    post = make_post(source="form\x0cfeed and bell\x07", title="tab\tok\x01")
    xml = build_atom(SITE, [post], NOW)
    parsed = feedparser.parse(xml)
    assert parsed.bozo == 0
    assert parsed.entries[0].title == "tab\tok"
    assert "\x0c" not in xml and "\x07" not in xml


def test_atom_content_warning_comes_first_and_is_escaped() -> None:
    post = make_post(source="The ending: everyone lives.", summary="spoilers <for> Q&A")
    root = parse_atom(build_atom(SITE, [post], NOW))
    (entry,) = root.findall(A + "entry")
    content = entry.findtext(A + "content") or ""
    assert content.startswith("<p><strong>CW: spoilers &lt;for&gt; Q&amp;A</strong></p>")
    assert content.index("CW:") < content.index("everyone lives")
    # Without a title the excerpt would spoil what the warning hides: the warning is the title.
    assert entry.findtext(A + "title") == "CW: spoilers <for> Q&A"
    assert "everyone" not in (entry.findtext(A + "title") or "")


def test_untitled_entry_gets_an_excerpt_title() -> None:
    long_text = "word " * 60
    post = make_post(source=long_text)
    title = entry_title(post)
    assert title.startswith("word word")
    assert title.endswith("…")
    assert len(title) <= 80
    assert entry_title(make_post(source="Short one.")) == "Short one."


def test_title_never_empty_even_without_text() -> None:
    post = replace(make_post(), text="", html="<p></p>")
    assert entry_title(post) == "A thought of 1 May 2024"


def test_empty_atom_feed_is_valid_and_dated_now() -> None:
    xml = build_atom(SITE, [], NOW)
    root = parse_atom(xml)
    assert root.findall(A + "entry") == []
    assert root.findtext(A + "updated") == "2030-01-01T12:00:00Z"
    parsed = feedparser.parse(xml)
    assert parsed.bozo == 0
    assert parsed.feed.title == SITE.title


def test_atom_icon_when_avatar() -> None:
    site = replace(SITE, avatar_url="https://blog.example/media/avatar-0123456789abcdef.png")
    root = parse_atom(build_atom(site, [], NOW))
    assert root.findtext(A + "icon") == "https://blog.example/media/avatar-0123456789abcdef.png"


def test_feed_updated_is_latest_change_not_first_entry() -> None:
    newer = make_post(post_id="0000000000000002", created=datetime(2024, 6, 1, tzinfo=UTC))
    older_edited = make_post(
        post_id="0000000000000001",
        created=datetime(2024, 1, 1, tzinfo=UTC),
        updated=datetime(2024, 7, 1, tzinfo=UTC),
    )
    assert feed_updated([newer, older_edited], NOW) == datetime(2024, 7, 1, tzinfo=UTC)
    assert feed_updated([], NOW) == NOW


# --- JSON Feed ------------------------------------------------------------------------------


def test_json_feed_top_level() -> None:
    doc = build_json_feed(SITE, [])
    assert doc["version"] == JSON_FEED_VERSION
    assert doc["title"] == "Ada & <Friends>"
    assert doc["home_page_url"] == "https://blog.example/"
    assert doc["feed_url"] == "https://blog.example/feed.json"
    assert doc["description"] == "@ada@blog.example"
    assert doc["language"] == "en"
    assert doc["authors"] == [{"name": "Ada & <Friends>", "url": "https://blog.example/"}]
    assert doc["items"] == []
    assert "icon" not in doc and "favicon" not in doc
    json.dumps(doc)  # serialisable as is


def test_json_feed_avatar_gives_icon_favicon_and_author_avatar() -> None:
    url = "https://blog.example/media/avatar-0123456789abcdef.png"
    doc = build_json_feed(replace(SITE, avatar_url=url), [])
    assert doc["icon"] == url
    assert doc["favicon"] == url
    assert doc["authors"][0]["avatar"] == url


def test_json_feed_items() -> None:
    plain = make_post(post_id="0000000000000002", source="Just a #thought & more")
    titled = make_post(
        post_id="0000000000000001",
        source="Body <b>raw</b>",
        title="Essay",
        summary="long read",
        updated=datetime(2024, 5, 3, tzinfo=UTC),
    )
    doc = build_json_feed(SITE, [plain, titled])
    first, second = doc["items"]

    assert first["id"] == first["url"] == "https://blog.example/p/0000000000000002"
    assert "title" not in first
    assert "summary" not in first
    assert "date_modified" not in first
    assert first["content_html"] == plain.html
    assert first["content_text"] == "Just a #thought & more"
    assert first["tags"] == ["thought"]
    assert first["date_published"] == "2024-05-01T09:30:00Z"

    assert second["title"] == "Essay"
    assert second["summary"] == "long read"
    assert second["content_html"].startswith("<p><strong>CW: long read</strong></p>")
    assert second["content_text"].startswith("CW: long read\n\n")
    assert second["date_modified"] == "2024-05-03T00:00:00Z"
    assert "tags" not in second
    # Raw HTML in the source is shown as text, never passed through.
    assert "<b>" not in second["content_html"]
