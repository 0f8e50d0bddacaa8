"""Images in a real browser: the owner attaches an image, is warned about the missing alt text,
describes it and publishes; a reader sees the image with its description, lazily loaded from our
origin, and an image under a content warning only once it is opened. No console errors, no CSP
violations (img-src is 'self' only).

Layer: end-to-end (a real `fedistream serve`, Debian's Chromium through Playwright).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_browser import ConsoleWatch
from tests.live import LiveServer

pytestmark = pytest.mark.browser

ALT = "A grey heron standing in the reeds"
CW_ALT = "A spider in its web"


def _picture(path: Path, color: tuple[int, int, int]) -> Path:
    Image.new("RGB", (640, 480), color).save(path, "PNG")
    return path


def _loaded(page: Page, selector: str) -> bool:
    """The image really arrived (a blocked or broken image has no natural width)."""
    return bool(page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0"))


def test_owner_attaches_a_described_image_and_a_reader_sees_it(
    chromium_browser: Browser, live_server: LiveServer, tmp_path: Path
) -> None:
    server = live_server
    watch = ConsoleWatch()
    owner = chromium_browser.new_context()
    watch.watch(owner)
    page = owner.new_page()

    page.goto(server.url("/admin/login"))
    page.get_by_label("Password for").fill(server.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url("/admin"))

    # Attach an image without a description and preview: the composer warns, shows the image.
    page.get_by_role("textbox", name=re.compile(r"^Thought\b")).fill("Early at the pond today.")
    page.get_by_label("Image 1", exact=True).set_input_files(
        _picture(tmp_path / "heron.png", (120, 130, 140))
    )
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("alert")).to_contain_text("Image 1 has no description (alt text)")
    preview = page.get_by_role("region", name="Preview")
    expect(preview.locator("img")).to_have_count(1)
    assert _loaded(page, ".preview img")
    expect(page.get_by_role("button", name="Publish without descriptions")).to_be_visible()

    # Describe it and publish: the permalink shows it, described, sized, lazy.
    page.get_by_label("Image 1 description (alt text)").fill(ALT)
    page.get_by_role("button", name="Publish", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(server.url("/p/")) + r"[0-9a-zA-Z]{16}$"))
    permalink = page.url
    image = page.get_by_role("img", name=ALT)
    expect(image).to_be_visible()
    expect(image).to_have_attribute("loading", "lazy")
    expect(image).to_have_attribute("width", "640")
    expect(image).to_have_attribute("src", re.compile(r"^/media/attachment-[0-9a-f]{16}\.png$"))

    # A second thought behind a content warning, with its own image.
    page.goto(server.url("/admin"))
    page.get_by_role("textbox", name=re.compile(r"^Thought\b")).fill("Found in the shed.")
    page.get_by_label("Content warning").fill("spiders")
    page.get_by_label("Image 1", exact=True).set_input_files(
        _picture(tmp_path / "spider.png", (40, 40, 40))
    )
    page.get_by_label("Image 1 description (alt text)").fill(CW_ALT)
    page.get_by_role("button", name="Publish", exact=True).click()
    expect(page.get_by_role("img", name=CW_ALT)).to_be_hidden()

    # A reader, not logged in.
    reader = chromium_browser.new_context()
    watch.watch(reader)
    view = reader.new_page()
    view.goto(server.url("/"))
    heron = view.get_by_role("img", name=ALT)
    expect(heron).to_be_visible()
    heron.scroll_into_view_if_needed()
    view.wait_for_function(
        "alt => [...document.images].some(i => i.alt === alt && i.complete && i.naturalWidth > 0)",
        arg=ALT,
    )
    spider = view.locator(f'img[alt="{CW_ALT}"]')
    expect(spider).to_be_hidden()  # inside the closed content warning
    view.locator("details.cw summary", has_text="spiders").click()
    expect(spider).to_be_visible()

    view.goto(permalink)
    expect(view.get_by_role("img", name=ALT)).to_be_visible()
    assert _loaded(view, f'img[alt="{ALT}"]')

    assert watch.errors == [], "console errors or CSP violations"
    reader.close()
    owner.close()
