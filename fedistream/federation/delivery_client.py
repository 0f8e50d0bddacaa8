"""POSTing activities to inboxes: the fan-out's own HTTP client. Layer: federation (network edge).

Why not the httpx client that does every other request (federation/http.py): a fan-out is
thousands of small POSTs, and per POST httpx + httpcore + anyio cost 0.8–0.9 ms of event-loop
CPU where aiohttp costs 0.25–0.33 ms (bench/README.md, "Deliveries on aiohttp"). Once the
signature is made in the Signer's threads, that is most of what a delivery costs. Fetches stay
on httpx: they are few, follow redirects hop by hop and stream capped bodies.

The SSRF guard is the same rule as for fetches (`http.checked_addresses`): a resolver that
refuses forbidden addresses for names, and the same check for IP literals before the request
(aiohttp does not resolve those). aiohttp connects to exactly the addresses our resolver
returned, and TLS still verifies the certificate for the hostname. Proxies from the
environment are ignored, redirects are returned to the caller, never followed.

aiohttp is imported when the first delivery is made, not at start-up: it holds ~10 MiB that a
server which has not delivered anything yet does not need (issue 6 idle RSS).
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from fedistream.core.netsafety import parse_ip_literal
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
from fedistream.federation.signing import Signer

if TYPE_CHECKING:
    import aiohttp
    import aiohttp.abc

MAX_RESPONSE_BYTES = 64 * 1024  # an inbox's answer body: only kept for the delivery log
# Connections open at once: above the worker's MAX_CONCURRENCY (128, federation/delivery.py).
MAX_CONNECTIONS = 160


@dataclass(frozen=True, slots=True)
class Answer:
    """An inbox's answer: status, headers (lower-case names) and the start of its body."""

    status: int
    headers: Mapping[str, str]
    body: bytes  # at most the `max_response_bytes` asked for, as sent (not decompressed)


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
        self._allow_private = allow_private_networks
        self._user_agent = user_agent
        self._verify = verify
        self._resolve = resolve or system_resolve
        self.deadline = deadline
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
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

        `keep_alive=False` closes the connection after the answer: a fan-out meets most hosts
        once, and aiohttp would otherwise keep every one of them open until it idles out.
        Raises FetchRefused for forbidden addresses, RemoteFetchFailed when no answer came.
        """
        import yarl  # aiohttp's URL type, loaded with it

        target = yarl.URL(url, encoded=True)  # encoded: the path we signed is the path we send
        host = target.raw_host or ""
        if parse_ip_literal(host) is not None:  # aiohttp resolves no literal: check it here
            await checked_addresses(
                host, target.port or 0, allow_private=self._allow_private, resolve=self._resolve
            )
        session = self._open_session()
        sent = dict(headers)
        if not keep_alive:
            sent["Connection"] = "close"
        try:
            # The session's total timeout (self.deadline) covers connecting, sending and reading.
            async with session.post(
                target, data=body, headers=sent, allow_redirects=False
            ) as response:
                answer = await _read_up_to(response, max_response_bytes)
                return Answer(response.status, _header_map(response), answer)
        except FetchRefused:
            raise
        except TimeoutError:
            took = f"timed out after {self.deadline:g} s"
            raise RemoteFetchFailed(f"Posting to {url} {took}") from None
        except Exception as exc:
            if not _is_network_error(exc):
                raise
            raise RemoteFetchFailed(f"Could not post to {url}: {_explain(exc)}") from None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the delivery client is closed")
        if self._session is None:
            import aiohttp

            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,  # the worker keeps its own per-host limit
                resolver=_guarded_resolver(self._resolve, self._allow_private),
                ssl=tls_context(self._verify),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self._user_agent, "Accept-Encoding": "identity"},
                trust_env=False,  # an HTTP(S)_PROXY variable must not route around the guard
                auto_decompress=False,  # the body is only kept for the delivery log
                cookie_jar=aiohttp.DummyCookieJar(),  # inboxes' cookies mean nothing to us
                raise_for_status=False,
                timeout=aiohttp.ClientTimeout(total=self.deadline),
                skip_auto_headers=("Content-Type",),  # ours is signed; aiohttp must not add one
            )
        return self._session

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


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


def _guarded_resolver(resolve: Resolve, allow_private: bool) -> aiohttp.abc.AbstractResolver:
    """aiohttp's resolver over `checked_addresses` (defined here: aiohttp loads lazily)."""
    from aiohttp.abc import AbstractResolver, ResolveResult

    class GuardedResolver(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            addresses = await checked_addresses(
                host, port, allow_private=allow_private, resolve=resolve
            )
            return [
                ResolveResult(
                    hostname=host,
                    host=str(address),
                    port=port,
                    family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
                for address in addresses
            ]

        async def close(self) -> None:
            return None

    return GuardedResolver()


async def _read_up_to(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _header_map(response: aiohttp.ClientResponse) -> dict[str, str]:
    """Header names lower-cased; a repeated field's values joined with ", " (RFC 9110 5.3)."""
    merged: dict[str, str] = {}
    for name, value in response.headers.items():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


def _explain(exc: Exception) -> str:
    """The error for the owner's deliveries page: our resolver's own words when it refused."""
    cause = exc.__cause__
    if isinstance(cause, OSError) and str(cause) and not isinstance(cause, ssl.SSLError):
        return f"{type(exc).__name__}: {cause}"  # "cannot resolve …", not aiohttp's "[None]"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _is_network_error(exc: Exception) -> bool:
    import aiohttp

    return isinstance(exc, aiohttp.ClientError | OSError | ssl.SSLError)
