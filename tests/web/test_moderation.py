"""Blocks over HTTP: the owner's /admin/blocks page and the followers page's Block button (CSRF
on every POST), and the signed inbox refusing blocked actors and domains with 403 JSON (R31) —
a blocked domain without our fetching its key."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from fedistream.app import build_app
from fedistream.core import httpsig
from fedistream.core.as2 import AS_CONTEXT
from fedistream.core.remote_actor import RemoteActor, domain_of
from fedistream.errors import RemoteFetchFailed
from fedistream.settings import load_settings
from fedistream.store import actors as actor_store
from fedistream.store.db import Database
from fedistream.web.context import WebContext
from tests.conftest import OWNER_PASSWORD, log_in

BASE = "https://blog.example.test"
OUR_ACTOR = BASE + "/"
TROLL = "http://127.0.0.1:9/users/troll"  # loopback, nothing listens: never contacted
PAL = "http://127.0.0.2:9/users/pal"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def _actor(actor_id: str) -> RemoteActor:
    return RemoteActor(
        id=actor_id, type="Person", inbox=actor_id + "/inbox", shared_inbox=None,
        key_id=actor_id + "#main-key", public_key_pem=PUBLIC_PEM,
        username=actor_id.rsplit("/", 1)[-1], domain=domain_of(actor_id),
        name=None, url=None, icon_url=None, summary=None,
    )  # fmt: skip


@dataclass
class Directory:
    """`ActorDirectory` in memory that records every key it is asked for."""

    db: Database
    actors: dict[str, RemoteActor] = field(default_factory=dict)
    key_requests: list[str] = field(default_factory=list)

    async def actor_for_key(self, key_id: str, *, refresh: bool = False) -> RemoteActor:
        self.key_requests.append(key_id)
        for actor in self.actors.values():
            if actor.key_id == key_id:
                await actor_store.upsert(self.db, actor, {"id": actor.id}, datetime.now(UTC))
                return actor
        raise ValueError(f"no actor publishes {key_id}")

    async def get_actor(self, actor_id: str, *, refresh: bool = False) -> RemoteActor:
        if actor_id in self.actors:
            return await self.actor_for_key(actor_id + "#main-key")
        raise RemoteFetchFailed("unknown here")

    async def lookup_handle(self, handle: str) -> RemoteActor:
        for actor in self.actors.values():
            if actor.handle == "@" + handle.lstrip("@"):
                return await self.actor_for_key(actor.key_id or "")
        raise RemoteFetchFailed(f"no WebFinger answer for {handle}")

    def known_actor(self, actor_id: str) -> bool:
        return actor_id in self.actors


@dataclass
class Site:
    client: TestClient
    ctx: WebContext
    directory: Directory
    csrf: str

    def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self.client.portal.call(self.ctx.db.fetchall, sql, params)]

    def deliver(self, activity: dict[str, Any], actor_id: str) -> Any:
        """POST `activity` to /inbox, signed with `actor_id`'s key as a peer signs it."""
        body = json.dumps(activity).encode()
        headers = httpsig.sign_request(
            "POST", BASE + "/inbox", {"content-type": "application/activity+json"}, body,
            KEY, actor_id + "#main-key", datetime.now(UTC),
        )  # fmt: skip
        return self.client.post("/inbox", content=body, headers=headers)

    def block(self, target: str, **extra: str) -> Any:
        return self.client.post(
            "/admin/blocks", data={"csrf": self.csrf, "target": target, **extra},
            follow_redirects=False,
        )  # fmt: skip

    def settle(self, activity_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = self.rows("SELECT state FROM inbox WHERE id = ?", activity_id)
            if found and found[0]["state"] != "pending":
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"{activity_id} was not processed")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    settings = load_settings(
        env={}, data_dir=tmp_path / "data", owner_password=OWNER_PASSWORD, base_url=BASE,
        allow_private_networks=True,
    )  # fmt: skip
    app = build_app(settings)
    with TestClient(app, base_url=BASE) as client:
        ctx: WebContext = app.state.ctx
        directory = Directory(ctx.db, {TROLL: _actor(TROLL), PAL: _actor(PAL)})
        ctx.directory = directory
        yield Site(client, ctx, directory, log_in(client))


