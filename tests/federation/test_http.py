"""The outgoing client: the SSRF guard, signed GETs, redirects, caps and content types.

Real HTTP against a loopback peer (tests/federation/peer.py); DNS is a fake resolver passed to
the client, so no test ever asks a real name server or leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import trustme
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from fedistream.core import httpsig
from fedistream.core.netsafety import IPAddress
from fedistream.federation import http as fed_http
from fedistream.federation.http import (
    AS2_ACCEPT,
    JRD_ACCEPT,
    BadRemoteStatus,
    FetchRefused,
    RemoteFetchFailed,
    build_http_client,
    fetch_json,
)
from fedistream.federation.signing import Signer
from tests.federation.peer import Peer, rsa_key_pair, tls_peer

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
KEY_ID = "https://blog.example.test/#main-key"
DOC = {"@context": "https://www.w3.org/ns/activitystreams", "id": "x", "type": "Note"}


class FakeDns:
    """Answers from a table and remembers every question."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return [ipaddress.ip_address(a) for a in self.table[host]]


@pytest.fixture
def signer() -> AsyncIterator[Signer]:
    private, _public = rsa_key_pair()
    signing = Signer(KEY_ID, private)
    yield signing
    signing.close()


@pytest.fixture
async def open_client() -> AsyncIterator[httpx.AsyncClient]:
    """Loopback allowed (the test switch), as every test against the fake peer needs."""
    async with build_http_client(allow_private_networks=True, user_agent="fedistream-test") as c:
        yield c


def verify(seen_request, now: datetime = NOW) -> httpsig.VerifiedSignature:  # type: ignore[no-untyped-def]
    _private, public = rsa_key_pair()
    request = httpsig.HttpRequest(
        seen_request.method, seen_request.target, seen_request.headers, seen_request.body
    )
    return httpsig.verify_request(request, httpsig.load_public_key(public), now)


# --- the SSRF guard ------------------------------------------------------------------------

FORBIDDEN_URLS = [
    "http://127.0.0.1:9/actor",
    "http://127.8.9.10/actor",
    "http://[::1]:9/actor",
    "http://10.1.2.3/actor",
    "http://172.20.0.1/actor",
    "http://192.168.1.1/actor",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/actor",
    "http://0.0.0.0:9/actor",
    "http://[::ffff:127.0.0.1]:9/actor",
    "http://[::ffff:a9fe:a9fe]/actor",
    "http://[fe80::1]/actor",
    "http://[fd00::1]/actor",
    "http://[64:ff9b::a00:1]/actor",
    "http://0177.0.0.1:9/actor",
    "http://2130706433:9/actor",
    "http://0x7f.1:9/actor",
    "http://0x7f000001:9/actor",
    "https://127.1/actor",
]


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
async def test_forbidden_literal_addresses_are_refused(url: str) -> None:
    dns = FakeDns({})
    async with build_http_client(
        allow_private_networks=False, user_agent="t", resolve=dns
    ) as client:
        with pytest.raises(FetchRefused, match="Refusing"):
            await fetch_json(client, url, signer=None)
    assert dns.asked == []  # decided from the literal, without asking DNS


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/", "http://2130706433:9/", "http://[::1]:9/", "http://0x7f.1:9/"]
)
async def test_the_transport_itself_refuses_not_only_fetch_json(url: str) -> None:
    async with build_http_client(allow_private_networks=False, user_agent="t") as client:
        with pytest.raises(FetchRefused):
            await client.get(url)


async def test_a_name_that_resolves_to_loopback_is_refused(peer: Peer) -> None:
    dns = FakeDns({"sneaky.test": ["127.0.0.1"]})
    async with build_http_client(
        allow_private_networks=False, user_agent="t", resolve=dns
    ) as client:
        with pytest.raises(FetchRefused, match=r"sneaky\.test \(127\.0\.0\.1\)"):
            await fetch_json(
                client, peer.url("/actor").replace("127.0.0.1", "sneaky.test"), signer=None
            )
    assert dns.asked == ["sneaky.test"]
    assert peer.seen == []  # refused before connecting


async def test_a_name_with_any_private_address_is_refused() -> None:
    dns = FakeDns({"mixed.test": ["93.184.215.14", "10.0.0.7"]})
    async with build_http_client(
        allow_private_networks=False, user_agent="t", resolve=dns
    ) as client:
        with pytest.raises(FetchRefused, match="10.0.0.7"):
            await fetch_json(client, "https://mixed.test/actor", signer=None)


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "gopher://example.test/", "javascript:x"]
)
async def test_only_http_and_https_are_fetched(url: str) -> None:
    async with build_http_client(allow_private_networks=True, user_agent="t") as client:
        with pytest.raises(FetchRefused, match="only http and https"):
            await fetch_json(client, url, signer=None)
        with pytest.raises((FetchRefused, httpx.UnsupportedProtocol)):
            await client.get(url)


