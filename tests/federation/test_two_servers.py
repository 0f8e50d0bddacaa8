"""Two real `fedistream serve` processes federating over loopback HTTP.

B's owner follows A's owner by handle (WebFinger → actor → Follow → Accept); A publishes, edits and
deletes a thought and B applies each; B unfollows. All of it is real HTTP with real signatures.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.live import as2_get, as2_total, federating_pair, wait_until


def test_follow_publish_edit_delete_unfollow(tmp_path: Path) -> None:
    with federating_pair(tmp_path) as (a, b, owner_a, owner_b):
        handle_a = f"@owner@127.0.0.1:{a.port}"

        # B follows A by handle; A auto-accepts; both sides agree.
        response = owner_b.submit("/admin/following", "/admin/following", {"handle": handle_a})
        assert response.status_code == 303, response.text  # type: ignore[attr-defined]
        wait_until(lambda: as2_total(a.url("/followers")) == 1, "A to record B as a follower")
        wait_until(lambda: as2_total(b.url("/following")) == 1, "B to receive A's Accept")
        assert b.url("/") in json.dumps(as2_get(a.url("/followers?page=1")))

        # A publishes: B's timeline shows it.
        post_id = owner_a.publish("Hello from A with a #federated tag", title="First")
        wait_until(
            lambda: "Hello from A" in owner_b.page("/admin/timeline"),
            "A's Create to reach B",
        )

        # A edits: B shows the new text.
        owner_a.submit(
            f"/admin/posts/{post_id}/edit",
            f"/admin/posts/{post_id}/edit",
            {"source": "Edited words from A", "title": "First", "action": "save"},
        )
        wait_until(
            lambda: "Edited words from A" in owner_b.page("/admin/timeline"),
            "A's Update to reach B",
        )
        assert "Hello from A" not in owner_b.page("/admin/timeline")

        # A deletes: it disappears from B.
        owner_a.submit(f"/admin/posts/{post_id}/delete", f"/admin/posts/{post_id}/delete", {})
        wait_until(
            lambda: "Edited words from A" not in owner_b.page("/admin/timeline"),
            "A's Delete to reach B",
        )

        # A's delivery page reports B's inbox as delivered.
        # (The thought is deleted, so check the follower count and B's unfollow instead.)
        response = owner_b.submit(
            "/admin/following", "/admin/following/remove", {"actor": a.url("/")}
        )
        assert response.status_code == 303  # type: ignore[attr-defined]
        wait_until(lambda: as2_total(a.url("/followers")) == 0, "B's Undo Follow to reach A")
        assert as2_total(b.url("/following")) == 0


def test_delivery_status_and_profile_updates(tmp_path: Path) -> None:
    with federating_pair(tmp_path) as (a, b, owner_a, owner_b):
        owner_b.submit(
            "/admin/following", "/admin/following", {"handle": f"owner@127.0.0.1:{a.port}"}
        )
        wait_until(lambda: as2_total(a.url("/followers")) == 1, "the follow to complete")
        post_id = owner_a.publish("Status check")
        wait_until(
            lambda: "delivered" in owner_a.page(f"/admin/posts/{post_id}/deliveries"),
            "the delivery page to show the delivery",
        )
        assert "127.0.0.1" in owner_a.page(f"/admin/posts/{post_id}/deliveries")

        # A profile change reaches followers as Update{Person} (R18): B shows the new name.
        response = owner_a.submit(
            "/admin/profile", "/admin/profile", {"display_name": "Alice Renamed", "bio": "hi"}
        )
        assert response.status_code == 303  # type: ignore[attr-defined]
        wait_until(
            lambda: "Alice Renamed" in owner_b.page("/admin/following"),
            "A's Update{Person} to refresh B's cache",
        )


def test_a_mention_reaches_the_mentioned_account(tmp_path: Path) -> None:
    with federating_pair(tmp_path) as (a, b, owner_a, owner_b):
        # B does not follow A and A does not follow B: only the mention connects them.
        post_id = owner_b.publish(f"Hello @owner@127.0.0.1:{a.port}, nice stream!")
        note = as2_get(b.url(f"/p/{post_id}"))
        mention = {"type": "Mention", "href": a.url("/"), "name": f"@owner@127.0.0.1:{a.port}"}
        assert mention in note["tag"]  # type: ignore[operator]
        assert a.url("/") in note["cc"]  # type: ignore[operator]
        assert 'class="u-url mention"' in str(note["content"])
        wait_until(
            lambda: "nice stream" in owner_a.page("/admin/timeline"),
            "the mention to reach A",
        )
