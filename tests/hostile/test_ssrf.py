"""Item 3 of issue 5: the outgoing client never reaches private address space.

Every case goes through the real `build_http_client` (the one the app builds in its lifespan),
never a stub. DNS is a fake resolver passed to the client, so nothing asks a real name server;
where a refused address is a loopback one, it points at a live peer on 127.0.0.1 whose request
log proves that no connection was made. Then the same guard seen from the app itself: a signed
inbox request whose key lives on loopback, and the owner following an account there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from fedistream.app import build_app
from fedistream.core import httpsig
from fedistream.core.netsafety import IPAddress
from fedistream.federation import http as fed_http
from fedistream.federation.delivery_client import DeliveryClient, post_signed
from fedistream.federation.http import (
    FetchRefused,
    RemoteFetchFailed,
    build_http_client,
    fetch_json,
)
from fedistream.federation.signing import Signer
from fedistream.settings import load_settings
from tests.conftest import OWNER_PASSWORD, log_in
from tests.federation.peer import Peer, rsa_key_pair, running_peer
from tests.federation.test_http import DOC, FORBIDDEN_URLS, KEY_ID, FakeDns
from tests.web.test_inbox import AS2, BASE, INBOX_URL, _key, encode, follow

PORT = "{port}"  # replaced by the live peer's port: a refused loopback URL that would have worked

# Every spelling of a forbidden address we know, as a URL. The loopback ones aim at the peer.
LITERALS = [
    *FORBIDDEN_URLS,  # tests/federation/test_http.py's list, all of it
    f"http://127.0.0.1:{PORT}/actor",
    f"http://127.1:{PORT}/actor",
    f"http://127.0.1:{PORT}/actor",
    f"http://127.000.000.001:{PORT}/actor",
    f"http://0177.0000.0000.0001:{PORT}/actor",
    f"http://0x7F.0x00.0x00.0x01:{PORT}/actor",
    f"http://0X7F.1:{PORT}/actor",
    f"http://017700000001:{PORT}/actor",
    f"http://2130706433:{PORT}/actor",
    f"http://0x7f000001:{PORT}/actor",
    f"http://127.0.0.1.:{PORT}/actor",  # the FQDN spelling
    f"http://[::ffff:127.0.0.1]:{PORT}/actor",
    f"http://[::ffff:7f00:1]:{PORT}/actor",
    f"http://[0:0:0:0:0:ffff:127.0.0.1]:{PORT}/actor",
    f"http://[::127.0.0.1]:{PORT}/actor",  # IPv4-compatible (deprecated)
    f"http://[0:0:0:0:0:0:0:1]:{PORT}/actor",
    f"http://[::1]:{PORT}/actor",
    f"http://user:pass@127.0.0.1:{PORT}/actor",
    f"http://0:{PORT}/actor",  # 0.0.0.0 reaches localhost on Linux
    f"http://0.0.0.0:{PORT}/actor",
    f"http://0x0:{PORT}/actor",
    f"http://00000:{PORT}/actor",
    f"http://[::]:{PORT}/actor",
    "http://10.1/actor",  # 10.0.0.1
    "http://3232235777/actor",  # 192.168.1.1
    "http://192.168.257/actor",  # 192.168.1.1 again
    "http://172.31.255.255/actor",
    "http://0xa9fea9fe/latest/meta-data/",  # 169.254.169.254
    "http://169.254.43518/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",  # AWS metadata over IPv6 (unique-local)
    "http://100.100.100.200/latest/meta-data/",  # Alibaba metadata (CGNAT space)
    "http://[fc00::1]/actor",
    "http://[fe80::1]/actor",
    "http://[fec0::1]/actor",  # site-local
    "http://[2002:7f00:1::1]/actor",  # 6to4 of 127.0.0.1
    "http://[2002:a9fe:a9fe::1]/actor",  # 6to4 of 169.254.169.254
    "http://[64:ff9b::7f00:1]/actor",  # NAT64 of 127.0.0.1
    "http://224.0.0.1/actor",
    "http://255.255.255.255/actor",
    "http://[ff02::1]/actor",
    "http://198.18.0.1/actor",
    "https://127.0.0.1/actor",
]

# Names and what a hostile DNS answers for them.
RESOLVING = {
    "loopback.test": ["127.0.0.1"],
    "loopback6.test": ["::1"],
    "localhost": ["127.0.0.1", "::1"],
    "ten.test": ["10.0.0.1"],
    "rfc1918-b.test": ["172.16.5.4"],
    "rfc1918-c.test": ["192.168.1.1"],
    "metadata.test": ["169.254.169.254"],
    "cgnat.test": ["100.64.0.1"],
    "zero.test": ["0.0.0.0"],
    "ula.test": ["fc00::1"],
    "linklocal6.test": ["fe80::1"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "nat64.test": ["64:ff9b::a9fe:a9fe"],
    "sixtofour.test": ["2002:c0a8:101::1"],
    "multicast.test": ["224.0.0.1"],
    "public-then-private.test": ["93.184.215.14", "10.0.0.7"],
    "private-then-public.test": ["10.0.0.7", "93.184.215.14"],
}

# Where a public server may redirect us. The peer plays that server (see `as_public`).
REDIRECTS = [
    "http://127.0.0.2/actor",
    "http://2130706434/actor",  # 127.0.0.2
    "http://0x7f000002/actor",
    "http://0177.0.0.2/actor",
    "http://[::1]/actor",
    "http://[::ffff:127.0.0.2]/actor",
    "http://10.0.0.1/actor",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00::1]/actor",
    "http://ten.test/actor",  # a name that resolves into private space
    "http://loopback6.test/actor",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/x",
]


FIGURES: dict[str, int] = {}


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with running_peer() as running:
        running.json("/actor", DOC)
        yield running


def _at(url: str, peer: Peer) -> str:
    return url.replace(PORT, peer.base.rsplit(":", 1)[1])


async def _refused(fetch: Any) -> str | None:
    """None when `fetch()` was refused before any request left; else what happened."""
    try:
        await fetch()
    except FetchRefused as exc:
        return None if "Refusing" in exc.public_message else f"refused oddly: {exc}"
    except httpx.InvalidURL:
        return None  # httpx cannot even parse it: nothing is sent
    except RemoteFetchFailed as exc:
        return None if "Invalid URL" in exc.public_message else f"failed, not refused: {exc}"
    return "fetched!"


async def test_every_spelling_of_a_forbidden_address_is_refused(peer: Peer) -> None:
    problems: dict[str, str] = {}
    dns = FakeDns({})
    async with build_http_client(
        allow_private_networks=False, user_agent="t", resolve=dns
    ) as client:
        for url in LITERALS:
            target = _at(url, peer)
            for how, fetch in (
                ("fetch_json", lambda t=target: fetch_json(client, t, signer=None)),
                ("transport", lambda t=target: client.get(t)),  # the transport itself too
            ):
                if problem := await _refused(fetch):
                    problems[f"{url} ({how})"] = problem
    FIGURES["literal spellings"] = len(LITERALS)
    assert problems == {}
    assert dns.asked == []  # decided from the literal: no lookup to race
    assert peer.seen == []  # and no connection


async def test_a_name_that_resolves_into_forbidden_space_is_refused(peer: Peer) -> None:
    problems: dict[str, str] = {}
    dns = FakeDns(RESOLVING)
    port = peer.base.rsplit(":", 1)[1]
    async with build_http_client(
        allow_private_networks=False, user_agent="t", resolve=dns
    ) as client:
        for name, addresses in RESOLVING.items():
            try:
                await fetch_json(client, f"http://{name}:{port}/actor", signer=None)
                problems[name] = "fetched!"
            except FetchRefused as exc:
                bad = [a for a in addresses if a not in ("93.184.215.14",)][0]
                if f"{name} ({ipaddress.ip_address(bad)})" not in exc.public_message:
                    problems[name] = exc.public_message
    FIGURES["names resolving into private space"] = len(RESOLVING)
    assert problems == {}
    assert dns.asked == list(RESOLVING)  # one lookup each
    assert peer.seen == []


@pytest.fixture
def as_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the loopback peer play a public server: 127.0.0.1 counts as allowed, and every other
    address as private space (so 127.0.0.2 stands for any private target)."""
    peer_address = ipaddress.ip_address("127.0.0.1")
    monkeypatch.setattr(fed_http, "is_forbidden_address", lambda ip: ip != peer_address)


