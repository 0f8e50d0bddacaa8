"""Start-up and idle memory (issue 6, item 6): `fedistream serve` from exec to its first 200.

The data directory is initialised by a first, unmeasured start (key pair, owner account), as a
deployed server's is, and that start writes the bytecode cache (to a private PYTHONPYCACHEPREFIX;
pip does the same at install time); then `runs` starts are timed from `Popen` to the first 200
on `/` (polled every 10 ms over loopback), and the idle RSS is read from /proc 3 s after that,
with nothing else asking the server anything. The medians are reported.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.common import Metric, rss_mb

TARGET_START_S = 1.0
TARGET_RSS_MB = 60.0
IDLE_WAIT_S = 3.0


def _first_200(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"fedistream serve exited ({process.returncode}) before a 200")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.01)
    raise RuntimeError(f"no 200 from {url} within {timeout:.0f} s")


def one_start(
    data_dir: Path, port: int, log_path: Path, pycache: Path | None, python: str = sys.executable
) -> tuple[float, float]:
    """(seconds from exec to the first 200, idle RSS in MiB). With `pycache`, bytecode is
    written to and read from there, as an installed package's is (pip compiles on install);
    without, the environment decides (this sandbox sets PYTHONDONTWRITEBYTECODE)."""
    from tests.live import _server_env, _stop

    env = _server_env(data_dir, port, "correct horse battery staple", {})
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    with log_path.open("ab") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            [python, "-m", "fedistream.cli", "serve"],
            env=env,
            cwd=data_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        _first_200(f"http://127.0.0.1:{port}/", process)
        first = time.monotonic() - started  # from exec, not from the first poll
        time.sleep(IDLE_WAIT_S)
        rss = rss_mb(process.pid) or 0.0
    finally:
        _stop(process)
    return first, rss


def run(
    work: Path, *, runs: int = 3, python: str | None = None
) -> tuple[list[Metric], dict[str, object]]:
    """`python` runs the server (default: this interpreter). Point it at a venv holding only
    `pip install .` to measure what an operator gets: an interpreter with more packages makes
    the server import more (httpcore imports trio whenever it is installed, ~10 MiB)."""
    from tests.live import _free_port

    python = python or sys.executable
    where = "" if python == sys.executable else f" ({python})"

    data_dir = work / "startup" / "data"
    data_dir.mkdir(parents=True)
    log_path = work / "startup" / "server.log"
    pycache = work / "startup" / "pycache"
    # The first start creates the key pair and owner, and writes the bytecode cache.
    first_ever = one_start(data_dir, _free_port(), log_path, pycache, python)
    samples = [one_start(data_dir, _free_port(), log_path, pycache, python) for _ in range(runs)]
    start_s = statistics.median(s for s, _ in samples)
    rss = statistics.median(r for _, r in samples)
    uncached = [one_start(data_dir, _free_port(), log_path, None, python) for _ in range(runs)]
    metrics = [
        Metric(
            "serve: exec → first 200 on /", start_s, "s", target=TARGET_START_S,
            target_on="value", at_least=False,
            note=f"median of {runs}; the very first start (key pair, owner) took "
            f"{first_ever[0]:.2f} s",
        ),
        Metric(
            f"serve: idle RSS ({IDLE_WAIT_S:.0f} s after the first 200)", rss, "MiB",
            target=TARGET_RSS_MB, target_on="value", at_least=False,
            note=f"median of {runs}; server interpreter{where or ': this one'}",
        ),
        Metric(
            "  info: exec → first 200, no bytecode cache", statistics.median(
                s for s, _ in uncached), "s",
            note="as this sandbox runs Python (PYTHONDONTWRITEBYTECODE=1): every module "
            "compiled from source on each start",
        ),
    ]  # fmt: skip
    return metrics, {"first_start": first_ever, "samples": samples, "uncached": uncached}