async def test_an_unresolvable_name_fails_as_a_fetch_failure() -> None:
    async with build_http_client(
        allow_private_networks=False, user_agent="t", resolve=FakeDns({})
    ) as client:
        with pytest.raises(RemoteFetchFailed, match="cannot resolve nowhere.test") as info:
            await fetch_json(client, "https://nowhere.test/actor", signer=None)
    assert not isinstance(info.value, FetchRefused)


async def test_connects_to_the_address_it_checked_and_keeps_the_host_header(peer: Peer) -> None:
    # `.invalid` never resolves in real DNS: the fetch can only work by connecting to the
    # address our resolver returned.
    peer.json("/actor", DOC)
    dns = FakeDns({"peer.invalid": ["127.0.0.1"]})
    port = peer.base.rsplit(":", 1)[1]
    async with build_http_client(allow_private_networks=True, user_agent="t", resolve=dns) as c:
        document = await fetch_json(c, f"http://peer.invalid:{port}/actor", signer=None)
    assert document == DOC
    assert peer.seen[0].header("host") == f"peer.invalid:{port}"
    assert peer.seen[0].header("user-agent") == "t"


async def test_redirect_into_forbidden_space_is_refused(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Let the loopback peer play a public server: only 127.0.0.1 counts as allowed here.
    monkeypatch.setattr(
        fed_http, "is_forbidden_address", lambda ip: ip != ipaddress.ip_address("127.0.0.1")
    )
    peer.status("/to-metadata", 302, {"Location": "http://169.254.169.254/latest/meta-data/"})
    peer.status("/to-name", 301, {"Location": "http://intranet.test/admin"})
    peer.json("/fine", DOC)
    dns = FakeDns({"intranet.test": ["10.0.0.5"]})
    async with build_http_client(
        allow_private_networks=False, user_agent="t", resolve=dns
    ) as client:
        assert await fetch_json(client, peer.url("/fine"), signer=None) == DOC
        with pytest.raises(FetchRefused, match="169.254.169.254"):
            await fetch_json(client, peer.url("/to-metadata"), signer=None)
        with pytest.raises(FetchRefused, match="intranet.test"):
            await fetch_json(client, peer.url("/to-name"), signer=None)
    assert dns.asked == ["intranet.test"]


async def test_redirect_to_another_scheme_is_refused(open_client: httpx.AsyncClient, peer: Peer):
    peer.status("/r", 302, {"Location": "file:///etc/passwd"})
    with pytest.raises(FetchRefused):
        await fetch_json(open_client, peer.url("/r"), signer=None)


async def test_proxy_environment_cannot_route_around_the_guard(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    peer.json("/actor", DOC)
    async with build_http_client(allow_private_networks=True, user_agent="t") as client:
        assert await fetch_json(client, peer.url("/actor"), signer=None) == DOC


# --- TLS: connect to the checked IP, verify the certificate for the hostname ------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _tls_fetch(ca: trustme.CA, tmp_path: Path, cert_for: str, url_host: str) -> dict:
    peer = Peer()
    peer.json("/actor", DOC)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    dns = FakeDns({url_host: ["127.0.0.1"]})
    async with (
        tls_peer(peer, ca, tmp_path, cert_for) as port,
        build_http_client(
            allow_private_networks=True, user_agent="t", verify=context, resolve=dns
        ) as client,
    ):
        document = await fetch_json(client, f"https://{url_host}:{port}/actor", signer=None)
    assert peer.seen[0].header("host") == f"{url_host}:{port}"
    return document


async def test_https_verifies_the_certificate_for_the_hostname(
    ca: trustme.CA, tmp_path: Path
) -> None:
    assert await _tls_fetch(ca, tmp_path, "peer.test", "peer.test") == DOC


async def test_https_refuses_a_certificate_for_another_name(ca: trustme.CA, tmp_path: Path) -> None:
    with pytest.raises(RemoteFetchFailed, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        await _tls_fetch(ca, tmp_path, "other.test", "peer.test")


# --- signed GET ------------------------------------------------------------------------------


async def test_signed_get_verifies_as_a_peer_checks_it(
    open_client: httpx.AsyncClient, peer: Peer, signer: Signer
) -> None:
    peer.json("/users/a", DOC)
    await fetch_json(
        open_client, peer.url("/users/a?page=true#frag"), signer=signer, now=lambda: NOW
    )
    seen = peer.seen[0]
    assert seen.target == "/users/a?page=true"
    assert seen.header("accept") == AS2_ACCEPT
    verified = verify(seen)
    assert verified.key_id == KEY_ID
    assert verified.covered == ("(request-target)", "host", "date")
    assert not verified.query_dropped  # R37: the query is signed


async def test_unsigned_get_has_no_signature(open_client: httpx.AsyncClient, peer: Peer) -> None:
    peer.json("/users/a", DOC)
    await fetch_json(open_client, peer.url("/users/a"), signer=None)
    assert peer.seen[0].header("signature") is None


async def test_401_is_retried_once_signed_without_the_query(
    open_client: httpx.AsyncClient, peer: Peer, signer: Signer
) -> None:
    async def picky(request: Request) -> Response:
        # GoToSocial-style peer that only verifies signatures over the bare path.
        if len(peer.requests_to("/outbox")) == 1:
            return Response(b"", status_code=401)
        return Response(json.dumps(DOC), media_type="application/activity+json")

    peer.route("/outbox", picky)
    assert (
        await fetch_json(open_client, peer.url("/outbox?page=1"), signer=signer, now=lambda: NOW)
        == DOC
    )
    first, second = peer.requests_to("/outbox")
    assert not verify(first).query_dropped
    assert verify(second).query_dropped
    assert second.target == "/outbox?page=1"  # still asks for the same URL


async def test_a_second_401_fails(open_client: httpx.AsyncClient, peer: Peer, signer: Signer):
    peer.status("/private", 401)
    with pytest.raises(BadRemoteStatus) as info:
        await fetch_json(open_client, peer.url("/private?x=1"), signer=signer, now=lambda: NOW)
    assert info.value.remote_status == 401
    assert len(peer.requests_to("/private")) == 2


async def test_redirects_are_followed_and_each_hop_resigned(
    open_client: httpx.AsyncClient, peer: Peer, signer: Signer
) -> None:
    peer.status("/old", 301, {"Location": "/middle"})
    peer.status("/middle", 307, {"Location": peer.url("/new?x=1")})
    peer.json("/new", DOC)
    assert await fetch_json(open_client, peer.url("/old"), signer=signer, now=lambda: NOW) == DOC
    assert [s.target for s in peer.seen] == ["/old", "/middle", "/new?x=1"]
    for seen in peer.seen:
        verify(seen)  # each hop carries a signature for its own URL (R39)
    assert peer.seen[0].header("signature") != peer.seen[2].header("signature")


async def test_too_many_redirects(open_client: httpx.AsyncClient, peer: Peer) -> None:
    peer.status("/loop", 302, {"Location": "/loop"})
    with pytest.raises(RemoteFetchFailed, match="more than 3"):
        await fetch_json(open_client, peer.url("/loop"), signer=None)
    assert len(peer.seen) == 4
    peer.seen.clear()
    with pytest.raises(RemoteFetchFailed, match="more than 0"):
        await fetch_json(open_client, peer.url("/loop"), signer=None, max_redirects=0)
    assert len(peer.seen) == 1


async def test_redirect_without_location_fails(open_client: httpx.AsyncClient, peer: Peer):
    peer.status("/r", 302)
    with pytest.raises(RemoteFetchFailed, match="without a Location"):
        await fetch_json(open_client, peer.url("/r"), signer=None)


# --- what comes back ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/activity+json",
        "application/activity+json; charset=utf-8",
        'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
        'application/ld+json;profile="https://www.w3.org/ns/activitystreams https://example.test/p"',
    ],
)
async def test_as2_content_types_are_accepted(
    open_client: httpx.AsyncClient, peer: Peer, content_type: str
) -> None:
    peer.json("/a", DOC, content_type=content_type)
    assert await fetch_json(open_client, peer.url("/a"), signer=None) == DOC


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/html; charset=utf-8", "application/ld+json", "text/plain"],
)
async def test_other_content_types_are_refused_for_as2(
    open_client: httpx.AsyncClient, peer: Peer, content_type: str
) -> None:
    peer.json("/a", DOC, content_type=content_type)
    with pytest.raises(RemoteFetchFailed, match="not ActivityStreams"):
        await fetch_json(open_client, peer.url("/a"), signer=None)


