"""Public pages under load (issue 6, items 1 and 2): a real `fedistream serve` with N thoughts.

1. `/` with 100,000 thoughts stored: requests/s (wrk, bounded in time) ÷ a bare Starlette+Jinja
   page rendering 20 thoughts held in memory, served by uvicorn with the settings `fedistream
   serve` uses, hit by the same wrk in the same run; p50/p99 too.
2. Growth: p50 of `/`, `/p/{id}`, `/tags/{tag}`, `/search?q=`, `/feed.xml` and an outbox page,
   one connection at a time, at each size in `sizes` (1k, 100k, 1M by default): the 1M ÷ 1k
   ratio says whether a page's cost grows with the archive. Measured rendered (each request
   carries a fresh `_=N` parameter, so the page cache never answers) and, as info, as served
   from the page cache.

Thoughts are seeded straight into SQLite (one INSERT … SELECT over a recursive CTE, the FTS
index rebuilt once afterwards): seeding 1M through HTTP would take hours and measure nothing we
report. `python -m bench.pages bare PORT` runs the bare baseline server (a child process).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Metric

DB_NAME = "fedistream.sqlite3"
TAG = "bench"
SEARCH = "topic7"
CONNECTIONS = 8  # wrk connections for the throughput run (2 cores: more only queue)
TARGET_VS_BARE = 0.6
TARGET_GROWTH = 1.2
CACHED = ("/", "/p/{id}", "/tags/{tag}")  # the pages web/page_cache.py keeps
REPO_ROOT = Path(__file__).resolve().parents[1]


# --- seeding -----------------------------------------------------------------------------------


def post_id(n: int) -> str:
    """Seeded ids are zero-padded numbers: valid 16-character ids, sorting like real ones."""
    return f"{n:016d}"


def seed_posts(db_path: Path, count: int) -> float:
    """Create the schema (the app's migrations) and `count` thoughts; returns seconds taken.
    Every 10th thought carries #bench; the text names one of 100 topics (search hits 1 %)."""
    from fedistream.store.db import Database

    async def migrate() -> None:
        db = await Database.open(db_path)
        await db.close()

    started = time.monotonic()
    asyncio.run(migrate())
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        trigger = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'posts_fts_insert'"
        ).fetchone()[0]
        conn.execute("BEGIN")
        # Per-row FTS inserts through the trigger are the slow part of a bulk load: drop it,
        # load, put it back, rebuild the index once.
        conn.execute("DROP TRIGGER posts_fts_insert")
        conn.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO posts (id, source, html, text, title, summary, visibility, created_at)
            SELECT printf('%016d', i),
                   'Thought ' || i || ' about topic' || (i % 100)
                       || CASE WHEN i % 10 = 0 THEN ' #bench' ELSE '' END
                       || '. Some more words so the row has the size of a short real note.',
                   '<p>Thought ' || i || ' about topic' || (i % 100)
                       || CASE WHEN i % 10 = 0
                               THEN ' <a href="/tags/bench" class="hashtag">#bench</a>'
                               ELSE '' END
                       || '. Some more words so the row has the size of a short real note.</p>',
                   'Thought ' || i || ' about topic' || (i % 100)
                       || CASE WHEN i % 10 = 0 THEN ' #bench' ELSE '' END
                       || '. Some more words so the row has the size of a short real note.',
                   NULL, NULL, 'public',
                   strftime('%Y-%m-%dT%H:%M:%SZ', 1600000000 + i * 60, 'unixepoch')
            FROM n
            """,
            (count,),
        )
        conn.execute(
            "INSERT INTO post_tags (tag, post_id) SELECT ?, id FROM posts WHERE seq % 10 = 0",
            (TAG,),
        )
        conn.execute(trigger)
        conn.execute("INSERT INTO posts_fts(posts_fts) VALUES ('rebuild')")
        conn.execute("COMMIT")
    finally:
        conn.close()
    return time.monotonic() - started


# --- wrk -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def wrk(url: str, *, seconds: float, connections: int, script: Path | None = None) -> Load:
    """One bounded wrk run (one thread) against a loopback URL."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    extra = ["-s", str(script)] if script else []
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
         "--latency", *extra, url],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Load(rps, p50, p99, total, int(bad.group(1)) if bad else 0)


