"""Rendered public HTML pages kept in memory, and conditional GET (ETag → 304) for them.

Web layer. A public page is a function of the database, the path and query, and the settings.
The validator is read in one query: the database's change counter on our reader connection
(SQLite's `data_version`, which moves on every commit by any other connection — our writer,
`fedistream post` in another process, inbox processing that changes like counts or replies)
plus `stream_version`. So a cached page is never served after anything was written, without
every write path having to remember to invalidate it. `data_version` is per connection, so the
ETag also carries a random per-process prefix: after a restart (the only way settings change)
every old ETag simply misses.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from fedistream.store import meta
from fedistream.web.context import context

MAX_ENTRIES = 256
MAX_BYTES = 8 * 1024 * 1024  # a page of 20 thoughts is ~20–60 KB: a few hundred pages at most
# Browsers and proxies may keep the page but must ask again (a cheap 304) before showing it.
CACHE_CONTROL = "public, no-cache"

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class _Entry:
    body: bytes
    media_type: str


class PageCache:
    """A bounded LRU of rendered pages (entries and total bytes)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._entries: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self.prefix = secrets.token_hex(4)  # data_version means nothing in another process

    def get(self, key: tuple[str, ...]) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: tuple[str, ...], entry: _Entry) -> None:
        if len(entry.body) > self._max_bytes // 4:
            return  # one huge page must not evict everything else
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._entries[key] = entry
        self._bytes += len(entry.body)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)

    def __len__(self) -> int:
        return len(self._entries)


def page_cache(request: Request) -> PageCache:
    """The app's cache, made on first use (one per process, like the app itself)."""
    state = request.app.state
    cache: PageCache | None = getattr(state, "page_cache", None)
    if cache is None:
        cache = PageCache()
        state.page_cache = cache
    return cache


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(c.strip().removeprefix("W/") == wanted for c in if_none_match.split(","))


def cached_page(handler: Endpoint) -> Endpoint:
    """Wrap a public HTML endpoint: 304 when the reader's copy is current, the stored body when
    this process rendered it since the last write, else render (and keep a 200)."""

    async def endpoint(request: Request) -> Response:
        ctx = context(request)
        cache = page_cache(request)
        stream, data = await meta.versions(ctx.db)
        # Settings only change with a restart, and a restart changes the prefix: no settings
        # digest needed (a digest of them would also be an oracle for the owner password).
        etag = f'W/"{cache.prefix}-{data}-{stream}"'
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        key = (request.url.path, request.url.query, etag)
        entry = cache.get(key)
        if entry is not None:
            return HTMLResponse(entry.body, headers=headers, media_type=entry.media_type)
        response = await handler(request)
        if response.status_code != 200 or not isinstance(response, HTMLResponse):
            return response
        cache.put(key, _Entry(bytes(response.body), response.media_type or "text/html"))
        response.headers.update(headers)
        return response

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint
