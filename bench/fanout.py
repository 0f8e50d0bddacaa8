"""Fan-out benchmark: one thought from a real `fedistream serve` to N inboxes on a loopback sink.

Why a real server and not the DeliveryWorker in-process: the number an operator cares about is
"I pressed publish; when did the last follower get it", and that includes what only the real
process has — uvicorn on uvloop, the lifespan's client, Signer thread pool and worker defaults,
aiosqlite's threads, the owner UI's publish → wake path — and the peak RSS of that process.
The sink (tests/federation/sink.py) runs in another process, so it does not share the server's
event loop; both share this machine's cores, which the README states.

Followers are seeded straight into the database before the server starts (standing in for N
Follow handshakes), one personal inbox each, so there is one delivery row per follower.

Measured, all in one run:
1. fan-out to N inboxes, one host (sink port) each, sink answering at once: deliveries/s and
   time from pressing publish to the last delivery; peak RSS of the server during the fan-out.
   Baselines: the app's httpx client (`build_http_client`, as issue 6 names it) and the worker's
   own delivery client (`DeliveryClient`), each POSTing the same body, pre-signed, to the same
   inboxes at the worker's concurrency limits.
2. the same with the sink adding 50 ms to every answer: deliveries/s ÷ RSA-2048 signatures/s
   through fedistream's Signer (its thread pool, as the worker signs).
3. informative: both clients on case 2, CPU per delivery against CPU per pre-signed POST, and
   all N inboxes on one host (the per-host cap in play).
"""

from __future__ import annotations

import contextlib
import inspect
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx

import fedistream
from bench import pyspy
from bench.baseline import (
    ClientRun,
    Send,
    delivery_sender,
    httpx_sender,
    post_presigned,
    signing_rate,
)
from bench.common import Metric, RssSampler, cpu_seconds, event_loop_runner, rss_mb
from fedistream.core.urls import Urls
from fedistream.federation.delivery import DeliveryWorker
from fedistream.federation.delivery_client import DeliveryClient
from fedistream.federation.http import build_http_client
from fedistream.federation.signing import Signer
from tests.federation.sink import Sink, free_ports, read_log, seed_followers
from tests.live import LiveServer, OwnerBrowser, running_server

FEDERATION_ENV = {"FEDISTREAM_ALLOW_PRIVATE_NETWORKS": "true"}
DB_NAME = "fedistream.sqlite3"  # Settings.db_path under the data directory
SLOW_MS = 50.0

# Targets (proposed with this benchmark; see bench/README.md for the reasoning).
TARGET_VS_CLIENT = 0.9  # issue 6: the queue, signing and bookkeeping nearly free beside the HTTP
TARGET_LAST_S = 10.0  # 2,000 followers on loopback: the last one has it within 10 s
TARGET_RSS_MB = 150.0  # a single-user server on a small VPS
TARGET_VS_SIGNING = 0.3  # issue 6: ~1,000 deliveries/s to peers 50 ms away


def _worker_limits() -> tuple[int, int]:
    """The worker's own defaults (max_concurrency, per_host): the baseline uses the same."""
    params = inspect.signature(DeliveryWorker.__init__).parameters
    return int(params["max_concurrency"].default), int(params["per_host"].default)


@dataclass(slots=True)
class FanOut:
    """One measured fan-out from pressing publish to the last delivery arriving at the sink."""

    label: str
    expected: int
    delivered: int  # distinct inboxes that accepted the Create
    seconds: float  # publish pressed → last delivery answered
    first_s: float
    idle_rss_mb: float
    peak_rss_mb: float
    recorded_sent: int  # rows the server had marked sent by the end
    timed_out: bool
    profile: str = ""
    server_cpu_s: float = 0.0  # CPU the server process used from publish to the last delivery

    @property
    def cpu_ms_each(self) -> float:
        return 1000 * self.server_cpu_s / self.delivered if self.delivered else 0.0

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class Instance:
    """A seeded data directory for A and the sink its followers live on."""

    sink: Sink
    data_dir: Path
    port: int
    inboxes: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, work: Path, followers: int, hosts: int) -> Instance:
        *sink_ports, port = free_ports(hosts + 1)  # all distinct: none is bound yet
        sink = Sink(work / "sink", ports=sink_ports)
        data_dir = work / "a" / "data"
        inboxes = [sink.inbox(n) for n in range(followers)]
        seed_followers(data_dir / DB_NAME, inboxes)
        return cls(sink, data_dir, port, inboxes)

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.data_dir / DB_NAME, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        conn = self.db()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def signer(self, base_url: str) -> Signer:
        """A signs with the key it made on first start; the baselines sign with it too."""
        pem = self.query("SELECT value FROM meta WHERE key = 'private_key_pem'")[0][0]
        return Signer(Urls(base_url).key_id, pem)

    def body(self, activity_id: str) -> bytes:
        """The stored activity: exactly the bytes the worker POSTs."""
        row = self.query("SELECT json FROM activities WHERE id = ?", (activity_id,))[0]
        return str(row[0]).encode()


