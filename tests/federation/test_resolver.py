"""ActorResolver against a loopback peer serving the real fixture documents (ids rewritten).

Covers R9 (context), R28 (key id → actor, incl. GoToSocial's key stub and bare keys), R29
(one forced refetch per host per 5 minutes), R93 (canonical ids) and R4 (WebFinger).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from fedistream.core import httpsig
from fedistream.core.netsafety import IPAddress
from fedistream.errors import BadInput
from fedistream.federation.http import (
    JRD_ACCEPT,
    BadRemoteStatus,
    RemoteFetchFailed,
    build_http_client,
)
from fedistream.federation.resolver import (
    KEY_MEMORY,
    ActorResolver,
    ActorUnusable,
    self_link,
    split_handle,
)
from fedistream.federation.signing import Signer
from fedistream.store import actors as actor_store
from fedistream.store.db import Database
from tests.federation.peer import Peer, Seen, rsa_key_pair

START = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
OUR_KEY = "https://blog.example.test/#main-key"
JRD = "application/jrd+json"
OTHER_PEM = (
    "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
    "-----END PUBLIC KEY-----\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with build_http_client(allow_private_networks=True, user_agent="t") as c:
        yield c


@pytest.fixture
def signer() -> Iterator[Signer]:
    signing = Signer(OUR_KEY, rsa_key_pair()[0])
    yield signing
    signing.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def resolver(
    db: Database, client: httpx.AsyncClient, signer: Signer, clock: Clock
) -> ActorResolver:
    return ActorResolver(db, client, signer, now=clock, allow_private_networks=True)


def fixture_doc(fixtures: Path, name: str, old_base: str, peer: Peer) -> dict[str, Any]:
    """A fixture with its origin replaced by the loopback peer's."""
    text = (fixtures / name).read_text("utf-8")
    return json.loads(text.replace(old_base, peer.base))


def mastodon(fixtures: Path, peer: Peer) -> dict[str, Any]:
    return fixture_doc(
        fixtures, "actors/mastodon-person.json", "https://masto.qa.urbanwildlife.biz", peer
    )


def gotosocial(fixtures: Path, peer: Peer) -> dict[str, Any]:
    return fixture_doc(fixtures, "actors/gotosocial-person.json", "http://localhost:8080", peer)


def serve_mastodon(fixtures: Path, peer: Peer) -> dict[str, Any]:
    doc = mastodon(fixtures, peer)
    peer.json("/users/mastodon", doc)
    return doc


def fetched(peer: Peer) -> list[str]:
    return [s.target for s in peer.seen]


def verify_our_signature(seen: Seen, now: datetime) -> httpsig.VerifiedSignature:
    request = httpsig.HttpRequest(seen.method, seen.target, seen.headers, seen.body)
    return httpsig.verify_request(request, httpsig.load_public_key(rsa_key_pair()[1]), now)


# --- get_actor -----------------------------------------------------------------------------


async def test_get_actor_fetches_signed_then_answers_from_the_cache(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver, clock: Clock, db: Database
) -> None:
    doc = serve_mastodon(shared_fixtures, peer)
    actor = await resolver.get_actor(peer.url("/users/mastodon"))
    assert actor.id == doc["id"]
    assert actor.inbox == peer.url("/users/mastodon/inbox")
    assert actor.shared_inbox == peer.url("/inbox")
    assert actor.key_id == peer.url("/users/mastodon#main-key")
    assert actor.public_key_pem == doc["publicKey"]["publicKeyPem"]
    assert actor.domain == peer.base.removeprefix("http://")
    verified = verify_our_signature(peer.seen[0], clock.now)  # R37: our fetches are signed
    assert verified.key_id == OUR_KEY
    assert "application/activity+json" in (peer.seen[0].header("accept") or "")

    assert await resolver.get_actor(peer.url("/users/mastodon")) == actor
    assert len(peer.seen) == 1  # cached
    stored = await actor_store.get(db, actor.id)
    assert stored is not None and stored.fetched_at == START
    assert await actor_store.get_document(db, actor.id) == doc


