"""What the hostile suite shares: a whole-database snapshot (to prove "nothing stored" and "no
partial write"), the app's own route list (so new routes are covered without editing a test),
and the real app served by uvicorn on loopback in a thread (for real sockets: slow bodies,
real Chromium).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from fedistream.store.db import Database
from fedistream.web.context import WebContext

T = TypeVar("T")

# The remote-actor cache is refreshed whenever a signer's key is looked up (even for a request
# that is then refused): a cache, not something a peer stored. Every other table counts.
CACHE_TABLES = frozenset({"actors"})


async def snapshot(db: Database, *, skip: frozenset[str] = CACHE_TABLES) -> dict[str, list[Any]]:
    """Every row of every table (FTS shadow tables included), sorted: equal snapshots mean the
    database holds exactly the same data."""
    tables = await db.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    )
    found: dict[str, list[Any]] = {}
    for row in tables:
        name = row["name"]
        if name in skip or name.startswith("posts_fts"):  # FTS mirrors `posts`; shadow tables
            continue  # hold segment blobs whose layout changes with merges, not content
        rows = await db.fetchall(f'SELECT * FROM "{name}"')  # noqa: S608 (our own table names)
        found[name] = sorted((tuple(r) for r in rows), key=repr)
    return found


def diff(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> dict[str, Any]:
    """What changed, table by table (for assertion messages)."""
    changed: dict[str, Any] = {}
    for table in sorted(set(before) | set(after)):
        old, new = before.get(table, []), after.get(table, [])
        if old != new:
            changed[table] = {
                "added": [r for r in new if r not in old][:3],
                "removed": [r for r in old if r not in new][:3],
            }
    return changed


def routes_with(app: Any, method: str, prefix: str = "/") -> list[str]:
    """Every path (with its {params}) the app routes `method` to, under `prefix`."""
    return sorted(
        {
            route.path
            for route in app.routes
            if isinstance(route, Route)
            and route.path.startswith(prefix)
            and method in (route.methods or ())
        }
    )


# --- the real app on a real socket ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServedApp:
    """`build_app(...)` under uvicorn in a background thread; `call` runs a coroutine function on
    the server's event loop (where its database connections live)."""

    app: Starlette
    port: int
    loop: asyncio.AbstractEventLoop

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ctx(self) -> WebContext:
        ctx: WebContext = self.app.state.ctx
        return ctx

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result(timeout=30)


@contextmanager
def served(
    app: Starlette, *, port: int | None = None, start_timeout: float = 20.0
) -> Iterator[ServedApp]:
    """Serve `app` (lifespan on, as production runs it) on 127.0.0.1 until the block ends.
    Pass `port` when the app's base URL must name it."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start the app")
        time.sleep(0.02)
    try:
        yield ServedApp(app, port, loop)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        loop.close()