async def test_a_redirect_into_forbidden_space_is_refused(peer: Peer, as_public: None) -> None:
    problems: dict[str, str] = {}
    dns = FakeDns(RESOLVING)
    async with build_http_client(
        allow_private_networks=False, user_agent="t", resolve=dns
    ) as client:
        assert await fetch_json(client, peer.url("/actor"), signer=None) == DOC  # allowed
        for n, target in enumerate(REDIRECTS):
            peer.status(f"/{n}/hop-1", 302, {"Location": f"/{n}/hop-2"})
            peer.status(f"/{n}/hop-2", 307, {"Location": target})
            url = peer.url(f"/{n}/hop-1")
            if problem := await _refused(lambda u=url: fetch_json(client, u, signer=None)):
                problems[target] = problem
    FIGURES["redirect targets"] = len(REDIRECTS)
    assert problems == {}
    hops = [seen.path for seen in peer.seen]
    assert hops == ["/actor"] + [f"/{n}/hop-{h}" for n in range(len(REDIRECTS)) for h in (1, 2)]


async def test_a_delivery_is_never_redirected(peer: Peer, as_public: None) -> None:
    peer.status("/inbox", 308, {"Location": "http://10.0.0.1/inbox"})
    signer = Signer(KEY_ID, rsa_key_pair()[0])
    try:
        async with DeliveryClient(allow_private_networks=False, user_agent="t") as client:
            answer = await post_signed(client, peer.url("/inbox"), b"{}", signer, _now())
    finally:
        signer.close()
    assert answer.status == 308  # returned to the worker, which classifies it
    assert [seen.path for seen in peer.seen] == ["/inbox"]


