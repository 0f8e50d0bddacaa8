"""Item 1 of issue 5: forged and replayed requests at POST /inbox, over HTTP against the real app.

Every forged case is one row of `FORGED`: how the request is made, the status it must get and
words its `{"error": …}` must contain so a peer's operator can tell what was wrong. Each case is
sent to one shared app (remote actors from tests/web/test_inbox.py's in-memory directory) and
the whole database is compared before and after: a refused request stores nothing. Cases that can
be refused without the signer's key must also cost no key fetch. Two cases need the real actor
resolver and real peers on loopback (a keyId on another host than the actor); replays are
accepted once and change nothing the second time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from fedistream.app import build_app
from fedistream.core import httpsig
from fedistream.core.as2 import AS_CONTEXT
from fedistream.web.context import WebContext
from tests.federation.peer import running_peer
from tests.hostile.forgeries import (
    BLOCKED_ACTOR,
    BLOCKED_HOST_ACTOR,
    CREATED,
    FORGED,
    FULL,
    MALLORY,
    Forged,
    H,
    at,
    cavage,
    rfc9421,
    unix,
)
from tests.hostile.harness import diff, snapshot
from tests.web.test_inbox import (
    ALICE,
    AS2,
    BASE,
    INBOX_URL,
    OUR_ACTOR,
    Inbox,
    _key,
    _open,
    _public_pem,
    _settings,
    encode,
    follow,
    refused,
    remote_actor,
    signed,
)

README = Path(__file__).with_name("README.md")


# --- one shared app for every forged case --------------------------------------------------------


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inbox]:
    # Follow requests are held for approval, so nothing is ever queued for delivery: the only
    # writer besides the request under test is the inbox processor, and refused requests give it
    # nothing. The database is then still between two cases.
    for opened in _open(tmp_path_factory.mktemp("forged"), manually_approves_followers=True):
        for name, actor in (("mallory", MALLORY), ("eve", BLOCKED_HOST_ACTOR)):
            opened.directory.add(remote_actor(actor, name))
        opened.directory.add(remote_actor(BLOCKED_ACTOR, "troll"))
        stamp = "2024-01-01T00:00:00Z"
        opened.run_sql(
            "INSERT INTO blocks (target, kind, created_at) VALUES (?, 'domain', ?)",
            "127.0.0.3:9",
            stamp,
        )
        opened.run_sql(
            "INSERT INTO blocks (target, kind, created_at) VALUES (?, 'actor', ?)",
            BLOCKED_ACTOR,
            stamp,
        )
        yield opened


def test_there_are_at_least_thirty_distinct_forged_cases() -> None:
    assert len({case.id for case in FORGED}) == len(FORGED) >= 30


@pytest.mark.parametrize("case", FORGED, ids=[case.id for case in FORGED])
def test_forged_request_is_refused_and_stores_nothing(inbox: Inbox, case: Forged) -> None:
    body, headers = case.build()
    before = inbox.call(snapshot, inbox.ctx.db)
    inbox.directory.calls.clear()
    response = inbox.post(body, headers)
    message = refused(response, case.status, *case.says)
    after = inbox.call(snapshot, inbox.ctx.db)
    assert before == after, diff(before, after)
    if case.before_key_fetch:
        assert inbox.directory.calls == [], f"{case.id} cost a key fetch: {message}"


def test_readme_lists_every_forged_case() -> None:
    text = README.read_text()
    missing = [case.id for case in FORGED if f"`{case.id}`" not in text]
    assert missing == []
    assert f"{len(FORGED)} forged requests" in text  # and the figure is the real one


# --- replays: accepted once, no second effect --------------------------------------------------


def _effects(inbox: Inbox) -> dict[str, Any]:
    """What an accepted Follow changes: the inbox row, the follower, the notification."""
    return {
        "inbox": inbox.rows("SELECT id, actor_id, state FROM inbox ORDER BY id"),
        "followers": inbox.rows("SELECT actor_id, follow_id, state FROM followers"),
        "notifications": inbox.rows("SELECT kind, actor_id, object_id FROM notifications"),
        "activities": inbox.count("activities"),
        "deliveries": inbox.count("deliveries"),
    }


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Inbox]:
    yield from _open(tmp_path)


REPLAYS = ["byte-for-byte", "re-signed-later", "same-id-other-content", "rfc9421-resent"]


@pytest.mark.parametrize("how", REPLAYS)
def test_replay_of_a_valid_activity_has_no_second_effect(fresh: Inbox, how: str) -> None:
    first = follow(suffix="replayed")
    body = encode(first)
    headers = rfc9421(body) if how == "rfc9421-resent" else signed(body)
    assert fresh.post(body, headers).status_code == 202
    fresh.settle(first["id"])
    time.sleep(0.1)  # the Accept is queued by then
    once = _effects(fresh)
    assert once["followers"] == [{"actor_id": ALICE, "follow_id": first["id"], "state": "accepted"}]
    if how == "byte-for-byte":
        again = fresh.post(body, headers)
    elif how == "re-signed-later":
        again = fresh.post(body, signed(body, now=at(timedelta(minutes=10))))
    elif how == "same-id-other-content":
        other = encode({**first, "object": OUR_ACTOR, "summary": "the same id, new words"})
        again = fresh.post(other, signed(other))
    else:
        again = fresh.post(body, rfc9421(body, created=unix(timedelta(seconds=5))))
    assert again.status_code == 202, again.text  # a peer's retry is not an error
    time.sleep(0.2)  # room for a second effect, were there one
    assert _effects(fresh) == once


# --- keyId on another host, through the real resolver and real peers ---------------------------


def _actor_doc(actor_id: str, key_name: str) -> dict[str, Any]:
    return {
        "@context": [AS_CONTEXT, "https://w3id.org/security/v1"],
        "id": actor_id,
        "type": "Person",
        "preferredUsername": actor_id.rsplit("/", 1)[-1],
        "inbox": actor_id + "/inbox",
        "publicKey": {
            "id": actor_id + "#main-key",
            "owner": actor_id,
            "publicKeyPem": _public_pem(key_name),
        },
    }


@pytest.mark.parametrize("lie", ["bare-key-claims-the-actor", "actor-document-claims-the-id"])
def test_keyid_on_another_host_cannot_speak_for_the_actor(tmp_path: Path, lie: str) -> None:
    """Mallory's server publishes a key that claims to be Carol's (or a whole actor document
    with Carol's id): the real resolver fetches both, finds Carol does not list that key, and
    the request is refused having stored nothing but the actor cache."""
    app = build_app(_settings(tmp_path))
    with TestClient(app, base_url=BASE) as client:
        portal = client.portal
        assert portal is not None
        with (
            portal.wrap_async_context_manager(running_peer()) as home,
            portal.wrap_async_context_manager(running_peer()) as evil,
        ):
            ctx: WebContext = app.state.ctx
            carol = home.url("/users/carol")
            home.json("/users/carol", _actor_doc(carol, "carol"))
            forged_key = evil.url("/keys/carol")
            if lie == "bare-key-claims-the-actor":
                evil.json(
                    "/keys/carol",
                    {
                        "@context": [AS_CONTEXT, "https://w3id.org/security/v1"],
                        "id": forged_key,
                        "owner": carol,
                        "publicKeyPem": _public_pem("mallory"),
                    },
                )
            else:
                document = _actor_doc(carol, "mallory")
                document["publicKey"]["id"] = forged_key
                evil.json("/keys/carol", document)
            body = encode(follow(carol))
            headers = httpsig.sign_request(
                "POST", INBOX_URL, {"content-type": AS2}, body, _key("mallory"), forged_key,
                datetime.now(UTC),
            )  # fmt: skip
            before = portal.call(snapshot, ctx.db)
            response = client.post("/inbox", content=body, headers=headers)
            after = portal.call(snapshot, ctx.db)
        message = refused(response, 401, forged_key)
        assert ("does not list" in message) or ("another origin" in message), message
        assert before == after, diff(before, after)
        assert evil.requests_to("/keys/carol"), "the forged key was never even looked at"


def test_the_signature_helpers_make_requests_the_app_accepts(tmp_path: Path) -> None:
    """The builders above are only trustworthy if, unforged, they pass: one of each kind."""
    for opened in _open(tmp_path, manually_approves_followers=True):
        made = [
            (encode(follow(suffix="c1")), lambda b: cavage(b, CREATED, created=unix())),
            (encode(follow(suffix="c2")), lambda b: cavage(b, FULL, algorithm="rsa-sha256")),
            (
                encode(follow(suffix="c3")),
                lambda b: cavage(b, [*CREATED, "(expires)"], created=unix(), expires=unix(H)),
            ),
            (encode(follow(suffix="r1")), lambda b: rfc9421(b)),
        ]
        for body, sign in made:
            response = opened.post(body, sign(body))
            assert response.status_code == 202, response.text
        assert opened.count("inbox") == len(made)
        activity = json.loads(made[0][0])
        assert opened.settle(activity["id"])["state"] == "done"