def measure_fan_out(
    server: LiveServer,
    owner: OwnerBrowser,
    instance: Instance,
    label: str,
    *,
    timeout: float,
    profile_dir: Path | None,
) -> tuple[FanOut, str]:
    """Publish one thought and wait (bounded) until every inbox has it. Returns the result and
    the Create's activity id."""
    sink, expected = instance.sink, len(instance.inboxes)
    pid = server.process.pid
    start_line = sink.count()
    idle = rss_mb(pid) or 0.0
    profile_path = profile_dir / f"{label}.txt" if profile_dir else None
    profiling = pyspy.Profile(pid, profile_path) if profile_path else contextlib.nullcontext()
    with RssSampler(pid) as rss, profiling:
        if profile_path:
            time.sleep(0.3)  # let py-spy attach before the work starts
        cpu_before = cpu_seconds(pid) or 0.0
        started = time.time()
        post_id = owner.publish(f"Benchmark thought: {label}.")
        deadline = time.monotonic() + timeout
        while sink.count() - start_line < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        cpu_used = (cpu_seconds(pid) or 0.0) - cpu_before
    activity_id = f"{server.base_url}/p/{post_id}/activity"
    records = [
        r
        for r in read_log(sink.log_path)[start_line:]
        if r.delivered and r.activity_id == activity_id
    ]
    delivered = {r.inbox for r in records} & set(instance.inboxes)
    last = max((r.at for r in records), default=time.time())
    first = min((r.at for r in records), default=time.time())
    sent = 0
    settle = time.monotonic() + 10  # the last results are written in the worker's next commit
    while time.monotonic() < settle:
        sent = instance.query(
            "SELECT count(*) FROM deliveries WHERE activity_id = ? AND state = 'sent'",
            (activity_id,),
        )[0][0]
        if sent >= len(delivered):
            break
        time.sleep(0.05)
    result = FanOut(
        label=label,
        expected=expected,
        delivered=len(delivered),
        seconds=last - started,
        first_s=first - started,
        idle_rss_mb=idle,
        peak_rss_mb=rss.peak,
        recorded_sent=sent,
        timed_out=len(delivered) < expected,
        profile=pyspy.summary(profile_path) if profile_path else "",
        server_cpu_s=cpu_used,
    )
    return result, activity_id


# --- the whole benchmark -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Baselines:
    """Pre-signed POSTs to the same inboxes at the worker's limits, and the signing ceiling."""

    httpx_fast: ClientRun  # the app's httpx client: issue 6's baseline
    own_fast: ClientRun  # the worker's own delivery client: what the worker adds to it
    httpx_slow: ClientRun
    own_slow: ClientRun
    signatures_per_s: float


@dataclass(slots=True)
class Report:
    metrics: list[Metric]
    details: dict[str, Any]
    profiles: dict[str, str]


def run(
    work: Path,
    *,
    followers: int = 2000,
    timeout: float = 120.0,
    profile_dir: Path | None = None,
) -> Report:
    concurrency, per_host = _worker_limits()
    many = Instance.create(work / "many-hosts", followers, hosts=followers)
    many.sink.start()
    try:
        with running_server(
            work / "many-hosts" / "a", data_dir=many.data_dir, port=many.port,
            extra_env=FEDERATION_ENV,
        ) as server:  # fmt: skip
            owner = OwnerBrowser(server)
            owner.log_in()
            fast, activity_id = measure_fan_out(
                server, owner, many, "fanout", timeout=timeout, profile_dir=profile_dir
            )
            many.sink.set_mode(delay_ms=SLOW_MS)
            slow, _ = measure_fan_out(
                server, owner, many, "fanout-50ms", timeout=timeout, profile_dir=profile_dir
            )
            owner.close()
            base_url = server.base_url
        # The server is stopped: the baselines share the machine only with the sink, as the
        # fan-outs did.
        payload = many.body(activity_id)
        signer = many.signer(base_url)
        user_agent = f"fedistream/{fedistream.__version__} (+{base_url}/)"

        async def post(send: Send, label: str) -> ClientRun:
            return await post_presigned(
                send, many.inboxes, payload, signer,
                concurrency=concurrency, per_host=per_host, give_up_after=timeout, label=label,
            )  # fmt: skip

        def fetch_client() -> httpx.AsyncClient:
            return build_http_client(allow_private_networks=True, user_agent=user_agent)

        def delivery_client() -> DeliveryClient:
            return DeliveryClient(allow_private_networks=True, user_agent=user_agent)

        async def baselines() -> Baselines:
            many.sink.set_mode(delay_ms=0)
            async with fetch_client() as client:
                httpx_fast = await post(httpx_sender(client, payload), "httpx client")
            async with delivery_client() as client:
                own_fast = await post(delivery_sender(client, payload), "delivery client")
            many.sink.set_mode(delay_ms=SLOW_MS)
            async with fetch_client() as client:
                httpx_slow = await post(httpx_sender(client, payload), "httpx client +50 ms")
            async with delivery_client() as client:
                own_slow = await post(delivery_sender(client, payload), "delivery client +50 ms")
            signs = await signing_rate(signer, many.inboxes, payload)
            return Baselines(httpx_fast, own_fast, httpx_slow, own_slow, signs)

        try:
            with event_loop_runner() as runner:
                measured = runner.run(baselines())
        finally:
            signer.close()
    finally:
        many.sink.stop()

    one = _one_host(work, followers, timeout, concurrency, per_host, profile_dir)
    return _report(followers, concurrency, per_host, fast, slow, measured, one)