# --- DNS rebinding: the connection goes to the address that was checked --------------------------


class Rebinding(FakeDns):
    """Answers a good address first, then (a rebinding attacker's TTL-0 trick) a bad one."""

    def __init__(self, first: str, then: str) -> None:
        super().__init__({})
        self.answers = [first, then]

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        answer = self.answers[min(len(self.asked), len(self.answers)) - 1]
        return [ipaddress.ip_address(answer)]


async def test_no_second_lookup_between_the_check_and_the_connect(
    peer: Peer, as_public: None
) -> None:
    dns = Rebinding("127.0.0.1", "10.0.0.1")
    port = peer.base.rsplit(":", 1)[1]
    async with build_http_client(allow_private_networks=False, user_agent="t", resolve=dns) as c:
        assert await fetch_json(c, f"http://rebind.test:{port}/actor", signer=None) == DOC
        assert dns.asked == ["rebind.test"]  # one answer, checked, and connected to
        assert peer.seen[0].header("host") == f"rebind.test:{port}"
    # A new connection asks again, and gets the bad answer: refused, never connected.
    async with build_http_client(allow_private_networks=False, user_agent="t", resolve=dns) as c:
        with pytest.raises(FetchRefused, match=r"rebind\.test \(10\.0\.0\.1\)"):
            await fetch_json(c, f"http://rebind.test:{port}/actor", signer=None)
    assert len(peer.seen) == 1


async def test_the_system_resolver_is_not_consulted_when_a_resolver_is_given(peer: Peer) -> None:
    """`.invalid` never resolves in real DNS: the fetch can only work through our answer."""
    dns = FakeDns({"peer.invalid": ["127.0.0.1"]})
    port = peer.base.rsplit(":", 1)[1]
    async with build_http_client(allow_private_networks=True, user_agent="t", resolve=dns) as c:
        assert await fetch_json(c, f"http://peer.invalid:{port}/actor", signer=None) == DOC


# --- the operator's switch -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", [f"http://127.0.0.1:{PORT}/actor", f"http://2130706433:{PORT}/actor", "LOCALHOST"]
)
async def test_allow_private_networks_is_the_only_way_through(peer: Peer, url: str) -> None:
    port = peer.base.rsplit(":", 1)[1]
    target = f"http://localhost:{port}/actor" if url == "LOCALHOST" else _at(url, peer)
    dns = FakeDns({"localhost": ["127.0.0.1"]})
    async with build_http_client(allow_private_networks=True, user_agent="t", resolve=dns) as c:
        assert await fetch_json(c, target, signer=None) == DOC
    async with build_http_client(allow_private_networks=False, user_agent="t", resolve=dns) as c:
        with pytest.raises(FetchRefused):
            await fetch_json(c, target, signer=None)
    assert len(peer.seen) == 1


# --- the app's own outgoing requests go through the guard ---------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def guarded_app(tmp_path: Path) -> Iterator[TestClient]:
    """The real app as production runs it: private networks NOT allowed."""
    settings = load_settings(
        env={}, data_dir=tmp_path / "data", owner_password=OWNER_PASSWORD, base_url=BASE
    )
    assert settings.allow_private_networks is False
    with TestClient(build_app(settings), base_url=BASE) as client:
        yield client


def test_an_inbox_key_on_loopback_is_never_fetched(guarded_app: TestClient) -> None:
    portal = guarded_app.portal
    assert portal is not None
    with portal.wrap_async_context_manager(running_peer()) as peer:
        actor = peer.url("/users/sneaky")
        peer.json("/users/sneaky", {"id": actor})
        body = encode(follow(actor))
        headers = httpsig.sign_request(
            "POST", INBOX_URL, {"content-type": AS2}, body, _key("alice"), actor + "#main-key",
            _now(),
        )  # fmt: skip
        response = guarded_app.post("/inbox", content=body, headers=headers)
        assert peer.seen == []
    assert response.status_code in (401, 503), response.text
    assert "Refusing to connect" in response.json()["error"]


def test_following_an_account_on_loopback_is_never_fetched(guarded_app: TestClient) -> None:
    csrf = log_in(guarded_app)
    portal = guarded_app.portal
    assert portal is not None
    with portal.wrap_async_context_manager(running_peer()) as peer:
        port = peer.base.rsplit(":", 1)[1]
        response = guarded_app.post(
            "/admin/following", data={"csrf": csrf, "handle": f"@someone@127.0.0.1:{port}"}
        )
        assert peer.seen == []
    assert response.status_code >= 400 and "Refusing" in response.text, response.text


def test_zz_print_figures() -> None:
    print(f"\n[hostile] SSRF cases through build_http_client: {FIGURES}")
    assert sum(FIGURES.values()) >= 60
