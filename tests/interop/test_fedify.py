"""Interop with Fedify, an independent ActivityPub implementation (npm `@fedify/fedify`).

A real `fedistream serve` runs over TLS (a throwaway trustme CA: Fedify resolves `acct:` handles
over https only) as `https://localhost:<port>`. A Node program built on Fedify
(`fedify/follower.mjs`) looks the owner up by handle, follows, and records what its inbox
receives — after Fedify itself has verified the HTTP signature and parsed the activity. The owner
then publishes, edits and deletes a thought through the admin UI, and the follower must have
received a Create, an Update and a Delete that say so.

Signatures: Fedify knocks with RFC 9421 first and retries with draft-cavage after a 400/401
("double-knocking"); with `firstKnock` set it starts with draft-cavage. Both runs must end in an
accepted Follow; which scheme our inbox accepted is recorded as the test's `accepted_scheme`
property (see `pytest -rA` or the JUnit XML).

`.ci/run` installs the Node side (`npm ci` in tests/interop/fedify).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.live import LiveServer, OwnerBrowser, _free_port, running_server

FEDIFY_DIR = Path(__file__).resolve().parent / "fedify"
FOLLOWER_SCRIPT = FEDIFY_DIR / "follower.mjs"
WAIT_S = 30.0  # each step's bound; a healthy run takes a second or two per step
CAVAGE = "draft-cavage-http-signatures-12"
RFC9421 = "rfc9421"

Event = dict[str, Any]


# --- the Node follower --------------------------------------------------------------------------


def _node() -> str:
    # A failure, not a skip: CI installs Node's side, and a skipped interop test hides breakage.
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the Fedify interop test needs Node.js 20+")
    if not (FEDIFY_DIR / "node_modules" / "@fedify" / "fedify").is_dir():
        pytest.fail(f"Fedify is not installed: run `npm ci --no-audit --no-fund` in {FEDIFY_DIR}")
    return node


@dataclass(slots=True)
class Follower:
    """The running follower.mjs: its recorded events and what it printed."""

    process: subprocess.Popen[bytes]
    events_path: Path
    log_path: Path

    def events(self) -> list[Event]:
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text("utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def received(self, activity_type: str) -> list[Event]:
        return [e for e in self.events() if e["event"] == "received" and e["type"] == activity_type]

    def first(self, event: str) -> Event | None:
        return next((e for e in self.events() if e["event"] == event), None)

    def output(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""


@contextmanager
def running_follower(
    tmp_path: Path, handle: str, ca_pem: Path, first_knock: str | None
) -> Iterator[Follower]:
    node = _node()
    events_path = tmp_path / "follower-events.jsonl"
    log_path = tmp_path / "follower.log"
    args = [node, str(FOLLOWER_SCRIPT), "--handle", handle, "--out", str(events_path)]
    if first_knock:
        args += ["--first-knock", first_knock]
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(ca_pem)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args,
            cwd=FEDIFY_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield Follower(process=process, events_path=events_path, log_path=log_path)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


# --- TLS for the server under test --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tls:
    ca_pem: Path
    server_pem: Path  # key and certificate chain in one file (uvicorn takes it for both)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_pem))


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    ca = trustme.CA()
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    server_pem = tmp_path / "server.pem"
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    return Tls(ca_pem=ca_pem, server_pem=server_pem)


@contextmanager
def tls_server(tmp_path: Path, tls: Tls) -> Iterator[LiveServer]:
    port = _free_port()
    env = {
        "FEDISTREAM_TLS_CERTFILE": str(tls.server_pem),
        "FEDISTREAM_TLS_KEYFILE": str(tls.server_pem),
        "FEDISTREAM_BASE_URL": f"https://localhost:{port}",
        "FEDISTREAM_ALLOW_PRIVATE_NETWORKS": "true",  # the follower lives on 127.0.0.1
        "SSL_CERT_FILE": str(tls.ca_pem),  # httpx's default context reads it
    }
    with running_server(tmp_path, extra_env=env, port=port, ca_file=tls.ca_pem) as server:
        yield server


# --- helpers ------------------------------------------------------------------------------------


class Diagnosed:
    """Waits and checks that, on failure, show both sides' logs and the follower's events."""

    def __init__(self, server: LiveServer, follower: Follower) -> None:
        self.server = server
        self.follower = follower

    def report(self) -> str:
        events = "\n".join(json.dumps(e) for e in self.follower.events())
        return (
            f"\n--- follower events ---\n{events}"
            f"\n--- follower output (Fedify's log) ---\n{self.follower.output()[-8000:]}"
            f"\n--- fedistream serve output ---\n{self.server.output()[-8000:]}"
        )

    def wait_for(self, predicate: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.follower.process.poll() is not None:
                pytest.fail(
                    f"the follower exited ({self.follower.process.returncode}) while "
                    f"waiting for {what}" + self.report()
                )
            if self.follower.first("fatal"):
                pytest.fail(f"the follower failed while waiting for {what}" + self.report())
            time.sleep(0.2)
        pytest.fail(f"timed out after {WAIT_S:.0f} s waiting for {what}" + self.report())

    def check(self, condition: object, message: str) -> None:
        if not condition:
            pytest.fail(message + self.report())


def _as2(client: httpx.Client, url: str) -> dict[str, Any]:
    response = client.get(url, headers={"Accept": "application/activity+json"})
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def _follow_knocks(follower: Follower, inbox: str) -> list[Event]:
    """The follower's POSTs to our inbox, in order: one per signature scheme it tried."""
    return [
        e
        for e in follower.events()
        if e["event"] == "knock" and e["method"] == "POST" and e["url"] == inbox
    ]


