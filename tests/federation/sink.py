"""A loopback receiving server for delivery tests and benchmarks: many inboxes, one log file.

`Sink` starts `python -m tests.federation.sink CONFIG` as a child process: a bare ASGI app under
uvicorn listening on one or more 127.0.0.1 ports (each port counts as its own host to the
delivery worker, so one sink can stand in for many peers). Every POST is answered with the
configured status (202 by default) after an optional delay, and one line is appended to the log
file: when, which host and inbox path, the activity id, the status answered and whether the
request carried a Signature and a Digest. The log is a file, not memory, so it survives the sink
being stopped and started again ("the receiving server was down"), and the parent reads it
without asking the sink anything while it is under load.

Control: `start(status=…, delay_ms=…, retry_after=…)`, `set_mode(...)` while running (a POST to
`/_sink/mode`), `stop()` (the ports then refuse connections, as a server that is down does).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
CONTROL_PREFIX = "/_sink/"

# --- the log -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One request the sink answered."""

    at: float  # time.time() when the answer was sent (after any delay)
    host: str  # "127.0.0.1:PORT"
    path: str
    activity_id: str  # "-" when the body was not a JSON object with an id
    status: int
    signed: bool  # had both a Signature and a Digest header

    @property
    def inbox(self) -> str:
        return f"http://{self.host}{self.path}"

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300


def _format(record: Record) -> bytes:
    return (
        f"{record.at:.6f}\t{record.host}\t{record.path}\t{record.activity_id}\t"
        f"{record.status}\t{int(record.signed)}\n"
    ).encode()


def read_log(path: Path) -> list[Record]:
    """Every complete line of a sink log (a line being written right now is left for later)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    records = []
    for line in data.decode("utf-8", "replace").split("\n")[:-1]:  # last piece: "" or partial
        at, host, path_, activity_id, status, signed = line.split("\t")
        records.append(Record(float(at), host, path_, activity_id, int(status), signed == "1"))
    return records


def count_lines(path: Path) -> int:
    """How many requests the sink has answered so far (cheap enough to poll every few ms)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


# --- the server (runs in the child process) ------------------------------------------------


@dataclass(slots=True)
class Mode:
    """What every inbox answers. `retry_after` is sent as a header when set."""

    status: int = 202
    delay_ms: float = 0.0
    retry_after: str | None = None


