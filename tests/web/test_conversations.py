"""Conversations over HTTP (Starlette TestClient around the real app): every interaction fixture
shows on the permalink and in the owner's notifications; counts on the stream; the owner reads
notifications, answers from the thread, hides and removes replies, likes and boosts from the
timeline; the Note and its `replies`/`likes`/`shares` collections in ActivityStreams.

Layer: web. Inbound activities go through the real inbox processor on the app's own event loop
(the signature path is tested in test_inbox.py); remote actors live on 127.0.0.1:9.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from fedistream.services import inbox as inbox_service
from fedistream.services.inbox import InboxPolicy, InboxProcessor
from fedistream.store import actors as actor_store
from fedistream.web.admin_conversations import VERBS
from fedistream.web.context import WebContext
from tests.conftest import publish
from tests.services.test_conversations import (
    ALICE,
    FIXTURE_EFFECTS,
    NOW,
    PEER,
    actor_of,
    interaction_fixture,
    remote_actor,
    reply,
)

AS2 = {"Accept": "application/activity+json"}


def ctx_of(client: TestClient) -> WebContext:
    return client.app.state.ctx  # type: ignore[attr-defined,no-any-return]


def know(client: TestClient, actor_id: str, username: str, name: str | None = None) -> None:
    ctx = ctx_of(client)
    client.portal.call(actor_store.upsert, ctx.db, remote_actor(actor_id, username, name), {}, NOW)  # type: ignore[union-attr]


def deliver(client: TestClient, activity: dict[str, Any]) -> str:
    """Store the activity as the signed inbox would, then apply it; returns the row's state."""
    ctx = ctx_of(client)

    async def go() -> str:
        await inbox_service.receive(ctx.db, activity, actor_of(activity))
        await InboxProcessor(ctx.db, InboxPolicy(ctx.urls, False)).run_once()
        row = await ctx.db.fetchone(
            "SELECT state FROM inbox WHERE id = ?", (inbox_service.activity_key(activity),)
        )
        return str(row["state"]) if row else "missing"

    return str(client.portal.call(go))  # type: ignore[union-attr]


def sql(client: TestClient, query: str, *params: Any) -> list[dict[str, Any]]:
    ctx = ctx_of(client)
    found = client.portal.call(ctx.db.fetchall, query, params)  # type: ignore[union-attr]
    return [dict(r) for r in found]


def note_id(client: TestClient, post_id: str) -> str:
    return ctx_of(client).urls.post(post_id)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- every fixture, seen by readers and by the owner --------------------------------------------


@pytest.mark.parametrize("name", sorted(FIXTURE_EFFECTS))
def test_fixture_shows_on_the_permalink_and_in_notifications(
    owner_client: TestClient, name: str
) -> None:
    kind, content = FIXTURE_EFFECTS[name]
    post_id = publish(owner_client, "Something to respond to")
    activity = interaction_fixture(name, note_id(owner_client, post_id))
    know(owner_client, actor_of(activity), "fixture", "Fixture Person")
    assert deliver(owner_client, activity) == "done"

    page = owner_client.get(f"/p/{post_id}").text
    stream = owner_client.get("/").text
    if kind == "like":
        assert 'aria-label="1 like"' in page and 'aria-label="1 like"' in stream
    elif kind == "announce":
        assert 'aria-label="1 boost"' in page and 'aria-label="1 boost"' in stream
    elif kind == "reaction":
        assert f'aria-label="1 reacted {content}"' in page
        assert f'aria-label="1 reacted {content}"' in stream
    elif kind in ("reply", "quote"):
        obj = activity["object"]
        assert "Fixture Person" in page and "@fixture@127.0.0.1:9" in page
        assert f'href="{obj.get("url") or obj["id"]}"' in page  # the link to the original
        assert 'id="replies"' in page
        if kind == "quote":
            assert "quoted this" in page
        else:
            assert 'aria-label="1 reply"' in stream
    else:  # a mention elsewhere: the owner is told, readers see nothing
        assert "Fixture Person" not in page
    # Remote avatars are never hot-linked to readers.
    assert PEER + "/avatars/" not in page and PEER + "/avatars/" not in stream

    # The owner's header counts it; the notifications page says what happened.
    admin = owner_client.get("/admin").text
    assert re.search(r'Notifications <span class="badge"[^>]*>1</span>', admin), admin
    notes = text_of(owner_client.get("/admin/notifications").text)
    verb = f"reacted {content} to" if kind == "reaction" else VERBS[kind]
    assert "Fixture Person" in notes and verb in notes
    if kind in ("reply", "mention", "quote"):
        assert "Reply" in notes


