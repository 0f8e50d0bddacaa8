"""Fetching from other servers: an SSRF-safe httpx client and signed GETs; the SSRF guard.

Layer: federation (network edge). Deliveries (signed POSTs) go through delivery_client.py,
which calls the same guard (`checked_addresses`). Every URL we fetch comes from a peer, so the
client resolves each host itself, refuses private/loopback/link-local/reserved addresses
(core.netsafety) unless the operator allows private networks, and connects to exactly the
address it checked — there is no second DNS lookup a rebinding attacker could answer
differently. TLS still verifies the certificate for the hostname. Errors::

    RemoteFetchFailed (errors.py)  unreachable, timeout, bad status, too large, not JSON…
     ├── FetchRefused              the URL or its address is not allowed (SSRF guard)
     └── BadRemoteStatus           the peer answered a non-2xx status (`remote_status`)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx

from fedistream.core.netsafety import IPAddress, ip_address, is_forbidden_address, parse_ip_literal
from fedistream.errors import RemoteFetchFailed
from fedistream.federation.signing import Signer

ACTIVITY_JSON = "application/activity+json"
AS2_PROFILE = "https://www.w3.org/ns/activitystreams"
# R37/R92: what we ask for when fetching ActivityStreams (Misskey's wording, profile quoted).
AS2_ACCEPT = f'application/activity+json, application/ld+json; profile="{AS2_PROFILE}"'
JRD_ACCEPT = "application/jrd+json, application/json"  # R4: what Mastodon sends to WebFinger
MAX_BYTES = 1024 * 1024  # R16: Mastodon refuses documents over 1 MiB, so do we
DEADLINE = 30.0  # seconds for a whole fetch, redirects included: a slow drip cannot hold us
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

Resolve = Callable[[str, int], Awaitable[list[IPAddress]]]
Clock = Callable[[], datetime]

__all__ = [
    "AS2_ACCEPT",
    "JRD_ACCEPT",
    "BadRemoteStatus",
    "FetchRefused",
    "Fetched",
    "RemoteFetchFailed",
    "build_http_client",
    "checked_addresses",
    "fetch_document",
    "fetch_json",
    "outgoing_url",
    "system_resolve",
    "tls_context",
]


class FetchRefused(RemoteFetchFailed):
    """We will not send this request: non-http(s) URL, or an address in forbidden space."""


class BadRemoteStatus(RemoteFetchFailed):
    """The peer answered, but not with success; `remote_status` is its HTTP status."""

    def __init__(self, public_message: str, *, remote_status: int) -> None:
        super().__init__(public_message)
        self.remote_status = remote_status


# --- the guarded connection ------------------------------------------------------------------


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """The host's addresses from the system resolver, in the order it prefers them."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = ip_address(str(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


async def checked_addresses(
    host: str, port: int, *, allow_private: bool, resolve: Resolve, limit: float | None = None
) -> list[IPAddress]:
    """The addresses `host` may be reached at — the SSRF guard every outgoing client shares.

    Raises FetchRefused when any of them is forbidden (unless `allow_private`), TimeoutError
    when resolving takes longer than `limit` seconds, OSError when the name does not resolve.
    """
    literal = parse_ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            async with asyncio.timeout(limit):
                addresses = await resolve(host, port)
        except TimeoutError:
            raise
        except OSError as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise OSError(f"{host} has no address")
    if not allow_private:
        # Refuse the host if ANY address is forbidden: a public name that also points into
        # our network is an attack or a misconfiguration, never a peer.
        for address in addresses:
            if is_forbidden_address(address):
                shown = host if literal is not None else f"{host} ({address})"
                raise FetchRefused(
                    f"Refusing to connect to {shown}: a private, loopback, link-local "
                    "or reserved address"
                )
    return addresses


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer with the SSRF check in front of every TCP connect.

    httpcore asks us to connect to the URL's hostname (so the pool keys connections by
    hostname, and TLS uses it for SNI and certificate checks); we resolve it, check every
    address and hand the inner backend the checked IP.
    """

    def __init__(
        self, inner: httpcore.AsyncNetworkBackend, *, allow_private: bool, resolve: Resolve
    ):
        self._inner = inner
        self._allow_private = allow_private
        self._resolve = resolve

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await checked_addresses(
                host, port, allow_private=self._allow_private, resolve=self._resolve, limit=timeout
            )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        failure: Exception | None = None
        for address in addresses:  # a host with a dead IPv6 address may still answer on IPv4
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefused("Refusing to connect to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class SafeTransport(httpx.AsyncBaseTransport):
    """Wraps httpx's own transport: only http(s) URLs, and connections through the guard."""

    def __init__(self, inner: httpx.AsyncHTTPTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in ("http", "https"):
            raise FetchRefused(f"Refusing to fetch {request.url}: only http and https are allowed")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _guarded_http_transport(
    *, ssl_context: ssl.SSLContext, limits: httpx.Limits, backend: _GuardedBackend
) -> httpx.AsyncHTTPTransport:
    # httpx 0.28 has no public way to give its transport a network backend, so we replace the
    # connection pool it built with an identical one that has ours. Should httpx ever rename
    # `_pool`, fail here at start-up instead of silently running without the guard.
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits)
    if type(getattr(transport, "_pool", None)) is not httpcore.AsyncConnectionPool:
        raise RuntimeError("httpx internals changed: cannot install the SSRF-guarded backend")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )
    return transport


