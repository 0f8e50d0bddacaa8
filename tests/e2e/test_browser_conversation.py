"""A conversation in a real browser: the owner publishes a thought with a described image; another
real fedistream (B) likes it and replies; the owner sees the unread badge, reads the notification,
opens the thread and answers from it; a reader sees the image, the counts and the nested thread.
No console errors, no CSP violations.

Layer: end-to-end (two real `fedistream serve` on loopback; A driven by Debian's Chromium through
Playwright, B by its owner UI over HTTP).
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_browser import ConsoleWatch
from tests.live import OwnerBrowser, running_server, wait_until

pytestmark = pytest.mark.browser

FEDERATION_ENV = {"FEDISTREAM_ALLOW_PRIVATE_NETWORKS": "true"}
THOUGHT_LABEL = re.compile(r"^Thought\b")
ALT = "Three quinces ripening on a windowsill"
REPLY = "Those look nearly ready. Jelly or membrillo?"
ANSWER = "Membrillo, with a sharp cheese."


def _loaded(page: Page, selector: str) -> bool:
    return bool(page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0"))


def test_owner_answers_a_reply_and_a_reader_sees_the_thread(
    chromium_browser: Browser, tmp_path: Path
) -> None:
    with (
        running_server(tmp_path / "a", extra_env=FEDERATION_ENV) as a,
        running_server(tmp_path / "b", extra_env=FEDERATION_ENV) as b,
    ):
        handle_a = f"@owner@127.0.0.1:{a.port}"
        handle_b = f"@owner@127.0.0.1:{b.port}"
        other = OwnerBrowser(b)
        watch = ConsoleWatch()
        owner = chromium_browser.new_context()
        watch.watch(owner)
        reader = chromium_browser.new_context()
        watch.watch(reader)
        try:
            other.log_in()
            other.submit("/admin/following", "/admin/following", {"handle": handle_a})

            # The owner publishes a thought with a described image.
            page = owner.new_page()
            page.goto(a.url("/admin/login"))
            page.get_by_label("Password for").fill(a.password)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(a.url("/admin"))
            page.get_by_role("textbox", name=THOUGHT_LABEL).fill("The quinces are turning gold.")
            picture = tmp_path / "quinces.png"
            Image.new("RGB", (480, 360), (200, 170, 40)).save(picture, "PNG")
            page.get_by_label("Image 1", exact=True).set_input_files(picture)
            page.get_by_label("Image 1 description (alt text)").fill(ALT)
            page.get_by_role("button", name="Publish", exact=True).click()
            expect(page).to_have_url(re.compile(re.escape(a.url("/p/")) + r"[0-9a-zA-Z]{16}$"))
            permalink = page.url
            post_id = permalink.rsplit("/", 1)[1]

            # B likes it and replies (B follows A, so the thought is in B's timeline).
            wait_until(
                lambda: "quinces are turning gold" in other.page("/admin/timeline"),
                "the thought to reach B",
            )
            other.submit("/admin/timeline", "/admin/remote/like", {"note": permalink})
            form = f"/admin/reply?to={quote(permalink, safe='/')}"
            response = other.submit(
                form, "/admin/reply",
                {"in_reply_to": permalink, "action": "publish", "source": f"{handle_a} {REPLY}"},
            )  # fmt: skip
            assert response.status_code == 303, response.text  # type: ignore[attr-defined]

            # Both the like and the reply have been applied on A before the owner looks
            # (otherwise a late arrival would raise a new unread badge after reading).
            def both_arrived() -> bool:
                with urllib.request.urlopen(permalink, timeout=5) as response:  # noqa: S310
                    html = response.read().decode()
                return REPLY in html and 'aria-label="1 like"' in html

            wait_until(both_arrived, "B's like and reply to be applied on A")

            # The owner sees the unread badge and reads the notification.
            def badge_shows() -> bool:
                page.goto(a.url("/admin"))
                return page.locator(".admin-header .badge").count() > 0

            wait_until(badge_shows, "the reply to reach A and raise the unread badge")
            page.get_by_role("link", name=re.compile(r"^Notifications")).click()
            expect(page).to_have_url(a.url("/admin/notifications"))
            expect(page.get_by_text(REPLY)).to_be_visible()
            expect(page.get_by_text("replied to").first).to_be_visible()
            expect(page.get_by_text("liked").first).to_be_visible()

            # ...opens the thread and answers from it.
            page.get_by_role("link", name="View in thread").first.click()
            expect(page).to_have_url(re.compile(re.escape(f"/admin/posts/{post_id}/thread")))
            reply_item = page.locator("li.reply", has_text=REPLY)
            reply_item.get_by_role("link", name="Reply").click()
            textarea = page.get_by_role("textbox", name=THOUGHT_LABEL)
            expect(textarea).to_have_value(f"{handle_b} ")  # the author, named first
            textarea.fill(f"{handle_b} {ANSWER}")
            page.get_by_role("button", name="Publish reply").click()
            expect(page).to_have_url(re.compile(re.escape(f"/admin/posts/{post_id}/thread#p-")))
            answer = page.locator("li.reply", has_text=REPLY).locator("li.reply--own")
            expect(answer).to_contain_text(ANSWER)
            # After reading, the badge is gone.
            expect(page.locator(".admin-header .badge")).to_have_count(0)

            # A reader sees the image, the counts and the thread, the answer nested in the reply.
            view = reader.new_page()
            view.goto(permalink)
            image = view.get_by_role("img", name=ALT)
            expect(image).to_be_visible()
            image.scroll_into_view_if_needed()
            view.wait_for_function(
                "alt => [...document.images].some(i => i.alt === alt && i.complete"
                " && i.naturalWidth > 0)",
                arg=ALT,
            )
            expect(view.get_by_label("1 like")).to_be_visible()
            thread = view.get_by_role("region", name="2 replies")  # B's and the answer
            expect(thread).to_be_visible()
            remote = thread.locator("li.reply", has_text=REPLY)
            expect(remote.get_by_role("link", name="View the original")).to_have_attribute(
                "href", re.compile(re.escape(b.url("/p/")))
            )
            expect(remote.locator("li.reply--own")).to_contain_text(ANSWER)
            expect(view.get_by_role("button", name="Hide")).to_have_count(0)  # owner-only
            # The stream shows the thought with its counts, and not the answer.
            view.goto(a.url("/"))
            expect(view.get_by_label("1 like")).to_be_visible()
            expect(view.get_by_label("1 reply")).to_be_visible()
            expect(view.get_by_text(ANSWER)).to_have_count(0)

            # B received the answer in the right thread.
            wait_until(lambda: ANSWER in other.page("/admin/timeline"), "the answer to reach B")
            assert watch.errors == [], "console errors or CSP violations"
        finally:
            other.close()
            reader.close()
            owner.close()