async def test_a_stale_actor_is_fetched_again_after_a_day(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver, clock: Clock
) -> None:
    doc = serve_mastodon(shared_fixtures, peer)
    await resolver.get_actor(doc["id"])
    clock.advance(hours=23, minutes=59)
    await resolver.get_actor(doc["id"])
    assert len(peer.seen) == 1
    clock.advance(minutes=1)
    doc["name"] = "Renamed"
    peer.json("/users/mastodon", doc)
    assert (await resolver.get_actor(doc["id"])).name == "Renamed"
    assert len(peer.seen) == 2


async def test_forced_refetches_are_limited_per_host(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver, clock: Clock
) -> None:
    doc = serve_mastodon(shared_fixtures, peer)
    gts = gotosocial(shared_fixtures, peer)
    peer.json("/users/the_mighty_zork", gts)
    await resolver.get_actor(doc["id"])
    await resolver.get_actor(gts["id"])
    assert len(peer.seen) == 2
    await resolver.get_actor(doc["id"], refresh=True)
    assert len(peer.seen) == 3
    # R29: within five minutes no second forced refetch from that host, whichever actor.
    clock.advance(minutes=4, seconds=59)
    await resolver.get_actor(doc["id"], refresh=True)
    await resolver.get_actor(gts["id"], refresh=True)
    assert len(peer.seen) == 3
    clock.advance(seconds=1)
    await resolver.get_actor(gts["id"], refresh=True)
    assert len(peer.seen) == 4


async def test_an_unreachable_peer_leaves_the_cached_actor_in_use(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver, clock: Clock
) -> None:
    doc = serve_mastodon(shared_fixtures, peer)
    cached = await resolver.get_actor(doc["id"])
    clock.advance(days=2)
    peer.status("/users/mastodon", 503)
    assert await resolver.get_actor(doc["id"]) == cached
    peer.status("/users/mastodon", 410)  # gone is gone: the cache cannot vouch for it
    with pytest.raises(BadRemoteStatus) as info:
        await resolver.get_actor(doc["id"])
    assert info.value.remote_status == 410


async def test_an_unknown_unreachable_actor_fails(peer: Peer, resolver: ActorResolver) -> None:
    with pytest.raises(RemoteFetchFailed, match="HTTP 404"):
        await resolver.get_actor(peer.url("/users/nobody"))


async def test_a_document_without_the_as_context_is_refused(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver, db: Database
) -> None:
    doc = mastodon(shared_fixtures, peer)
    doc["@context"] = ["https://w3id.org/security/v1"]
    peer.json("/users/mastodon", doc)
    with pytest.raises(ActorUnusable, match="ActivityStreams @context"):
        await resolver.get_actor(doc["id"])
    assert await actor_store.get(db, doc["id"]) is None


async def test_a_document_at_another_url_is_refetched_at_its_own_id(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver
) -> None:
    doc = serve_mastodon(shared_fixtures, peer)
    peer.json("/@mastodon", doc)  # served at an alias, naming its canonical id
    actor = await resolver.get_actor(peer.url("/@mastodon"))
    assert actor.id == doc["id"]
    assert fetched(peer) == ["/@mastodon", "/users/mastodon"]  # R93


async def test_a_document_whose_id_keeps_moving_is_refused(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver
) -> None:
    doc = mastodon(shared_fixtures, peer)
    peer.json("/a", {**doc, "id": peer.url("/b")})
    peer.json("/b", {**doc, "id": peer.url("/c")})
    with pytest.raises(ActorUnusable, match="another id"):
        await resolver.get_actor(peer.url("/a"))
    assert fetched(peer) == ["/a", "/b"]


async def test_a_key_stub_is_not_an_actor(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver
) -> None:
    stub = fixture_doc(
        shared_fixtures, "actors/gotosocial-key-stub.json", "https://example.org", peer
    )
    peer.json("/users/example_user", stub)
    with pytest.raises(ActorUnusable, match="no inbox"):
        await resolver.get_actor(stub["id"])


async def test_misskey_actor_keeps_its_top_level_shared_inbox(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver
) -> None:
    doc = fixture_doc(shared_fixtures, "actors/misskey-person.json", "https://misskey.io", peer)
    del doc["endpoints"]
    peer.json("/users/83ssedkv53", doc)
    actor = await resolver.get_actor(doc["id"])
    assert actor.shared_inbox == peer.url("/inbox")
    assert actor.delivery_inbox == peer.url("/inbox")