# --- the test -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first_knock",
    [None, CAVAGE],
    ids=["fedify-default-rfc9421-first", "draft-cavage-first"],
)
def test_fedify_follows_and_receives_create_update_delete(
    tmp_path: Path,
    tls: Tls,
    first_knock: str | None,
    record_property: Callable[[str, object], None],
) -> None:
    with tls_server(tmp_path, tls) as server:
        base = server.base_url
        actor_id, inbox, permalink_of = base + "/", base + "/inbox", (lambda i: f"{base}/p/{i}")
        handle = f"@owner@localhost:{server.port}"
        with (
            running_follower(tmp_path, handle, tls.ca_pem, first_knock) as follower,
            httpx.Client(verify=tls.client_context(), timeout=10) as client,
        ):
            check = Diagnosed(server, follower)

            # Fedify finds the owner by handle (WebFinger over https) and follows.
            looked_up = check.wait_for(lambda: follower.first("looked-up"), "the handle lookup")
            check.check(
                looked_up["type"] == "Person"
                and looked_up["id"] == actor_id
                and looked_up["inbox"] == inbox,
                f"{handle} resolved to {looked_up}, expected the Person {actor_id}",
            )
            sent = check.wait_for(
                lambda: follower.first("sent") or follower.first("send-failed"), "the Follow"
            )
            check.check(sent["event"] == "sent", f"Fedify could not deliver the Follow: {sent}")
            follow_id = sent["id"]

            # Which signature scheme our inbox took. Every refused knock must be a 400/401 (the
            # only answers that make Fedify try the other scheme) and the last one a success.
            knocks = _follow_knocks(follower, inbox)
            check.check(
                knocks and 200 <= knocks[-1].get("status", 0) < 300,
                f"the Follow did not end accepted: {knocks}",
            )
            check.check(
                all(k.get("status") in (400, 401) for k in knocks[:-1]),
                f"a refused knock was not a 400/401: {knocks}",
            )
            accepted_scheme = knocks[-1]["scheme"]
            record_property("accepted_scheme", accepted_scheme)
            tried = [(k["scheme"], k.get("status")) for k in knocks]
            record_property("knocks", tried)
            print(f"Follow knocks (scheme, status): {tried}")
            expected_first = first_knock or RFC9421
            check.check(
                knocks[0]["scheme"] == expected_first,
                f"Fedify's first knock was not {expected_first}: {knocks}",
            )
            if first_knock == CAVAGE:
                # Mastodon's scheme must be taken as is, without a retry.
                check.check(
                    len(knocks) == 1 and accepted_scheme == CAVAGE,
                    f"a draft-cavage Follow was not accepted first time: {knocks}",
                )

            # Our Accept reaches Fedify, verified, and names its Follow.
            accept = check.wait_for(lambda: follower.received("Accept"), "our Accept")[0]
            check.check(
                accept["actor"] == actor_id and accept["objectId"] == follow_id,
                f"the Accept does not accept {follow_id} as {actor_id}: {accept}",
            )
            follower_id = follower.first("listening")["actor"]  # type: ignore[index]
            check.wait_for(
                lambda: follower_id in _as2(client, base + "/followers?page=1")["orderedItems"],
                "/followers to list the Fedify follower",
            )
            check.check(
                _as2(client, base + "/followers")["totalItems"] == 1,
                "/followers does not count exactly one follower",
            )

            owner = OwnerBrowser(server, verify=tls.client_context())
            try:
                owner.log_in()

                # Publish → Create(Note).
                post_id = owner.publish("Hello Fedify from fedistream")
                note_id = permalink_of(post_id)
                create = check.wait_for(lambda: follower.received("Create"), "our Create")[0]
                note = create["object"] or {}
                check.check(
                    create["actor"] == actor_id
                    and create["objectId"] == note_id
                    and note.get("type") == "Note"
                    and note.get("id") == note_id
                    and "Hello Fedify from fedistream" in (note.get("content") or "")
                    and note.get("attributedTo") == actor_id,
                    f"the Create is not our Note {note_id}: {create}",
                )

                # Edit → Update(Note) with the new text.
                response = owner.submit(
                    f"/admin/posts/{post_id}/edit",
                    f"/admin/posts/{post_id}/edit",
                    {"source": "Edited words for Fedify", "title": "", "action": "save"},
                )
                check.check(
                    response.status_code == 303,  # type: ignore[attr-defined]
                    f"editing failed: {response}",
                )
                update = check.wait_for(lambda: follower.received("Update"), "our Update")[0]
                updated = update["object"] or {}
                check.check(
                    update["actor"] == actor_id
                    and update["objectId"] == note_id
                    and updated.get("id") == note_id
                    and "Edited words for Fedify" in (updated.get("content") or "")
                    and "Hello Fedify" not in (updated.get("content") or ""),
                    f"the Update does not carry the edited Note {note_id}: {update}",
                )

                # Delete → Delete whose object is the Note's id.
                response = owner.submit(
                    f"/admin/posts/{post_id}/delete", f"/admin/posts/{post_id}/delete", {}
                )
                check.check(
                    response.status_code == 303,  # type: ignore[attr-defined]
                    f"deleting failed: {response}",
                )
                delete = check.wait_for(lambda: follower.received("Delete"), "our Delete")[0]
                check.check(
                    delete["actor"] == actor_id and delete["objectId"] == note_id,
                    f"the Delete does not delete {note_id}: {delete}",
                )
            finally:
                owner.close()

            # How our server signed what it delivered (Fedify verifies either scheme).
            signed_with = sorted(
                {e["scheme"] for e in follower.events() if e["event"] == "inbound"}
            )
            record_property("delivery_schemes", signed_with)
            print(f"our deliveries to Fedify were signed with: {signed_with}")

            # Nothing Fedify refused along the way: every delivery verified and parsed.
            refused = [e for e in follower.events() if e["event"] in ("unverified", "inbox-error")]
            check.check(not refused, f"Fedify refused some of our deliveries: {refused}")