async def test_plain_json_fetch_takes_jrd_and_json_but_not_html(
    open_client: httpx.AsyncClient, peer: Peer
) -> None:
    jrd = {"subject": "acct:a@b.test", "links": []}
    peer.json("/jrd", jrd, content_type="application/jrd+json")
    peer.json("/json", jrd, content_type="application/json; charset=utf-8")
    peer.json("/html", jrd, content_type="text/html")
    for path in ("/jrd", "/json"):
        got = await fetch_json(
            open_client, peer.url(path), signer=None, accept=JRD_ACCEPT, expect_as2=False
        )
        assert got == jrd
    assert peer.seen[0].header("accept") == JRD_ACCEPT
    with pytest.raises(RemoteFetchFailed, match="not JSON"):
        await fetch_json(open_client, peer.url("/html"), signer=None, expect_as2=False)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
async def test_bad_json_fails(open_client: httpx.AsyncClient, peer: Peer, body: bytes) -> None:
    async def answer(_request: Request) -> Response:
        return Response(body, media_type="application/activity+json")

    peer.route("/a", answer)
    with pytest.raises(RemoteFetchFailed, match="JSON"):
        await fetch_json(open_client, peer.url("/a"), signer=None)


@pytest.mark.parametrize("status", [404, 410, 500, 502, 503])
async def test_error_statuses_fail_with_the_status(
    open_client: httpx.AsyncClient, peer: Peer, status: int
) -> None:
    peer.status("/a", status)
    with pytest.raises(BadRemoteStatus, match=f"HTTP {status}") as info:
        await fetch_json(open_client, peer.url("/a"), signer=None)
    assert info.value.remote_status == status
    assert info.value.status == 503  # what our own peers see: try again later