# --- actor_for_key (R28) -------------------------------------------------------------------


async def test_mastodon_main_key_fragment_resolves_with_one_fetch(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver
) -> None:
    doc = serve_mastodon(shared_fixtures, peer)
    key_id = doc["publicKey"]["id"]
    actor = await resolver.actor_for_key(key_id)
    assert actor.id == doc["id"] and actor.key_id == key_id
    assert fetched(peer) == ["/users/mastodon"]  # the fragment is never sent
    assert await resolver.actor_for_key(key_id) == actor
    assert len(peer.seen) == 1  # cached by key id


async def test_gotosocial_key_stub_leads_to_the_full_actor(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver
) -> None:
    person = gotosocial(shared_fixtures, peer)
    # GoToSocial's answer at its keyId: the documented stub shape, carrying this actor's key.
    stub = json.loads((shared_fixtures / "actors/gotosocial-key-stub.json").read_text("utf-8"))
    stub.update(
        id=person["id"],
        preferredUsername=person["preferredUsername"],
        publicKey=person["publicKey"],
    )
    assert set(stub) == {"@context", "id", "preferredUsername", "publicKey", "type"}
    key_id = person["publicKey"]["id"]
    assert key_id == peer.url("/users/the_mighty_zork/main-key")
    peer.json("/users/the_mighty_zork/main-key", stub)
    peer.json("/users/the_mighty_zork", person)

    actor = await resolver.actor_for_key(key_id)
    assert actor.id == person["id"]
    assert actor.inbox == peer.url("/users/the_mighty_zork/inbox")
    assert actor.key_id == key_id
    assert actor.public_key_pem == person["publicKey"]["publicKeyPem"]
    assert fetched(peer) == ["/users/the_mighty_zork/main-key", "/users/the_mighty_zork"]


def bare_key(peer: Peer, key_path: str, owner_path: str) -> dict[str, Any]:
    return {
        "@context": ["https://w3id.org/security/v1", "https://www.w3.org/ns/activitystreams"],
        "id": peer.url(key_path),
        "type": "Key",
        "owner": peer.url(owner_path),
        "publicKeyPem": OTHER_PEM,
    }


async def test_a_bare_key_resolves_through_an_owner_that_lists_it(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver
) -> None:
    doc = mastodon(shared_fixtures, peer)
    main = doc["publicKey"]
    doc["publicKey"] = [
        main,
        {"id": peer.url("/keys/2"), "owner": doc["id"], "publicKeyPem": OTHER_PEM},
    ]
    peer.json("/users/mastodon", doc)
    peer.json("/keys/2", bare_key(peer, "/keys/2", "/users/mastodon"))
    actor = await resolver.actor_for_key(peer.url("/keys/2"))
    assert actor.id == doc["id"]
    assert actor.key_id == peer.url("/keys/2")
    assert actor.public_key_pem == OTHER_PEM  # the owner's copy, not the key document's
    assert fetched(peer) == ["/keys/2", "/users/mastodon"]


async def test_a_bare_key_whose_owner_does_not_list_it_is_refused(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver
) -> None:
    serve_mastodon(shared_fixtures, peer)
    peer.json("/keys/9", bare_key(peer, "/keys/9", "/users/mastodon"))
    with pytest.raises(ActorUnusable, match="does not list"):
        await resolver.actor_for_key(peer.url("/keys/9"))


async def test_a_key_document_cannot_speak_for_another_actor(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver, db: Database
) -> None:
    # An attacker's key URL answers an actor document claiming the victim's id and its own key.
    victim = serve_mastodon(shared_fixtures, peer)
    forged = {
        **victim,
        "publicKey": {
            "id": peer.url("/evil-key"),
            "owner": victim["id"],
            "publicKeyPem": OTHER_PEM,
        },
    }
    peer.json("/evil-key", forged)
    with pytest.raises(ActorUnusable, match="does not list"):
        await resolver.actor_for_key(peer.url("/evil-key"))
    assert fetched(peer) == ["/evil-key", "/users/mastodon"]  # asked the victim's own URL
    assert await actor_store.get_by_key_id(db, peer.url("/evil-key")) is None
    stored = await actor_store.get(db, victim["id"])
    assert stored is not None and stored.actor.public_key_pem != OTHER_PEM


