"""The web UI, the delivery worker and another process writing one SQLite file at once.

A real `fedistream serve` process with 60 followers on a loopback sink: every thought queues 60
deliveries that its worker sends and records while, at the same time, four owners publish
through the UI over HTTP, two shells run `fedistream post` (a second process writing the same
file), and a reader walks the public pages. Bounded in count (40 + 8 thoughts) and time. No
request may fail, no command may fail, and neither the server's log nor the commands' output
may mention a locked database or any OperationalError.
"""

from __future__ import annotations

import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.federation.sink import Sink, free_ports, seed_followers
from tests.live import OWNER_PASSWORD, LiveServer, OwnerBrowser, _server_env, running_server
from tests.live import wait_until as wait_for

FEDERATION_ENV = {"FEDISTREAM_ALLOW_PRIVATE_NETWORKS": "true"}
DB_NAME = "fedistream.sqlite3"
FOLLOWERS = 60
SINK_HOSTS = 6
OWNERS = 4
POSTS_PER_OWNER = 10
SHELLS = 2
POSTS_PER_SHELL = 4
LIMIT_S = 120.0
TROUBLE = ("database is locked", "OperationalError", "Traceback")


def _owner_publishes(server: LiveServer, n: int) -> list[tuple[int, float, str]]:
    """(status, seconds, location) per publish, through the real owner UI."""
    owner = OwnerBrowser(server)
    results = []
    try:
        owner.log_in()
        for k in range(POSTS_PER_OWNER):
            begun = time.monotonic()
            response = owner.submit(
                "/admin",
                "/admin/posts",
                {"source": f"Owner {n}, thought {k}: #contention", "action": "publish"},
            )
            status = response.status_code  # type: ignore[attr-defined]
            location = response.headers.get("location", "")  # type: ignore[attr-defined]
            results.append((status, time.monotonic() - begun, location))
    finally:
        owner.close()
    return results


def _shell_posts(server: LiveServer, n: int) -> list[subprocess.CompletedProcess[str]]:
    env = _server_env(server.data_dir, server.port, OWNER_PASSWORD, FEDERATION_ENV)
    return [
        subprocess.run(
            [sys.executable, "-m", "fedistream.cli", "post", f"Shell {n}, thought {k}."],
            env=env,
            cwd=server.data_dir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for k in range(POSTS_PER_SHELL)
    ]


class Reader(threading.Thread):
    """Walks the public pages until stopped; keeps every status it saw."""

    def __init__(self, server: LiveServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.statuses: dict[int, int] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        paths = ["/", "/feed.xml", "/tags/contention", "/search?q=thought", "/feed.json"]
        started = time.monotonic()
        with httpx.Client(base_url=self.server.base_url, timeout=10, trust_env=False) as http:
            while not self.stopping.is_set() and time.monotonic() - started < LIMIT_S:
                for path in paths:
                    status = http.get(path).status_code
                    self.statuses[status] = self.statuses.get(status, 0) + 1


def _count(data_dir: Path, sql: str) -> int:
    conn = sqlite3.connect(data_dir / DB_NAME, timeout=10)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def test_ui_worker_and_cli_write_at_once_without_locking_errors(tmp_path: Path) -> None:
    *sink_ports, port = free_ports(SINK_HOSTS + 1)
    sink = Sink(tmp_path / "sink", ports=sink_ports)
    data_dir = tmp_path / "a" / "data"
    seed_followers(data_dir / DB_NAME, [sink.inbox(n) for n in range(FOLLOWERS)])
    sink.start(delay_ms=5)
    try:
        with running_server(
            tmp_path / "a", data_dir=data_dir, port=port, extra_env=FEDERATION_ENV
        ) as a:
            reader = Reader(a)
            reader.start()
            started = time.monotonic()
            with ThreadPoolExecutor(OWNERS + SHELLS) as pool:
                owners = [pool.submit(_owner_publishes, a, n) for n in range(OWNERS)]
                shells = [pool.submit(_shell_posts, a, n) for n in range(SHELLS)]
                published = [r for f in owners for r in f.result(timeout=LIMIT_S)]
                commands = [c for f in shells for c in f.result(timeout=LIMIT_S)]
            writing_s = time.monotonic() - started
            thoughts = OWNERS * POSTS_PER_OWNER + SHELLS * POSTS_PER_SHELL
            wait_for(
                lambda: (
                    _count(data_dir, "SELECT count(*) FROM deliveries WHERE state = 'sent'")
                    == thoughts * FOLLOWERS
                ),
                "every delivery of every thought to be sent and recorded",
                timeout=60,
            )
            drained_s = time.monotonic() - started
            reader.stopping.set()
            reader.join(15)
            output = a.output()
    finally:
        sink.stop()

    latencies = sorted(seconds for _, seconds, _ in published)
    print(
        f"\n{OWNERS} owners × {POSTS_PER_OWNER} UI thoughts + {SHELLS} shells × "
        f"{POSTS_PER_SHELL} `fedistream post`, each to {FOLLOWERS} followers: written in "
        f"{writing_s:.1f} s, all {thoughts * FOLLOWERS} deliveries recorded after "
        f"{drained_s:.1f} s; UI publish p50 {1000 * statistics.median(latencies):.0f} ms, max "
        f"{1000 * latencies[-1]:.0f} ms; reader statuses {reader.statuses}"
    )
    assert [status for status, _, _ in published] == [303] * OWNERS * POSTS_PER_OWNER
    assert all("/admin/posts/" in loc or "/p/" in loc for _, _, loc in published)
    for command in commands:
        assert command.returncode == 0, command.stderr
        assert not any(word in command.stderr for word in TROUBLE), command.stderr
    assert set(reader.statuses) == {200}, reader.statuses
    assert not [word for word in TROUBLE if word in output], output[-3000:]
    assert _count(data_dir, "SELECT count(*) FROM posts WHERE deleted_at IS NULL") == thoughts
    assert _count(data_dir, "SELECT count(*) FROM deliveries") == thoughts * FOLLOWERS
