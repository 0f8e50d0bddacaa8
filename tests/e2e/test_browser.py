"""The owner's story in a real browser: log in, write, preview, publish, read, edit, search, follow
a tag, delete — against a real `fedistream serve`, with no console errors or CSP violations.

Layer: end-to-end (the whole stack through HTTP, as a person uses it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from tests.live import LiveServer

pytestmark = pytest.mark.browser

TITLE = "Notes from the allotment"
LINK = "https://127.0.0.1:9/somewhere"
SOURCE = (
    "Three things learned this week at the #Gardening club:\n"
    "\n"
    "- quinces want a sheltered corner\n"
    "- basil sulks below ten degrees\n"
    f"- the [seed catalogue]({LINK}) lists forty tomatoes\n"
)
OLD_WORD, NEW_WORD = "quinces", "medlars"
# The textarea's label begins "Thought — Markdown: …"; sections named "New thought" also match
# a plain substring, so anchor it.
THOUGHT_LABEL = re.compile(r"^Thought\b")
LIST_ITEMS = [
    "quinces want a sheltered corner",
    "basil sulks below ten degrees",
    "the seed catalogue lists forty tomatoes",
]

# Chromium logs CSP violations as console errors already; this listener makes sure each one is
# reported even where the browser would stay quiet (report-only cases, repeated blocks).
# Init scripts run through the DevTools protocol, so the page's own CSP does not block this.
CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', (e) => {
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline'));
});
"""


@dataclass  # no slots: Playwright caches a wrapper on the object whose bound methods it calls
class ConsoleWatch:
    """Every console error and uncaught page exception seen in the pages it watches."""

    errors: list[str] = field(default_factory=list)

    def watch(self, context: BrowserContext) -> None:
        context.add_init_script(CSP_LISTENER)
        context.on("page", self._attach)
        for page in context.pages:
            self._attach(page)

    def _attach(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "") if message.location else ""
            self.errors.append(f"{message.text} (at {where})")


def _open(browser: Browser, watch: ConsoleWatch, **options: object) -> tuple[BrowserContext, Page]:
    context = browser.new_context(**options)  # type: ignore[arg-type]
    watch.watch(context)
    return context, context.new_page()


def _background(page: Page) -> str:
    return str(page.evaluate("getComputedStyle(document.body).backgroundColor"))


