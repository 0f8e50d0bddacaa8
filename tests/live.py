"""A real `fedistream serve` child process on loopback, for end-to-end and CLI tests.

The server runs as a child process (not in-process) so a test sees exactly what an operator gets:
the CLI, uvicorn, the lifespan, the security headers. Its output goes to a file that is attached
to the report of any test that fails.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

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


def _server_env(
    data_dir: Path, port: int, password: str | None, extra: dict[str, str]
) -> dict[str, str]:
    # Drop any FEDISTREAM_* the developer has set (a base URL or config path would point the
    # server somewhere else); keep the rest so the same Python environment is used.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDISTREAM_")}
    env.update(
        FEDISTREAM_DATA_DIR=str(data_dir),
        FEDISTREAM_HOST="127.0.0.1",
        FEDISTREAM_PORT=str(port),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    if password is not None:
        env["FEDISTREAM_OWNER_PASSWORD"] = password
    env.update(extra)
    return env


def _answers_200(url: str, tls: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1, context=tls) as response:  # noqa: S310 (loopback only)
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


@contextmanager
def running_server(
    tmp_path: Path,
    *,
    password: str | None = OWNER_PASSWORD,
    extra_env: dict[str, str] | None = None,
    data_dir: Path | None = None,
    port: int | None = None,
    ca_file: Path | None = None,
) -> Iterator[LiveServer]:
    """Start `fedistream serve` with its own data directory; stop it when the block ends.
    `password=None` leaves the owner password unset (first run prints a generated one).
    `port` is for a test that must know it up front (a base URL in `extra_env`); a server that
    serves TLS (FEDISTREAM_TLS_CERTFILE) is probed over https, trusting the CA in `ca_file`."""
    data_dir = data_dir or tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    extra_env = extra_env or {}
    scheme = "https" if extra_env.get("FEDISTREAM_TLS_CERTFILE") else "http"
    base_url = extra_env.get("FEDISTREAM_BASE_URL") or f"{scheme}://127.0.0.1:{port}"
    tls = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fedistream.cli", "serve"],
            env=_server_env(data_dir, port, password, extra_env),
            # Run from the data dir so a stray ./fedistream.toml in the repo is not picked up.
            cwd=data_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = LiveServer(
        base_url=base_url.rstrip("/"), port=port, password=password or "",
        data_dir=data_dir, log_path=log_path, process=process,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers_200(server.url("/"), tls):
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


class OwnerBrowser:
    """The owner UI driven over real HTTP (httpx, cookie jar, CSRF scraped from each form)."""

    def __init__(self, server: LiveServer, verify: ssl.SSLContext | bool = True) -> None:
        import httpx

        self.server = server
        self.http = httpx.Client(
            base_url=server.base_url, timeout=10, follow_redirects=False, verify=verify
        )

    def close(self) -> None:
        self.http.close()

    def _csrf(self, path: str) -> str:
        import re

        page = self.http.get(path, follow_redirects=True)
        match = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert match, f"no CSRF field on {path}: {page.status_code}"
        return match.group(1)

    def log_in(self) -> None:
        token = self._csrf("/admin/login")
        response = self.http.post(
            "/admin/login", data={"csrf": token, "password": self.server.password}
        )
        assert response.status_code == 303, response.text

    def submit(self, form_page: str, action: str, data: dict[str, str]) -> object:
        """Submit a form found on `form_page` to `action`; returns the httpx response."""
        token = self._csrf(form_page)
        return self.http.post(action, data={"csrf": token, **data})

    def publish(self, source: str, title: str = "") -> str:
        response = self.submit(
            "/admin", "/admin/posts", {"source": source, "title": title, "action": "publish"}
        )
        assert response.status_code == 303, response.text  # type: ignore[attr-defined]
        return str(response.headers["location"]).rsplit("/", 1)[-1]  # type: ignore[attr-defined]

    def page(self, path: str) -> str:
        return str(self.http.get(path, follow_redirects=True).text)


def wait_until(predicate: object, what: str, timeout: float = 20.0) -> None:
    """Poll `predicate()` (bounded in time) until it is true; fail with `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for: {what}")


FEDERATION_ENV = {"FEDISTREAM_ALLOW_PRIVATE_NETWORKS": "true"}


def as2_get(url: str) -> dict[str, Any]:
    """GET an ActivityStreams document the way a peer does (and check its content type)."""
    request = urllib.request.Request(url, headers={"Accept": "application/activity+json"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
        assert response.headers["Content-Type"].startswith("application/activity+json")
        document: dict[str, Any] = json.loads(response.read())
        return document


def as2_total(url: str) -> int:
    return int(as2_get(url)["totalItems"])


@contextmanager
def federating_pair(
    tmp_path: Path,
) -> Iterator[tuple[LiveServer, LiveServer, OwnerBrowser, OwnerBrowser]]:
    """Two real servers that may reach each other on loopback, each owner logged in."""
    with (
        running_server(tmp_path / "a", extra_env=FEDERATION_ENV) as a,
        running_server(tmp_path / "b", extra_env=FEDERATION_ENV) as b,
    ):
        owner_a, owner_b = OwnerBrowser(a), OwnerBrowser(b)
        try:
            owner_a.log_in()
            owner_b.log_in()
            yield a, b, owner_a, owner_b
        finally:
            owner_a.close()
            owner_b.close()
