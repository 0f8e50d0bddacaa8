"""Pinned thoughts over HTTP: the Pin/Unpin buttons (CSRF checked), `/featured` (R86), the public
stream led by its pinned thoughts, the limit's message, and deleting a pinned thought."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import publish

BASE = "https://blog.example.test"
AS2 = {"Accept": "application/activity+json"}


def _pin(client: TestClient, post_id: str, action: str = "pin", **extra: str) -> Any:
    return client.post(
        f"/admin/posts/{post_id}/{action}",
        data={"csrf": client.csrf, **extra},  # type: ignore[attr-defined]
        follow_redirects=False,
    )


def _featured(client: TestClient) -> dict[str, Any]:
    response = client.get("/featured", headers=AS2)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/activity+json")
    document: dict[str, Any] = response.json()
    return document


def _stream_ids(html: str) -> list[str]:
    return re.findall(r'<article class="h-entry[^"]*" id="p-([0-9a-z]{16})"', html)


def test_featured_lists_pinned_notes_newest_pin_first(owner_client: TestClient) -> None:
    assert _featured(owner_client)["orderedItems"] == []
    first = publish(owner_client, "The first thought")
    second = publish(owner_client, "The second thought")
    assert _pin(owner_client, second).status_code == 303
    assert _pin(owner_client, first).status_code == 303

    document = _featured(owner_client)
    assert document["id"] == BASE + "/featured"
    assert document["type"] == "OrderedCollection"
    assert document["totalItems"] == 2
    notes = document["orderedItems"]
    assert [n["id"] for n in notes] == [f"{BASE}/p/{first}", f"{BASE}/p/{second}"]
    assert all(n["type"] == "Note" and "@context" not in n for n in notes)
    assert "The first thought" in notes[0]["content"]

    assert _pin(owner_client, first, "unpin").status_code == 303
    assert [n["id"] for n in _featured(owner_client)["orderedItems"]] == [f"{BASE}/p/{second}"]


def test_pin_buttons_on_the_dashboard_and_edit_page(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "Pin me from the list")
    dashboard = owner_client.get("/admin").text
    assert f'action="/admin/posts/{post_id}/pin"' in dashboard

    response = _pin(owner_client, post_id)
    assert response.headers["location"] == "/admin?done=pinned"
    dashboard = owner_client.get(response.headers["location"]).text
    assert "Pinned: it now leads your stream." in dashboard
    assert f'action="/admin/posts/{post_id}/unpin"' in dashboard
    assert ">pinned</span>" in dashboard

    edit_path = f"/admin/posts/{post_id}/edit"
    edit = owner_client.get(edit_path).text
    assert f'action="/admin/posts/{post_id}/unpin"' in edit
    response = _pin(owner_client, post_id, "unpin", next=edit_path)
    assert response.headers["location"] == edit_path + "?done=unpinned"
    edit = owner_client.get(response.headers["location"]).text
    assert "Unpinned." in edit
    assert f'action="/admin/posts/{post_id}/pin"' in edit


@pytest.mark.parametrize("action", ["pin", "unpin"])
def test_pin_posts_check_csrf(owner_client: TestClient, action: str) -> None:
    post_id = publish(owner_client, "Guarded")
    if action == "unpin":
        _pin(owner_client, post_id)
    for form in ({}, {"csrf": "wrong"}):
        response = owner_client.post(
            f"/admin/posts/{post_id}/{action}", data=form, follow_redirects=False
        )
        assert response.status_code == 403
    expected = [] if action == "pin" else [f"{BASE}/p/{post_id}"]
    assert [n["id"] for n in _featured(owner_client)["orderedItems"]] == expected


def test_the_sixth_pin_is_refused_with_a_clear_message(owner_client: TestClient) -> None:
    ids = [publish(owner_client, f"Thought number {i}") for i in range(6)]
    for post_id in ids[:5]:
        assert _pin(owner_client, post_id).status_code == 303
    response = _pin(owner_client, ids[5])
    assert response.status_code == 400
    assert "You can pin at most 5 thoughts. Unpin one before pinning another." in response.text
    assert _featured(owner_client)["totalItems"] == 5


def test_unknown_thought_cannot_be_pinned(owner_client: TestClient) -> None:
    assert _pin(owner_client, "0000000000000000").status_code == 404
    assert _pin(owner_client, "not-an-id").status_code == 404


def test_the_stream_leads_with_pinned_thoughts_once(owner_client: TestClient) -> None:
    old = publish(owner_client, "An older thought worth pinning")
    new = publish(owner_client, "The newest thought")
    _pin(owner_client, old)
    page = owner_client.get("/").text
    assert _stream_ids(page) == [old, new]  # pinned first, not repeated below
    pinned_article = page[page.index(f'id="p-{old}"') - 60 : page.index("An older thought")]
    assert "entry--pinned" in pinned_article and "Pinned" in pinned_article
    assert page.count("Pinned</p>") == 1
    # An older page keeps the archive in order: the pinned thought appears in its place.
    older = owner_client.get(f"/?before={new}").text
    assert _stream_ids(older) == [old]
    assert "Pinned</p>" not in older


def test_deleting_a_pinned_thought_unpins_it(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "Pinned, then deleted")
    _pin(owner_client, post_id)
    response = owner_client.post(
        f"/admin/posts/{post_id}/delete",
        data={"csrf": owner_client.csrf},  # type: ignore[attr-defined]
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert _featured(owner_client)["totalItems"] == 0
    assert "Pinned</p>" not in owner_client.get("/").text