def follow(actor_id: str, n: int = 1) -> dict[str, Any]:
    return {
        "@context": AS_CONTEXT, "id": f"{actor_id}/follows/{n}", "type": "Follow",
        "actor": actor_id, "object": OUR_ACTOR,
    }  # fmt: skip


def like(actor_id: str) -> dict[str, Any]:
    return {
        "@context": AS_CONTEXT, "id": f"{actor_id}/likes/1", "type": "Like",
        "actor": actor_id, "object": BASE + "/p/0000000000000000",
    }  # fmt: skip


def refused_403(response: Any) -> str:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert "blocked" in message
    return str(message)


# --- the inbox ----------------------------------------------------------------------------------


def test_a_blocked_actor_is_refused_403_and_nothing_is_stored(site: Site) -> None:
    assert site.deliver(follow(TROLL), TROLL).status_code == 202
    site.settle(follow(TROLL)["id"])
    assert site.rows("SELECT actor_id FROM followers") == [{"actor_id": TROLL}]

    assert site.block(TROLL).status_code == 303
    assert site.rows("SELECT actor_id FROM followers") == []

    for activity in (follow(TROLL, 2), like(TROLL)):
        message = refused_403(site.deliver(activity, TROLL))
        assert TROLL in message
    assert site.rows("SELECT id FROM inbox WHERE id LIKE ?", TROLL + "/likes/%") == []
    assert site.rows("SELECT id FROM inbox WHERE id = ?", follow(TROLL, 2)["id"]) == []
    # Others still get in.
    assert site.deliver(follow(PAL), PAL).status_code == 202


def test_a_blocked_domain_is_refused_before_any_key_fetch(site: Site) -> None:
    assert site.block("127.0.0.1:9").status_code == 303
    site.directory.key_requests.clear()
    message = refused_403(site.deliver(like(TROLL), TROLL))
    assert "127.0.0.1:9" in message
    assert site.directory.key_requests == []  # no fetch for a blocked domain
    assert site.rows("SELECT count(*) AS n FROM inbox") == [{"n": 0}]
    # Another host on the same address is another server: not covered.
    assert site.deliver(follow(PAL), PAL).status_code == 202


def test_an_unsigned_request_from_a_blocked_domain_is_still_401(site: Site) -> None:
    """The block is checked on the signature's key, so an unsigned claim proves nothing."""
    site.block("127.0.0.1:9")
    response = site.client.post(
        "/inbox", content=json.dumps(like(TROLL)),
        headers={"content-type": "application/activity+json"},
    )  # fmt: skip
    assert response.status_code == 401


def test_unblocked_actor_is_accepted_again(site: Site) -> None:
    site.block(TROLL)
    refused_403(site.deliver(follow(TROLL), TROLL))
    response = site.client.post(
        "/admin/blocks/remove", data={"csrf": site.csrf, "target": TROLL}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/blocks?done=unblocked"
    assert site.deliver(follow(TROLL, 3), TROLL).status_code == 202


# --- the owner's pages --------------------------------------------------------------------------


def test_blocks_page_needs_the_owner(tmp_path: Path) -> None:
    settings = load_settings(
        env={}, data_dir=tmp_path / "d", owner_password=OWNER_PASSWORD, base_url=BASE
    )
    with TestClient(build_app(settings), base_url=BASE) as client:
        for method, path in (
            ("GET", "/admin/blocks"),
            ("POST", "/admin/blocks"),
            ("POST", "/admin/blocks/remove"),
            ("POST", "/admin/posts/0000000000000000/pin"),
        ):
            response = client.request(method, path, data={"target": TROLL}, follow_redirects=False)
            assert response.status_code == 303, (method, path)
            assert response.headers["location"].startswith("/admin/login?next=")


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/admin/blocks", {"target": TROLL}),
        ("/admin/blocks/remove", {"target": TROLL}),
    ],
)
def test_every_block_post_checks_csrf(site: Site, path: str, data: dict[str, str]) -> None:
    for token in (None, "wrong"):
        form = dict(data) if token is None else {**data, "csrf": token}
        response = site.client.post(path, data=form, follow_redirects=False)
        assert response.status_code == 403, response.text
    assert site.rows("SELECT * FROM blocks") == []