async def test_something_else_at_a_key_url_is_refused(peer: Peer, resolver: ActorResolver):
    peer.json(
        "/k",
        {"@context": "https://www.w3.org/ns/activitystreams", "id": peer.url("/k"), "type": "Note"},
    )
    with pytest.raises(ActorUnusable, match="neither an actor nor a key"):
        await resolver.actor_for_key(peer.url("/k"))


async def test_key_rotation_refetch_and_its_rate_limit(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver, clock: Clock
) -> None:
    doc = serve_mastodon(shared_fixtures, peer)
    key_id = doc["publicKey"]["id"]
    old = await resolver.actor_for_key(key_id)
    doc["publicKey"]["publicKeyPem"] = OTHER_PEM  # the peer rotated its key
    peer.json("/users/mastodon", doc)
    assert (await resolver.actor_for_key(key_id)).public_key_pem == old.public_key_pem
    fresh = await resolver.actor_for_key(key_id, refresh=True)
    assert fresh.public_key_pem == OTHER_PEM
    assert len(peer.seen) == 2
    clock.advance(minutes=1)
    await resolver.actor_for_key(key_id, refresh=True)  # R29: not again within 5 minutes
    assert len(peer.seen) == 2


async def test_legacy_acct_key_id_goes_through_webfinger(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver
) -> None:
    doc = serve_mastodon(shared_fixtures, peer)
    serve_webfinger(shared_fixtures, peer, "mastodon", doc["id"])
    domain = peer.base.removeprefix("http://")
    actor = await resolver.actor_for_key(f"acct:mastodon@{domain}")
    assert actor.id == doc["id"]
    with pytest.raises(ActorUnusable):
        await resolver.actor_for_key("acct:not a handle")


# --- WebFinger (R4) ------------------------------------------------------------------------


def serve_webfinger(fixtures: Path, peer: Peer, user: str, actor_id: str) -> dict[str, Any]:
    domain = peer.base.removeprefix("http://")
    text = (fixtures / "webfinger" / "mastodon-docs-minimal.json").read_text("utf-8")
    text = text.replace("https://host.example/accounts/username", actor_id)
    jrd = json.loads(text.replace("username@host.example", f"{user}@{domain}"))
    peer.json("/.well-known/webfinger", jrd, content_type=JRD)
    return jrd


@pytest.mark.parametrize("form", ["@{user}@{domain}", "{user}@{domain}", "acct:{user}@{domain}"])
async def test_lookup_handle(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver, form: str
) -> None:
    doc = serve_mastodon(shared_fixtures, peer)
    serve_webfinger(shared_fixtures, peer, "mastodon", doc["id"])
    domain = peer.base.removeprefix("http://")
    actor = await resolver.lookup_handle(form.format(user="mastodon", domain=domain))
    assert actor.id == doc["id"]
    finger = peer.seen[0]
    assert finger.path == "/.well-known/webfinger"
    query = parse_qs(urlsplit(finger.target).query)
    assert query == {"resource": [f"acct:mastodon@{domain}"]}
    assert finger.header("accept") == JRD_ACCEPT
    assert finger.header("signature") is None  # R4: WebFinger is unsigned
    assert peer.seen[1].path == "/users/mastodon"


async def test_lookup_handle_with_pleroma_two_self_links(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver
) -> None:
    doc = serve_mastodon(shared_fixtures, peer)
    domain = peer.base.removeprefix("http://")
    text = (shared_fixtures / "webfinger" / "pleroma-webfinger-template.json").read_text("utf-8")
    text = text.replace("https://{{subdomain}}/users/{{nickname}}", doc["id"])
    jrd = json.loads(text.replace("{{nickname}}", "mastodon").replace("{{domain}}", domain))
    peer.json("/.well-known/webfinger", jrd, content_type="application/jrd+json; charset=utf-8")
    assert (await resolver.lookup_handle(f"mastodon@{domain}")).id == doc["id"]


