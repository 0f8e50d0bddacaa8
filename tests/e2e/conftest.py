"""End-to-end fixtures: a real `fedistream serve` process on loopback and a real headless Chromium.

The server runs as a child process (not in-process) so the test sees exactly what an operator
gets: the CLI, uvicorn, the lifespan, the security headers. Its output goes to a file that is
attached to the report of any test that fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
OWNER_PASSWORD = "correct horse battery staple"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


@dataclass(slots=True)
class LiveServer:
    """A running `fedistream serve`: where it listens and how to read what it printed."""

    base_url: str
    port: int
    password: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def output(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""

    def url(self, path: str) -> str:
        return self.base_url + path


def _free_port() -> int:
    # The port is free when we release it; a race with another process is possible but rare,
    # and a clash shows up as a start-up failure with the server's own message attached.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env(data_dir: Path, port: int) -> dict[str, str]:
    # Drop any FEDISTREAM_* the developer has set (a base URL or config path would point the
    # server somewhere else); keep the rest so the same Python environment is used.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDISTREAM_")}
    env.update(
        FEDISTREAM_DATA_DIR=str(data_dir),
        FEDISTREAM_HOST="127.0.0.1",
        FEDISTREAM_PORT=str(port),
        FEDISTREAM_OWNER_PASSWORD=OWNER_PASSWORD,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    return env


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback only)
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh `fedistream serve` with its own data directory, stopped after the test."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port = _free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fedistream.cli", "serve"],
            env=_server_env(data_dir, port),
            # Run from the data dir so a stray ./fedistream.toml in the repo is not picked up.
            cwd=data_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = LiveServer(
        base_url=f"http://127.0.0.1:{port}", port=port, password=OWNER_PASSWORD,
        data_dir=data_dir, log_path=log_path, process=process,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers_200(server.url("/")):
            if process.poll() is not None:
                pytest.fail(
                    f"fedistream serve exited with code {process.returncode} before answering.\n"
                    f"--- server output ---\n{server.output()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"fedistream serve did not answer 200 on {server.url('/')} within "
                    f"{START_TIMEOUT_S:.0f} s.\n--- server output ---\n{server.output()}"
                )
            time.sleep(0.1)
        yield server
    finally:
        _stop(process)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """When a test that used the live server fails, attach what the server printed."""
    report = yield
    server = getattr(item, "funcargs", {}).get("live_server")
    if report.failed and isinstance(server, LiveServer):
        report.sections.append(("fedistream serve output", server.output()))
    return report


# Module scope, not session: Playwright's sync API runs its own event loop, which must be gone
# before the async tests of later directories start theirs.
@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright. Missing Chromium is a failure, not a skip: CI
    installs it, and a skipped browser test would hide a broken owner UI."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} not found: the browser tests need Debian's chromium package "
            "(apt-get install chromium). Playwright's own download is not used."
        )
    with sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()
