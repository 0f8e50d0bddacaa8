"""Inbox benchmark (issue 6, item 3): signed activities accepted per second by a real server.

A real `fedistream serve` whose database already caches the signer's actor and key (standing in
for the first fetch), one thought of ours to Like and reply to. `wrk` replays pre-signed POSTs
(half Create of a reply Note, half Like; every one a distinct activity id, signed untimed
beforehand) for a bounded time. Accepted/s = rows that reached the `inbox` table ÷ the run's
length: the full path (size, content type, JSON, Host, Date window, Digest, key from the cache,
RSA verify, block checks, signer = actor, meaning, insert). Applying them (threads,
notifications…) waits while the burst lasts, at most 10 s (core/intake.py); two info rows say
how long after the run the last one was applied and the end-to-end rate, stored ÷ (run + that).

Baseline, same run, same wrk: a bare Starlette endpoint (`python -m bench.inbox bare PORT DB
KEY`) that checks and verifies the same kind of signature with a preloaded key and inserts one
row through aiosqlite, under the same uvicorn settings (no proxy headers, as `fedistream serve`
without a trusted proxy). App and bare alternate over ROUNDS rounds, each on fresh data (a
copy of the seeded database; a new bare file), so a drift in the machine's load hits both; the
ratio is from the totals, each round's in the note.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import pyspy
from bench.common import Metric
from bench.pages import DB_NAME, REPO_ROOT, post_id, seed_posts

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
PUBLIC = AS_CONTEXT + "#Public"
ACTOR = "http://127.0.0.1:9/users/bench"  # never contacted: its key is cached
KEY_ID = ACTOR + "#main-key"
CONNECTIONS = 8
TARGET = 0.7


def _key_pair() -> tuple[object, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, public.decode()


def seed_actor(db_path: Path, public_pem: str) -> None:
    document = {
        "@context": [AS_CONTEXT, "https://w3id.org/security/v1"],
        "id": ACTOR, "type": "Person", "preferredUsername": "bench", "inbox": ACTOR + "/inbox",
        "publicKey": {"id": KEY_ID, "owner": ACTOR, "publicKeyPem": public_pem},
    }  # fmt: skip
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute(
            "INSERT INTO actors (id, type, inbox, key_id, public_key_pem, username, domain, json, "
            "fetched_at) VALUES (?, 'Person', ?, ?, ?, 'bench', '127.0.0.1:9', ?, ?)",
            (ACTOR, ACTOR + "/inbox", KEY_ID, public_pem, json.dumps(document),
             datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
        )  # fmt: skip
    conn.close()


def activity(n: int, base_url: str) -> dict[str, object]:
    ours = f"{base_url}/p/{post_id(1)}"
    if n % 2:
        return {"@context": AS_CONTEXT, "id": f"{ACTOR}/likes/{n}", "type": "Like",
                "actor": ACTOR, "object": ours}  # fmt: skip
    note = {
        "id": f"{ACTOR}/notes/{n}", "type": "Note", "attributedTo": ACTOR,
        "content": f"<p>Reply number {n}.</p>", "inReplyTo": ours, "to": [PUBLIC],
        "published": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    return {"@context": AS_CONTEXT, "id": f"{ACTOR}/notes/{n}/activity", "type": "Create",
            "actor": ACTOR, "to": [PUBLIC], "object": note}  # fmt: skip


def _lua_string(raw: str) -> str:
    escaped = raw.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")
    return '"' + escaped.replace("\n", "\\n") + '"'


def write_script(path: Path, base_url: str, key: object, count: int) -> None:
    """A wrk Lua script replaying `count` distinct signed POSTs to `base_url`/inbox."""
    from fedistream.core.httpsig import sign_request

    now = datetime.now(UTC)
    url = base_url + "/inbox"

    def one(n: int) -> str:
        body = json.dumps(activity(n, base_url), separators=(",", ":")).encode()
        headers = sign_request(
            "POST", url, {"Content-Type": "application/activity+json"}, body, key, KEY_ID, now
        )
        lines = ["POST /inbox HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        return _lua_string("\r\n".join(lines) + "\r\n\r\n" + body.decode())

    with ThreadPoolExecutor(max_workers=2) as pool:  # RSA signing releases the GIL
        requests = list(pool.map(one, range(count), chunksize=256))
    path.write_text(
        "local reqs = {\n" + ",\n".join(requests) + "\n}\nlocal i = 0\n"
        "request = function()\n  i = i + 1\n  if i > #reqs then i = 1 end\n  return reqs[i]\nend\n"
    )


def wrk_script(url: str, script: Path, seconds: int) -> tuple[int, float]:
    """Run wrk with the script; returns (requests sent, req/s)."""
    import re

    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script),
         url],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout  # fmt: skip
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return total, rps


def count_rows(db_path: Path, table: str) -> int:
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
    finally:
        conn.close()


# --- the bare baseline --------------------------------------------------------------------------


def bare_app(db_path: Path, public_pem: str) -> object:
    """Verify one RSA signature (preloaded key), insert one row: the floor of any inbox."""
    from contextlib import asynccontextmanager

    import aiosqlite
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from fedistream.core import httpsig

    key = httpsig.load_public_key(public_pem)
    state: dict[str, aiosqlite.Connection] = {}

    @asynccontextmanager
    async def lifespan(app: object):  # type: ignore[no-untyped-def]
        conn = await aiosqlite.connect(db_path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("CREATE TABLE IF NOT EXISTS bare (id TEXT PRIMARY KEY, json TEXT)")
        state["db"] = conn
        yield
        await conn.close()

    async def inbox(request: Request) -> Response:
        body = await request.body()
        signed = httpsig.HttpRequest(
            method="POST", target="/inbox", headers=list(request.headers.items()), body=body,
            scheme="http",
        )  # fmt: skip
        now = datetime.now(UTC)
        try:
            httpsig.check_request(signed, now)
            httpsig.verify_request(signed, key, now)
        except httpsig.SignatureError:
            return Response(status_code=401)
        await state["db"].execute(
            "INSERT OR IGNORE INTO bare (id, json) VALUES (?, ?)",
            (json.loads(body)["id"], body.decode()),
        )
        return Response(status_code=202)

    return Starlette(routes=[Route("/inbox", inbox, methods=["POST"])], lifespan=lifespan)


def serve_bare(port: int, db_path: Path, key_path: Path) -> None:
    import uvicorn

    uvicorn.run(
        bare_app(db_path, key_path.read_text()), host="127.0.0.1", port=port, log_config=None,
        access_log=False, server_header=False, log_level="warning",
        proxy_headers=False,  # as `fedistream serve` without a trusted proxy
    )  # fmt: skip


# --- the run ----------------------------------------------------------------------------------


ROUNDS = 2  # app and bare alternate, each on fresh data: a drift in the machine's load hits both


@dataclass(frozen=True, slots=True)
class Round:
    sent: int  # requests wrk sent
    stored: int  # new rows: activities accepted
    wrk_rps: float
    applied_after: float = 0.0  # seconds after the run until the last stored one was applied


def run(
    work: Path,
    *,
    seconds: int = 5,
    presigned: int = 25_000,
    rounds: int = ROUNDS,
    profile_dir: Path | None = None,
) -> tuple[list[Metric], dict]:
    from tests.live import _free_port

    key, public_pem = _key_pair()
    root = work / "inbox"
    root.mkdir(parents=True)
    seeded = root / "seeded.sqlite3"
    seed_posts(seeded, 1)
    seed_actor(seeded, public_pem)
    key_path = root / "public.pem"
    key_path.write_text(public_pem)
    # Fixed ports: the signatures cover the Host, so every round reuses its script.
    port, bare_port = _free_port(), _free_port()
    script, bare_script = root / "app.lua", root / "bare.lua"
    write_script(script, f"http://127.0.0.1:{port}", key, presigned)
    write_script(bare_script, f"http://127.0.0.1:{bare_port}", key, presigned)
    profile_path = profile_dir / "inbox.txt" if profile_dir else None
    app_rounds: list[Round] = []
    bare_rounds: list[Round] = []
    for n in range(rounds):
        app_rounds.append(
            _app_round(root / f"app-{n}", seeded, port, script, seconds,
                       profile_path if n == 0 else None)
        )  # fmt: skip
        bare_rounds.append(
            _bare_round(root / f"bare-{n}.sqlite3", bare_port, bare_script, key_path, seconds)
        )
    elapsed = seconds * rounds
    app_rate = sum(r.stored for r in app_rounds) / elapsed
    bare_rate = sum(r.stored for r in bare_rounds) / elapsed
    applied_after = max(r.applied_after for r in app_rounds)
    per_round = ", ".join(
        f"{a.stored / b.stored:.2f}" for a, b in zip(app_rounds, bare_rounds, strict=True)
    )
    notes = [f"{rounds} alternating rounds of {seconds} s, ratio per round {per_round}"]
    if max(r.sent for r in app_rounds + bare_rounds) > presigned:
        notes.append(f"wrk sent more than the {presigned} pre-signed: replays")
    metrics = [
        Metric(
            "inbox: signed Create/Like accepted", app_rate, "act/s", bare_rate,
            "bare: verify one RSA signature + insert one row", target=TARGET,
            note="; ".join(notes),
        ),
        Metric("  info: wrk answers/s (app)", _mean(r.wrk_rps for r in app_rounds), "req/s",
               _mean(r.wrk_rps for r in bare_rounds), "bare"),
        Metric("  info: all stored applied", applied_after, "s after the run",
               note="applying waits while a burst arrives (core/intake.py), ≤ 10 s"),
        Metric("  info: stored and applied, end to end",
               _mean(r.stored / (seconds + r.applied_after) for r in app_rounds), "act/s",
               bare_rate, "bare"),
    ]  # fmt: skip
    details: dict[str, object] = {
        "app": [asdict(r) for r in app_rounds],
        "bare": [asdict(r) for r in bare_rounds],
    }
    if profile_path:
        details["profile"] = pyspy.summary(profile_path)
    return metrics, details


def _mean(values: Iterable[float]) -> float:
    numbers = list(values)
    return sum(numbers) / len(numbers)


def _app_round(
    where: Path, seeded: Path, port: int, script: Path, seconds: int, profile_path: Path | None
) -> Round:
    """A `fedistream serve` on a copy of the seeded database, under wrk for `seconds`."""
    from tests.live import running_server

    data_dir = where / "data"
    data_dir.mkdir(parents=True)
    db_path = data_dir / DB_NAME
    _copy_database(seeded, db_path)
    with running_server(where, data_dir=data_dir, port=port) as server:
        before = count_rows(db_path, "inbox")
        profiling = (
            pyspy.Profile(server.process.pid, profile_path)
            if profile_path
            else contextlib.nullcontext()
        )
        with profiling:
            sent, wrk_rps = wrk_script(server.url("/inbox"), script, seconds)
        stored = count_rows(db_path, "inbox") - before
        applied_after = wait_until_applied(db_path)
    return Round(sent, stored, wrk_rps, applied_after)


def _bare_round(db_path: Path, port: int, script: Path, key_path: Path, seconds: int) -> Round:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.inbox", "bare", str(port), str(db_path), str(key_path)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_until_listening(port, process)
        sent, wrk_rps = wrk_script(f"http://127.0.0.1:{port}/inbox", script, seconds)
        return Round(sent, count_rows(db_path, "bare"), wrk_rps)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _copy_database(source: Path, target: Path) -> None:
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def wait_until_applied(db_path: Path, limit: float = 120.0) -> float:
    """Seconds until the server has applied every stored activity (none left 'pending')."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        conn = sqlite3.connect(db_path, timeout=10)
        try:
            waiting = conn.execute("SELECT count(*) FROM inbox WHERE state = 'pending'").fetchone()
        finally:
            conn.close()
        if waiting[0] == 0:
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"stored activities still pending {limit:g} s after the run")


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the bare inbox server exited")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the bare inbox server did not start")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "bare":
        serve_bare(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit("usage: python -m bench.inbox bare PORT DB PUBLIC_KEY_PEM")