# `httpx.Limits()` means *unlimited*: the pool then keeps every connection of a fan-out and scans
# them all on each request (quadratic in the number of hosts; measured in bench/README.md).
# Connections above the worker's 96 in flight are never needed; few are worth keeping idle:
# a fan-out meets each host once, and httpcore polls every idle socket on every request.
DEFAULT_LIMITS = httpx.Limits(max_connections=128, max_keepalive_connections=8)


def tls_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    """The TLS settings of every outgoing client: certifi's CAs (as httpx), or the test's own."""
    return verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)


def build_http_client(
    *,
    allow_private_networks: bool,
    user_agent: str,
    timeout: float = 10.0,
    verify: ssl.SSLContext | bool = True,
    resolve: Resolve | None = None,
    limits: httpx.Limits | None = None,
) -> httpx.AsyncClient:
    """The app's one outgoing client. Close it with `await client.aclose()`.

    `allow_private_networks` is the dev/test switch (loopback peers). `verify` and `resolve`
    exist for tests: a private CA, and a fake DNS. Redirects are never followed automatically:
    `fetch_json` follows them itself, re-checking and re-signing each hop.
    """
    ssl_context = tls_context(verify)
    backend = _GuardedBackend(
        httpcore.AnyIOBackend(),
        allow_private=allow_private_networks,
        resolve=resolve or system_resolve,
    )
    inner = _guarded_http_transport(
        ssl_context=ssl_context, limits=limits or DEFAULT_LIMITS, backend=backend
    )
    return httpx.AsyncClient(
        transport=SafeTransport(inner),
        headers={"User-Agent": user_agent},
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,  # an HTTP(S)_PROXY variable must not route around the guard
    )


# --- fetching -------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    if not content_type:
        return "", {}
    mime, *rest = content_type.split(";")
    params: dict[str, str] = {}
    for item in rest:
        name, _, value = item.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return mime.strip().lower(), params


def is_as2_content_type(content_type: str | None) -> bool:
    """R16/R92: activity+json, or ld+json whose profile names ActivityStreams (Mastodon's test)."""
    mime, params = _media_type(content_type)
    if mime == ACTIVITY_JSON:
        return True
    return mime == "application/ld+json" and AS2_PROFILE in params.get("profile", "").split()


def is_json_content_type(content_type: str | None) -> bool:
    """Any JSON: application/json, jrd+json (WebFinger), activity+json…"""
    mime, _ = _media_type(content_type)
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def outgoing_url(url: str | httpx.URL) -> httpx.URL:
    """`url` parsed and normalized as it will be requested (and signed): http(s) only."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchRefused(f"Refusing to fetch {url!r}: not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchRefused(f"Refusing to fetch {url}: only http and https URLs are allowed")
    return parsed.copy_with(fragment=None)  # never sent; must not end up in what we sign


async def _send_get(
    client: httpx.AsyncClient,
    url: httpx.URL,
    *,
    accept: str,
    signer: Signer | None,
    now: Clock,
    sign_query: bool = True,
) -> httpx.Response:
    headers = {"Accept": accept}
    if signer is not None:
        # R37: `(request-target) host date`, query included; GoToSocial-style peers that
        # answer 401 get a second try signed over the bare path (sign_query=False).
        signed_url = url if sign_query else url.copy_with(query=None)
        headers.update(await signer.sign("GET", str(signed_url), headers, None, now()))
    request = client.build_request("GET", url, headers=headers)
    return await client.send(request, stream=True)


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RemoteFetchFailed(f"{response.url} is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    # aiter_bytes yields decoded bytes, so a gzip bomb is capped by what it expands to.
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise RemoteFetchFailed(f"{response.url} is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def _as_fetch_failures(url: str | httpx.URL, deadline: float) -> Any:
    """httpx's and asyncio's errors, said as RemoteFetchFailed (FetchRefused passes through)."""
    try:
        yield
    except TimeoutError:
        raise RemoteFetchFailed(f"Fetching {url} took longer than {deadline:g} s") from None
    except httpx.TimeoutException as exc:
        raise RemoteFetchFailed(f"Fetching {url} timed out ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise RemoteFetchFailed(f"Could not fetch {url}: {detail}") from None


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched JSON object and the URL that finally served it (after redirects)."""

    url: str
    document: dict[str, Any]