def test_owner_story_publish_read_edit_search_tag_delete(
    chromium_browser: Browser, live_server: LiveServer, tmp_path: Path
) -> None:
    server = live_server
    watch = ConsoleWatch()
    context, page = _open(chromium_browser, watch, color_scheme="light")

    # Log in.
    page.goto(server.url("/admin/login"))
    page.get_by_label("Password for").fill(server.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url("/admin"))
    expect(page.get_by_role("heading", name="New thought")).to_be_visible()

    # Write, then preview: the list is rendered, nothing is published yet, the draft is kept.
    page.get_by_label("Title").fill(TITLE)
    page.get_by_role("textbox", name=THOUGHT_LABEL).fill(SOURCE)
    page.get_by_role("button", name="Preview").click()
    preview = page.get_by_role("region", name="Preview")
    expect(preview.locator("li")).to_have_text(LIST_ITEMS)
    expect(preview.locator(f'a[href="{LINK}"]')).to_have_text("seed catalogue")
    expect(preview.get_by_role("heading", name=TITLE)).to_be_visible()
    expect(page.get_by_label("Title")).to_have_value(TITLE)
    expect(page.locator(".post-list .empty")).to_be_visible()

    # Publish: the browser lands on the new thought's permalink.
    page.get_by_role("button", name="Publish").click()
    expect(page).to_have_url(re.compile(re.escape(server.url("/p/")) + r"[0-9a-zA-Z]{16}$"))
    permalink = page.url

    # The stream shows it, with real list items and a real link.
    page.goto(server.url("/"))
    entry = page.locator("article.h-entry", has_text=TITLE)
    expect(entry).to_have_count(1)
    expect(entry.locator(".e-content li")).to_have_text(LIST_ITEMS)
    expect(entry.locator(f'.e-content a[href="{LINK}"]')).to_have_text("seed catalogue")
    expect(entry.get_by_role("link", name=TITLE)).to_have_attribute(
        "href", permalink.removeprefix(server.base_url)
    )
    page.screenshot(path=tmp_path / "stream-light.png", full_page=True)
    light_background = _background(page)

    # Open the permalink by its date link; check the meta tags other sites read.
    entry.locator("a.permalink").click()
    expect(page).to_have_url(permalink)
    expect(page.get_by_role("heading", level=1, name=TITLE)).to_be_visible()
    expect(page.locator('meta[name="fediverse:creator"]')).to_have_attribute(
        "content", f"owner@127.0.0.1:{server.port}"
    )
    expect(page.locator('meta[property="og:title"]')).to_have_attribute("content", TITLE)

    # The same permalink in dark mode: a screenshot, and the page really changes colour.
    dark_context, dark_page = _open(chromium_browser, watch, color_scheme="dark")
    dark_page.goto(permalink)
    expect(dark_page.get_by_role("heading", level=1, name=TITLE)).to_be_visible()
    dark_page.screenshot(path=tmp_path / "permalink-dark.png", full_page=True)
    assert _background(dark_page) != light_background
    dark_context.close()

    # Edit it from /admin, changing one word; the permalink shows the change.
    page.goto(server.url("/admin"))
    row = page.locator(".post-list li", has_text=TITLE)
    row.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit thought")).to_be_visible()
    source = page.get_by_role("textbox", name=THOUGHT_LABEL)
    assert OLD_WORD in source.input_value()
    source.fill(source.input_value().replace(OLD_WORD, NEW_WORD))
    page.get_by_role("button", name="Save changes").click()
    expect(page).to_have_url(permalink)
    content = page.locator("article.h-entry .e-content")
    expect(content).to_contain_text(f"{NEW_WORD} want a sheltered corner")
    expect(content).not_to_contain_text(OLD_WORD)
    expect(page.locator("article.h-entry .edited")).to_be_visible()

    # Search for the new word: the hit links to the thought and highlights the word.
    page.get_by_role("link", name="Search").click()
    expect(page).to_have_url(server.url("/search"))
    page.get_by_label("Search the stream").fill(NEW_WORD)
    page.get_by_role("button", name="Search").click()
    hit = page.locator(".search-hit", has_text=TITLE)
    expect(hit).to_have_count(1)
    expect(hit.locator("mark")).to_have_text(re.compile(f"^{NEW_WORD}$", re.IGNORECASE))

    # Follow the hashtag from the thought to its tag page.
    hit.get_by_role("link", name=TITLE).click()
    expect(page).to_have_url(permalink)
    page.locator(".e-content").get_by_role("link", name="#Gardening").click()
    expect(page).to_have_url(server.url("/tags/gardening"))
    expect(page.get_by_role("heading", level=1, name="#gardening")).to_be_visible()
    expect(page.locator("article.h-entry", has_text=TITLE)).to_have_count(1)

    # Delete it through the confirmation page.
    page.goto(server.url("/admin"))
    page.locator(".post-list li", has_text=TITLE).get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete this thought?")).to_be_visible()
    expect(page.locator(".confirm blockquote")).to_contain_text(NEW_WORD)
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page).to_have_url(server.url("/admin?done=deleted"))
    expect(page.get_by_role("status")).to_have_text("Deleted.")
    expect(page.locator(".post-list li", has_text=TITLE)).to_have_count(0)

    # Gone from the stream; the permalink answers 410 with a readable page.
    page.goto(server.url("/"))
    expect(page.locator("article.h-entry")).to_have_count(0)
    expect(page.get_by_text("Nothing here yet.")).to_be_visible()
    assert watch.errors == [], "console errors or CSP violations during the story"

    response = page.goto(permalink)
    assert response is not None and response.status == 410
    expect(page.get_by_role("heading", level=1, name="Deleted")).to_be_visible()
    # Chromium logs every 4xx document as a console error; that one is expected, nothing else.
    unexpected = [e for e in watch.errors if "status of 410" not in e]
    assert unexpected == [], "console errors or CSP violations on the deleted page"
    context.close()

    assert (tmp_path / "stream-light.png").stat().st_size > 0
    assert (tmp_path / "permalink-dark.png").stat().st_size > 0


def test_login_rejects_wrong_password_and_admin_needs_a_session(
    chromium_browser: Browser, live_server: LiveServer
) -> None:
    server = live_server
    watch = ConsoleWatch()
    context, page = _open(chromium_browser, watch)

    # No session: /admin sends the browser to the login page, remembering where it was going.
    page.goto(server.url("/admin"))
    expect(page).to_have_url(server.url("/admin/login?next=/admin"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()

    # A wrong password: a visible message, still on the login page, still no session.
    page.get_by_label("Password for").fill("not the password at all")
    page.get_by_role("button", name="Log in").click()
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_have_text("That password is not right.")
    expect(page).to_have_url(server.url("/admin/login"))
    page.goto(server.url("/admin"))
    expect(page).to_have_url(re.compile(re.escape(server.url("/admin/login"))))

    # The right password afterwards works and lands where the owner was going.
    page.get_by_label("Password for").fill(server.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url("/admin"))
    expect(page.get_by_role("heading", name="New thought")).to_be_visible()

    # The rejected login answers 401, which Chromium logs; nothing else may appear.
    unexpected = [e for e in watch.errors if "status of 401" not in e]
    assert unexpected == [], "console errors or CSP violations on the login pages"
    context.close()
