"""`fedistream backup` while the server is busy writing, then a restore that simply works.

A real `fedistream serve` process with 30 followers on a loopback sink publishes thought after
thought through the owner UI (each one a post, its Create and 30 delivery rows, all in one
transaction) while `fedistream backup` copies the live database from another process. The
server is stopped, the backup file alone becomes the database of a new data directory, and a
server started there on the same address must hold every thought confirmed before the backup
began, no thought begun after it ended, a consistent queue, the same key pair and owner password,
and must publish and deliver a new thought.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.federation.sink import Sink, free_ports, seed_followers
from tests.live import OWNER_PASSWORD, LiveServer, OwnerBrowser, _server_env, running_server
from tests.live import wait_until as wait_for

FEDERATION_ENV = {"FEDISTREAM_ALLOW_PRIVATE_NETWORKS": "true"}
DB_NAME = "fedistream.sqlite3"
FOLLOWERS = 30
MAX_THOUGHTS = 80  # the writer stops by then at the latest
LIMIT_S = 60.0
AS2 = "application/activity+json"


class Writer(threading.Thread):
    """Publishes through the UI until stopped; remembers when each publish began and ended."""

    def __init__(self, server: LiveServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.done: list[tuple[float, float, str]] = []  # (began, confirmed, post id)
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        owner = OwnerBrowser(self.server)
        started = time.monotonic()
        try:
            owner.log_in()
            for n in range(MAX_THOUGHTS):
                if self.stopping.is_set() or time.monotonic() - started > LIMIT_S:
                    break
                began = time.monotonic()
                try:
                    post_id = owner.publish(f"Thought {n}, written while a backup may run.")
                except AssertionError as exc:
                    self.failures.append(str(exc)[:300])
                    continue
                self.done.append((began, time.monotonic(), post_id))
        finally:
            owner.close()


def _actor_key(server: LiveServer) -> str:
    actor = httpx.get(server.url("/"), headers={"Accept": AS2}, timeout=10, trust_env=False)
    assert actor.status_code == 200
    return str(json.loads(actor.text)["publicKey"]["publicKeyPem"])


def test_backup_while_writing_restores_into_a_working_instance(tmp_path: Path) -> None:
    *sink_ports, port = free_ports(3)
    sink = Sink(tmp_path / "sink", ports=sink_ports)
    inboxes = [sink.inbox(n) for n in range(FOLLOWERS)]
    data_dir = tmp_path / "a" / "data"
    seed_followers(data_dir / DB_NAME, inboxes)
    backup_file = tmp_path / "backups" / "a.sqlite3"
    backup_file.parent.mkdir()
    sink.start(delay_ms=5)
    try:
        with running_server(
            tmp_path / "a", data_dir=data_dir, port=port, extra_env=FEDERATION_ENV
        ) as a:
            key_before = _actor_key(a)
            writer = Writer(a)
            writer.start()
            wait_for(lambda: len(writer.done) >= 10, "ten thoughts before the backup", timeout=30)
            backup_began = time.monotonic()
            command = subprocess.run(
                [sys.executable, "-m", "fedistream.cli", "backup", str(backup_file)],
                env=_server_env(data_dir, port, None, FEDERATION_ENV),
                cwd=data_dir,
                capture_output=True,
                text=True,
                timeout=60,
            )
            backup_ended = time.monotonic()
            wait_for(
                lambda: any(began > backup_ended for began, _, _ in writer.done),
                "a thought published after the backup",
                timeout=30,
            )
            writer.stopping.set()
            writer.join(30)
        assert command.returncode == 0, command.stderr
        assert "integrity check ok" in command.stdout
        assert not writer.failures, writer.failures

        before = {pid for _, confirmed, pid in writer.done if confirmed < backup_began}
        during = {
            pid for began, c, pid in writer.done if began <= backup_ended and c >= backup_began
        }
        after = {pid for began, _, pid in writer.done if began > backup_ended}
        print(
            f"\nbackup while writing: {len(before)} thoughts confirmed before it, {len(during)} "
            f"overlapping its {backup_ended - backup_began:.2f} s, {len(after)} after; "
            f"{command.stdout.strip()}"
        )

        # The file alone is a complete, self-contained database.
        copy = sqlite3.connect(backup_file)
        try:
            assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            in_copy = {row[0] for row in copy.execute("SELECT id FROM posts")}
            # One committed state: every thought in it has its Create and its whole fan-out.
            per_post = copy.execute(
                "SELECT p.id, count(d.id) FROM posts p "
                "JOIN activities a ON a.post_id = p.id AND a.type = 'Create' "
                "LEFT JOIN deliveries d ON d.activity_id = a.id GROUP BY p.id"
            ).fetchall()
        finally:
            copy.close()
        assert before <= in_copy
        assert not after & in_copy
        assert in_copy <= before | during
        assert {pid for pid, _ in per_post} == in_copy
        assert {n for _, n in per_post} == {FOLLOWERS}

        # Restore: the backup becomes the database of a fresh data directory.
        restored_dir = tmp_path / "b" / "data"
        restored_dir.mkdir(parents=True)
        (restored_dir / DB_NAME).write_bytes(backup_file.read_bytes())
        arrived_before = len(sink.records())
        with running_server(
            tmp_path / "b",
            data_dir=restored_dir,
            port=port,  # the same address: the same ids
            password=None,  # the owner's password must come from the backup
            extra_env=FEDERATION_ENV,
        ) as b:
            assert "Password (shown once)" not in b.output()
            for post_id in sorted(before):
                assert httpx.get(b.url(f"/p/{post_id}"), trust_env=False).status_code == 200
            for post_id in sorted(after):
                assert httpx.get(b.url(f"/p/{post_id}"), trust_env=False).status_code == 404
            assert _actor_key(b) == key_before  # peers still verify our signatures
            b.password = OWNER_PASSWORD
            owner = OwnerBrowser(b)
            try:
                owner.log_in()
                new_id = owner.publish("The first thought after the restore.")
            finally:
                owner.close()
            activity = b.url(f"/p/{new_id}/activity")
            wait_for(
                lambda: set(sink.delivered(activity)) == set(inboxes),
                "the restored instance to deliver its new thought to every follower",
                timeout=30,
            )
            assert "Traceback" not in b.output()
    finally:
        sink.stop()
    print(
        f"restored: {len(in_copy)} thoughts served, same key, owner logged in, new thought "
        f"delivered to {FOLLOWERS} followers ({len(sink.records()) - arrived_before} requests "
        "after the restore, owed ones included)"
    )
