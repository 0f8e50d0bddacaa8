"""HTTP tests of /feed.xml and /feed.json against the real app on a real SQLite file."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import feedparser
import pytest
from starlette.testclient import TestClient

from fedistream.app import build_app
from fedistream.core.models import Post
from fedistream.services import owner
from fedistream.services import posts as post_service
from fedistream.settings import Settings, load_settings

T = TypeVar("T")
BASE = "http://127.0.0.1:8000"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        env={}, data_dir=tmp_path, owner_password="correct horse battery", display_name="Ada"
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_app(settings)) as test_client:
        yield test_client


def call(client: TestClient, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run a coroutine function on the app's event loop (where its database connection lives)."""
    return client.portal.call(functools.partial(fn, *args, **kwargs))


def publish(
    client: TestClient, source: str, *, title: str = "", summary: str = "", at: datetime
) -> Post:
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    draft = post_service.Draft(source=source, title=title, summary=summary)
    return call(client, post_service.publish, db, draft, max_chars=20_000, now=at)


def test_atom_feed_parses_cleanly_with_entries_links_dates_and_tags(client: TestClient) -> None:
    first = publish(client, "First #Thought here", at=datetime(2024, 3, 1, 8, 0, tzinfo=UTC))
    second = publish(
        client,
        "Tom & Jerry say <hi> ]]> with #cats",
        title="Cats & <dogs> ]]>",
        summary="animals",
        at=datetime(2024, 3, 2, 9, 15, tzinfo=UTC),
    )

    response = client.get("/feed.xml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=60"
    assert response.headers["etag"]

    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "Ada"
    assert parsed.feed.subtitle == "@owner@127.0.0.1:8000"
    assert parsed.feed.id == BASE + "/"
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links == {"self": BASE + "/feed.xml", "alternate": BASE + "/"}
    assert parsed.feed.author_detail.name == "Ada"
    assert parsed.feed.updated == "2024-03-02T09:15:00Z"

    newest, oldest = parsed.entries
    assert newest.id == newest.link == f"{BASE}/p/{second.id}"
    assert newest.title == "Cats & <dogs> ]]>"
    assert newest.published == "2024-03-02T09:15:00Z"
    assert newest.updated == "2024-03-02T09:15:00Z"
    assert [t.term for t in newest.tags] == ["cats"]
    html = newest.content[0].value
    assert html.startswith("<p><strong>CW: animals</strong></p>")
    assert "Tom &amp; Jerry say &lt;hi&gt; ]]&gt;" in html

    assert oldest.id == f"{BASE}/p/{first.id}"
    assert oldest.title == "First #Thought here"  # untitled: an excerpt of the text
    assert [t.term for t in oldest.tags] == ["thought"]
    assert oldest.published_parsed[:5] == (2024, 3, 1, 8, 0)


def test_json_feed_has_required_fields_with_right_types(client: TestClient) -> None:
    publish(client, "Plain #one", at=datetime(2024, 3, 1, 8, 0, tzinfo=UTC))
    titled = publish(
        client, "Body text", title="A title", summary="cw", at=datetime(2024, 3, 2, tzinfo=UTC)
    )

    response = client.get("/feed.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/feed+json; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=60"
    doc = json.loads(response.content)

    # JSON Feed 1.1: version, title and items are required at the top; id on every item, and
    # at least one of content_html / content_text.
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(doc["title"], str) and doc["title"] == "Ada"
    assert isinstance(doc["items"], list) and len(doc["items"]) == 2
    assert doc["home_page_url"] == BASE + "/"
    assert doc["feed_url"] == BASE + "/feed.json"
    assert isinstance(doc["description"], str)
    assert doc["language"] == "en"
    assert doc["authors"] == [{"name": "Ada", "url": BASE + "/"}]
    assert "icon" not in doc and "favicon" not in doc
    for item in doc["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert isinstance(item["url"], str)
        assert isinstance(item["content_html"], str) and isinstance(item["content_text"], str)
        assert isinstance(item["date_published"], str)
        datetime.fromisoformat(item["date_published"].replace("Z", "+00:00"))

    newest, oldest = doc["items"]
    assert newest["id"] == f"{BASE}/p/{titled.id}"
    assert newest["title"] == "A title"
    assert newest["summary"] == "cw"
    assert "tags" not in newest
    assert "title" not in oldest
    assert oldest["tags"] == ["one"]


def test_deleted_thought_is_absent_from_both_feeds(client: TestClient) -> None:
    kept = publish(client, "I stay", at=datetime(2024, 3, 1, tzinfo=UTC))
    gone = publish(client, "I go #away", at=datetime(2024, 3, 2, tzinfo=UTC))
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    call(client, post_service.delete, db, gone.id, now=datetime(2024, 3, 3, tzinfo=UTC))

    atom = client.get("/feed.xml")
    ids = [entry.id for entry in feedparser.parse(atom.content).entries]
    assert ids == [f"{BASE}/p/{kept.id}"]
    assert gone.id not in atom.text

    feed = client.get("/feed.json")
    assert [item["id"] for item in feed.json()["items"]] == [f"{BASE}/p/{kept.id}"]
    assert gone.id not in feed.text


def test_feed_shows_only_the_twenty_newest(client: TestClient) -> None:
    made = [
        publish(client, f"Thought {n}", at=datetime(2024, 1, 1, 0, n, tzinfo=UTC))
        for n in range(22)
    ]
    items = client.get("/feed.json").json()["items"]
    assert [item["id"] for item in items] == [f"{BASE}/p/{p.id}" for p in reversed(made[2:])]
    assert len(feedparser.parse(client.get("/feed.xml").content).entries) == 20


def test_empty_feeds_are_valid(client: TestClient) -> None:
    parsed = feedparser.parse(client.get("/feed.xml").content)
    assert parsed.bozo == 0
    assert parsed.entries == []
    assert parsed.feed.title == "Ada"
    assert client.get("/feed.json").json()["items"] == []


@pytest.mark.parametrize("path", ["/feed.xml", "/feed.json"])
def test_conditional_get_answers_304_until_the_stream_changes(
    client: TestClient, path: str
) -> None:
    publish(client, "One", at=datetime(2024, 3, 1, tzinfo=UTC))
    first = client.get(path)
    etag = first.headers["etag"]

    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=60"

    # Weak form and lists of validators match too; an unrelated one does not.
    assert client.get(path, headers={"If-None-Match": f'"x", W/{etag}'}).status_code == 304
    assert client.get(path, headers={"If-None-Match": '"something-else"'}).status_code == 200

    publish(client, "Two", at=datetime(2024, 3, 2, tzinfo=UTC))
    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert "Two" in changed.text


def test_atom_and_json_etags_differ(client: TestClient) -> None:
    assert client.get("/feed.xml").headers["etag"] != client.get("/feed.json").headers["etag"]


def test_profile_change_updates_title_icon_and_etag(client: TestClient) -> None:
    before = client.get("/feed.json")
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    settings = client.app.state.ctx.settings  # type: ignore[attr-defined]
    current = call(client, owner.get_profile, db, settings)
    call(
        client,
        owner.update_profile,
        db,
        current,
        display_name="Ada L.",
        bio_source="",
        links=(),
        avatar="avatar-0123456789abcdef.png",
        header=None,
    )

    after = client.get("/feed.json", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200
    doc = after.json()
    avatar = BASE + "/media/avatar-0123456789abcdef.png"
    assert doc["title"] == "Ada L."
    assert doc["icon"] == doc["favicon"] == avatar
    assert doc["authors"] == [{"name": "Ada L.", "url": BASE + "/", "avatar": avatar}]

    parsed = feedparser.parse(client.get("/feed.xml").content)
    assert parsed.feed.title == "Ada L."
    assert parsed.feed.icon == avatar


def test_head_answers_headers_without_body(client: TestClient) -> None:
    response = client.head("/feed.xml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert response.headers["etag"]
    assert response.content == b""