def test_notifications_are_marked_read_when_shown(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "Likeable")
    know(owner_client, ALICE, "alice", "Alice")
    deliver(
        owner_client,
        {
            "id": ALICE + "#l",
            "type": "Like",
            "actor": ALICE,
            "object": note_id(owner_client, post_id),
        },
    )
    deliver(owner_client, {"id": ALICE + "#f", "type": "Follow", "actor": ALICE,
                           "object": ctx_of(owner_client).urls.actor})  # fmt: skip
    assert 'class="badge" aria-label="2 unread">2<' in owner_client.get("/admin").text
    first = owner_client.get("/admin/notifications").text
    assert first.count("notification--unread") == 2
    # Newest first: the follow, then the like.
    assert first.index(VERBS["follow"]) < first.index(VERBS["like"])
    assert "unread" not in owner_client.get("/admin").text
    assert "notification--unread" not in owner_client.get("/admin/notifications").text

    deliver(owner_client, reply(PEER + "/notes/r", note_id(owner_client, post_id), ALICE, "Hey"))
    assert 'aria-label="1 unread"' in owner_client.get("/admin").text
    response = owner_client.post(
        "/admin/notifications/read",
        data={"csrf": owner_client.csrf},
        follow_redirects=False,  # type: ignore[attr-defined]
    )
    assert response.status_code == 303
    assert "unread" not in owner_client.get("/admin").text


