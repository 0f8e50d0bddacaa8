"""The `fedistream` command as an operator uses it: first run, init, passwd, post."""

from __future__ import annotations

import http.cookiejar
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.live import REPO_ROOT, running_server


def run_cli(
    *args: str,
    data_dir: Path,
    stdin: str = "",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FEDISTREAM_")}
    base["PYTHONPATH"] = str(REPO_ROOT)
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fedistream.cli", "--data-dir", str(data_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=base,
        cwd=cwd or data_dir.parent,
        timeout=60,
    )


def _login_status(base_url: str, password: str) -> int:
    """Log in through the real form with urllib (cookie jar); returns the final status."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base_url + "/admin/login", timeout=5).read().decode()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token
    body = urllib.parse.urlencode({"csrf": token.group(1), "password": password}).encode()
    try:
        response = opener.open(base_url + "/admin/login", data=body, timeout=5)
        return response.status if "/admin/login" not in response.url else 401
    except urllib.error.HTTPError as exc:
        return exc.code


def test_first_run_prints_a_working_password_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(tmp_path, password=None, data_dir=data) as server:
        output = server.output()
        match = re.search(r"Password \(shown once\): (\S+)", output)
        assert match, output
        assert _login_status(server.base_url, match.group(1)) == 200
        assert _login_status(server.base_url, "not the password") == 401
    with running_server(tmp_path, password=None, data_dir=data) as again:
        assert "Password (shown once)" not in again.output()


def test_init_writes_a_config_that_serve_reads(tmp_path: Path) -> None:
    data = tmp_path / "site"
    result = run_cli(
        "init",
        "--yes",
        "--base-url",
        "https://stream.example.test",
        "--username",
        "ada",
        "--display-name",
        "Ada",
        data_dir=data,
    )
    assert result.returncode == 0, result.stderr
    config = tomllib.loads((data / "fedistream.toml").read_text())
    assert config["base_url"] == "https://stream.example.test"
    assert config["username"] == "ada"
    assert "password" not in " ".join(config)
    again = run_cli("init", "--yes", data_dir=data)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = run_cli("init", "--yes", "--force", "--base-url", "ftp://x", data_dir=data)
    assert bad.returncode == 2 and "base_url" in bad.stderr


def test_passwd_changes_the_password(tmp_path: Path) -> None:
    data = tmp_path / "data"
    short = run_cli("passwd", "--password-stdin", data_dir=data, stdin="short\n")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    ok = run_cli("passwd", "--password-stdin", data_dir=data, stdin="a brand new secret\n")
    assert ok.returncode == 0, ok.stderr
    with running_server(tmp_path, password=None, data_dir=data) as server:
        assert "Password (shown once)" not in server.output()
        assert _login_status(server.base_url, "a brand new secret") == 200


def test_post_beside_a_running_server_shows_up(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(tmp_path, data_dir=data) as server:
        env = {"FEDISTREAM_PORT": str(server.port)}
        result = run_cli(
            "post", "Written from the *shell* #cli", "--title", "Shell", data_dir=data, env=env
        )
        assert result.returncode == 0, result.stderr
        url = result.stdout.strip()
        assert url.startswith(server.base_url + "/p/")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            home = urllib.request.urlopen(server.base_url + "/", timeout=5).read().decode()
            if "Written from the <em>shell</em>" in home:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the thought posted from the shell never appeared on /")
        note = tmp_path / "note.md"
        note.write_text("From a *file*.\n\n- one\n- two\n")
        from_file = run_cli("post", "-f", str(note), data_dir=data, env=env)
        assert from_file.returncode == 0, from_file.stderr
        page = urllib.request.urlopen(from_file.stdout.strip(), timeout=5).read().decode()
        assert "<li>one</li>" in page


def test_post_refuses_bad_input(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"FEDISTREAM_OWNER_PASSWORD": "long enough password"}
    empty = run_cli("post", "   ", data_dir=data, env=env)
    assert empty.returncode == 1 and "The thought is empty" in empty.stderr
    missing = run_cli("post", data_dir=data, env=env)
    assert missing.returncode == 2
    bad_setting = run_cli("post", "x", data_dir=data, env={"FEDISTREAM_PORT": "nope"})
    assert bad_setting.returncode == 2 and "port" in bad_setting.stderr
