"""Item 4 of issue 5, on the rendered HTML: every payload, through every surface, audited.

One server is filled by tests/hostile/xss_world.py (a thought per payload with the payload as
its Markdown, title, content warning, hashtag and image description; a remote account per
payload whose display name, handle, reply, content warning, image description, hashtag and URLs
are the payload); then every page that shows them is fetched over HTTP and audited. The same
world loaded in real Chromium is tests/hostile/test_xss_browser.py.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from markupsafe import escape

from tests.hostile.xss_world import PAYLOADS, URL_PAYLOADS, World, audit, quoted

FIGURES: Counter[str] = Counter()
README = Path(__file__).with_name("README.md")


@pytest.fixture
def world(xss_world: World) -> World:
    return xss_world


def _check(surface: str, url: str, html: str, found: dict[str, list[str]], payloads: int) -> None:
    problems = audit(html)
    if problems:
        found[url] = problems
    FIGURES[surface] += payloads


def test_there_are_more_than_a_hundred_payloads() -> None:
    assert len(PAYLOADS) >= 100
    assert f"{len(PAYLOADS)} payloads" in README.read_text()


def test_owner_markdown_title_cw_alt_and_hashtags(world: World) -> None:
    found: dict[str, list[str]] = {}
    for url, html in world.pages(world.reader, "/"):
        _check("owner thought on the stream", url, html, found, html.count('class="h-entry'))
    for post_id in world.post_ids:
        url = f"/p/{post_id}"
        _check("owner thought on its permalink", url, world.html(world.reader, url), found, 1)
        for page in (f"/admin/posts/{post_id}/edit", f"/admin/posts/{post_id}/delete"):
            _check("owner thought in the owner UI", page, world.html(world.owner, page), found, 1)
    for url, html in world.pages(world.owner, "/admin"):
        _check("owner thought on the dashboard", url, html, found, html.count('/edit"'))
    assert found == {}


def test_hashtags_link_to_tag_pages_that_are_safe(world: World) -> None:
    found: dict[str, list[str]] = {}
    for payload in PAYLOADS:
        url = f"/tags/{quoted(payload)}"
        _check("hashtag page named by the payload", url, world.html(world.reader, url), found, 1)
    stream = "".join(html for _url, html in world.pages(world.reader, "/"))
    tag_links = sorted(set(_hrefs(stream, "/tags/")))
    assert tag_links, "no hashtag became a link"
    for url in tag_links:
        _check("hashtag page of a thought", url, world.html(world.reader, url), found, 1)
    assert found == {}


def test_composer_preview(world: World) -> None:
    found: dict[str, list[str]] = {}
    for payload in PAYLOADS:
        response = world.owner.post(
            "/admin/posts",
            data={"csrf": world.csrf, "source": payload, "title": payload[:200],
                  "summary": payload[:500], "action": "preview"},
        )  # fmt: skip
        assert response.status_code == 200
        _check("composer preview", "preview of " + payload, response.text, found, 1)
    assert found == {}


def test_profile_name_bio_link_labels_and_urls(world: World) -> None:
    found: dict[str, list[str]] = {}
    try:
        for payload in PAYLOADS:  # one profile per payload: name, bio, link label and URL
            name = " ".join(payload.split())[:100] or "x"
            link = (payload[:100], "https://127.0.0.1:9/" + payload[:400])
            response = world.set_profile(name, payload, [link])
            assert response.status_code == 303, (payload, response.text[:300])
            for url, client in (
                ("/", world.reader),
                (f"/p/{world.post_ids[0]}", world.reader),
                ("/admin/profile", world.owner),
            ):
                html = world.html(client, url)
                _check("profile name, bio and links", url, html, found, 1)
                if url == "/":
                    assert str(escape(name)) in html  # the payload really is on the page
        for bad in URL_PAYLOADS:  # links must be http(s): the rest are refused, not shown
            response = world.set_profile("Ada", "", [("x", bad)])
            if not bad.startswith(("http://", "https://")):
                assert response.status_code == 400, bad
            _check("profile link URLs", "/", world.html(world.reader, "/"), found, 1)
    finally:
        world.set_profile("Ada", "", [])
    assert found == {}


def test_remote_notes_names_summaries_alt_text_and_urls(world: World) -> None:
    found: dict[str, list[str]] = {}
    thread = f"/p/{world.thread_post}"
    html = world.html(world.reader, thread)
    _check("remote replies on the public thread", thread, html, found, len(PAYLOADS))
    for payload in PAYLOADS:  # every display name reached the page, escaped
        assert str(escape(payload)) in html, payload
    admin_thread = f"/admin/posts/{world.thread_post}/thread"
    _check("remote replies in the owner's thread", admin_thread,
           world.html(world.owner, admin_thread), found, len(PAYLOADS))  # fmt: skip
    for first, surface in (
        ("/admin/timeline", "remote notes on the owner's timeline"),
        ("/admin/notifications", "remote replies and reactions in notifications"),
    ):
        for url, page in world.pages(world.owner, first):
            _check(surface, url, page, found, 0)
        FIGURES[surface] += len(PAYLOADS)
    for note_id in world.note_ids:
        url = f"/admin/reply?to={quoted(note_id)}"
        _check("remote note on the reply page", url, world.html(world.owner, url), found, 1)
    assert found == {}


def test_reflected_parameters(world: World) -> None:
    found: dict[str, list[str]] = {}
    for payload in PAYLOADS:
        for surface, client, url in (
            ("search query", world.reader, f"/search?q={quoted(payload[:200])}"),
            ("login form's next", world.reader, f"/admin/login?next={quoted(payload)}"),
            ("reply page's target", world.owner, f"/admin/reply?to={quoted(payload)}"),
            ("stream cursor", world.reader, f"/?before={quoted(payload)}"),
        ):
            response = client.get(url)
            assert response.status_code < 500, (url, response.status_code)
            _check(surface, url, response.text, found, 1)
    for url, html in world.pages(world.reader, "/search?q=x"):
        _check("search snippets", url, html, found, html.count('class="snippet"'))
    assert found == {}


def test_zz_print_figures() -> None:
    total = sum(FIGURES.values())
    print(f"\n[hostile] XSS: {len(PAYLOADS)} payloads, {total} payload renderings audited:")
    for surface, count in sorted(FIGURES.items()):
        print(f"  {count:5d}  {surface}")
    assert total >= 10 * len(PAYLOADS)


def _hrefs(html: str, prefix: str) -> list[str]:
    return [m for m in re.findall(r'href="([^"]+)"', html) if m.startswith(prefix)]
