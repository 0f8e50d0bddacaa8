"""The delivery client (our HTTP/1.1 client on httptools): signed POSTs to inboxes behind the
same SSRF guard as fetches.

Real HTTP against a loopback peer (tests/federation/peer.py), or, for what only the wire shows
(framing, interim answers, connections opened, reused and closed), a tiny asyncio server on
127.0.0.1 scripted per connection (`wire_peer`). DNS is a fake resolver passed to the client,
so no test ever asks a real name server or leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from fedistream.federation import delivery_client
from fedistream.federation.delivery_client import Answer, DeliveryClient, delivery_url, post_signed
from fedistream.federation.http import FetchRefused, RemoteFetchFailed, outgoing_url
from fedistream.federation.signing import Signer
from tests.federation.peer import Peer, rsa_key_pair, tls_peer
from tests.federation.test_http import FORBIDDEN_URLS, KEY_ID, NOW, FakeDns, verify


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


# --- a wire-level peer: raw HTTP/1.1 on 127.0.0.1, scripted per connection ---------------------

ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
HEADERS = {"Content-Type": "application/activity+json"}
WAIT_S = 5.0  # the longest any test waits for the peer or the client


@dataclass
class WirePeer:
    """What the peer saw: connections accepted, how many are open now and at most at once, and
    the head of every request (the client's bytes up to the blank line)."""

    url: str = ""
    connections: int = 0
    open: int = 0
    most_open: int = 0
    requests: list[bytes] = field(default_factory=list)

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next request's head (its body read and dropped); None once the client closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        self.requests.append(head)
        return head


# A connection's script: (peer, reader, writer, number of the connection from 1).
Script = Callable[[WirePeer, asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@asynccontextmanager
async def wire_peer(script: Script) -> AsyncIterator[WirePeer]:
    """Serve `script` on 127.0.0.1; the peer closes a connection when its script returns."""
    peer = WirePeer()
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        peer.connections += 1
        peer.open += 1
        peer.most_open = max(peer.most_open, peer.open)
        try:
            await script(peer, reader, writer, peer.connections)
        except ConnectionError:
            pass
        finally:
            peer.open -= 1  # before closing: the client cannot have seen the close yet
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    peer.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/inbox"
    try:
        yield peer
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


def answering(raw: bytes) -> Script:
    """Answer every request on the connection with `raw`, until the client closes it."""

    async def script(
        peer: WirePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int
    ) -> None:
        while await peer.read_request(reader) is not None:
            writer.write(raw)

    return script


async def wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, "the peer never saw what the test waits for"
        await asyncio.sleep(0.01)


@pytest.fixture
async def wire_client() -> AsyncIterator[DeliveryClient]:
    """Loopback allowed; a short deadline, so a test that goes wrong fails instead of hanging."""
    async with DeliveryClient(
        allow_private_networks=True, user_agent="fedistream-test", deadline=WAIT_S
    ) as c:
        yield c


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
    # An escaped path and a query: the client must not re-quote what the signature covers.
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


async def test_keep_alive_reuses_the_connection(wire_client: DeliveryClient) -> None:
    async with wire_peer(answering(ACCEPTED)) as wire:
        for _ in range(2):
            assert (await wire_client.post(wire.url, b"{}", HEADERS)).status == 202
    assert len(wire.requests) == 2
    assert wire.connections == 1  # the second POST went over the first one's connection


async def test_without_keep_alive_every_post_has_its_own_connection(
    wire_client: DeliveryClient,
) -> None:
    async with wire_peer(answering(ACCEPTED)) as wire:
        for _ in range(2):
            answer = await wire_client.post(wire.url, b"{}", HEADERS, keep_alive=False)
            assert answer.status == 202
        await wait_until(lambda: wire.open == 0)  # we closed each after its answer
    assert wire.connections == 2
    assert all(b"\r\nconnection: close\r\n" in head.lower() for head in wire.requests)


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


# --- framing: the three ways an answer ends, and interim answers -----------------------------


async def test_a_chunked_answer_is_read_whole(wire_client: DeliveryClient) -> None:
    chunked = (
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    async with wire_peer(answering(chunked)) as wire:
        answers = [await wire_client.post(wire.url, b"{}", HEADERS) for _ in range(2)]
    assert [(a.status, a.body) for a in answers] == [(202, b"hello world")] * 2
    assert answers[0].headers["transfer-encoding"] == "chunked"
    assert wire.connections == 1  # the end of the body was found: the connection was reusable


async def test_an_answer_without_length_ends_when_the_peer_closes(
    wire_client: DeliveryClient,
) -> None:
    async def until_eof(
        peer: WirePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int
    ) -> None:
        await peer.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b" end")  # then the script returns and the peer closes

    async with wire_peer(until_eof) as wire:
        answer = await wire_client.post(wire.url, b"{}", HEADERS)
    assert (answer.status, answer.body) == (200, b"until the end")


async def test_an_answer_cut_short_of_its_length_fails(wire_client: DeliveryClient) -> None:
    async def cut_short(
        peer: WirePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int
    ) -> None:
        await peer.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")

    async with wire_peer(cut_short) as wire:
        with pytest.raises(RemoteFetchFailed, match="closed the connection in the middle"):
            await wire_client.post(wire.url, b"{}", HEADERS)


async def test_interim_answers_are_skipped(wire_client: DeliveryClient) -> None:
    async def interim_first(
        peer: WirePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int
    ) -> None:
        await peer.read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the final answer comes in a later read
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok")
        await peer.read_request(reader)  # until the client closes

    async with wire_peer(interim_first) as wire:
        answer = await wire_client.post(wire.url, b"{}", HEADERS)
    assert (answer.status, answer.body) == (202, b"ok")
    assert "link" not in answer.headers  # the interim answer's headers are not the answer's


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Note": "a\r\nX-Injected: 1"},
        {"X-Note": "a\nX-Injected: 1"},
        {"X-Note": "a\0b"},
        {"X-Note\r\nX-Injected": "1"},
        {"Host: evil.test\r\nX": "1"},
        {"X Note": "1"},
    ],
)
async def test_header_injection_is_refused(
    headers: dict[str, str], open_client: DeliveryClient, peer: Peer
) -> None:
    accept(peer)
    with pytest.raises(ValueError, match="Refusing to send the header"):
        await open_client.post(peer.url("/inbox"), b"{}", {**HEADERS, **headers})
    assert peer.seen == []


def test_a_user_agent_that_would_inject_a_header_is_refused() -> None:
    with pytest.raises(ValueError, match="Refusing to send the header 'User-Agent'"):
        DeliveryClient(allow_private_networks=True, user_agent="fedistream\r\nX-Injected: 1")


async def test_framing_headers_are_the_clients_own(wire_client: DeliveryClient) -> None:
    given = {**HEADERS, "content-length": "999", "HOST": "signed.test", "Connection": "x"}
    async with wire_peer(answering(ACCEPTED)) as wire:
        await wire_client.post(wire.url, b"{}", given, keep_alive=False)
    head = wire.requests[0].lower()
    assert head.count(b"content-length:") == head.count(b"host:") == 1
    assert b"\r\ncontent-length: 2\r\n" in head
    assert head.startswith(b"post /inbox http/1.1\r\nhost: signed.test\r\n")
    assert b"\r\nconnection: close\r\n" in head


# --- connections: reuse, retry, the cap, closing ---------------------------------------------


async def test_a_pooled_connection_the_peer_closed_is_retried_once(
    wire_client: DeliveryClient,
) -> None:
    async def closes_after_one(
        peer: WirePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await peer.read_request(reader)
        writer.write(ACCEPTED)  # keep-alive allowed…
        await peer.read_request(reader)
        if n > 1:  # …but the first connection closes on the next request, unanswered
            writer.write(ACCEPTED)
            await peer.read_request(reader)

    async with wire_peer(closes_after_one) as wire:
        for _ in range(2):
            assert (await wire_client.post(wire.url, b"{}", HEADERS)).status == 202
    assert wire.connections == 2
    assert len(wire.requests) == 3  # the second POST: once on the stale connection, once anew


async def test_a_connection_that_began_to_answer_is_not_retried(
    wire_client: DeliveryClient,
) -> None:
    async def half_answers_the_second(
        peer: WirePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int
    ) -> None:
        await peer.read_request(reader)
        writer.write(ACCEPTED)
        await peer.read_request(reader)
        writer.write(b"HTTP/1.1 20")

    async with wire_peer(half_answers_the_second) as wire:
        await wire_client.post(wire.url, b"{}", HEADERS)
        with pytest.raises(RemoteFetchFailed, match="in the middle of its answer"):
            await wire_client.post(wire.url, b"{}", HEADERS)
    assert wire.connections == 1


async def test_never_more_connections_than_the_cap(wire_client: DeliveryClient) -> None:
    async def slow(
        peer: WirePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int
    ) -> None:
        await peer.read_request(reader)
        await asyncio.sleep(0.1)
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    async with (
        wire_peer(slow) as wire,
        DeliveryClient(
            allow_private_networks=True, user_agent="t", deadline=WAIT_S, max_connections=2
        ) as client,
    ):
        answers = await asyncio.gather(
            *(client.post(wire.url, b"{}", HEADERS, keep_alive=False) for _ in range(6))
        )
    assert [a.status for a in answers] == [202] * 6
    assert wire.connections == 6
    assert wire.most_open == 2


async def test_waiting_for_a_connection_counts_against_the_deadline() -> None:
    async def never_answers(
        peer: WirePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int
    ) -> None:
        await peer.read_request(reader)
        await peer.read_request(reader)  # until the client closes

    async with (
        wire_peer(never_answers) as wire,
        DeliveryClient(allow_private_networks=True, user_agent="t", max_connections=1) as client,
    ):
        client.deadline = WAIT_S
        holding = asyncio.create_task(client.post(wire.url, b"{}", HEADERS))
        await wait_until(lambda: len(wire.requests) == 1)
        client.deadline = 0.2
        started = time.monotonic()
        with pytest.raises(RemoteFetchFailed, match="timed out after 0.2 s"):
            await client.post(wire.url, b"{}", HEADERS)  # waits for the one connection
        waited = time.monotonic() - started
        assert wire.connections == 1
        holding.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holding
    assert waited < 1.0  # not until the first POST gave its connection up


async def test_a_capped_body_closes_the_connection(wire_client: DeliveryClient) -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + b"x" * 300_000
    async with wire_peer(answering(big)) as wire:
        answer = await wire_client.post(wire.url, b"{}", HEADERS, max_response_bytes=1000)
        assert answer.body == b"x" * 1000
        await wait_until(lambda: wire.open == 0)  # the client stopped reading and closed it
        await wire_client.post(wire.url, b"{}", HEADERS, max_response_bytes=1000)
    assert wire.connections == 2  # the capped one was not reused


async def test_aclose_closes_pooled_connections() -> None:
    client = DeliveryClient(allow_private_networks=True, user_agent="t", deadline=WAIT_S)
    async with wire_peer(answering(ACCEPTED)) as wire:
        await client.post(wire.url, b"{}", HEADERS)
        await asyncio.sleep(0.05)
        assert wire.open == 1  # kept for the next POST
        await client.aclose()
        await wait_until(lambda: wire.open == 0)


async def test_an_idle_connection_is_closed_after_a_while(
    wire_client: DeliveryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_client, "IDLE_SECONDS", 0.1)
    async with wire_peer(answering(ACCEPTED)) as wire:
        await wire_client.post(wire.url, b"{}", HEADERS)
        assert wire.open == 1
        await wait_until(lambda: wire.open == 0)
        await wire_client.post(wire.url, b"{}", HEADERS)
    assert wire.connections == 2
