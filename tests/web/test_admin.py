"""The owner UI: sessions, CSRF, rate limiting, compose/preview/edit/delete, profile and uploads."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from starlette.testclient import TestClient

from fedistream.settings import Settings
from tests.conftest import OWNER_PASSWORD, csrf_from, log_in, publish

ADMIN_GETS = [
    "/admin",
    "/admin/profile",
    "/admin/posts/0000000000000000/edit",
    "/admin/posts/0000000000000000/delete",
]
ADMIN_POSTS = [
    "/admin/posts",
    "/admin/profile",
    "/admin/logout",
    "/admin/posts/0000000000000000/edit",
    "/admin/posts/0000000000000000/delete",
]


@pytest.mark.parametrize("path", ADMIN_GETS)
def test_admin_pages_need_a_session(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login?next=")


@pytest.mark.parametrize("path", ADMIN_POSTS)
def test_admin_posts_need_a_session_and_change_nothing(client: TestClient, path: str) -> None:
    response = client.post(
        path, data={"source": "sneaky", "action": "publish"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert "/admin/login" in response.headers["location"]
    assert "sneaky" not in client.get("/").text


@pytest.mark.parametrize("path", ADMIN_POSTS)
def test_admin_posts_without_csrf_are_403(owner_client: TestClient, path: str) -> None:
    for token in (None, "wrong-token"):
        data = {"source": "forged", "action": "publish"}
        if token:
            data["csrf"] = token
        response = owner_client.post(path, data=data, follow_redirects=False)
        assert response.status_code == 403
        assert "security token" in response.text
    assert "forged" not in owner_client.get("/").text
    assert owner_client.get("/admin", follow_redirects=False).status_code == 200  # still logged in


def test_session_cookie_attributes(client: TestClient) -> None:
    page = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        follow_redirects=False,
        data={"csrf": csrf_from(page.text), "password": OWNER_PASSWORD},
    )
    cookie = response.headers["set-cookie"]
    assert "fedistream_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
    assert "Path=/admin" in cookie


def test_login_rotates_the_session_and_logout_ends_it(client: TestClient) -> None:
    log_in(client)
    first = client.cookies.get("fedistream_session")
    # Log in again while logged in (the form's token is the double-submit cookie's value).
    again = client.post(
        "/admin/login",
        follow_redirects=False,
        data={"csrf": client.cookies.get("fedistream_login_csrf"), "password": OWNER_PASSWORD},
    )
    assert again.status_code == 303
    second = client.cookies.get("fedistream_session")
    assert first and second and first != second
    # The old session id no longer works.
    stale = TestClient(client.app, base_url=str(client.base_url))
    stale.cookies.set("fedistream_session", first, path="/admin")
    assert stale.get("/admin", follow_redirects=False).status_code == 303
    csrf = csrf_from(client.get("/admin").text)
    assert (
        client.post("/admin/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    )
    replay = TestClient(client.app, base_url=str(client.base_url))
    replay.cookies.set("fedistream_session", second, path="/admin")
    assert replay.get("/admin", follow_redirects=False).status_code == 303


def test_login_needs_the_form_token(client: TestClient) -> None:
    client.get("/admin/login")
    response = client.post(
        "/admin/login", data={"password": OWNER_PASSWORD, "csrf": "nope"}, follow_redirects=False
    )
    assert response.status_code == 403


def test_wrong_password_then_throttled(client: TestClient) -> None:
    csrf = csrf_from(client.get("/admin/login").text)
    for _ in range(5):
        response = client.post("/admin/login", data={"csrf": csrf, "password": "wrong"})
        assert response.status_code == 401
        assert "That password is not right." in response.text
    response = client.post("/admin/login", data={"csrf": csrf, "password": OWNER_PASSWORD})
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0
    assert "Too many failed logins" in response.text


def test_login_redirects_only_inside_admin(client: TestClient) -> None:
    csrf = csrf_from(client.get("/admin/login").text)
    response = client.post(
        "/admin/login",
        follow_redirects=False,
        data={"csrf": csrf, "password": OWNER_PASSWORD, "next": "https://127.0.0.1:9/evil"},
    )
    assert response.headers["location"] == "/admin"


def test_preview_renders_without_publishing(owner_client: TestClient) -> None:
    response = owner_client.post(
        "/admin/posts",
        data={
            "csrf": owner_client.csrf,
            "source": "- one\n- two",
            "title": "",
            "summary": "",  # type: ignore[attr-defined]
            "action": "preview",
        },
    )
    assert response.status_code == 200
    assert "<li>one</li>" in response.text
    assert "- one\n- two</textarea>" in response.text  # the draft stays in the form
    assert "Nothing here yet" in owner_client.get("/").text


def test_publish_redirects_to_the_permalink(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "A list:\n\n1. first\n2. [link](https://127.0.0.1:9/x)")
    html = owner_client.get(f"/p/{post_id}").text
    assert "<li>first</li>" in html and 'href="https://127.0.0.1:9/x"' in html


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "The thought is empty"),
        ("   \n  ", "The thought is empty"),
        ("x" * 20_001, "the limit is 20,000"),
    ],
)
def test_bad_thoughts_get_a_message_and_change_nothing(
    owner_client: TestClient, source: str, message: str
) -> None:
    response = owner_client.post(
        "/admin/posts", data={"csrf": owner_client.csrf, "source": source, "action": "publish"}
    )  # type: ignore[attr-defined]
    assert response.status_code == 400
    assert message in response.text
    assert 'role="alert"' in response.text
    assert "Nothing here yet" in owner_client.get("/").text


def test_exactly_the_limit_is_accepted(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "y" * 20_000)
    assert owner_client.get(f"/p/{post_id}").status_code == 200


def test_edit_changes_the_thought(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "first draft", title="T")
    form = owner_client.get(f"/admin/posts/{post_id}/edit").text
    assert "first draft</textarea>" in form and 'value="T"' in form
    response = owner_client.post(
        f"/admin/posts/{post_id}/edit",
        follow_redirects=False,
        data={"csrf": owner_client.csrf, "source": "second draft", "title": "T2", "action": "save"},
    )  # type: ignore[attr-defined]
    assert response.status_code == 303
    html = owner_client.get(f"/p/{post_id}").text
    assert "second draft" in html and "first draft" not in html and "edited" in html


def test_bad_edit_keeps_the_original(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "keep me")
    response = owner_client.post(
        f"/admin/posts/{post_id}/edit",
        data={"csrf": owner_client.csrf, "source": "", "action": "save"},
    )  # type: ignore[attr-defined]
    assert response.status_code == 400 and "The thought is empty" in response.text
    assert "keep me" in owner_client.get(f"/p/{post_id}").text


def test_delete_asks_first(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "to be deleted")
    confirm = owner_client.get(f"/admin/posts/{post_id}/delete").text
    assert "Delete this thought?" in confirm and "to be deleted" in confirm
    assert owner_client.get(f"/p/{post_id}").status_code == 200  # asking deleted nothing
    owner_client.post(f"/admin/posts/{post_id}/delete", data={"csrf": owner_client.csrf})  # type: ignore[attr-defined]
    assert owner_client.get(f"/p/{post_id}").status_code == 410
    assert owner_client.get(f"/admin/posts/{post_id}/edit").status_code == 410


def test_dashboard_lists_thoughts_with_actions(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "listed")
    html = owner_client.get("/admin").text
    assert f'href="/admin/posts/{post_id}/edit"' in html
    assert f'href="/admin/posts/{post_id}/delete"' in html


# --- profile -------------------------------------------------------------------------------------


def _png(width: int = 600, height: int = 600) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (width, height), (200, 80, 40))
    exif = Image.Exif()
    exif[0x010F] = "SecretCameraMaker"  # Make
    image.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def _profile_data(client: TestClient, **extra: str) -> dict[str, str]:
    data = {
        "csrf": client.csrf,
        "display_name": "Ada L.",
        "bio": "I write *notes*.",  # type: ignore[attr-defined]
        "link_label_0": "Site",
        "link_url_0": "https://127.0.0.1:9/me",
    }
    data.update(extra)
    return data


def test_profile_update_with_avatar_strips_exif_and_scales(
    owner_client: TestClient, settings: Settings
) -> None:
    response = owner_client.post(
        "/admin/profile",
        data=_profile_data(owner_client),
        files={"avatar": ("me.jpg", _png(), "image/jpeg")},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    home = owner_client.get("/").text
    assert "Ada L." in home and "<em>notes</em>" in home
    assert '<a class="u-url" href="https://127.0.0.1:9/me" rel="me noopener">Site</a>' in home
    avatar = re.search(r'src="/media/(avatar-[0-9a-f]{16}\.jpg)"', home)
    assert avatar, home
    served = owner_client.get(f"/media/{avatar.group(1)}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert "immutable" in served.headers["cache-control"]
    image = Image.open(io.BytesIO(served.content))
    assert image.size == (400, 400)
    assert b"SecretCameraMaker" not in served.content


def test_non_image_upload_is_refused_with_a_message(owner_client: TestClient) -> None:
    response = owner_client.post(
        "/admin/profile",
        data=_profile_data(owner_client, display_name="Changed"),
        files={"avatar": ("evil.png", b"<?php echo 1; ?>", "image/png")},
    )
    assert response.status_code == 400
    assert "not an image we can use" in response.text
    assert "Changed" not in owner_client.get("/").text


def test_oversized_upload_is_refused_with_a_message(
    owner_client: TestClient, settings: Settings
) -> None:
    big = b"\xff" * (settings.max_upload_bytes + 10)
    response = owner_client.post(
        "/admin/profile",
        data=_profile_data(owner_client, display_name="Big"),
        files={"header": ("big.jpg", big, "image/jpeg")},
    )
    assert response.status_code == 413
    assert "upload limit of 8 MB" in response.text
    assert "Big" not in owner_client.get("/").text


def test_too_many_links_and_bad_urls(owner_client: TestClient) -> None:
    response = owner_client.post(
        "/admin/profile",
        data=_profile_data(owner_client, link_url_1="javascript:alert(1)", link_label_1="x"),
    )
    assert response.status_code == 400 and "must start with https://" in response.text
    assert "javascript:alert(1)" not in owner_client.get("/").text


def test_profile_name_cannot_be_empty(owner_client: TestClient) -> None:
    response = owner_client.post(
        "/admin/profile", data=_profile_data(owner_client, display_name=" ")
    )
    assert response.status_code == 400 and "display name cannot be empty" in response.text


def test_profile_fields_are_escaped(owner_client: TestClient) -> None:
    owner_client.post(
        "/admin/profile",
        data=_profile_data(
            owner_client,
            display_name="<script>alert(1)</script>",
            link_label_0="<b>x</b>",
            bio="<img src=x onerror=alert(1)>",
        ),
    )
    html = owner_client.get("/").text
    assert "<script>alert(1)" not in html and "<b>x</b>" not in html
    assert "onerror=alert(1)>" not in html.replace("&lt;img src=x onerror=alert(1)&gt;", "")


def test_logged_in_password_change_via_cli_ends_sessions(
    owner_client: TestClient, settings: Settings
) -> None:
    from fedistream.services.owner import set_password

    owner_client.portal.call(set_password, owner_client.app.state.ctx.db, "another long password")  # type: ignore[union-attr]
    assert owner_client.get("/admin", follow_redirects=False).status_code == 303
    log_in(owner_client, "another long password")
