"""`fedistream doctor` against a real `fedistream serve` on loopback, as an operator runs it.

Run on "the server" (the same data directory): every check passes but TLS (plain http). Behind a
proxy that rewrites the Host header, the signed POST to our own inbox fails with that fix. The
server's own log shows one logfmt line per request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from fedistream.cli import main
from tests.live import REPO_ROOT, LiveServer, OwnerBrowser, running_server
from tests.loopback import free_port, serving

PRIVATE_OK = {"FEDISTREAM_ALLOW_PRIVATE_NETWORKS": "true"}


def run_doctor(
    server: LiveServer, *args: str, configured: bool = True
) -> subprocess.CompletedProcess[str]:
    """`fedistream doctor` as a separate process on "the server" (its data directory); with
    `configured=False` the base URL is not in the environment, as with a root-only env file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDISTREAM_")}
    env.update(FEDISTREAM_DATA_DIR=str(server.data_dir), PYTHONPATH=str(REPO_ROOT))
    if configured:
        env["FEDISTREAM_BASE_URL"] = server.base_url
    return subprocess.run(
        [sys.executable, "-m", "fedistream.cli", "doctor", *args],
        env=env,
        cwd=server.data_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def statuses(output: str) -> dict[str, list[str]]:
    """check name → the statuses its lines report, from doctor's printed report."""
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        status, _, rest = line.partition("  ")
        if status in ("PASS", "WARN", "FAIL"):
            found.setdefault(rest.split(":", 1)[0], []).append(status)
    return found


def profile_page(actor_id: str, links_back: bool) -> Any:
    """Someone's home page: with or without the rel=me link back to our actor."""
    html = f'<a rel="me" href="{actor_id}">me</a>' if links_back else "<p>hello</p>"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/html")],
            }
        )
        await send({"type": "http.response.body", "body": html.encode()})

    return app


def test_doctor_on_the_server_passes(tmp_path: Path) -> None:
    port = free_port()
    actor_id = f"http://127.0.0.1:{port}/"
    with (
        serving(profile_page(actor_id, links_back=True)) as page_port,
        running_server(tmp_path, port=port, extra_env=PRIVATE_OK) as server,
    ):
        owner = OwnerBrowser(server)
        try:
            owner.log_in()
            owner.publish("A first thought, so the feeds have an entry.")
            saved = owner.submit(
                "/admin/profile",
                "/admin/profile",
                {
                    "display_name": "Owner",
                    "bio": "",
                    "link_label_0": "Home",
                    "link_url_0": f"http://127.0.0.1:{page_port}/",
                },
            )
            assert saved.status_code == 303, saved.text  # type: ignore[attr-defined]
        finally:
            owner.close()
        result = run_doctor(server)
        explicit = run_doctor(server, server.base_url, configured=False)
        log = server.output()
    assert result.returncode == 0, result.stdout + result.stderr
    found = statuses(result.stdout)
    assert found.pop("tls") == ["WARN"]  # plain http on loopback
    assert set(found) == {
        "local key", "actor", "clock", "webfinger", "signed fetch", "own signature",
        "inbound signature", "nodeinfo", "host-meta", "atom feed", "json feed", "rel=me",
    }  # fmt: skip
    assert all(s == ["PASS"] for s in found.values()), result.stdout
    assert f"acct:owner@127.0.0.1:{port} → subject" in result.stdout
    assert "12 passed, 1 warnings, 0 failed" in result.stdout
    # Given the public URL by hand (the configuration here does not name it), the database's
    # key is still used, because that URL publishes it.
    assert explicit.returncode == 0 and "12 passed, 1 warnings" in explicit.stdout, explicit.stdout
    # The server logged each of doctor's requests as one logfmt line.
    assert "logger=fedistream.access event=request method=GET path=/.well-known/webfinger " \
        "status=200 duration_ms=" in log  # fmt: skip
    assert "event=request method=POST path=/inbox status=400" in log
    assert "client=127.0.0.1" in log


def test_doctor_from_elsewhere_skips_what_needs_the_key(tmp_path: Path) -> None:
    with running_server(tmp_path, extra_env=PRIVATE_OK) as server:
        result = run_doctor(server, server.base_url, "--no-key")
    assert result.returncode == 0, result.stdout + result.stderr
    found = statuses(result.stdout)
    assert found["signed fetch"] == ["PASS"] and "throwaway key" in result.stdout
    assert found["own signature"] == ["WARN"] and found["inbound signature"] == ["WARN"]
    assert found["atom feed"] == ["WARN"]  # nothing published yet


@contextmanager
def reverse_proxy(upstream_port: int, *, rewrite_host: bool) -> Iterator[int]:
    """A reverse proxy on loopback; with `rewrite_host` it sends the upstream's address as
    Host (nginx's `proxy_pass` without `proxy_set_header Host $host;` does just that)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        given = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        headers = {
            k: v for k, v in given.items() if k not in ("host", "content-length", "connection")
        }
        headers["host"] = f"127.0.0.1:{upstream_port}" if rewrite_host else given["host"]
        query = scope["query_string"].decode()
        url = f"http://127.0.0.1:{upstream_port}{scope['path']}" + (f"?{query}" if query else "")
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=20) as client:
                answer = await client.request(scope["method"], url, headers=headers, content=body)
        except httpx.TransportError:  # upstream still starting: say so, as nginx would
            answer = httpx.Response(502, content=b"bad gateway")
        dropped = ("content-length", "transfer-encoding", "connection", "content-encoding")
        out = [(k.encode(), v.encode()) for k, v in answer.headers.items() if k not in dropped]
        out.append((b"content-length", str(len(answer.content)).encode()))
        await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
        await send({"type": "http.response.body", "body": answer.content})

    with serving(app) as port:
        yield port


@pytest.mark.parametrize("rewrite_host", [False, True])
def test_a_proxy_that_rewrites_host_breaks_inbound_signatures(
    tmp_path: Path, rewrite_host: bool
) -> None:
    upstream = free_port()
    with reverse_proxy(upstream, rewrite_host=rewrite_host) as proxy_port:
        public = f"http://127.0.0.1:{proxy_port}"
        env = {**PRIVATE_OK, "FEDISTREAM_BASE_URL": public}
        with running_server(tmp_path, port=upstream, extra_env=env) as server:
            result = run_doctor(server)
    found = statuses(result.stdout)
    if not rewrite_host:
        assert result.returncode == 0, result.stdout
        assert found["inbound signature"] == ["PASS"]
        return
    assert result.returncode == 1, result.stdout
    assert found["inbound signature"] == ["FAIL"]
    assert [c for c, s in found.items() if "FAIL" in s] == ["inbound signature"]
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("FAIL")]
    assert "proxy_set_header Host $host;" in line and "Host header" in line


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert main([*data, "doctor", "http://127.0.0.1:9", "--timeout", "3"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("fedistream doctor: checking http://127.0.0.1:9\n")
    assert "FAIL  actor: no answer from http://127.0.0.1:9/" in out
    assert "— fix: check that fedistream is running" in out
    assert out.rstrip().splitlines()[-1].endswith("failed")
    assert main([*data, "doctor", "ftp://example.test"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err