def test_block_and_unblock_from_the_blocks_page(site: Site) -> None:
    page = site.client.get("/admin/blocks")
    assert page.status_code == 200
    assert 'action="/admin/blocks"' in page.text and "You have blocked nobody." in page.text
    assert 'href="/admin/blocks"' in page.text  # in the admin navigation

    response = site.block("@troll@127.0.0.1:9")
    assert response.headers["location"] == "/admin/blocks?done=blocked"
    response = site.block("Evil.Example")
    page = site.client.get(response.headers["location"])
    assert "Blocked." in page.text
    assert "evil.example" in page.text and "domain" in page.text
    assert "@troll@127.0.0.1:9" in page.text  # the actor cache gives the handle
    assert page.text.count('action="/admin/blocks/remove"') == 2

    again = site.client.get(site.block("evil.example").headers["location"])
    assert "already blocked" in again.text


@pytest.mark.parametrize(
    ("target", "status", "message"),
    [
        ("not a domain", 400, "Give an account"),
        ("@ghost@127.0.0.1:9", 404, "Could not find @ghost@127.0.0.1:9"),
        (OUR_ACTOR, 400, "That is you."),
    ],
)
def test_bad_block_input_is_explained(site: Site, target: str, status: int, message: str) -> None:
    response = site.block(target)
    assert response.status_code == status
    assert message in response.text
    assert 'value="' + target + '"' in response.text  # what the owner typed is kept
    assert site.rows("SELECT * FROM blocks") == []


def test_followers_page_has_a_block_button_that_comes_back(site: Site) -> None:
    site.deliver(follow(TROLL), TROLL)
    site.settle(follow(TROLL)["id"])
    page = site.client.get("/admin/followers")
    assert 'action="/admin/blocks"' in page.text
    assert f'name="target" value="{TROLL}"' in page.text

    response = site.block(TROLL, next="/admin/followers")
    assert response.headers["location"] == "/admin/followers?done=blocked"
    page = site.client.get(response.headers["location"])
    assert "Blocked." in page.text
    assert TROLL not in page.text  # no longer a follower
    # A Reject of their Follow and a Block are queued for their inbox.
    queued = site.rows(
        "SELECT a.type FROM deliveries d JOIN activities a ON a.id = d.activity_id "
        "WHERE d.inbox = ? ORDER BY d.id",
        TROLL + "/inbox",
    )
    assert [r["type"] for r in queued][-2:] == ["Reject", "Block"]


def test_next_is_never_an_open_redirect(site: Site) -> None:
    for evil_next in ("https://evil.example/", "//evil.example/admin", "/admin/x?y=1"):
        response = site.block(f"e{len(evil_next)}.example", next=evil_next)
        assert response.headers["location"] == "/admin/blocks?done=blocked"


def test_notifications_have_a_block_button_and_blocking_clears_them(site: Site) -> None:
    assert site.deliver(follow(TROLL), TROLL).status_code == 202
    site.settle(follow(TROLL)["id"])
    # Their like of a thought (OR IGNORE: the follow may already have notified).
    site.client.portal.call(
        site.ctx.db.execute,
        "INSERT OR IGNORE INTO notifications (kind, actor_id, object_id, created_at) "
        "VALUES ('like', ?, ?, '2024-01-01T00:00:00Z')",
        (TROLL, TROLL + "/likes/1"),
    )
    page = site.client.get("/admin/notifications")
    assert page.status_code == 200
    assert f'name="target" value="{TROLL}"' in page.text
    assert 'name="next" value="/admin/notifications"' in page.text

    response = site.block(TROLL, next="/admin/notifications")
    assert response.headers["location"] == "/admin/notifications?done=blocked"
    assert site.rows("SELECT * FROM notifications WHERE actor_id = ?", TROLL) == []
    assert TROLL not in site.client.get("/admin/notifications").text