def test_owner_pages_need_the_owner(client: TestClient) -> None:
    for path in ("/admin/notifications", "/admin/reply?to=http://127.0.0.1:9/n"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/admin/login")


def test_forms_without_csrf_are_refused(owner_client: TestClient) -> None:
    for path in ("/admin/notifications/read", "/admin/reply", "/admin/replies/hide",
                 "/admin/remote/like"):  # fmt: skip
        response = owner_client.post(path, data={"note": PEER + "/notes/1"})
        assert response.status_code == 403, path


# --- answering and moderating from the thread ---------------------------------------------------


def test_owner_answers_from_the_thread(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "Root thought for a conversation")
    know(owner_client, ALICE, "alice", "Alice")
    remote = PEER + "/notes/1"
    deliver(owner_client, reply(remote, note_id(owner_client, post_id), ALICE, "What do you mean?"))

    thread = owner_client.get(f"/admin/posts/{post_id}/thread").text
    reply_link = f"/admin/reply?to={quote(remote, safe='/')}"
    assert reply_link in thread and "What do you mean?" in thread
    form = owner_client.get(reply_link).text
    assert ">@alice@127.0.0.1:9 </textarea>" in form  # the author, prefilled
    assert "What do you mean?" in form  # what is being answered

    response = owner_client.post(
        "/admin/reply",
        data={"csrf": owner_client.csrf, "in_reply_to": remote, "action": "publish",  # type: ignore[attr-defined]
              "source": "@alice@127.0.0.1:9 I mean it literally.", "summary": ""},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(f"/admin/posts/{post_id}/thread#p-")
    answer_id = location.rsplit("#p-", 1)[1]

    public = owner_client.get(f"/p/{post_id}").text
    assert "I mean it literally." in public and f'id="p-{answer_id}"' in public
    assert public.index("What do you mean?") < public.index("I mean it literally.")
    assert "I mean it literally." not in owner_client.get("/").text  # not a top-level thought
    assert "I mean it literally." not in owner_client.get("/feed.xml").text
    own_page = owner_client.get(f"/p/{answer_id}").text
    assert "In reply to" in own_page and "Alice" in own_page
    assert f"/p/{post_id}#p-{answer_id}" in own_page  # the whole conversation

    # Delivered to Alice (not a follower), with inReplyTo.
    [create] = sql(owner_client, "SELECT id, json FROM activities WHERE post_id = ?", answer_id)
    assert json.loads(create["json"])["object"]["inReplyTo"] == remote
    deliveries = sql(owner_client, "SELECT * FROM deliveries")
    assert [r["inbox"] for r in deliveries if r["activity_id"] == create["id"]] == [
        PEER + "/inbox/alice"
    ], deliveries

    # The owner adds to the thread directly ("Add to this thread"): a self-reply.
    add_link = f"/admin/reply?to={quote(note_id(owner_client, post_id), safe='/')}"
    assert add_link in thread
    response = owner_client.post(
        "/admin/reply",
        data={"csrf": owner_client.csrf, "in_reply_to": note_id(owner_client, post_id),  # type: ignore[attr-defined]
              "action": "publish", "source": "A footnote to my own thought."},
        follow_redirects=False,
    )  # fmt: skip
    footnote_id = response.headers["location"].rsplit("#p-", 1)[1]
    # As ActivityStreams (R60): direct replies only; the first page lists the owner's own, the
    # next page the others' (the answer to Alice answers her note, not the thought).
    collection = owner_client.get(f"/p/{post_id}/replies", headers=AS2).json()
    assert collection["first"]["items"] == [note_id(owner_client, footnote_id)]
    others = owner_client.get(collection["first"]["next"], headers=AS2).json()
    assert others["items"] == [remote]


def test_reply_form_errors_keep_the_text(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "Root")
    know(owner_client, ALICE, "alice")
    remote = PEER + "/notes/1"
    deliver(owner_client, reply(remote, note_id(owner_client, post_id), ALICE, "Hm"))
    too_long = "x" * 100_000
    response = owner_client.post(
        "/admin/reply",
        data={"csrf": owner_client.csrf, "in_reply_to": remote, "action": "publish",  # type: ignore[attr-defined]
              "source": too_long},
    )  # fmt: skip
    assert response.status_code == 400 and "Not saved" in response.text
    unknown = owner_client.get("/admin/reply?to=" + quote(PEER + "/notes/never"))
    assert unknown.status_code == 404


def test_hide_unhide_and_remove_from_the_thread(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "Root")
    know(owner_client, ALICE, "alice", "Alice")
    remote = PEER + "/notes/1"
    deliver(owner_client, reply(remote, note_id(owner_client, post_id), ALICE, "Buy cheap pills"))
    csrf = owner_client.csrf  # type: ignore[attr-defined]

    response = owner_client.post(
        "/admin/replies/hide", data={"csrf": csrf, "note": remote}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/admin/posts/{post_id}/thread#r-")
    assert "cheap pills" not in owner_client.get(f"/p/{post_id}").text
    owner_view = owner_client.get(f"/admin/posts/{post_id}/thread").text
    assert "cheap pills" in owner_view and "hidden from readers" in owner_view
    assert ">Unhide</button>" in owner_view

    owner_client.post("/admin/replies/unhide", data={"csrf": csrf, "note": remote})
    assert "cheap pills" in owner_client.get(f"/p/{post_id}").text

    owner_client.post("/admin/replies/remove", data={"csrf": csrf, "note": remote})
    assert "cheap pills" not in owner_client.get(f"/p/{post_id}").text
    assert "cheap pills" not in owner_client.get(f"/admin/posts/{post_id}/thread").text
    assert "cheap pills" not in owner_client.get("/admin/notifications").text
    gone = owner_client.post("/admin/replies/hide", data={"csrf": csrf, "note": PEER + "/x"})
    assert gone.status_code == 404


# --- the Note, for servers ----------------------------------------------------------------------


def test_note_carries_likes_and_shares(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "Count me")
    nid = note_id(owner_client, post_id)
    know(owner_client, ALICE, "alice")
    deliver(owner_client, {"id": ALICE + "#l", "type": "Like", "actor": ALICE, "object": nid})
    deliver(owner_client, {"id": ALICE + "#b", "type": "Announce", "actor": ALICE, "object": nid})
    note = owner_client.get(f"/p/{post_id}", headers=AS2).json()
    assert note["likes"] == {"id": nid + "/likes", "type": "Collection", "totalItems": 1}
    assert note["shares"] == {"id": nid + "/shares", "type": "Collection", "totalItems": 1}
    create = owner_client.get(f"/p/{post_id}/activity", headers=AS2).json()
    assert create["object"]["likes"]["totalItems"] == 1
    assert owner_client.get(f"/p/{post_id}/likes", headers=AS2).json()["totalItems"] == 1
    outbox = owner_client.get("/outbox?page=true", headers=AS2).json()
    assert outbox["orderedItems"][0]["object"]["shares"]["totalItems"] == 1


# --- liking and boosting from the timeline ------------------------------------------------------


def test_timeline_like_and_boost_buttons(owner_client: TestClient) -> None:
    know(owner_client, ALICE, "alice", "Alice")
    ctx = ctx_of(owner_client)
    # Alice is followed, so her post lands in the timeline.
    owner_client.portal.call(  # type: ignore[union-attr]
        ctx.db.execute,
        "INSERT INTO following (actor_id, follow_id, state, created_at) VALUES (?,?,?,?)",
        (ALICE, "f", "accepted", "2025-01-01T00:00:00Z"),
    )
    remote = PEER + "/notes/t1"
    post = reply(remote, PEER + "/notes/elsewhere", ALICE, "A post in the timeline")
    assert deliver(owner_client, post) == "done"
    timeline = owner_client.get("/admin/timeline").text
    assert 'action="/admin/remote/like"' in timeline and 'action="/admin/remote/boost"' in timeline
    assert f"/admin/reply?to={quote(remote, safe='/')}" in timeline

    csrf = owner_client.csrf  # type: ignore[attr-defined]
    for action in ("like", "boost"):
        response = owner_client.post(
            f"/admin/remote/{action}",
            data={"csrf": csrf, "note": remote, "next": "/admin/timeline"},
            follow_redirects=False,
        )
        assert response.status_code == 303 and response.headers["location"] == "/admin/timeline"
    timeline = owner_client.get("/admin/timeline").text
    assert ">Unlike</button>" in timeline and ">Unboost</button>" in timeline
    types = [r["type"] for r in sql(owner_client, "SELECT type FROM activities ORDER BY type")]
    assert types == ["Announce", "Like"]

    owner_client.post("/admin/remote/unlike", data={"csrf": csrf, "note": remote})
    assert ">Like</button>" in owner_client.get("/admin/timeline").text
    [undo] = sql(owner_client, "SELECT json FROM activities WHERE type = 'Undo'")
    assert json.loads(undo["json"])["object"]["type"] == "Like"
    # An open redirect is refused: back to the timeline instead.
    response = owner_client.post(
        "/admin/remote/unboost",
        data={"csrf": csrf, "note": remote, "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/admin/timeline"
