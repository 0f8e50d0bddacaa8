"""Item 2 of issue 5, the web side: every owner-UI form and every query parameter of every page.

Routes are read from the app itself (new ones are covered without editing this file); field
names are scraped from the forms the owner UI renders, plus every name a handler reads. Hypothesis
then fills them with hostile values: Unicode edge cases, huge text, wrong types, unknown fields,
uploads that are not images, a 100-megapixel "bomb", ids that are not ids. The owner is logged in
and the CSRF token is right, so each handler really runs. Never a 500; a refused form (4xx, or a
form shown again) leaves the whole database as it was; a GET never writes at all.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from PIL import Image
from starlette.datastructures import QueryParams
from starlette.testclient import TestClient

from tests.conftest import csrf_from, log_in, publish
from tests.hostile.harness import CACHE_TABLES, diff, routes_with, snapshot
from tests.hostile.test_malformed_inbox import UNICODE_EDGES
from tests.web.test_inbox import ALICE, Inbox, _open

EXAMPLES_PER_FORM = 12
EXAMPLES_PER_PAGE = 10


# --- what the app has ----------------------------------------------------------------------------


class _Forms(HTMLParser):
    """Field names of every <form method=post>, by action."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, set[str]] = {}
        self._action: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form" and (found.get("method") or "").lower() == "post":
            self._action = (found.get("action") or "").split("?")[0]
            self.fields.setdefault(self._action, set())
        field = tag in ("input", "textarea", "select", "button") and found.get("name")
        if field and self._action is not None:
            self.fields[self._action].add(str(field))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._action = None


# Names handlers read that no rendered form may show right now (an empty list has no buttons).
HANDLER_FIELDS = [
    "source", "title", "summary", "action", "handle", "actor", "note", "target", "next",
    "in_reply_to", "display_name", "bio", "password", "host", "revive",
    *(f"link_label_{i}" for i in range(5)), *(f"link_url_{i}" for i in range(5)),
    *(f"{kind}_{n}" for kind in ("alt", "media", "remove") for n in range(1, 6)),
]  # fmt: skip
FILE_FIELDS = ["avatar", "header", *(f"image_{n}" for n in range(1, 6))]


