"""Public pages over real HTTP (TestClient + the real app and SQLite)."""

from __future__ import annotations

import re

import mf2py
from starlette.testclient import TestClient

from tests.conftest import publish


def test_empty_stream_shows_the_card(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in response.text
    assert "@owner@blog.example.test" in response.text
    assert "Nothing here yet" in response.text


def test_stream_shows_thoughts_newest_first_with_time_and_tags(owner_client: TestClient) -> None:
    first = publish(owner_client, "first thought")
    second = publish(owner_client, "second thought with #Tag", title="Second")
    html = owner_client.get("/").text
    assert html.index(second) < html.index(first)
    assert re.search(r'<time class="dt-published" datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"', html)
    assert (
        '<h2 class="p-name entry-title"><a class="u-url" href="/p/' + second + '">Second</a></h2>'
        in html
    )
    assert 'href="/tags/tag"' in html


def test_older_link_pages_through_everything(owner_client: TestClient) -> None:
    ids = [publish(owner_client, f"number {i}") for i in range(23)]
    first_page = owner_client.get("/").text
    match = re.search(r'href="\?before=([0-9a-z]{16})"', first_page)
    assert match, "no older link"
    second_page = owner_client.get(f"/?before={match.group(1)}").text
    assert all(i in first_page for i in ids[3:])
    assert all(i in second_page for i in ids[:3])
    assert not any(i in second_page for i in ids[3:])
    assert "?before=" not in second_page


def test_bad_cursor_is_a_400_with_a_reason(client: TestClient) -> None:
    response = client.get("/?before=not-an-id")
    assert response.status_code == 400
    assert "before" in response.text


def test_permalink_meta_and_microformats(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "A *bold* idea about #gardens.", title="On gardens")
    response = owner_client.get(f"/p/{post_id}")
    assert response.status_code == 200
    html = response.text
    assert '<meta property="og:title" content="On gardens">' in html
    assert '<meta property="og:description" content="A bold idea about #gardens.">' in html
    assert '<meta name="twitter:card" content="summary">' in html
    assert '<meta name="fediverse:creator" content="owner@blog.example.test">' in html
    assert f'<link rel="canonical" href="https://blog.example.test/p/{post_id}">' in html
    parsed = mf2py.parse(doc=html, url=f"https://blog.example.test/p/{post_id}")
    entries = [i for i in parsed["items"] if "h-entry" in i["type"]]
    assert entries and entries[0]["properties"]["name"] == ["On gardens"]
    assert entries[0]["properties"]["category"] == ["gardens"]
    assert entries[0]["properties"]["url"] == [f"https://blog.example.test/p/{post_id}"]


def test_stream_is_an_h_feed_with_an_h_card(owner_client: TestClient) -> None:
    publish(owner_client, "one")
    parsed = mf2py.parse(doc=owner_client.get("/").text, url="https://blog.example.test/")
    types = {t for item in parsed["items"] for t in item["type"]}
    assert {"h-card", "h-feed"} <= types
    feed = next(i for i in parsed["items"] if "h-feed" in i["type"])
    assert any("h-entry" in child["type"] for child in feed.get("children", []))


def test_unknown_and_malformed_permalinks_are_404(client: TestClient) -> None:
    assert client.get("/p/0000000000000000").status_code == 404
    assert client.get("/p/..%2f..%2fetc").status_code == 404
    assert client.get("/p/<script>").status_code == 404


def test_deleted_thought_answers_410(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "soon gone")
    owner_client.post(f"/admin/posts/{post_id}/delete", data={"csrf": owner_client.csrf})  # type: ignore[attr-defined]
    response = owner_client.get(f"/p/{post_id}")
    assert response.status_code == 410
    assert "deleted" in response.text.lower()
    assert "soon gone" not in response.text


def test_content_warning_renders_collapsed_without_js(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "spoilers inside", summary="film ending")
    html = owner_client.get(f"/p/{post_id}").text
    assert re.search(r"<details class=\"cw\">\s*<summary>.*film ending.*</summary>", html, re.S)
    assert '<details class="cw" open' not in html


def test_tag_page(owner_client: TestClient) -> None:
    tagged = publish(owner_client, "about #Cats")
    other = publish(owner_client, "about #dogs")
    html = owner_client.get("/tags/cats").text
    assert tagged in html and other not in html
    assert owner_client.get("/tags/CATS").text.count(tagged) >= 1
    assert "No thoughts tagged" in owner_client.get("/tags/unused").text


def test_search_highlights_and_escapes(owner_client: TestClient) -> None:
    hit = publish(owner_client, "the quick brown fox")
    publish(owner_client, "a lazy dog")
    html = owner_client.get("/search", params={"q": "quick"}).text
    assert hit in html and "<mark>quick</mark>" in html
    assert "No thoughts match" in owner_client.get("/search", params={"q": "zebra"}).text
    evil = owner_client.get("/search", params={"q": '"><script>alert(1)</script>'}).text
    assert "<script>alert(1)" not in evil
    assert owner_client.get("/search", params={"q": "x" * 201}).status_code == 400
    assert owner_client.get("/search", params={"q": "fox", "page": "nope"}).status_code == 400


def test_search_form_without_query(client: TestClient) -> None:
    html = client.get("/search").text
    assert 'role="search"' in html and 'type="search"' in html


def test_security_headers_on_pages(client: TestClient) -> None:
    response = client.get("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"


def test_stylesheet_is_served_and_has_a_dark_mode(client: TestClient) -> None:
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert "prefers-color-scheme: dark" in response.text
    assert client.get("/static/../pyproject.toml").status_code == 404
    assert client.get("/static/nope.css").status_code == 404


def test_unknown_route_is_a_friendly_404(client: TestClient) -> None:
    response = client.get("/nothing-here")
    assert response.status_code == 404
    assert "There is nothing at this address." in response.text


def test_media_names_are_checked(client: TestClient) -> None:
    assert client.get("/media/..%2Ffedistream.sqlite3").status_code == 404
    assert client.get("/media/avatar-0000000000000000.png").status_code == 404