async def test_lookup_handle_without_a_self_link(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver
) -> None:
    domain = peer.base.removeprefix("http://")
    jrd = {
        "subject": f"acct:a@{domain}",
        "links": [{"rel": "self", "type": "text/html", "href": peer.url("/@a")}],
    }
    peer.json("/.well-known/webfinger", jrd, content_type=JRD)
    with pytest.raises(ActorUnusable, match="Missing self link"):
        await resolver.lookup_handle(f"a@{domain}")
    peer.json("/.well-known/webfinger", {"links": []}, content_type=JRD)
    with pytest.raises(ActorUnusable, match="without a subject"):
        await resolver.lookup_handle(f"a@{domain}")


async def test_lookup_handle_of_an_unknown_user(peer: Peer, resolver: ActorResolver) -> None:
    with pytest.raises(BadRemoteStatus, match="404"):
        await resolver.lookup_handle("nobody@" + peer.base.removeprefix("http://"))


async def test_webfinger_is_https_unless_private_networks_are_allowed(
    db: Database, client: httpx.AsyncClient, signer: Signer, peer: Peer
) -> None:
    # Same loopback peer, but a resolver in production mode insists on https: the plain-http
    # peer cannot even parse the TLS hello, so our app never sees a request.
    strict = ActorResolver(db, client, signer, allow_private_networks=False)
    with pytest.raises(RemoteFetchFailed):
        await strict.lookup_handle("a@" + peer.base.removeprefix("http://"))
    assert peer.seen == []


async def test_webfinger_over_http_on_localhost_with_a_port(
    shared_fixtures: Path, db: Database, signer: Signer, peer: Peer
) -> None:
    async def localhost_only(host: str, port: int) -> list[IPAddress]:
        assert host == "localhost"
        return [ipaddress.ip_address("127.0.0.1")]

    port = peer.base.rsplit(":", 1)[1]
    serve_webfinger(shared_fixtures, peer, "a", f"http://localhost:{port}/users/mastodon")
    doc = mastodon(shared_fixtures, peer)
    peer.json("/users/mastodon", json.loads(json.dumps(doc).replace("127.0.0.1", "localhost")))
    async with build_http_client(
        allow_private_networks=True, user_agent="t", resolve=localhost_only
    ) as c:
        resolver = ActorResolver(db, c, signer, allow_private_networks=True)
        actor = await resolver.lookup_handle(f"@a@localhost:{port}")
    assert actor.id == f"http://localhost:{port}/users/mastodon"


@pytest.mark.parametrize(
    ("handle", "expected"),
    [
        ("@alice@Peer.Example", ("alice", "peer.example")),
        ("alice@peer.example:8443", ("alice", "peer.example:8443")),
        ("acct:alice@peer.example", ("alice", "peer.example")),
        (" @alice@127.0.0.1:9 ", ("alice", "127.0.0.1:9")),
    ],
)
def test_split_handle(handle: str, expected: tuple[str, str]) -> None:
    assert split_handle(handle) == expected


@pytest.mark.parametrize(
    "handle",
    [
        "alice",
        "@alice",
        "alice@",
        "@@peer.example",
        "a@b@c",
        "a@peer.example/x",
        "a b@peer",
        "a@peer.example?x",
        "a@peer.example#x",
        "a@[nope",
    ],
)
def test_split_handle_refuses_what_is_not_a_handle(handle: str) -> None:
    with pytest.raises(BadInput):
        split_handle(handle)


def test_self_link_types() -> None:
    ld = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
    assert (
        self_link({"links": [{"rel": "self", "type": ld, "href": "https://p/a"}]}) == "https://p/a"
    )
    assert self_link({"links": [{"rel": "self", "type": "application/json", "href": "x"}]}) is None
    assert self_link({"links": "nope"}) is None
    assert self_link({}) is None


# --- known_actor ---------------------------------------------------------------------------


