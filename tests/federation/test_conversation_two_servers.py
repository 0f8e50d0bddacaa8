"""A conversation between two real `fedistream serve` processes over loopback HTTP.

B follows A; A publishes; from B's timeline the owner of B likes, boosts and replies to A's
thought; A's public page and notifications show all three. A answers B's reply from the thread,
and B receives the answer in the right thread (inReplyTo B's reply). B takes back its boost, then
deletes its reply, and both disappear from A. Real HTTP, real signatures, real delivery queues.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from urllib.parse import quote

from tests.live import OwnerBrowser, as2_get, as2_total, federating_pair, wait_until


def _public(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
        return str(response.read().decode("utf-8"))


def _reply_form(note: str) -> str:
    return f"/admin/reply?to={quote(note, safe='/')}"


def _reply(owner: OwnerBrowser, note: str, handle: str, text: str) -> str:
    """Reply to `note` through the owner's reply form, which must name its author (`handle`)
    first; returns the new thought's id."""
    form = _reply_form(note)
    assert f">{handle} </textarea>" in owner.page(form)
    response = owner.submit(
        form,
        "/admin/reply",
        {"in_reply_to": note, "action": "publish", "source": f"{handle} {text}"},
    )
    assert response.status_code == 303, response.text  # type: ignore[attr-defined]
    return str(response.headers["location"]).rsplit("#p-", 1)[1]  # type: ignore[attr-defined]


def test_reply_like_boost_answer_and_delete(tmp_path: Path) -> None:
    with federating_pair(tmp_path) as (a, b, owner_a, owner_b):
        handle_a = f"@owner@127.0.0.1:{a.port}"
        handle_b = f"@owner@127.0.0.1:{b.port}"
        owner_b.submit("/admin/following", "/admin/following", {"handle": handle_a})
        wait_until(lambda: as2_total(b.url("/following")) == 1, "B to follow A")

        post_id = owner_a.publish("Which fruit tree would you plant first?")
        note_a = a.url(f"/p/{post_id}")
        wait_until(
            lambda: "Which fruit tree" in owner_b.page("/admin/timeline"),
            "A's thought to reach B's timeline",
        )

        # B likes and boosts it from the timeline.
        for action in ("like", "boost"):
            response = owner_b.submit(
                "/admin/timeline", f"/admin/remote/{action}", {"note": note_a}
            )
            assert response.status_code == 303, response.text  # type: ignore[attr-defined]
        assert ">Unlike</button>" in owner_b.page("/admin/timeline")

        # B replies: the form names A's owner first.
        reply_b = _reply(owner_b, note_a, handle_a, "A quince, without a doubt.")
        note_b = b.url(f"/p/{reply_b}")
        assert as2_get(note_b)["inReplyTo"] == note_a
        # B's reply is not one of B's top-level thoughts.
        assert "A quince" not in _public(b.url("/"))

        # A's public page shows the reply (author, handle, link to the original) and counts.
        def a_page_shows_everything() -> bool:
            page = _public(note_a)
            return (
                "A quince, without a doubt." in page
                and 'aria-label="1 like"' in page
                and 'aria-label="1 boost"' in page
            )

        wait_until(a_page_shows_everything, "B's like, boost and reply to show on A's page")
        page = _public(note_a)
        assert handle_b in page and f'href="{note_b}"' in page
        assert 'aria-label="1 like"' in _public(a.url("/"))  # the stream shows counts too
        note = as2_get(note_a)
        assert note["likes"]["totalItems"] == 1 and note["shares"]["totalItems"] == 1  # type: ignore[index]
        others = as2_get(a.url(f"/p/{post_id}/replies?only_other_accounts=true&page=true"))
        assert others["items"] == [note_b]

        # A's notifications: the follow, the like, the boost, the reply.
        notifications = owner_a.page("/admin/notifications")
        for words in ("followed you", "liked", "boosted", "replied to", "A quince"):
            assert words in notifications, words

        # A answers B's reply from the thread.
        thread = owner_a.page(f"/admin/posts/{post_id}/thread")
        assert _reply_form(note_b) in thread
        answer_a = _reply(owner_a, note_b, handle_b, "Quinces it is: they forgive a cold spring.")
        assert "they forgive" in _public(note_a)  # in A's thread, under B's reply
        assert "they forgive" not in _public(a.url("/"))

        # B receives A's answer in the right thread.
        wait_until(
            lambda: "they forgive a cold spring" in owner_b.page("/admin/timeline"),
            "A's answer to reach B",
        )
        timeline = owner_b.page("/admin/timeline")
        assert re.search(r"in reply to <a href=\"" + re.escape(note_b), timeline), timeline
        assert "they forgive a cold spring" in _public(note_b)  # the thread under B's reply
        assert "replied to" in owner_b.page("/admin/notifications")
        assert as2_get(a.url(f"/p/{answer_a}"))["inReplyTo"] == note_b

        # B takes back its boost: A's count drops.
        owner_b.submit("/admin/timeline", "/admin/remote/unboost", {"note": note_a})
        wait_until(lambda: 'aria-label="1 boost"' not in _public(note_a), "B's Undo to reach A")
        assert 'aria-label="1 like"' in _public(note_a)

        # B deletes its reply: it disappears from A's page and notifications.
        response = owner_b.submit(
            f"/admin/posts/{reply_b}/delete", f"/admin/posts/{reply_b}/delete", {}
        )
        assert response.status_code == 303  # type: ignore[attr-defined]
        wait_until(
            lambda: "A quince, without a doubt." not in _public(note_a),
            "B's Delete to reach A",
        )
        assert "A quince" not in owner_a.page("/admin/notifications")
