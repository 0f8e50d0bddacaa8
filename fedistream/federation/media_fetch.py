"""Fetching remote avatars and attachments into our own media cache (federation layer).

Pages never hot-link other servers' images (a reader's browser would tell them who reads what),
and never fetch while rendering: this worker takes `pending` rows of `remote_media`, GETs each
URL through the app's SSRF-safe client (federation/http.py: private addresses refused on every
hop), caps its size and type, has Pillow verify and re-encode it (metadata stripped, scaled to
fit 2048 px) and stores it as `<data_dir>/media/remote/<sha256-of-url>.<ext>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from fedistream.core.images import PreparedImage, prepare_image
from fedistream.core.timefmt import to_iso
from fedistream.errors import BadInput
from fedistream.federation.http import BadRemoteStatus, FetchRefused, RemoteFetchFailed
from fedistream.services import remote_media
from fedistream.store import remote_media as remote_media_store
from fedistream.store.db import Database

log = logging.getLogger("fedistream.media")

MAX_MEDIA_BYTES = 8 * 1024 * 1024
MAX_REDIRECTS = 3
DEADLINE = 30.0  # seconds for one image, redirects included
BOX = (2048, 2048)  # the same box as our own attachments
BATCH = 20
CONCURRENCY = 4  # images in flight at once
POLL_SECONDS = 30.0
# The catch-up scan for images nobody queued (whole tables: O(actors + reactions)) runs at
# start-up and then this rarely; running it on every wake-up made each inbox batch scan every
# reaction ever received (bench/README.md, inbox).
CATCH_UP_SECONDS = 600.0
MAX_TRIES = 3  # transient failures (timeouts, 5xx) before a URL is marked failed
RETRY_DELAY = 60.0  # seconds before a transient failure is tried again
ACCEPT = "image/webp,image/png,image/jpeg,image/gif;q=0.9,*/*;q=0.1"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Some servers label images generically; Pillow decides what the bytes really are.
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


class Unusable(RemoteFetchFailed):
    """Permanent: not an image, too large, refused address, or a 4xx. Never tried again."""


def _is_permanent(exc: RemoteFetchFailed) -> bool:
    if isinstance(exc, (Unusable, FetchRefused)):
        return True
    if isinstance(exc, BadRemoteStatus):
        return 400 <= exc.remote_status < 500 and exc.remote_status not in (408, 429)
    return False


def _url(value: str | httpx.URL) -> httpx.URL:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise Unusable(f"not a valid URL: {value!r} ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise Unusable(f"only http and https URLs are fetched: {value}")
    return url.copy_with(fragment=None)


async def _read_image(response: httpx.Response, max_bytes: int) -> bytes:
    status = response.status_code
    if not 200 <= status < 300:
        raise BadRemoteStatus(f"{response.url} answered HTTP {status}", remote_status=status)
    mime = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (mime.startswith("image/") or mime in _GENERIC_TYPES):
        raise Unusable(f"{response.url} answered Content-Type {mime!r}, not an image")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise Unusable(f"{response.url} is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # decoded: a gzip bomb is capped too
        size += len(chunk)
        if size > max_bytes:
            raise Unusable(f"{response.url} is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch_image_bytes(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int = MAX_MEDIA_BYTES,
    deadline: float = DEADLINE,
) -> bytes:
    """GET an image (unsigned: media is public), following at most MAX_REDIRECTS redirects,
    each hop checked again by the client's guard. Raises RemoteFetchFailed (Unusable when
    trying again would not help)."""
    current = _url(url)
    try:
        async with asyncio.timeout(deadline):
            for _hop in range(MAX_REDIRECTS + 1):
                request = client.build_request("GET", current, headers={"Accept": ACCEPT})
                response = await client.send(request, stream=True)
                try:
                    if response.status_code in _REDIRECTS:
                        location = response.headers.get("location")
                        if not location:
                            raise Unusable(f"{current} redirected without a Location")
                        current = _url(current.join(location))
                        continue
                    return await _read_image(response, max_bytes)
                finally:
                    await response.aclose()
    except TimeoutError:
        raise RemoteFetchFailed(f"fetching {url} took longer than {deadline:g} s") from None
    except httpx.HTTPError as exc:
        raise RemoteFetchFailed(f"could not fetch {url}: {type(exc).__name__} {exc}") from None
    raise Unusable(f"{url} redirected more than {MAX_REDIRECTS} times")


def _prepare(data: bytes) -> PreparedImage:
    try:
        return prepare_image(data, *BOX)
    except BadInput as exc:
        raise Unusable(f"not a usable image: {exc.public_message}") from exc


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader never sees half a file: write beside it, then rename over.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MediaFetcher:
    """Fills the remote media cache in the background; `run_once()` steps it in tests."""

    def __init__(
        self,
        db: Database,
        client: httpx.AsyncClient,
        media_dir: Path,
        *,
        now: Callable[[], datetime] = _utc_now,
        max_bytes: int = MAX_MEDIA_BYTES,
        poll_seconds: float = POLL_SECONDS,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self._db = db
        self._client = client
        self._media_dir = media_dir
        self._now = now
        self._max_bytes = max_bytes
        self._poll = poll_seconds
        self._retry_delay = retry_delay
        self._wake = asyncio.Event()
        self._stopping = False
        self._full_pass_done = False
        self._next_catch_up = 0.0  # monotonic time of the next catch-up scan
        # Transient failures in this process: url → (tries, monotonic time of the next try).
        self._backoff: dict[str, tuple[int, float]] = {}

    def wake(self) -> None:
        self._wake.set()

    async def fetch(self, url: str) -> str:
        """Fetch, check and store one URL; returns the stored file name. Raises
        RemoteFetchFailed."""
        data = await fetch_image_bytes(self._client, url, max_bytes=self._max_bytes)
        prepared = await asyncio.to_thread(_prepare, data)
        name = f"{remote_media.url_key(url)}.{prepared.extension}"
        folder = remote_media.remote_dir(self._media_dir)
        await asyncio.to_thread(_write_atomically, folder / name, prepared.data)
        await remote_media_store.mark_ok(
            self._db, url, name=name, mime_type=prepared.mime_type,
            size=len(prepared.data), now=to_iso(self._now()),
        )  # fmt: skip
        return name

    async def _fetch_recorded(self, url: str, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                await self.fetch(url)
                self._backoff.pop(url, None)
            except RemoteFetchFailed as exc:
                tries = self._backoff.get(url, (0, 0.0))[0] + 1
                if _is_permanent(exc) or tries >= MAX_TRIES:
                    self._backoff.pop(url, None)
                    await remote_media_store.mark_failed(
                        self._db, url, exc.public_message, to_iso(self._now())
                    )
                else:
                    self._backoff[url] = (tries, time.monotonic() + self._retry_delay * tries)
                log.info("remote media %s: %s", url, exc.public_message)

    async def run_once(self) -> int:
        """Fetch a batch of due URLs (queued by whoever stored the row naming them), after a
        catch-up scan at start-up and every CATCH_UP_SECONDS. Returns how many were tried."""
        now = time.monotonic()
        if now >= self._next_catch_up:
            async with self._db.transaction() as conn:
                await remote_media_store.discover(conn, posts=not self._full_pass_done)
            self._full_pass_done = True
            self._next_catch_up = now + CATCH_UP_SECONDS
        candidates = await remote_media_store.due(self._db, BATCH + len(self._backoff))
        urls = [u for u in candidates if self._backoff.get(u, (0, 0.0))[1] <= now][:BATCH]
        gate = asyncio.Semaphore(CONCURRENCY)
        await asyncio.gather(*(self._fetch_recorded(url, gate) for url in urls))
        return len(urls)

    async def run(self) -> None:
        while not self._stopping:
            try:
                if await self.run_once() >= BATCH:
                    continue
            except Exception:  # keep the loop alive; pending rows are tried again
                log.exception("remote media fetching failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