async def fetch_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    signer: Signer | None,
    accept: str = AS2_ACCEPT,
    max_bytes: int = MAX_BYTES,
    max_redirects: int = 3,
    expect_as2: bool = True,
    now: Clock = _utc_now,
    deadline: float = DEADLINE,
) -> dict[str, Any]:
    """GET `url` (signed when `signer` is given) and return its JSON object.

    Redirects (at most `max_redirects`) are followed here, each hop re-signed (R39) and its
    address checked again by the transport. With `expect_as2` the answer must be AS2 JSON
    (R16/R92); otherwise any JSON type will do (WebFinger's jrd+json). Raises
    RemoteFetchFailed (FetchRefused, BadRemoteStatus) with a message fit for a log or a peer.
    """
    fetched = await fetch_document(
        client,
        url,
        signer=signer,
        accept=accept,
        max_bytes=max_bytes,
        max_redirects=max_redirects,
        expect_as2=expect_as2,
        now=now,
        deadline=deadline,
    )
    return fetched.document


async def fetch_document(
    client: httpx.AsyncClient,
    url: str,
    *,
    signer: Signer | None,
    accept: str = AS2_ACCEPT,
    max_bytes: int = MAX_BYTES,
    max_redirects: int = 3,
    expect_as2: bool = True,
    now: Clock = _utc_now,
    deadline: float = DEADLINE,
) -> Fetched:
    """`fetch_json`, also telling which URL served the document: a document only speaks
    for its own origin, and a redirect (an open redirect, say) may have moved it elsewhere."""
    current = outgoing_url(url)
    with _as_fetch_failures(url, deadline):
        async with asyncio.timeout(deadline):
            for _hop in range(max_redirects + 1):
                response = await _send_get(client, current, accept=accept, signer=signer, now=now)
                try:
                    if response.status_code == 401 and signer is not None and current.query:
                        await response.aclose()
                        response = await _send_get(
                            client,
                            current,
                            accept=accept,
                            signer=signer,
                            now=now,
                            sign_query=False,
                        )
                    if response.status_code in _REDIRECTS:
                        current = _redirect_target(current, response)
                        continue
                    body = await _checked_body(response, max_bytes, expect_as2)
                finally:
                    await response.aclose()
                return Fetched(str(current), _json_object(current, body))
    raise RemoteFetchFailed(f"Fetching {url} redirected more than {max_redirects} times")


def _redirect_target(current: httpx.URL, response: httpx.Response) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise RemoteFetchFailed(f"{current} redirected ({response.status_code}) without a Location")
    return outgoing_url(current.join(location))


async def _checked_body(response: httpx.Response, max_bytes: int, expect_as2: bool) -> bytes:
    status = response.status_code
    if not 200 <= status < 300:
        raise BadRemoteStatus(f"{response.url} answered HTTP {status}", remote_status=status)
    content_type = response.headers.get("content-type")
    if expect_as2 and not is_as2_content_type(content_type):
        raise RemoteFetchFailed(
            f"{response.url} answered Content-Type {content_type!r}, not ActivityStreams JSON"
        )
    if not expect_as2 and not is_json_content_type(content_type):
        raise RemoteFetchFailed(f"{response.url} answered Content-Type {content_type!r}, not JSON")
    return await _read_capped(response, max_bytes)


def _json_object(url: httpx.URL, body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RemoteFetchFailed(f"{url} answered invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RemoteFetchFailed(f"{url} answered JSON that is not an object")
    return document
