"""A bad signature cannot make us fetch a peer's key again and again (INTEROP R29).

A real `fedistream serve` process receives signed POSTs from actors living on loopback peers
(tests/federation/peer.py); each peer counts how often the server fetched its actor document.
After a failed verification the server refetches a key at most once per host per five minutes:
enough for a real key rotation, useless for making it hammer a peer (or itself).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fedistream.core import httpsig
from fedistream.errors import RemoteFetchFailed
from fedistream.federation.http import build_http_client
from fedistream.federation.resolver import ActorResolver
from fedistream.store.db import Database
from tests.federation.peer import Peer, running_peer
from tests.live import LiveServer, running_server

FEDERATION_ENV = {"FEDISTREAM_ALLOW_PRIVATE_NETWORKS": "true"}
AS_CONTEXT = ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"]
FLOOD = 200  # bad requests per flood
CLIENTS = 8  # sent this many at a time
_ids = itertools.count()


@functools.cache
def _key(name: str) -> rsa.RSAPrivateKey:
    del name  # only keys the cache: one key per name per session
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(name: str) -> str:
    return (
        _key(name)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _publish_actor(peer: Peer, name: str, key_name: str) -> str:
    """Serve actor `name` on `peer` with `key_name`'s public key; returns the actor id."""
    actor_id = peer.url(f"/users/{name}")
    peer.json(
        f"/users/{name}",
        {
            "@context": AS_CONTEXT,
            "id": actor_id,
            "type": "Person",
            "preferredUsername": name,
            "inbox": actor_id + "/inbox",
            "publicKey": {
                "id": actor_id + "#main-key",
                "owner": actor_id,
                "publicKeyPem": _public_pem(key_name),
            },
        },
    )
    return actor_id


def _fetches(peer: Peer, name: str) -> int:
    return len(peer.requests_to(f"/users/{name}"))


async def _post(
    http: httpx.AsyncClient,
    server: LiveServer,
    actor_id: str,
    key_name: str,
    *,
    key_id: str | None = None,
) -> httpx.Response:
    """A signed Like from `actor_id`, signed with `key_name`'s private key."""
    activity: dict[str, Any] = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{actor_id}/likes/{next(_ids)}",
        "type": "Like",
        "actor": actor_id,
        "object": server.url("/p/0000000000000000"),
    }
    body = json.dumps(activity).encode()
    url = server.url("/inbox")
    headers = httpsig.sign_request(
        "POST",
        url,
        {"content-type": "application/activity+json"},
        body,
        _key(key_name),
        key_id or actor_id + "#main-key",
        datetime.now(UTC),
    )
    return await http.post(url, content=body, headers=headers)


async def _flood(
    http: httpx.AsyncClient, server: LiveServer, actor_id: str, key_name: str, count: int
) -> Counter[int]:
    """`count` requests, CLIENTS at a time; the statuses answered."""
    statuses: Counter[int] = Counter()
    gate = asyncio.Semaphore(CLIENTS)

    async def one() -> None:
        async with gate:
            statuses[(await _post(http, server, actor_id, key_name)).status_code] += 1

    await asyncio.gather(*(one() for _ in range(count)))
    return statuses


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with running_server(tmp_path, extra_env=FEDERATION_ENV) as live:
        yield live


async def test_refetch_after_a_failed_verification_is_limited_per_host(
    server: LiveServer,
) -> None:
    async with (
        running_peer() as rotating,
        running_peer() as forging,
        httpx.AsyncClient(timeout=10, trust_env=False) as http,
    ):
        # A real key rotation: the one refetch it needs is allowed.
        bob = _publish_actor(rotating, "bob", "bob-old")
        assert (await _post(http, server, bob, "bob-old")).status_code == 202
        assert _fetches(rotating, "bob") == 1
        _publish_actor(rotating, "bob", "bob-new")
        assert (await _post(http, server, bob, "bob-new")).status_code == 202
        assert _fetches(rotating, "bob") == 2
        # Right after it, a flood of bad signatures from that host fetches nothing more.
        statuses = await _flood(http, server, bob, "mallory", FLOOD)
        assert statuses == Counter({401: FLOOD})
        assert _fetches(rotating, "bob") == 2
        # … and the rotated key still works.
        assert (await _post(http, server, bob, "bob-new")).status_code == 202

        # A host we never saw, flooded with bad signatures from the first request on.
        alice = _publish_actor(forging, "alice", "alice")
        statuses = await _flood(http, server, alice, "mallory", FLOOD)
        bad_fetches = _fetches(forging, "alice")
        assert statuses == Counter({401: FLOOD})
        assert (await _post(http, server, alice, "alice")).status_code == 202
        assert _fetches(forging, "alice") == bad_fetches  # the cached key was good all along

        # Each refusal tells the peer's operator what was wrong.
        refused = await _post(http, server, alice, "mallory")
        assert refused.status_code == 401
        assert "Verification failed" in refused.json()["error"]

    print(
        f"\nR29: {FLOOD} bad signatures ({CLIENTS} at a time) → key fetches: rotating host "
        f"2 in all (first sight + the rotation), fresh host {bad_fetches}"
    )
    # First sight of the actor (concurrent first requests may each miss the cache) plus the
    # one refetch allowed per five minutes.
    assert bad_fetches <= CLIENTS + 1