# --- the bare baseline ----------------------------------------------------------------------------

_BARE_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><header><h1>{{ title }}</h1></header><main>
{% for post in posts %}<article class="h-entry" id="{{ post.id }}">
<div class="e-content">{{ post.html|safe }}</div>
<footer><a class="u-url" href="/p/{{ post.id }}"><time datetime="{{ post.created_at }}">
{{ post.created_at }}</time></a></footer></article>
{% endfor %}</main></body></html>
"""


def bare_app() -> object:
    """Starlette + Jinja, 20 thoughts from memory: the ceiling for a page of 20 thoughts."""
    import jinja2
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    env = jinja2.Environment(autoescape=True)
    template = env.from_string(_BARE_TEMPLATE)
    posts = [
        {
            "id": post_id(n),
            "html": f"<p>Thought {n} about topic{n % 100}. Some more words so the row has the "
            "size of a short real note.</p>",
            "created_at": "2026-01-01T00:00:00Z",
        }
        for n in range(100_000, 99_980, -1)
    ]

    async def page(request: object) -> HTMLResponse:
        return HTMLResponse(template.render(title="Bench", posts=posts))

    return Starlette(routes=[Route("/", page)])


def serve_bare(port: int) -> None:
    import uvicorn

    # What `fedistream serve` passes to uvicorn (cli.py), minus TLS and proxy headers.
    uvicorn.run(
        bare_app(), host="127.0.0.1", port=port, log_config=None, access_log=False,
        server_header=False, log_level="warning",
        proxy_headers=False,  # as `fedistream serve` without a trusted proxy
    )  # fmt: skip


@contextmanager
def running_bare(port: int) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.pages", "bare", str(port)], cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_200(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_200(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({process.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


# --- the runs ----------------------------------------------------------------------------------


def paths(count: int) -> dict[str, str]:
    middle = post_id(max(1, count // 2))
    return {
        "/": "/",
        "/p/{id}": f"/p/{middle}",
        "/tags/{tag}": f"/tags/{TAG}",
        "/search?q=": f"/search?q={SEARCH}",
        "/feed.xml": "/feed.xml",
        "/outbox page": f"/outbox?page=true&max_id={middle}",
    }


def _busting_script(work: Path, path: str) -> Path:
    """A wrk script asking for `path` with a new `_=N` query each time: no two requests share
    a cache key, so every one is rendered from the database (pages ignore unknown parameters)."""
    script = work / f"bust-{abs(hash(path))}.lua"
    joiner = "&" if "?" in path else "?"
    script.write_text(
        f"local i = 0\nrequest = function()\n  i = i + 1\n"
        f'  return wrk.format("GET", "{path}{joiner}_=" .. i)\nend\n'
    )
    return script


def p50_ms(url: str, seconds: float, script: Path | None = None) -> float:
    return wrk(url, seconds=seconds, connections=1, script=script).p50_ms


@dataclass(slots=True)
class SizeRun:
    count: int
    seed_s: float
    rendered: dict[str, list[float]] = field(default_factory=dict)  # p50 per round
    cached: dict[str, list[float]] = field(default_factory=dict)
    throughput: Load | None = None
    bare: Load | None = None

    def median(self, which: str, name: str) -> float:
        return statistics.median(getattr(self, which)[name])


def run(
    work: Path,
    *,
    sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000),
    load_s: float = 10.0,
    latency_s: float = 1.0,
    rounds: int = 5,
) -> tuple[list[Metric], dict[str, object]]:
    """All sizes' servers run side by side and are measured in alternation, round after round
    (the median of the rounds is reported): load from elsewhere on a shared machine then
    falls on every size alike instead of on whichever ran last."""
    from tests.live import _free_port, running_server

    runs: list[SizeRun] = []
    for count in sizes:
        data_dir = work / f"pages-{count}" / "data"
        data_dir.mkdir(parents=True)
        seed_s = seed_posts(data_dir / DB_NAME, count)
        print(f"  pages: seeded {count:,} thoughts in {seed_s:.1f} s", flush=True)
        runs.append(SizeRun(count, seed_s))
    with ExitStack() as stack:
        servers = [
            stack.enter_context(running_server(home, data_dir=home / "data"))
            for home in (work / f"pages-{r.count}" for r in runs)
        ]
        for r, server in zip(runs, servers, strict=True):
            for path in paths(r.count).values():  # warm the OS page cache and the server
                wrk(server.url(path), seconds=1, connections=1)
        for _ in range(rounds):
            for name in paths(sizes[0]):
                for r, server in zip(runs, servers, strict=True):
                    path = paths(r.count)[name]
                    script = _busting_script(work, path)
                    r.rendered.setdefault(name, []).append(
                        p50_ms(server.url(path), latency_s, script)
                    )
                    r.cached.setdefault(name, []).append(p50_ms(server.url(path), latency_s))
        target = next(r for r in runs if r.count == 100_000)
        server = servers[runs.index(target)]
        for stop in servers:
            if stop is not server:
                stop.process.terminate()  # the throughput runs get the machine to themselves
        target.throughput = wrk(server.url("/"), seconds=load_s, connections=CONNECTIONS)
    # Right after, on the same machine, with the same wrk settings.
    with running_bare(_free_port()) as url:
        wrk(url, seconds=1, connections=1)
        target.bare = wrk(url, seconds=load_s, connections=CONNECTIONS)
    for r in runs:
        shutil.rmtree(work / f"pages-{r.count}", ignore_errors=True)  # 1M rows ≈ 0.5 GB
    return _metrics(runs), {
        "rounds": rounds,
        "sizes": [
            {"count": r.count, "seed_s": r.seed_s, "rendered_p50_ms": r.rendered,
             "cached_p50_ms": r.cached,
             "throughput": r.throughput and vars_of(r.throughput),
             "bare": r.bare and vars_of(r.bare)}
            for r in runs
        ],
    }  # fmt: skip


def vars_of(load: Load) -> dict[str, float]:
    return {k: getattr(load, k) for k in Load.__slots__}


def _metrics(runs: list[SizeRun]) -> list[Metric]:
    metrics: list[Metric] = []
    for r in runs:
        if r.throughput and r.bare:
            metrics += [
                Metric(
                    f"/ with {r.count:,} thoughts, {CONNECTIONS} connections",
                    r.throughput.requests_per_s, "req/s", r.bare.requests_per_s,
                    "bare Starlette+Jinja, 20 thoughts in memory", target=TARGET_VS_BARE,
                    note=f"{r.throughput.non_2xx} non-2xx" if r.throughput.non_2xx else "",
                ),
                Metric("  p50 latency", r.throughput.p50_ms, "ms", r.bare.p50_ms, "bare"),
                Metric("  p99 latency", r.throughput.p99_ms, "ms", r.bare.p99_ms, "bare"),
            ]  # fmt: skip
    small, large = runs[0], runs[-1]
    middle = runs[1:-1]
    for name in small.rendered:
        cached = (
            [f"served from the page cache: {small.median('cached', name):.2f} ms at "
             f"{small.count:,} → {large.median('cached', name):.2f} ms at {large.count:,}"]
            if name in CACHED else []
        )  # fmt: skip
        note = "; ".join(
            [f"{r.count:,}: {r.median('rendered', name):.2f} ms" for r in middle] + cached
        )
        metrics.append(
            Metric(
                f"p50 {name} rendered, {large.count:,} vs {small.count:,} thoughts",
                large.median("rendered", name), "ms", small.median("rendered", name),
                f"{small.count:,} thoughts",
                target=None if name.startswith("/search") else TARGET_GROWTH, at_least=False,
                note=note,
            )
        )  # fmt: skip
    return metrics


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "bare":
        serve_bare(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m bench.pages bare PORT")
