"""Item 5 of issue 5: the owner UI against someone who is not the owner.

Routes are read from the app, so a new `/admin` form or page is covered without editing this
file. Every POST under /admin, sent by a logged-in owner's browser but without the right CSRF
token (none, a wrong one, another session's), is refused 403 and changes nothing; the same
request with the right token is not refused, so the 403 is the token's doing. Login guessing is
throttled per client (and the throttle cannot be dodged with X-Forwarded-For); the session id is
new at every login, a planted one never becomes valid, and logout ends it on the server. Cookies
are HttpOnly and SameSite (and Secure on https). Every page carries the security headers.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from fedistream.app import build_app
from fedistream.settings import load_settings
from tests.conftest import OWNER_PASSWORD, csrf_from, log_in, publish
from tests.hostile.harness import diff, routes_with, snapshot
from tests.web.test_inbox import ALICE, BASE, Inbox, _open

# --- CSRF on every owner form ------------------------------------------------------------------


def _plausible(path: str, post_id: str) -> dict[str, str]:
    """A body that would do something on `path` if its token were not checked."""
    return {
        "source": "forged thought",
        "title": "forged",
        "action": "publish",
        "display_name": "Forged Name",
        "bio": "forged",
        "handle": "@mallory@127.0.0.1:9",
        "actor": ALICE,
        "target": "127.0.0.66",
        "note": ALICE + "/notes/1",
        "in_reply_to": BASE + f"/p/{post_id}",
        "host": "127.0.0.1:9",
        "password": OWNER_PASSWORD,
    }


@pytest.fixture
def owner(tmp_path: Path) -> Iterator[Inbox]:
    for app in _open(tmp_path):
        app.client.csrf = log_in(app.client)  # type: ignore[attr-defined]
        app.post_id = publish(app.client, "a thought")  # type: ignore[attr-defined]
        app.run_sql(
            "INSERT INTO followers (actor_id, follow_id, state, created_at) "
            "VALUES (?, ?, 'pending', '2024-01-01T00:00:00Z')",
            ALICE,
            ALICE + "/follows/1",
        )
        yield app


def _other_sessions_token(app: Inbox) -> str:
    """A valid CSRF token, but of another session (a second browser logged in)."""
    other = TestClient(app.client.app, base_url=BASE)
    return log_in(other)


def _order(paths: list[str]) -> list[str]:
    # Routes that end the session or the thought go last, so the others still have them.
    last = ("/admin/posts/{post_id}/delete", "/admin/logout")
    return [p for p in paths if p not in last] + [p for p in last if p in paths]


def test_every_admin_post_without_the_right_csrf_token_is_403(owner: Inbox) -> None:
    app = owner
    post_id = app.post_id  # type: ignore[attr-defined]
    foreign = _other_sessions_token(app)
    paths = _order(
        [p for p in routes_with(app.client.app, "POST", "/admin") if p != "/admin/login"]
    )
    assert len(paths) >= 20, paths
    controls: dict[str, int] = {}
    for path in paths:
        url = path.replace("{post_id}", post_id)
        body = _plausible(path, post_id)
        for token in (None, "", "wrong-token", foreign, app.client.csrf.upper()):  # type: ignore[attr-defined]
            for multipart in (False, True):
                data = body if token is None else {**body, "csrf": token}
                files = {"unused": ("x.txt", b"x", "text/plain")} if multipart else None
                before = app.call(snapshot, app.ctx.db)
                response = app.client.post(url, data=data, files=files, follow_redirects=False)
                assert response.status_code == 403, (url, token, response.status_code)
                assert "security token" in response.text, response.text[:300]
                after = app.call(snapshot, app.ctx.db)
                assert before == after, (url, token, diff(before, after))
        # The control: the same request with the session's own token is not refused as forged.
        control = app.client.post(
            url,
            data={**body, "csrf": app.client.csrf},
            follow_redirects=False,  # type: ignore[attr-defined]
        )
        controls[path] = control.status_code
        assert control.status_code != 403, (url, control.text[:300])
    print(f"\n[hostile] CSRF: {len(paths)} /admin POST routes x 10 forged requests each")
    print(f"          the same requests with the right token: {controls}")


def test_the_login_form_needs_its_double_submit_token(tmp_path: Path) -> None:
    for app in _open(tmp_path):
        client = app.client
        # No cookie at all (a cross-site form post): refused, whatever the form says.
        response = client.post("/admin/login", data={"csrf": "x" * 32, "password": OWNER_PASSWORD})
        assert response.status_code == 403
        token = csrf_from(client.get("/admin/login").text)
        for wrong in ("", "y" * 32, token[:-1]):
            response = client.post("/admin/login", data={"csrf": wrong, "password": OWNER_PASSWORD})
            assert response.status_code == 403, wrong
        assert client.cookies.get("fedistream_session") is None  # never logged in


# --- login guessing --------------------------------------------------------------------------


def _attempt(client: TestClient, password: str, headers: dict[str, str] | None = None) -> int:
    token = csrf_from(client.get("/admin/login", headers=headers).text)
    response = client.post(
        "/admin/login",
        data={"csrf": token, "password": password},
        headers=headers,
        follow_redirects=False,
    )
    if response.status_code == 429:
        assert int(response.headers["retry-after"]) > 0
    return response.status_code


def _from(app: TestClient, address: str) -> TestClient:
    return TestClient(app.app, base_url=str(app.base_url), client=(address, 40000))


def test_login_guessing_is_throttled_per_client(owner: Inbox) -> None:
    app = owner.client
    mallory, ada = _from(app, "198.51.100.7"), _from(app, "203.0.113.20")
    assert [_attempt(mallory, f"guess {n}") for n in range(5)] == [401] * 5
    assert _attempt(mallory, "guess 6") == 429
    assert _attempt(mallory, OWNER_PASSWORD) == 429  # even the right password, for now
    # A header the client writes itself must not make it someone new.
    for n in range(3):
        assert _attempt(mallory, "x", {"X-Forwarded-For": f"192.0.2.{n}"}) == 429
    assert _attempt(ada, OWNER_PASSWORD) == 303  # another client is not locked out


def test_behind_the_trusted_proxy_the_forwarded_client_is_throttled(tmp_path: Path) -> None:
    for app in _open(tmp_path, trusted_proxy="10.9.9.9"):
        proxy = _from(app.client, "10.9.9.9")
        mallory = {"X-Forwarded-For": "198.51.100.7"}
        ada = {"X-Forwarded-For": "203.0.113.20"}
        assert [_attempt(proxy, f"guess {n}", mallory) for n in range(5)] == [401] * 5
        assert _attempt(proxy, "guess 6", mallory) == 429
        # Appending a fake hop in front changes nothing: the proxy adds the real one last.
        spoofed = {"X-Forwarded-For": "192.0.2.1, 198.51.100.7"}
        assert _attempt(proxy, "guess 7", spoofed) == 429
        assert _attempt(proxy, OWNER_PASSWORD, ada) == 303


# --- sessions ----------------------------------------------------------------------------------


def test_a_planted_session_id_never_becomes_valid(owner: Inbox) -> None:
    app = owner.client
    victim = TestClient(app.app, base_url=str(app.base_url))
    planted = "attacker-chosen-session-value-0123456789"
    victim.cookies.set("fedistream_session", planted, domain="blog.example.test", path="/admin")
    log_in(victim)
    assert victim.cookies.get("fedistream_session") not in (None, planted)
    attacker = TestClient(app.app, base_url=str(app.base_url))
    attacker.cookies.set("fedistream_session", planted, path="/admin")
    assert attacker.get("/admin", follow_redirects=False).status_code == 303


def test_session_rotates_at_login_and_dies_at_logout(owner: Inbox) -> None:
    app = owner.client
    first = app.cookies.get("fedistream_session")
    again = app.post(
        "/admin/login",
        data={"csrf": app.cookies.get("fedistream_login_csrf"), "password": OWNER_PASSWORD},
        follow_redirects=False,
    )
    assert again.status_code == 303
    second = app.cookies.get("fedistream_session")
    assert first and second and first != second
    assert _with_cookie(app, first).get("/admin", follow_redirects=False).status_code == 303
    out = app.post("/admin/logout", data={"csrf": csrf_from(app.get("/admin").text)},
                   follow_redirects=False)  # fmt: skip
    assert out.status_code == 303
    assert "fedistream_session=" in out.headers["set-cookie"]
    assert re.search(r"(Max-Age=0|expires=Thu, 01 Jan 1970)", out.headers["set-cookie"], re.I)
    assert _with_cookie(app, second).get("/admin", follow_redirects=False).status_code == 303
    assert owner.rows("SELECT count(*) AS n FROM sessions")[0]["n"] == 0  # gone on the server


def _with_cookie(app: TestClient, value: str) -> TestClient:
    stranger = TestClient(app.app, base_url=str(app.base_url))
    stranger.cookies.set("fedistream_session", value, path="/admin")
    return stranger


# --- cookies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("base_url", ["https://blog.example.test", "http://127.0.0.1:8000"])
def test_cookie_attributes(tmp_path: Path, base_url: str) -> None:
    settings = load_settings(
        env={}, data_dir=tmp_path / "d", owner_password=OWNER_PASSWORD, base_url=base_url
    )
    with TestClient(build_app(settings), base_url=base_url) as client:
        page = client.get("/admin/login")
        login_cookie = page.headers["set-cookie"]
        response = client.post(
            "/admin/login",
            data={"csrf": csrf_from(page.text), "password": OWNER_PASSWORD},
            follow_redirects=False,
        )
        session_cookie = response.headers["set-cookie"]
    for cookie, same_site in ((login_cookie, "strict"), (session_cookie, "lax")):
        attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
        assert "httponly" in attributes, cookie
        assert attributes["samesite"].strip().lower() == f"samesite={same_site}", cookie
        assert attributes["path"].strip() == "Path=/admin", cookie
        assert ("secure" in attributes) == base_url.startswith("https://"), cookie


# --- security headers on every page ------------------------------------------------------------


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def _urls(app: Inbox) -> list[str]:
    """Every GET route with its parameters filled with things that exist (and one that does not)."""
    post_id = app.post_id  # type: ignore[attr-defined]
    app.client.post(
        "/admin/profile",
        data={"csrf": app.client.csrf, "display_name": "Ada", "bio": ""},  # type: ignore[attr-defined]
        files={"avatar": ("a.png", _png(), "image/png")},
    )
    media = re.search(r'src="/media/([^"]+)"', app.client.get("/").text)
    assert media, "the avatar was not saved"
    values = {"post_id": post_id, "tag": "first", "name": media.group(1), "version": "2.1"}
    urls = []
    for path in routes_with(app.client.app, "GET"):
        filled = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)
        if path == "/static/{name}":
            filled = "/static/style.css"
        urls.append(filled)
    return [*urls, "/no/such/page", "/p/0000000000000000", "/?before=nope"]


def _csp(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


def test_every_page_carries_the_security_headers(owner: Inbox) -> None:
    app = owner
    urls = _urls(app)
    stranger = TestClient(app.client.app, base_url=BASE)
    checked: dict[str, int] = {}
    admin_pages: set[str] = set()
    for url in urls:
        for who, client in (("owner", app.client), ("stranger", stranger)):
            response = client.get(url, follow_redirects=False)
            key = f"{url} ({who})"
            headers = response.headers
            assert headers.get("x-content-type-options") == "nosniff", key
            assert headers.get("referrer-policy") in (
                "strict-origin-when-cross-origin", "same-origin", "no-referrer"
            ), key  # fmt: skip
            if url.startswith("/admin"):
                assert "no-store" in headers.get("cache-control", ""), key
            if not headers.get("content-type", "").startswith("text/html"):
                continue
            checked[who] = checked.get(who, 0) + 1
            _assert_page_policy(key, headers, response.text)
            if who == "owner" and url.startswith("/admin") and url != "/admin/login":
                admin_pages.add(url)
    admin_gets = {u for u in urls if u.startswith("/admin") and u != "/admin/login"}
    assert admin_pages == admin_gets  # every owner page was an HTML page and was checked
    print(f"\n[hostile] security headers: {len(urls)} URLs, HTML pages checked {checked}")


def _assert_page_policy(key: str, headers: Any, html: str) -> None:
    csp = _csp(headers["content-security-policy"])
    scripts = csp.get("script-src", csp.get("default-src"))
    assert scripts is not None, key
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"} & set(
        scripts
    ), (key, scripts)
    assert csp.get("default-src") == ["'none'"], key
    assert csp.get("object-src", csp["default-src"]) == ["'none'"], key
    assert csp.get("base-uri") == ["'none'"], key
    assert csp.get("form-action") == ["'self'"], key
    assert csp.get("frame-ancestors") == ["'none'"], key
    assert headers.get("x-frame-options") == "DENY", key
    # And the pages need no inline script: none is there to be allowed.
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html, re.I), key
    assert not re.search(r"\son[a-z]+\s*=", html.split("</head>", 1)[-1], re.I), key
