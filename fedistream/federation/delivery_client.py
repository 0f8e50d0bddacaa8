"""POSTing activities to inboxes: the fan-out's own small HTTP/1.1 client. Layer: federation.

Why our own client: a fan-out is thousands of small POSTs, and on a 2-core machine it is
CPU-bound. Per pre-signed POST, httpx + httpcore + anyio cost 0.8–0.9 ms of event-loop CPU,
aiohttp 0.34–0.47 ms, and an asyncio.Protocol that writes the request and reads the answer
with httptools (uvicorn's parser, llhttp) 0.09–0.14 ms; this client, that and the guard, the
deadline and the pool, 0.12 ms. Once the Signer's threads have made the signature, that is
most of what a delivery costs. The wire protocol is in http1.py. Fetches stay on httpx
(federation/http.py): they are few, follow redirects hop by hop and stream capped bodies.

What it does: POST over HTTP/1.1, http or https; one deadline over waiting for a connection,
resolving, connecting, sending and reading; answers framed by Content-Length, chunked or the end
of the connection, 1xx interim answers skipped; at most `max_connections` connections open; a
few idle keep-alive connections per origin, reused. What it does not: follow redirects (they
are returned), decompress, read proxy settings from the environment, cookies, HTTP/2,
`Expect: 100-continue`, pipelining.

The SSRF guard is the rule fetches follow (`http.checked_addresses`): every host, name or IP
literal, is checked, and the client connects only to the addresses it checked. TLS verifies
the certificate for the URL's hostname.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools

from fedistream.errors import RemoteFetchFailed
from fedistream.federation.http import (
    ACTIVITY_JSON,
    DEADLINE,
    FetchRefused,
    Resolve,
    checked_addresses,
    outgoing_url,
    system_resolve,
    tls_context,
)
from fedistream.federation.http1 import Answer, Connection, check_header, post_request
from fedistream.federation.signing import Signer

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_RESPONSE_BYTES",
    "Answer",
    "DeliveryClient",
    "SignedPost",
    "delivery_url",
    "post_signed",
    "sign_post",
]

MAX_RESPONSE_BYTES = 64 * 1024  # an inbox's answer body: only kept for the delivery log
# Connections open at once: above the worker's MAX_CONCURRENCY (128, federation/delivery.py).
MAX_CONNECTIONS = 160
IDLE_PER_ORIGIN = 4  # idle keep-alive connections kept per (scheme, host, port)
IDLE_SECONDS = 15.0  # then an idle connection is closed

Origin = tuple[str, str, int]  # scheme, hostname, port: what a pooled connection serves


class DeliveryClient:
    """SSRF-guarded POSTs to inboxes. One per app; close it with `await client.aclose()`.

    `verify` and `resolve` exist for tests (a private CA, a fake DNS), as in
    `http.build_http_client`.
    """

    def __init__(
        self,
        *,
        allow_private_networks: bool,
        user_agent: str,
        verify: ssl.SSLContext | bool = True,
        resolve: Resolve | None = None,
        deadline: float = DEADLINE,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        check_header("User-Agent", user_agent)
        self._allow_private = allow_private_networks
        self._user_agent = user_agent
        self._verify = verify
        self._tls: ssl.SSLContext | None = None  # made on the first https POST (certifi's CAs)
        self._resolve = resolve or system_resolve
        self.deadline = deadline
        # A place per connection, held from before it connects until it is closed; idle ones too.
        self._slots = asyncio.Semaphore(max_connections)
        self._live: set[Connection] = set()
        self._idle = _IdlePool()
        self._closed = False

    async def __aenter__(self) -> DeliveryClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        keep_alive: bool = True,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> Answer:
        """POST `body` to `url` (a `delivery_url`: sent exactly as written, as it was signed).

        `headers` are sent as given (Host, Date, Digest, Signature, Content-Type…), with
        User-Agent, `Accept-Encoding: identity` and Content-Length added. `keep_alive=False`
        sends `Connection: close` and closes the connection after the answer: a fan-out meets
        most hosts once. Raises FetchRefused for forbidden addresses or non-http(s) URLs,
        RemoteFetchFailed when no answer came, ValueError for a header with CR, LF or NUL.
        """
        if self._closed:
            raise RuntimeError("the delivery client is closed")
        target = _target(url)
        request = post_request(
            target.path,
            target.host,
            headers,
            body,
            user_agent=self._user_agent,
            keep_alive=keep_alive,
        )
        deadline = _Deadline(self.deadline)
        try:
            return await self._exchange(target, request, keep_alive, max_response_bytes)
        except asyncio.CancelledError:
            if deadline.expired():
                took = f"timed out after {self.deadline:g} s"
                raise RemoteFetchFailed(f"Posting to {url} {took}") from None
            raise
        except (OSError, httptools.HttpParserError) as exc:  # ssl.SSLError is an OSError
            raise RemoteFetchFailed(f"Could not post to {url}: {_explain(exc)}") from None
        finally:
            deadline.cancel()

    async def aclose(self) -> None:
        """Close every connection, idle or in use (a POST still waiting then fails)."""
        self._closed = True
        self._idle.clear()
        for connection in list(self._live):
            connection.abort()
        await asyncio.sleep(0)  # let the transports finish closing their sockets

    async def _exchange(
        self, target: _Target, request: bytes, keep_alive: bool, limit: int
    ) -> Answer:
        connection = self._idle.take(target.origin)
        if connection is not None:
            try:
                return await self._send(connection, target, request, keep_alive, limit)
            except OSError:
                if connection.heard:
                    raise
                # Not a byte came back: the peer closed it while it sat idle (its keep-alive
                # timeout ran out before ours). Once more on a new connection; inboxes ignore
                # an activity id they already have, should the first one have got through.
        connection = await self._connect(target)
        return await self._send(connection, target, request, keep_alive, limit)

    async def _send(
        self,
        connection: Connection,
        target: _Target,
        request: bytes,
        keep_alive: bool,
        limit: int,
    ) -> Answer:
        try:
            answer = await connection.exchange(request, limit)
        except BaseException:  # an error, the deadline, or the caller's cancellation
            connection.abort()
            raise
        # When every place is taken, a POST waiting for one needs it more than the pool does.
        if keep_alive and connection.reusable and not self._closed and not self._slots.locked():
            self._idle.put(target.origin, connection)
        else:
            connection.close()
        return answer

    async def _connect(self, target: _Target) -> Connection:
        scheme, host, port = target.origin
        addresses = await checked_addresses(
            host, port, allow_private=self._allow_private, resolve=self._resolve
        )
        while self._slots.locked() and self._idle.evict_oldest():
            pass  # an idle connection gives its place to one that is needed now
        await self._slots.acquire()
        if self._closed:
            self._slots.release()
            raise RuntimeError("the delivery client is closed")
        loop = asyncio.get_running_loop()
        connection = Connection(loop, self._forget)
        self._live.add(connection)
        tls = self._tls_context() if scheme == "https" else None
        failure = OSError(f"{host} has no address")
        try:
            for address in addresses:  # in the resolver's order: a dead IPv6 may leave IPv4
                try:
                    await loop.create_connection(
                        lambda: connection,
                        host=str(address),
                        port=port,
                        ssl=tls,
                        server_hostname=host if tls else None,
                    )
                    return connection
                except OSError as exc:
                    failure = exc
            raise failure
        except BaseException:
            connection.abort()
            raise

    def _forget(self, connection: Connection) -> None:
        """A connection closed: its place is free."""
        self._live.discard(connection)
        self._slots.release()

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = tls_context(self._verify)
        return self._tls


async def post_signed(
    client: DeliveryClient,
    url: str,
    body: bytes,
    signer: Signer,
    now: datetime,
    *,
    keep_alive: bool = True,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> Answer:
    """POST an activity to an inbox, signed per R36; redirects are returned, not followed.

    The answer carries at most `max_response_bytes` of the peer's body. Network failures raise
    RemoteFetchFailed (FetchRefused when the inbox is in forbidden space, which waiting will not
    fix); any HTTP status is returned for the caller to classify (core.retry).
    """
    signed = await sign_post(signer, url, body, now)
    return await client.post(
        signed.url,
        body,
        signed.headers,
        keep_alive=keep_alive,
        max_response_bytes=max_response_bytes,
    )


@dataclass(frozen=True, slots=True)
class SignedPost:
    """What to send: the URL exactly as signed, and the headers (Host, Date, Digest, Signature…)."""

    url: str
    headers: dict[str, str]


async def sign_post(signer: Signer, url: str, body: bytes, now: datetime) -> SignedPost:
    """Sign a POST of `body` to `url` (in the Signer's threads). The stored bytes are sent
    unchanged: the Digest covers them (INTEROP R36). Raises FetchRefused for a non-http(s) URL."""
    target = delivery_url(url)
    headers = await signer.sign("POST", target, {"Content-Type": ACTIVITY_JSON}, body, now)
    return SignedPost(target, headers)


# An http(s) URL already in the form it is sent in: a name (no userinfo, no IPv6 literal), a
# port, and a path and query of URL characters and well-formed %-escapes, no fragment.
_URL_CHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2}"
_SENDABLE = re.compile(
    rf"https?://[A-Za-z0-9.\-]+(?::[0-9]{{1,5}})?(?:/(?:{_URL_CHAR})*)?(?:\?(?:{_URL_CHAR}|\?)*)?"
)


def delivery_url(url: str) -> str:
    """`url` as it will be signed and sent: unchanged when it is already in sendable form (an
    inbox URL almost always is), else normalized by `http.outgoing_url` as fetches are.

    The shortcut matters: httpx's URL parser cost ~6 % of a fan-out's CPU.
    """
    if _SENDABLE.fullmatch(url):
        return url
    return str(outgoing_url(url))


class _IdlePool:
    """Idle keep-alive connections by origin, newest last, each closed after IDLE_SECONDS."""

    def __init__(self) -> None:
        self._idle: dict[Origin, list[tuple[Connection, asyncio.TimerHandle]]] = {}

    def take(self, origin: Origin) -> Connection | None:
        """The newest idle connection to `origin` that is still open, or None."""
        idle = self._idle.get(origin)
        while idle:
            connection = self._remove(origin, idle, -1)
            if connection.usable:
                return connection
            connection.close()
        return None

    def put(self, origin: Origin, connection: Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= IDLE_PER_ORIGIN:
            connection.close()
            return
        loop = asyncio.get_running_loop()
        idle.append((connection, loop.call_later(IDLE_SECONDS, self._expire, origin, connection)))

    def evict_oldest(self) -> bool:
        """Close an idle connection of the origin idle longest; False when there is none."""
        for origin, idle in self._idle.items():
            self._remove(origin, idle, 0).close()
            return True
        return False

    def clear(self) -> None:
        for idle in self._idle.values():
            for _connection, timer in idle:
                timer.cancel()
        self._idle.clear()

    def _expire(self, origin: Origin, connection: Connection) -> None:
        idle = self._idle.get(origin, [])
        for index, (held, _timer) in enumerate(idle):
            if held is connection:
                self._remove(origin, idle, index).close()
                return

    def _remove(
        self, origin: Origin, idle: list[tuple[Connection, asyncio.TimerHandle]], index: int
    ) -> Connection:
        connection, timer = idle.pop(index)
        if not idle:
            del self._idle[origin]
        timer.cancel()
        return connection


class _Deadline:
    """One timer that cancels the posting task when the time is up, whatever it awaits then
    (a free place, DNS, connecting, TLS, the answer). `asyncio.timeout` does the same for
    ~4 µs a POST against ~1.5 µs here (measured on uvloop), and a POST costs only ~0.1 ms."""

    __slots__ = ("_fired", "_task", "_timer")

    def __init__(self, seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None, "post() runs in a task"
        self._task = task
        self._fired = False
        self._timer = asyncio.get_running_loop().call_later(seconds, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def expired(self) -> bool:
        """Whether the CancelledError being handled is this deadline's, and no one else's."""
        return self._fired and self._task.uncancel() == 0

    def cancel(self) -> None:
        self._timer.cancel()


class _Target(NamedTuple):
    """Where a POST goes, from its URL."""

    origin: Origin
    host: str  # the Host header: the hostname, and the port when it is not the default
    path: str  # path and query, exactly as core.cavage.sign_request signs them


def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchRefused(f"Refusing to post to {url!r}: not a valid URL ({exc})") from None
    hostname = parts.hostname
    if parts.scheme not in ("http", "https") or not hostname:
        raise FetchRefused(f"Refusing to post to {url}: only http and https URLs are allowed")
    default = 443 if parts.scheme == "https" else 80
    port = default if port is None else port
    host = f"[{hostname}]" if ":" in hostname else hostname
    if port != default:
        host += f":{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target((parts.scheme, hostname, port), host, path)


def _explain(exc: BaseException) -> str:
    """The error for the owner's deliveries page (the resolver's own words when it failed)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