async def test_known_actor_needs_loading_then_tracks_fetches(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver, db: Database
) -> None:
    with pytest.raises(RuntimeError, match="load_known"):
        resolver.known_actor("https://anyone.example/")
    doc = serve_mastodon(shared_fixtures, peer)
    await resolver.get_actor(doc["id"])
    await resolver.load_known()
    assert resolver.known_actor(doc["id"])
    assert not resolver.known_actor(peer.url("/users/the_mighty_zork"))
    peer.json("/users/the_mighty_zork", gotosocial(shared_fixtures, peer))
    await resolver.get_actor(peer.url("/users/the_mighty_zork"))
    assert resolver.known_actor(peer.url("/users/the_mighty_zork"))


async def test_a_redirect_to_another_origin_cannot_speak_for_the_first(
    shared_fixtures: Path, db: Database, signer: Signer, peer: Peer
) -> None:
    # An open redirect on the peer's site leads to a server (here: the same process under
    # another name, localhost) that serves a document claiming an id on the first origin.
    async def localhost(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1")]

    port = peer.base.rsplit(":", 1)[1]
    doc = mastodon(shared_fixtures, peer)
    peer.status("/go", 302, {"Location": f"http://localhost:{port}/forged"})
    peer.json("/forged", doc)
    async with build_http_client(
        allow_private_networks=True, user_agent="t", resolve=localhost
    ) as c:
        resolver = ActorResolver(db, c, signer, allow_private_networks=True)
        with pytest.raises(ActorUnusable, match="claims the id"):
            await resolver.get_actor(peer.url("/go"))
        with pytest.raises(ActorUnusable, match="claims the id"):
            await resolver.actor_for_key(peer.url("/go#main-key"))
    assert await actor_store.get(db, doc["id"]) is None


async def test_a_redirect_within_the_origin_is_fine(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver
) -> None:
    doc = serve_mastodon(shared_fixtures, peer)
    peer.status("/users/old-name", 301, {"Location": "/users/mastodon"})
    actor = await resolver.get_actor(peer.url("/users/old-name"))
    assert actor.id == doc["id"]
    # Served from its own origin but not at the URL asked: fetched once more at its id (R93).
    assert fetched(peer) == ["/users/old-name", "/users/mastodon", "/users/mastodon"]


async def test_a_key_is_held_in_memory_briefly_and_a_refresh_reads_the_table_again(
    shared_fixtures: Path, peer: Peer, resolver: ActorResolver, clock: Clock, db: Database
) -> None:
    """Every inbox POST asks for its signer's key: it comes from memory for KEY_MEMORY, but a
    change written by someone else (the inbox processor applying an Update) shows after that,
    and at once to a `refresh` (asked when a signature failed to verify)."""
    doc = serve_mastodon(shared_fixtures, peer)
    key_id = peer.url("/users/mastodon#main-key")
    first = await resolver.actor_for_key(key_id)  # fetched
    assert (await resolver.actor_for_key(key_id)) == first  # read from the table, remembered
    assert len(peer.seen) == 1
    rotated = dataclasses.replace(first, public_key_pem=OTHER_PEM)

    async def someone_else_stores(actor: Any) -> None:
        await actor_store.upsert(db, actor, doc, clock.now)

    await someone_else_stores(rotated)
    assert (await resolver.actor_for_key(key_id)).public_key_pem == first.public_key_pem
    # A refresh skips the memory: the row is fresh, so the one forced refetch per host is used…
    assert (await resolver.actor_for_key(key_id, refresh=True)).public_key_pem == (
        first.public_key_pem
    )
    assert len(peer.seen) == 2
    # …and within the cool-down a refresh answers from the table, not from memory.
    await someone_else_stores(rotated)
    assert (await resolver.actor_for_key(key_id, refresh=True)).public_key_pem == OTHER_PEM
    assert (await resolver.actor_for_key(key_id)).public_key_pem == OTHER_PEM
    # Without a refresh, another writer's change shows once the memory has expired.
    await someone_else_stores(first)
    assert (await resolver.actor_for_key(key_id)).public_key_pem == OTHER_PEM
    clock.advance(seconds=KEY_MEMORY.total_seconds() + 1)
    assert (await resolver.actor_for_key(key_id)).public_key_pem == first.public_key_pem
    assert len(peer.seen) == 2
