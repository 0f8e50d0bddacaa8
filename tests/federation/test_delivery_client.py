"""The delivery client (aiohttp): signed POSTs to inboxes behind the same SSRF guard as fetches.

Real HTTP against a loopback peer (tests/federation/peer.py); DNS is a fake resolver passed to
the client, so no test ever asks a real name server or leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from fedistream.federation.delivery_client import Answer, DeliveryClient, delivery_url, post_signed
from fedistream.federation.http import FetchRefused, RemoteFetchFailed, outgoing_url
from fedistream.federation.signing import Signer
from tests.federation.peer import Peer, rsa_key_pair, tls_peer
from tests.federation.test_http import FORBIDDEN_URLS, KEY_ID, NOW, FakeDns, verify

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def signer() -> Iterator[Signer]:
    signing = Signer(KEY_ID, rsa_key_pair()[0])
    yield signing
    signing.close()


@pytest.fixture
async def open_client() -> AsyncIterator[DeliveryClient]:
    """Loopback allowed (the test switch), as every test against the fake peer needs."""
    async with DeliveryClient(allow_private_networks=True, user_agent="fedistream-test") as c:
        yield c


def accept(peer: Peer, path: str = "/inbox") -> None:
    async def inbox(_request: Request) -> Response:
        return Response(b"", status_code=202)

    peer.route(path, inbox)


# --- what is sent ----------------------------------------------------------------------------


async def test_sends_the_exact_bytes_signed_per_r36(
    open_client: DeliveryClient, peer: Peer, signer: Signer
) -> None:
    accept(peer)
    body = b'{"type": "Create",  "id": "https://blog.example.test/p/1/activity"}'
    answer = await post_signed(open_client, peer.url("/inbox"), body, signer, NOW)
    assert answer.status == 202
    seen = peer.seen[0]
    assert seen.method == "POST"
    assert seen.body == body
    assert seen.header("content-type") == "application/activity+json"
    assert seen.header("user-agent") == "fedistream-test"
    assert seen.header("content-length") == str(len(body))
    verified = verify(seen)
    assert verified.covered == ("(request-target)", "host", "date", "digest", "content-type")


async def test_the_path_signed_is_the_path_sent(
    open_client: DeliveryClient, peer: Peer, signer: Signer
) -> None:
    # An escaped path and a query: aiohttp must not re-quote what the signature covers.
    accept(peer, "/users/café/inbox")  # the peer routes by decoded path
    url = peer.url("/users/caf%C3%A9/inbox?x=a%2Fb&y=1")
    answer = await post_signed(open_client, url, b"{}", signer, NOW)
    assert answer.status == 202
    assert peer.seen[0].target == "/users/caf%C3%A9/inbox?x=a%2Fb&y=1"
    assert verify(peer.seen[0]).key_id == KEY_ID


async def test_keep_alive_false_asks_the_peer_to_close(
    open_client: DeliveryClient, peer: Peer, signer: Signer
) -> None:
    accept(peer)
    await post_signed(open_client, peer.url("/inbox"), b"{}", signer, NOW, keep_alive=False)
    await post_signed(open_client, peer.url("/inbox"), b"{}", signer, NOW)
    assert [s.header("connection") for s in peer.seen] == ["close", None]
    # Connection is not signed: it is hop-by-hop, and a proxy may rewrite it.
    assert "connection" not in verify(peer.seen[0]).covered


# --- what comes back -------------------------------------------------------------------------


async def test_caps_the_answer_and_keeps_status_and_headers(
    open_client: DeliveryClient, peer: Peer, signer: Signer
) -> None:
    async def chatty(_request: Request) -> Response:
        return Response(b"e" * 200_000, status_code=429, headers={"Retry-After": "120"})

    peer.route("/inbox", chatty)
    answer = await post_signed(open_client, peer.url("/inbox"), b"{}", signer, NOW)
    assert answer.status == 429
    assert answer.headers["retry-after"] == "120"
    assert answer.body == b"e" * 64 * 1024


async def test_does_not_follow_redirects(
    open_client: DeliveryClient, peer: Peer, signer: Signer
) -> None:
    peer.status("/inbox", 308, {"Location": "/elsewhere"})
    answer = await post_signed(open_client, peer.url("/inbox"), b"{}", signer, NOW)
    assert answer.status == 308
    assert answer.headers["location"] == "/elsewhere"
    assert [s.path for s in peer.seen] == ["/inbox"]


async def test_an_unreachable_inbox_fails_as_a_fetch_failure(
    open_client: DeliveryClient, signer: Signer
) -> None:
    with pytest.raises(RemoteFetchFailed, match="Could not post to http://127.0.0.1:9/inbox") as e:
        await post_signed(open_client, "http://127.0.0.1:9/inbox", b"{}", signer, NOW)
    assert not isinstance(e.value, FetchRefused)


async def test_a_slow_inbox_hits_the_deadline(peer: Peer, signer: Signer) -> None:
    async def slow(_request: Request) -> Response:
        await asyncio.sleep(3)
        return Response(b"", status_code=202)

    peer.route("/inbox", slow)
    async with DeliveryClient(allow_private_networks=True, user_agent="t", deadline=0.2) as c:
        with pytest.raises(RemoteFetchFailed, match="timed out after 0.2 s"):
            await post_signed(c, peer.url("/inbox"), b"{}", signer, NOW)


# --- the SSRF guard: the same rule as for fetches ---------------------------------------------


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
async def test_forbidden_literal_addresses_are_refused(url: str, signer: Signer) -> None:
    dns = FakeDns({})
    async with DeliveryClient(allow_private_networks=False, user_agent="t", resolve=dns) as c:
        with pytest.raises(FetchRefused, match="Refusing"):
            await post_signed(c, url, b"{}", signer, NOW)
    assert dns.asked == []  # decided from the literal, without asking DNS


async def test_a_name_that_resolves_to_loopback_is_refused(peer: Peer, signer: Signer) -> None:
    dns = FakeDns({"sneaky.test": ["127.0.0.1"]})
    url = peer.url("/inbox").replace("127.0.0.1", "sneaky.test")
    async with DeliveryClient(allow_private_networks=False, user_agent="t", resolve=dns) as c:
        with pytest.raises(FetchRefused, match=r"sneaky\.test \(127\.0\.0\.1\)"):
            await post_signed(c, url, b"{}", signer, NOW)
    assert dns.asked == ["sneaky.test"]
    assert peer.seen == []  # refused before connecting


async def test_a_name_with_any_private_address_is_refused(signer: Signer) -> None:
    dns = FakeDns({"mixed.test": ["93.184.215.14", "10.0.0.7"]})
    async with DeliveryClient(allow_private_networks=False, user_agent="t", resolve=dns) as c:
        with pytest.raises(FetchRefused, match="10.0.0.7"):
            await post_signed(c, "https://mixed.test/inbox", b"{}", signer, NOW)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "javascript:x"])
async def test_only_http_and_https_are_posted_to(
    url: str, open_client: DeliveryClient, signer: Signer
) -> None:
    with pytest.raises(FetchRefused, match="only http and https"):
        await post_signed(open_client, url, b"{}", signer, NOW)


async def test_an_unresolvable_name_fails_as_a_fetch_failure(signer: Signer) -> None:
    dns = FakeDns({})
    async with DeliveryClient(allow_private_networks=False, user_agent="t", resolve=dns) as c:
        with pytest.raises(RemoteFetchFailed, match="cannot resolve nowhere.test") as info:
            await post_signed(c, "https://nowhere.test/inbox", b"{}", signer, NOW)
    assert not isinstance(info.value, FetchRefused)


async def test_connects_to_the_address_it_checked_and_keeps_the_host_header(
    peer: Peer, signer: Signer
) -> None:
    # `.invalid` never resolves in real DNS: the POST can only arrive by connecting to the
    # address our resolver returned.
    accept(peer)
    dns = FakeDns({"peer.invalid": ["127.0.0.1"]})
    port = peer.base.rsplit(":", 1)[1]
    async with DeliveryClient(allow_private_networks=True, user_agent="t", resolve=dns) as c:
        answer = await post_signed(c, f"http://peer.invalid:{port}/inbox", b"{}", signer, NOW)
    assert answer.status == 202
    assert peer.seen[0].header("host") == f"peer.invalid:{port}"
    assert dns.asked == ["peer.invalid"]


async def test_proxy_environment_cannot_route_around_the_guard(
    peer: Peer, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    accept(peer)
    async with DeliveryClient(allow_private_networks=True, user_agent="t") as c:
        answer = await post_signed(c, peer.url("/inbox"), b"{}", signer, NOW)
    assert answer.status == 202


# --- TLS: connect to the checked IP, verify the certificate for the hostname ------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _tls_post(
    ca: trustme.CA, tmp_path: Path, cert_for: str, url_host: str, signer: Signer
) -> Answer:
    peer = Peer()
    accept(peer)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    dns = FakeDns({url_host: ["127.0.0.1"]})
    async with (
        tls_peer(peer, ca, tmp_path, cert_for) as port,
        DeliveryClient(
            allow_private_networks=True, user_agent="t", verify=context, resolve=dns
        ) as client,
    ):
        answer = await post_signed(client, f"https://{url_host}:{port}/inbox", b"{}", signer, NOW)
    assert peer.seen[0].header("host") == f"{url_host}:{port}"
    return answer


async def test_https_verifies_the_certificate_for_the_hostname(
    ca: trustme.CA, tmp_path: Path, signer: Signer
) -> None:
    assert (await _tls_post(ca, tmp_path, "peer.test", "peer.test", signer)).status == 202


async def test_https_refuses_a_certificate_for_another_name(
    ca: trustme.CA, tmp_path: Path, signer: Signer
) -> None:
    with pytest.raises(RemoteFetchFailed, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        await _tls_post(ca, tmp_path, "other.test", "peer.test", signer)


# --- cost ------------------------------------------------------------------------------------


def test_aiohttp_is_not_loaded_until_the_first_delivery() -> None:
    """Idle RSS (issue 6): building the app and its delivery client must not import aiohttp."""
    code = (
        "import sys, json\n"
        "from fedistream.app import build_app\n"
        "from fedistream.federation.delivery_client import DeliveryClient\n"
        "DeliveryClient(allow_private_networks=False, user_agent='t')\n"
        "print(json.dumps('aiohttp' in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) is False


async def test_a_closed_client_refuses_to_post(signer: Signer) -> None:
    client = DeliveryClient(allow_private_networks=True, user_agent="t")
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await post_signed(client, "http://127.0.0.1:9/inbox", b"{}", signer, NOW)


async def test_a_slow_drip_of_an_answer_hits_the_deadline(peer: Peer, signer: Signer) -> None:
    async def drip(_request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b" "
                await asyncio.sleep(0.05)  # each read is quick; the whole never ends

        return StreamingResponse(chunks(), status_code=202)

    peer.route("/inbox", drip)
    async with DeliveryClient(allow_private_networks=True, user_agent="t", deadline=0.3) as c:
        with pytest.raises(RemoteFetchFailed, match="timed out after 0.3 s"):
            await post_signed(c, peer.url("/inbox"), b"{}", signer, NOW)


@pytest.mark.parametrize(
    "url",
    [
        "https://b.example.test/users/a/inbox",
        "http://127.0.0.1:8080/inbox?x=a%2Fb&y=1",
        "https://b.example.test/users/caf%C3%A9/inbox",
        "https://b.example.test/@alice/inbox",
    ],
)
def test_a_sendable_url_is_signed_and_sent_as_it_is(url: str) -> None:
    assert delivery_url(url) == url


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("https://b.example.test/users/a/inbox#frag", "https://b.example.test/users/a/inbox"),
        ("https://bücher.example.test/inbox", "https://xn--bcher-kva.example.test/inbox"),
        ("https://b.example.test/a b", "https://b.example.test/a%20b"),
        ("https://b.example.test/%zz", "https://b.example.test/%zz"),  # as httpx leaves it
        ("HTTPS://b.example.test/inbox", "https://b.example.test/inbox"),
    ],
)
def test_other_urls_are_normalized_as_fetches_are(given: str, sent: str) -> None:
    assert delivery_url(given) == sent == str(outgoing_url(given))