def _one_host(
    work: Path,
    followers: int,
    timeout: float,
    concurrency: int,
    per_host: int,
    profile_dir: Path | None,
) -> tuple[FanOut, ClientRun]:
    """All inboxes on one sink host: the worker may use only `per_host` connections there."""
    single = Instance.create(work / "one-host", followers, hosts=1)
    single.sink.start()
    try:
        with running_server(
            work / "one-host" / "a", data_dir=single.data_dir, port=single.port,
            extra_env=FEDERATION_ENV,
        ) as server:  # fmt: skip
            owner = OwnerBrowser(server)
            owner.log_in()
            fan, activity_id = measure_fan_out(
                server, owner, single, "fanout-one-host", timeout=timeout, profile_dir=profile_dir
            )
            owner.close()
            base_url = server.base_url
        signer = single.signer(base_url)

        async def baseline() -> ClientRun:
            payload = single.body(activity_id)
            async with DeliveryClient(allow_private_networks=True, user_agent="bench") as c:
                return await post_presigned(
                    delivery_sender(c, payload), single.inboxes, payload, signer,
                    concurrency=concurrency, per_host=per_host, give_up_after=timeout,
                    label="delivery client, one host",
                )  # fmt: skip

        try:
            with event_loop_runner() as runner:
                return fan, runner.run(baseline())
        finally:
            signer.close()
    finally:
        single.sink.stop()


def _report(
    followers: int,
    concurrency: int,
    per_host: int,
    fast: FanOut,
    slow: FanOut,
    base: Baselines,
    one: tuple[FanOut, ClientRun],
) -> Report:
    limits = f"{concurrency} at once, {per_host}/host"
    n = f"{followers:,}"

    def partial(fan: FanOut) -> str:
        return f"TIMED OUT: {fan.delivered}/{fan.expected} delivered" if fan.timed_out else ""

    one_fan, one_client = one
    metrics = [
        Metric(
            f"fan-out, {n} inboxes on {n} hosts", fast.rate, "deliv/s",
            base.httpx_fast.rate, f"httpx client (app's), pre-signed, {limits}",
            target=TARGET_VS_CLIENT, note=partial(fast),
        ),
        Metric(
            "  vs the worker's own client", fast.rate, "deliv/s",
            base.own_fast.rate, f"delivery client, pre-signed, {limits}",
        ),
        Metric(
            "  time to last delivery", fast.seconds, "s",
            target=TARGET_LAST_S, target_on="value", at_least=False,
        ),
        Metric(
            "  peak RSS during fan-out", fast.peak_rss_mb, "MiB", fast.idle_rss_mb, "idle RSS",
            target=TARGET_RSS_MB, target_on="value", at_least=False,
        ),
        Metric(
            f"fan-out, {n} inboxes, sink +{SLOW_MS:.0f} ms", slow.rate, "deliv/s",
            base.signatures_per_s, "RSA-2048 signatures/s, Signer pool",
            target=TARGET_VS_SIGNING, note=partial(slow),
        ),
        Metric("  time to last delivery (+50 ms)", slow.seconds, "s"),
        Metric("  peak RSS during fan-out (+50 ms)", slow.peak_rss_mb, "MiB", slow.idle_rss_mb,
               "idle RSS"),
        Metric(
            "  info: fan-out +50 ms vs clients", slow.rate, "deliv/s",
            base.own_slow.rate,
            f"delivery client +50 ms ({base.httpx_slow.rate:,.0f} httpx), {limits}",
        ),
        Metric(
            "  info: server CPU per delivery", fast.cpu_ms_each, "ms",
            base.own_fast.cpu_ms_each,
            f"bench CPU per pre-signed POST, delivery client "
            f"({base.httpx_fast.cpu_ms_each:.2f} httpx)",
        ),
        Metric(
            f"info: fan-out, {n} inboxes on 1 host", one_fan.rate, "deliv/s",
            one_client.rate, f"delivery client, {per_host}/host", note=partial(one_fan),
        ),
        Metric("  time to last delivery (1 host)", one_fan.seconds, "s"),
    ]  # fmt: skip
    fans = [fast, slow, one_fan]
    details = {
        "followers": followers,
        "worker_limits": {"max_concurrency": concurrency, "per_host": per_host},
        "fan_outs": [
            {x.name: getattr(f, x.name) for x in fields(f) if x.name != "profile"}
            | {"rate": f.rate}
            for f in fans
        ],
        "client_runs": [
            {"label": c.label, "sent": c.sent, "ok": c.ok, "seconds": c.seconds, "rate": c.rate}
            for c in (base.httpx_fast, base.own_fast, base.httpx_slow, base.own_slow, one_client)
        ],
        "signatures_per_s": base.signatures_per_s,
    }
    profiles = {f.label: f.profile for f in fans if f.profile}
    return Report(metrics, details, profiles)