async def test_body_over_the_cap_fails_by_content_length(
    open_client: httpx.AsyncClient, peer: Peer
) -> None:
    big = {"@context": "https://www.w3.org/ns/activitystreams", "pad": "x" * (1024 * 1024)}
    peer.json("/big", big)
    with pytest.raises(RemoteFetchFailed, match="larger than 1048576"):
        await fetch_json(open_client, peer.url("/big"), signer=None)


async def test_streamed_body_over_the_cap_fails_while_reading(
    open_client: httpx.AsyncClient, peer: Peer
) -> None:
    sent: list[int] = []

    async def endless(_request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"pad": "'
            for _ in range(10_000):  # 10 MB if nobody stops reading
                sent.append(1)
                yield b"x" * 1024

        return StreamingResponse(chunks(), media_type="application/activity+json")

    peer.route("/endless", endless)
    with pytest.raises(RemoteFetchFailed, match="larger than 4096"):
        await fetch_json(open_client, peer.url("/endless"), signer=None, max_bytes=4096)
    assert len(sent) < 10_000


async def test_a_small_body_under_a_small_cap_is_fine(open_client: httpx.AsyncClient, peer: Peer):
    peer.json("/a", DOC)
    assert await fetch_json(open_client, peer.url("/a"), signer=None, max_bytes=200) == DOC


async def test_a_slow_peer_times_out(peer: Peer) -> None:
    async def slow(_request: Request) -> Response:
        await asyncio.sleep(3)
        return Response(b"{}", media_type="application/activity+json")

    peer.route("/slow", slow)
    async with build_http_client(allow_private_networks=True, user_agent="t", timeout=0.2) as c:
        with pytest.raises(RemoteFetchFailed, match="timed out"):
            await fetch_json(c, peer.url("/slow"), signer=None)


async def test_a_slow_drip_hits_the_deadline(open_client: httpx.AsyncClient, peer: Peer) -> None:
    async def drip(_request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b" "
                await asyncio.sleep(0.05)  # each read is quick; the whole never ends

        return StreamingResponse(chunks(), media_type="application/activity+json")

    peer.route("/drip", drip)
    with pytest.raises(RemoteFetchFailed, match="took longer than 0.3 s"):
        await fetch_json(open_client, peer.url("/drip"), signer=None, deadline=0.3)


async def test_an_unreachable_peer_fails(open_client: httpx.AsyncClient) -> None:
    with pytest.raises(RemoteFetchFailed, match="Could not fetch"):
        await fetch_json(open_client, "http://127.0.0.1:9/actor", signer=None)


def test_the_guard_refuses_to_start_if_httpx_internals_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Renamed(httpx.AsyncHTTPTransport):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)  # type: ignore[arg-type]
            self._connections = self.__dict__.pop("_pool")

    monkeypatch.setattr(fed_http.httpx, "AsyncHTTPTransport", Renamed)
    with pytest.raises(RuntimeError, match="httpx internals changed"):
        build_http_client(allow_private_networks=False, user_agent="t")
