"""Signing outgoing requests with the owner's key, off the event loop.

RSA-2048 signing costs ~0.3 ms and releases the GIL, so a small thread pool uses both cores
(DESIGN.md performance notes). The private key is parsed once, when the app starts.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from fedistream.core.httpsig import load_private_key, sign_request


class Signer:
    """Signs requests as `key_id` (our actor's #main-key). Close it to stop its threads."""

    def __init__(self, key_id: str, private_key_pem: str, *, threads: int = 2) -> None:
        self.key_id = key_id
        self._private_key: Any = load_private_key(private_key_pem)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sign")

    def sign_now(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, now: datetime
    ) -> dict[str, str]:
        """Synchronous signing (for code already off the loop, and for tests)."""
        payload = body if body is not None else b""  # a GET signs no Digest: nothing reads it
        return sign_request(method, url, headers, payload, self._private_key, self.key_id, now)

    async def sign(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, now: datetime
    ) -> dict[str, str]:
        """The headers to add (Host, Date, Digest for bodies, Signature), computed in a thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, self.sign_now, method, url, headers, body, now
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