def _png(width: int = 8, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def _bomb() -> bytes:
    """A tiny PNG whose header claims 10,000 × 10,000 pixels."""
    data = bytearray(_png())
    ihdr = struct.pack(">II", 10_000, 10_000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


# --- hostile values ------------------------------------------------------------------------------

# A browser cannot send an unpaired surrogate (it has no UTF-8 form): every other edge case.
FORM_EDGES = [e for e in UNICODE_EDGES if not re.search("[\ud800-\udfff]", e)]
TEXT = st.one_of(
    st.sampled_from(FORM_EDGES),
    st.text(max_size=60),
    st.sampled_from(
        [
            "publish", "preview", "save", "publish_without_alt", "save_without_alt", "delete",
            "javascript:alert(1)", "http://127.0.0.1:9/users/alice", ALICE + "/notes/1",
            "https://blog.example.test/p/0000000000000000", "/admin//evil", "//127.0.0.1:9/x",
            "@bob@127.0.0.1:9", "@@", "bob@[::1]", "127.0.0.1:9", "0", "-1", "99999999999999999999",
            "²", "١٢٣", "on", "true", "\r\n\r\n", "a" * 101, "#tag " * 200,
        ]
    ),
    st.integers(20_000, 60_000).map(lambda n: "y" * n),  # over every text limit
)  # fmt: skip
# URLs stop at a few KiB in every client and proxy; up to 4,000 characters per value here.
QUERY_TEXT = TEXT.filter(lambda value: len(value) <= 4_000) | st.just("q" * 4_000)
FILES = st.sampled_from(
    [
        ("x.png", b"", "image/png"),
        ("x.png", b"<?php echo 1; ?>", "image/png"),
        ("x.png", _png(), "image/png"),
        ("x.gif", _png(), "text/html"),
        ("bomb.png", _bomb(), "image/png"),
        ("../../etc/passwd", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png"),
        ("", b"no file name", "application/octet-stream"),
    ]
)


def _form(names: list[str]) -> Any:
    fields = st.dictionaries(st.sampled_from(names) | st.text(max_size=12), TEXT, max_size=8)
    files = st.dictionaries(st.sampled_from(FILE_FIELDS), FILES, max_size=2)
    return st.tuples(fields, files, st.sampled_from(["right", "right", "right", "none", "other"]))


PATH_VALUES = st.one_of(
    st.sampled_from(["0000000000000000", "..%2f..%2fetc", "<script>", "%00", "a" * 300, "²"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
)
QUERY_NAMES = ["before", "page", "q", "next", "to", "done", "resource", "rel", "min_id", "cursor"]
ACCEPTS = [
    "text/html",
    "application/activity+json",
    'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
    "*/*",
    "application/json, text/html;q=0.5",
    "\x00garbage;;;q=nope",
]


# --- the running app, with some of everything in it -------------------------------------------


@pytest.fixture
def owner(tmp_path: Path) -> Iterator[Inbox]:
    """The real app (remote actors from an in-memory directory: no DNS, no network) with the
    owner logged in, a thought, a follower, a followed account and a reply to answer."""
    for app in _open(tmp_path):
        app.client.csrf = log_in(app.client)  # type: ignore[attr-defined]
        app.post_id = publish(app.client, "a #first thought")  # type: ignore[attr-defined]
        stamp = "2024-01-01T00:00:00Z"
        app.run_sql(
            "INSERT INTO followers (actor_id, follow_id, state, created_at) "
            "VALUES (?, ?, 'pending', ?)",
            ALICE,
            ALICE + "/follows/1",
            stamp,
        )
        yield app


def _fill(path: str, post_id: str, value: str | None = None) -> str:
    def param(match: re.Match[str]) -> str:
        if value is not None:
            return value
        return post_id if match.group(1) == "post_id" else "x"

    return re.sub(r"\{(\w+)\}", param, path)


def _field_names(app: Inbox) -> dict[str, list[str]]:
    """Per POST action: the names its rendered forms carry, then every other name we know."""
    scraper = _Forms()
    post_id = app.post_id  # type: ignore[attr-defined]
    for path in routes_with(app.client.app, "GET", "/admin"):
        page = app.client.get(_fill(path, post_id), follow_redirects=True)
        scraper.feed(page.text)
    every = sorted({*HANDLER_FIELDS, *(n for names in scraper.fields.values() for n in names)})
    return {
        action: sorted(names) + [n for n in every if n not in names]
        for action, names in scraper.fields.items()
    } | {"*": every}


# The composer keeps the images of a form it shows again (a preview, the missing-alt warning,
# a refused publish) as unattached uploads, so the owner need not upload them again; uploads
# never published are pruned after a day (services.attachments.prune_abandoned). That is the
# one write a form shown again may make: new unattached attachments, nothing else.
DRAFT_UPLOAD_ROUTES = frozenset({"/admin/posts", "/admin/posts/{post_id}/edit"})


def _media(app: Inbox) -> set[tuple[Any, ...]]:
    rows = app.rows("SELECT name, kind, post_id FROM media")
    return {(row["name"], row["kind"], row["post_id"]) for row in rows}


def _relogin_if_needed(app: Inbox) -> None:
    if not app.client.cookies.get("fedistream_session"):  # the logout form worked
        app.client.csrf = log_in(app.client)  # type: ignore[attr-defined]


def test_every_owner_form_refuses_hostile_input_cleanly(owner: Inbox) -> None:
    app = owner
    posts = routes_with(app.client.app, "POST", "/admin")
    assert {"/admin/posts", "/admin/profile", "/admin/blocks", "/admin/reply"} <= set(posts)
    names = _field_names(app)
    # Every form the owner UI shows must post to a route this test covers.
    post_id = app.post_id  # type: ignore[attr-defined]
    targets = {_fill(path, post_id) for path in posts}
    assert set(names) - {"*"} <= targets, set(names) - targets
    seen: dict[str, dict[int, int]] = {}
    for path in posts:
        if path == "/admin/login":
            continue  # not an owner form: fuzzed logged out below
        seen[path] = _fuzz_form(app, path, names)
    print(f"\n[hostile] owner forms: {len(seen)} routes x {EXAMPLES_PER_FORM} examples: {seen}")


def _fuzz_form(app: Inbox, path: str, names: dict[str, list[str]]) -> dict[int, int]:
    statuses: dict[int, int] = {}
    post_id = app.post_id  # type: ignore[attr-defined]
    target = _fill(path, post_id)
    known = names.get(target, names["*"])
    skip = CACHE_TABLES | {"media"}  # compared on its own: see DRAFT_UPLOAD_ROUTES

    @hyp_settings(
        max_examples=EXAMPLES_PER_FORM,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_form(known), st.booleans())
    def submit(form: tuple[dict[str, str], dict[str, Any], str], real_id: bool) -> None:
        fields, files, token = form
        url = target if real_id or "{" not in path else _fill(path, post_id, "0000000000000000")
        data = {k: v for k, v in fields.items() if k != "csrf"}
        if token == "right":
            data["csrf"] = app.client.csrf  # type: ignore[attr-defined]
        elif token == "other":
            data["csrf"] = "a-token-of-some-other-session"
        before = app.call(functools.partial(snapshot, skip=skip), app.ctx.db)
        media_before = _media(app)
        response = app.client.post(url, data=data, files=files or None, follow_redirects=False)
        status = response.status_code
        statuses[status] = statuses.get(status, 0) + 1
        assert status != 500 and status < 502 or status == 503, (url, status, response.text[:300])
        if token != "right":
            assert status == 403, (url, status)
        if status != 303:  # refused, or the form shown again: nothing written
            after = app.call(functools.partial(snapshot, skip=skip), app.ctx.db)
            assert before == after, (url, status, diff(before, after))
            media_after = _media(app)
            assert media_before <= media_after, "a refused form removed an image"
            if path in DRAFT_UPLOAD_ROUTES:  # see DRAFT_UPLOAD_ROUTES
                assert all(row[1:] == ("attachment", None) for row in media_after - media_before)
            else:
                assert media_after == media_before, (url, status, media_after - media_before)
        _relogin_if_needed(app)

    submit()
    return statuses


def test_the_login_form_refuses_hostile_input_cleanly(owner: Inbox) -> None:
    app = owner
    app.client.post("/admin/logout", data={"csrf": app.client.csrf})  # type: ignore[attr-defined]
    token = csrf_from(app.client.get("/admin/login").text)

    @hyp_settings(max_examples=EXAMPLES_PER_FORM * 2, deadline=None)
    @given(_form(["password", "next", "csrf"]))
    def submit(form: tuple[dict[str, str], dict[str, Any], str]) -> None:
        fields, files, how = form
        data = {**fields, "csrf": token if how == "right" else "nope"}
        before = app.call(snapshot, app.ctx.db)
        response = app.client.post(
            "/admin/login", data=data, files=files or None, follow_redirects=False
        )
        assert response.status_code in (401, 403, 429, 400, 413), response.status_code
        assert app.call(snapshot, app.ctx.db) == before

    submit()


# --- every page, every query parameter ----------------------------------------------------------


def test_every_page_answers_any_query_without_error_or_write(owner: Inbox) -> None:
    app = owner
    gets = routes_with(app.client.app, "GET")
    assert {"/", "/search", "/tags/{tag}", "/admin/notifications"} <= set(gets)
    anonymous = TestClient(app.client.app, base_url=str(app.client.base_url))
    seen: dict[str, dict[int, int]] = {}
    for path in gets:
        seen[path] = _fuzz_page(app, anonymous, path)
    print(f"\n[hostile] pages: {len(seen)} routes x {EXAMPLES_PER_PAGE} examples: {seen}")


def _fuzz_page(app: Inbox, anonymous: TestClient, path: str) -> dict[int, int]:
    """Random queries (Hypothesis) as the owner and as a stranger, then every known parameter with
    each of SWEEP. GETs never write, so one snapshot around the route tells it all."""
    statuses: dict[int, int] = {}
    post_id = app.post_id  # type: ignore[attr-defined]
    params = st.dictionaries(
        st.sampled_from(QUERY_NAMES) | st.text(max_size=8), QUERY_TEXT, max_size=4
    )

    def get(client: TestClient, url: str, query: dict[str, str], accept: str) -> None:
        response = client.get(url, params=query, headers={"Accept": accept}, follow_redirects=False)
        status = response.status_code
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (url, query, status, response.text[:300])

    @hyp_settings(
        max_examples=EXAMPLES_PER_PAGE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(params, st.one_of(st.none(), PATH_VALUES), st.sampled_from(ACCEPTS), st.booleans())
    def visit(query: dict[str, str], value: str | None, accept: str, as_owner: bool) -> None:
        url = _fill(path, post_id, value if value is None else _quoted(value))
        get(app.client if as_owner else anonymous, url, query, accept)

    before = app.call(snapshot, app.ctx.db)
    visit()
    url = _fill(path, post_id)
    # Each parameter the page reads, alone, with every SWEEP value (alone: a parameter refused
    # first must not hide another's crash).
    for name in _parameters_read(app.client, url):
        for value in SWEEP:
            get(app.client, url, {name: value}, "text/html")
    get(anonymous, url, {}, "text/html")
    after = app.call(snapshot, app.ctx.db)
    assert before == after, (path, diff(before, after))
    return statuses


def _parameters_read(client: TestClient, url: str) -> list[str]:
    """Which query parameters the handler of `url` looks at: one request offering all of them,
    with Starlette's QueryParams recording every name it is asked for."""
    asked: list[str] = []
    original_get = QueryParams.get
    original_item = QueryParams.__getitem__

    def get(self: QueryParams, key: Any, default: Any = None) -> Any:
        asked.append(key)
        return original_get(self, key, default)

    def item(self: QueryParams, key: Any) -> Any:
        asked.append(key)
        return original_item(self, key)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(QueryParams, "get", get)
        patch.setattr(QueryParams, "__getitem__", item)
        client.get(url, params=dict.fromkeys(QUERY_NAMES, "1"), follow_redirects=False)
    return sorted(set(asked))


# Values that break number and id parsing: Unicode digits (str.isdigit() says yes, int() no),
# signs, overflow, NUL, empties and lengths.
SWEEP = ["²", "١٢", "-1", "9" * 20, "1e9", "\x00", "", "q" * 4_000, "0000000000000000"]


def _quoted(value: str) -> str:
    return quote(value, safe="")


@pytest.mark.parametrize(
    "spoiled",
    [
        {"display_name": " "},
        {"display_name": "n" * 101},
        {"bio": "b" * 5001},
        {"link_url_0": "javascript:alert(1)", "link_label_0": "x"},
        {"header": "not an image"},
    ],
    ids=["empty-name", "long-name", "long-bio", "bad-link", "header-not-an-image"],
)
def test_a_refused_profile_keeps_no_uploaded_image(owner: Inbox, spoiled: dict[str, str]) -> None:
    """The images come with the text in one form; when the text is refused, so are they."""
    app = owner
    spoiled = dict(spoiled)
    header = spoiled.pop("header", "").encode() or _png()
    data = {"csrf": app.client.csrf, "display_name": "Ada", "bio": "hi", **spoiled}  # type: ignore[attr-defined]
    before = app.call(snapshot, app.ctx.db)
    files_before = sorted(p.name for p in app.ctx.settings.media_dir.glob("*"))
    response = app.client.post(
        "/admin/profile",
        data=data,
        files={
            "avatar": ("me.png", _png(64, 64), "image/png"),
            "header": ("h.png", header, "image/png"),
        },
    )
    assert response.status_code == 400, response.text
    after = app.call(snapshot, app.ctx.db)
    assert before == after, diff(before, after)
    assert sorted(p.name for p in app.ctx.settings.media_dir.glob("*")) == files_before