@dataclass(slots=True)
class SinkConfig:
    ports: list[int]
    log: str
    mode: Mode = field(default_factory=Mode)

    def dump(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def load(cls, text: str) -> SinkConfig:
        raw = json.loads(text)
        return cls(ports=list(raw["ports"]), log=raw["log"], mode=Mode(**raw["mode"]))


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _activity_id(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return "-"
    value = document.get("id") if isinstance(document, dict) else None
    # Tabs and newlines would break the log's line format; ids never legitimately hold them.
    return value if isinstance(value, str) and value and not set(value) & {"\t", "\n"} else "-"


class SinkApp:
    """The ASGI app: a bare callable (no framework), so the sink stays cheap under load."""

    def __init__(self, mode: Mode, log_fd: int) -> None:
        self.mode = mode
        self._log_fd = log_fd

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; nothing else is expected
        body = await _read_body(receive)
        path: str = scope["path"]
        if path.startswith(CONTROL_PREFIX):
            await self._control(path, body, send)
            return
        if scope["method"] != "POST":
            await _answer(send, 405)
            return
        mode = self.mode  # a mode change mid-request does not split one answer in two
        if mode.delay_ms:
            await asyncio.sleep(mode.delay_ms / 1000)
        names = {name for name, _ in scope["headers"]}
        server_host, server_port = scope["server"]
        record = Record(
            at=time.time(),
            host=f"{server_host}:{server_port}",
            path=path,
            activity_id=_activity_id(body),
            status=mode.status,
            signed=b"signature" in names and b"digest" in names,
        )
        # One write() on an O_APPEND descriptor: whole lines, in order, even across restarts.
        # Written before answering, so a request that got an answer is always in the log.
        os.write(self._log_fd, _format(record))
        headers = [(b"retry-after", mode.retry_after.encode())] if mode.retry_after else []
        await _answer(send, mode.status, headers)

    async def _control(self, path: str, body: bytes, send: Any) -> None:
        if path == CONTROL_PREFIX + "health":
            await _answer(send, 200)
        elif path == CONTROL_PREFIX + "mode":
            self.mode = Mode(**json.loads(body))
            await _answer(send, 204)
        else:
            await _answer(send, 404)


async def _answer(send: Any, status: int, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", b"0"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # The same port is bound again after a stop, while old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(config: SinkConfig) -> None:
    import uvicorn

    log_fd = os.open(config.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    app = SinkApp(config.mode, log_fd)
    server = uvicorn.Server(
        # loop/http "auto": uvloop and httptools when installed, as `fedistream serve` uses.
        uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning", backlog=2048)
    )
    server.run(sockets=[_listen(port) for port in config.ports])


# --- followers whose inboxes are on the sink ------------------------------------------------


def seed_followers(
    db_path: Path, inboxes: Sequence[str], *, now: str = "2025-01-01T00:00:00Z"
) -> None:
    """Make each inbox an accepted follower's personal inbox, straight in A's SQLite file.

    This stands in for one Follow handshake per follower (a real handshake needs an actor
    document, a signed Follow and an Accept each; the two-server test covers that path): the
    rows are what the inbox processor would have stored — an `actors` row with a personal
    `inbox` and no `shared_inbox` (so every follower is its own delivery), and an accepted
    `followers` row. Run it before the server starts; the schema is created if missing.
    """
    from fedistream.store.db import Database

    async def migrate() -> None:
        await (await Database.open(db_path)).close()

    asyncio.run(migrate())
    actors, followers = [], []
    for n, inbox in enumerate(inboxes):
        actor_id = inbox.removesuffix("/inbox")
        host = actor_id.split("/")[2]
        document = {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": actor_id,
            "type": "Person",
            "preferredUsername": f"f{n}",
            "inbox": inbox,
        }
        actors.append(
            (actor_id, "Person", inbox, None, f"{actor_id}#main-key", None, f"f{n}",
             host, f"Follower {n}", actor_id, None, None, json.dumps(document), now)
        )  # fmt: skip
        followers.append((actor_id, f"{actor_id}/follows/{n}", "accepted", now))
    with sqlite3.connect(db_path) as conn:
        conn.executemany(
            "INSERT INTO actors (id, type, inbox, shared_inbox, key_id, public_key_pem, username, "
            "domain, name, url, icon_url, summary, json, fetched_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            actors,
        )
        conn.executemany(
            "INSERT INTO followers (actor_id, follow_id, state, created_at) VALUES (?, ?, ?, ?)",
            followers,
        )
    conn.close()


# --- the parent's handle -------------------------------------------------------------------


LOWEST_PORT = 10_000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free now, taken below the ephemeral range.

    Below it, because every outgoing connection on the machine takes its local port from that
    range: a port picked there can be grabbed by someone's connect() before the sink binds it
    (with 2,000 ports and busy neighbours, that happens). All are held at once while picking.
    """
    top = _ephemeral_start()
    if top - LOWEST_PORT < 4 * count:
        raise RuntimeError(f"not enough ports below the ephemeral range ({top}) for {count}")
    held: dict[int, socket.socket] = {}
    try:
        for port in random.sample(range(LOWEST_PORT, top), k=min(top - LOWEST_PORT, 4 * count)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            held[port] = sock
            if len(held) == count:
                return list(held)
        raise RuntimeError(f"could not find {count} free ports")
    finally:
        for sock in held.values():
            sock.close()


class Sink:
    """A sink child process with fixed ports, so inbox URLs are known before it first starts."""

    def __init__(
        self, work_dir: Path, *, hosts: int = 1, ports: Sequence[int] | None = None
    ) -> None:
        """`hosts` free ports are picked now, or pass `ports` (picked together with a port for
        the server under test, so a port the sink has not bound yet is not handed out twice)."""
        work_dir.mkdir(parents=True, exist_ok=True)
        self.ports = list(ports) if ports is not None else free_ports(hosts)
        self.log_path = work_dir / "sink.log"
        self._config_path = work_dir / "sink.json"
        self._output_path = work_dir / "sink.out"
        self.process: subprocess.Popen[bytes] | None = None

    def host(self, n: int) -> str:
        return f"127.0.0.1:{self.ports[n % len(self.ports)]}"

    def inbox(self, n: int) -> str:
        """Inbox number n: a distinct path, on host n mod hosts."""
        return f"http://{self.host(n)}/users/f{n}/inbox"

    def url(self, path: str) -> str:
        return f"http://{self.host(0)}{path}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(
        self, *, status: int = 202, delay_ms: float = 0, retry_after: str | None = None
    ) -> None:
        if self.running:
            raise RuntimeError("the sink is already running")
        config = SinkConfig(self.ports, str(self.log_path), Mode(status, delay_ms, retry_after))
        self._config_path.write_text(config.dump())
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with self._output_path.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.federation.sink", str(self._config_path)],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        # Every socket is listening before uvicorn serves any: one answer means all are up.
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sink did not start:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    def set_mode(
        self, *, status: int = 202, delay_ms: float = 0, retry_after: str | None = None
    ) -> None:
        body = json.dumps(asdict(Mode(status, delay_ms, retry_after))).encode()
        request = urllib.request.Request(self.url(CONTROL_PREFIX + "mode"), data=body)
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
            assert response.status == 204

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url(CONTROL_PREFIX + "health"), timeout=1) as r:  # noqa: S310
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def output(self) -> str:
        if not self._output_path.exists():
            return ""
        return self._output_path.read_text("utf-8", errors="replace")

    def records(self) -> list[Record]:
        return read_log(self.log_path)

    def count(self) -> int:
        return count_lines(self.log_path)

    def delivered(self, activity_id: str | None = None) -> Counter[str]:
        """Inbox URL → how many times it accepted (2xx) the activity (any activity if None)."""
        return Counter(
            r.inbox
            for r in self.records()
            if r.delivered and (activity_id is None or r.activity_id == activity_id)
        )


@contextmanager
def running_sink(work_dir: Path, *, hosts: int = 1, **mode: Any) -> Iterator[Sink]:
    sink = Sink(work_dir, hosts=hosts)
    sink.start(**mode)
    try:
        yield sink
    finally:
        sink.stop()


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        serve(SinkConfig.load(Path(sys.argv[1]).read_text()))
