"""Two real `fedistream serve` processes: pinning and blocking over loopback HTTP.

B follows A. A pins a thought: B's inbox receives the `Add` and A's `/featured` lists the Note.
Then A blocks B from its followers page: B's follow is gone on both sides, B's later activities
(a Like signed with B's real key, a mention from B's delivery worker) are refused with 403, and
A's next thought is not delivered to B.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from fedistream.core import httpsig
from tests.live import LiveServer, as2_get, as2_total, federating_pair, wait_until


def _rows(server: LiveServer, sql: str, *params: object) -> list[sqlite3.Row]:
    """Read the server's own database (WAL: a reader beside the running server is fine)."""
    conn = sqlite3.connect(f"file:{server.data_dir / 'fedistream.sqlite3'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


def _inbox_types(server: LiveServer) -> list[str]:
    return [r["type"] for r in _rows(server, "SELECT type FROM inbox ORDER BY received_at")]


def _signed_post(sender: LiveServer, inbox_url: str, activity: dict[str, Any]) -> httpx.Response:
    """POST an activity as `sender`'s owner, signed with its real private key."""
    (key,) = _rows(sender, "SELECT value FROM meta WHERE key = 'private_key_pem'")
    body = json.dumps(activity).encode()
    headers = httpsig.sign_request(
        "POST", inbox_url, {"content-type": "application/activity+json"}, body,
        key["value"], sender.url("/#main-key"), datetime.now(UTC),
    )  # fmt: skip
    return httpx.post(inbox_url, content=body, headers=headers, timeout=10)


def test_pin_reaches_follower_then_block_cuts_them_off(tmp_path: Path) -> None:
    with federating_pair(tmp_path) as (a, b, owner_a, owner_b):
        actor_a, actor_b = a.url("/"), b.url("/")

        handle_a = f"@owner@127.0.0.1:{a.port}"
        owner_b.submit("/admin/following", "/admin/following", {"handle": handle_a})
        wait_until(lambda: as2_total(a.url("/followers")) == 1, "A to record B as a follower")
        wait_until(lambda: as2_total(b.url("/following")) == 1, "B to receive A's Accept")

        # A pins a thought: B receives the Add; A's featured collection lists the Note.
        pinned = owner_a.publish("Read this first", title="Welcome")
        response = owner_a.submit("/admin", f"/admin/posts/{pinned}/pin", {})
        assert response.status_code == 303  # type: ignore[attr-defined]
        note_id = a.url(f"/p/{pinned}")
        featured = as2_get(a.url("/featured"))
        assert [n["id"] for n in featured["orderedItems"]] == [note_id]
        wait_until(lambda: "Add" in _inbox_types(b), "A's Add to reach B's inbox")
        (add,) = _rows(b, "SELECT json, actor_id FROM inbox WHERE type = 'Add'")
        received = json.loads(add["json"])
        assert add["actor_id"] == actor_a
        assert (received["object"], received["target"]) == (note_id, a.url("/featured"))

        # A blocks B from its followers page.
        response = owner_a.submit(
            "/admin/followers", "/admin/blocks",
            {"target": actor_b, "next": "/admin/followers"},
        )  # fmt: skip
        assert response.status_code == 303  # type: ignore[attr-defined]
        location = response.headers["location"]  # type: ignore[attr-defined]
        assert location == "/admin/followers?done=blocked"
        assert as2_total(a.url("/followers")) == 0
        assert actor_b not in owner_a.page("/admin/followers")
        assert actor_b in owner_a.page("/admin/blocks")
        # A's Reject ends B's follow on B's side too; B is told of the Block.
        wait_until(lambda: as2_total(b.url("/following")) == 0, "A's Reject to reach B")
        wait_until(lambda: "Block" in _inbox_types(b), "A's Block to reach B")

        # B's Like, signed with B's real key, is refused with 403 JSON.
        like = {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": actor_b + "#likes/1", "type": "Like", "actor": actor_b, "object": note_id,
        }  # fmt: skip
        refused = _signed_post(b, a.url("/inbox"), like)
        assert refused.status_code == 403, refused.text
        assert "blocked" in refused.json()["error"]
        assert not _rows(a, "SELECT 1 FROM inbox WHERE id = ?", like["id"])

        # B's Create (a mention of A) is refused by A: B's delivery records the 403.
        mention = owner_b.publish(f"Hello {handle_a}, are you there?")
        create_id = b.url(f"/p/{mention}/activity")
        wait_until(
            lambda: [r["last_status"] for r in _rows(
                b, "SELECT last_status FROM deliveries WHERE activity_id = ?", create_id
            )] == [403],
            "B's delivery of its Create to A to be refused",
        )  # fmt: skip
        assert "are you there" not in owner_a.page("/admin/timeline")
        assert not _rows(a, "SELECT 1 FROM inbox WHERE id = ?", create_id)

        # A's next thought is not delivered to B.
        later = owner_a.publish("Not for B")
        create_later = a.url(f"/p/{later}/activity")
        assert _rows(a, "SELECT inbox FROM deliveries WHERE activity_id = ?", create_later) == []
        sent_to_b = _rows(
            a, "SELECT a.type FROM deliveries d JOIN activities a ON a.id = d.activity_id "
            "WHERE d.recipient = ? OR d.inbox LIKE ? ORDER BY d.id",
            actor_b, b.url("/%"),
        )  # fmt: skip
        assert [r["type"] for r in sent_to_b] == ["Accept", "Create", "Add", "Reject", "Block"]
