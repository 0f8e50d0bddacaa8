"""Conditional GET and the in-memory cache of rendered public pages (web/page_cache.py)."""

from __future__ import annotations

import sqlite3

from starlette.testclient import TestClient

from fedistream.settings import Settings
from fedistream.web.page_cache import PageCache, _Entry
from tests.conftest import publish


def test_stream_answers_304_while_nothing_changed(owner_client: TestClient) -> None:
    publish(owner_client, "a thought")
    first = owner_client.get("/")
    etag = first.headers["etag"]
    assert first.status_code == 200
    again = owner_client.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag


def test_a_new_thought_changes_the_etag_and_the_page(owner_client: TestClient) -> None:
    publish(owner_client, "the first")
    etag = owner_client.get("/").headers["etag"]
    publish(owner_client, "the second one")
    after = owner_client.get("/", headers={"If-None-Match": etag})
    assert after.status_code == 200
    assert "the second one" in after.text
    assert after.headers["etag"] != etag


def test_a_write_from_another_process_is_seen(owner_client: TestClient, settings: Settings) -> None:
    """`fedistream post` (another connection, no stream_version bump needed) invalidates."""
    post_id = publish(owner_client, "likes will change")
    before = owner_client.get(f"/p/{post_id}")
    assert before.status_code == 200
    conn = sqlite3.connect(settings.db_path)
    with conn:  # what any other connection's commit looks like to the server
        conn.execute("UPDATE posts SET html = '<p>changed elsewhere</p>' WHERE id = ?", (post_id,))
    conn.close()
    after = owner_client.get(f"/p/{post_id}", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200
    assert "changed elsewhere" in after.text


def test_tag_pages_are_validated_too_and_errors_are_not(owner_client: TestClient) -> None:
    publish(owner_client, "about #gardens")
    page = owner_client.get("/tags/gardens")
    assert page.status_code == 200
    assert owner_client.get(
        "/tags/gardens", headers={"If-None-Match": page.headers["etag"]}
    ).status_code == 304  # fmt: skip
    missing = owner_client.get("/p/0000000000000000")
    assert missing.status_code == 404
    assert "etag" not in missing.headers


def test_the_activitypub_rendering_is_not_the_cached_html(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "one url, two renderings")
    owner_client.get(f"/p/{post_id}")
    note = owner_client.get(f"/p/{post_id}", headers={"Accept": "application/activity+json"})
    assert note.headers["content-type"].startswith("application/activity+json")
    assert note.json()["type"] == "Note"


def test_cache_is_bounded_by_entries_and_bytes() -> None:
    cache = PageCache(max_entries=3, max_bytes=100)
    for n in range(5):
        cache.put((str(n),), _Entry(b"x" * 10, "text/html"))
    assert len(cache) == 3
    assert cache.get(("0",)) is None and cache.get(("4",)) is not None
    cache.put(("big",), _Entry(b"x" * 60, "text/html"))  # over a quarter of the budget: skipped
    assert cache.get(("big",)) is None
    for n in range(3):
        cache.put((f"b{n}",), _Entry(b"x" * 24, "text/html"))
    assert len(cache) <= 3 and sum(len(e.body) for e in cache._entries.values()) <= 100