async def test_made_up_key_ids_cannot_make_us_fetch_once_per_request(server: LiveServer) -> None:
    """Varying the keyId dodges a per-key limit: `actor#key-N` on an actor we hold, `?x=N` or
    `/users/uN` we never saw. The cool-down covers the first; a per-host budget for first-sight
    key fetches (30, then one more every 2 s) covers the others, so one sender cannot make us
    fetch from a host, its own or anyone's, once per request."""
    async with (
        running_peer() as peer,
        httpx.AsyncClient(timeout=10, trust_env=False) as http,
    ):
        alice = _publish_actor(peer, "alice", "alice")
        assert (await _post(http, server, alice, "alice")).status_code == 202
        before = len(peer.seen)
        gate = asyncio.Semaphore(CLIENTS)

        async def forged(key_id: str) -> int:
            async with gate:
                return (await _post(http, server, alice, "mallory", key_id=key_id)).status_code

        fragments = Counter(
            await asyncio.gather(*(forged(f"{alice}#key-{n}") for n in range(FLOOD)))
        )
        by_fragment = len(peer.seen) - before
        before = len(peer.seen)
        queries = Counter(
            await asyncio.gather(*(forged(f"{alice}?x={n}#main-key") for n in range(FLOOD)))
        )
        by_query = len(peer.seen) - before
        before = len(peer.seen)
        strangers = Counter(
            await asyncio.gather(*(forged(peer.url(f"/users/u{n}#main-key")) for n in range(FLOOD)))
        )
        by_stranger = len(peer.seen) - before
        # The real key still works, and all the forgeries were refused with a reason.
        assert (await _post(http, server, alice, "alice")).status_code == 202

    print(
        f"\nmade-up keyIds, {FLOOD} requests each → fetches: #key-N on a known actor "
        f"{by_fragment}, ?x=N {by_query}, unknown actors {by_stranger}; statuses "
        f"{dict(fragments)} / {dict(queries)} / {dict(strangers)}"
    )
    assert set(fragments) <= {401} and set(queries) <= {401, 503} and set(strangers) <= {401, 503}
    assert by_fragment <= 1  # at most the one refetch a five-minute cool-down allows
    # First sight of a key costs up to two GETs (a document naming another id is fetched at
    # that id too); the budget lets 30 through, plus one every 2 s the flood lasted.
    assert by_query <= 2 * 40
    assert by_query + by_stranger <= 2 * 45


async def test_the_unknown_key_budget_refills_with_time(tmp_path: Path) -> None:
    """The budget's arithmetic, with the resolver's clock in hand: a burst, then one per
    interval, counted per host (another host is not charged)."""
    now = [datetime(2026, 3, 1, tzinfo=UTC)]
    db = await Database.open(tmp_path / "r.sqlite3")
    try:
        async with (
            running_peer() as peer,
            running_peer() as other,
            build_http_client(allow_private_networks=True, user_agent="t") as client,
        ):
            resolver = ActorResolver(
                db, client, None, now=lambda: now[0], allow_private_networks=True,
                new_key_burst=3, new_key_interval=timedelta(seconds=2),
            )  # fmt: skip

            async def outcome(host: Peer, n: int) -> str:
                try:
                    await resolver.actor_for_key(host.url(f"/users/u{n}#main-key"))
                except RemoteFetchFailed as exc:  # the peer's 404, or the spent budget
                    return "budget" if "try again later" in exc.public_message else "fetched"
                raise AssertionError("no such actor: the lookup cannot succeed")

            assert [await outcome(peer, n) for n in range(5)] == ["fetched"] * 3 + ["budget"] * 2
            assert len(peer.seen) == 3
            assert await outcome(other, 0) == "fetched"  # per host
            now[0] += timedelta(seconds=1.9)
            assert await outcome(peer, 5) == "budget"
            now[0] += timedelta(seconds=0.1)  # 2 s since the bucket ran dry: one more
            assert [await outcome(peer, n) for n in (6, 7)] == ["fetched", "budget"]
            now[0] += timedelta(minutes=10)  # refilled, but never beyond the burst
            assert [await outcome(peer, n) for n in range(8, 12)] == ["fetched"] * 3 + ["budget"]
            assert len(peer.seen) == 7
    finally:
        await db.close()
