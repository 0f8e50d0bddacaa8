"""A scriptable fake peer for network-edge tests: a tiny ASGI app under uvicorn on 127.0.0.1.

Tests register what each path answers and read back every request the peer received (method,
target, headers, body), so signatures can be verified exactly as a real peer would.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]
AS2 = "application/activity+json"


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    target: str  # raw path and query, as the signature covers it
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Peer:
    """Routes by exact path. `base` is set once the server listens."""

    base: str = ""
    routes: dict[str, Handler] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def json(self, path: str, document: Any, *, content_type: str = AS2, status: int = 200) -> None:
        body = json.dumps(document).encode()

        async def answer(_request: Request) -> Response:
            return Response(body, status_code=status, media_type=content_type)

        self.routes[path] = answer

    def status(self, path: str, status: int, headers: dict[str, str] | None = None) -> None:
        async def answer(_request: Request) -> Response:
            return Response(b"", status_code=status, headers=headers)

        self.routes[path] = answer

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        request = Request(scope, receive)
        body = await request.body()
        query = scope.get("query_string", b"")
        target = (scope["raw_path"] + (b"?" + query if query else b"")).decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        self.seen.append(Seen(scope["method"], target, headers, body))
        handler = self.routes.get(scope["path"])
        response = await handler(request) if handler else Response(b"not here", status_code=404)
        await response(scope, receive, send)


@asynccontextmanager
async def serve(
    app: Any, *, certfile: Path | None = None, keyfile: Path | None = None
) -> AsyncIterator[int]:
    """Run `app` on 127.0.0.1 (a free port, https when a cert is given); yields the port."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # surface the start-up error
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def running_peer() -> AsyncIterator[Peer]:
    peer = Peer()
    async with serve(peer) as port:
        peer.base = f"http://127.0.0.1:{port}"
        yield peer


@asynccontextmanager
async def tls_peer(peer: Peer, ca: Any, work_dir: Path, cert_for: str) -> AsyncIterator[int]:
    """Serve `peer` over https with a certificate for `cert_for` issued by `ca` (a trustme.CA);
    yields the port. Trust it with `ca.configure_trust(ssl_context)`."""
    pem = work_dir / f"{cert_for}.pem"
    ca.issue_cert(cert_for).private_key_and_cert_chain_pem.write_to_path(str(pem))
    async with serve(peer, certfile=pem, keyfile=pem) as port:
        yield port


@functools.cache
def rsa_key_pair() -> tuple[str, str]:
    """(private PEM, public PEM): one 2048-bit key per test run, as peers generate them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public
