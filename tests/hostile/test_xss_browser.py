"""Item 4 of issue 5, in a real browser: the payload-filled pages loaded in headless Chromium.

The world of tests/hostile/xss_world.py (every payload as the owner's Markdown, title, content
warning, hashtag and image description; as the profile's name, bio and links; as remote notes,
content warnings, image descriptions, hashtags, URLs and display names) is loaded page by page in
Debian's Chromium. After each load: no injected script ran (`window.__xss`, the title, alert and
friends, uncaught errors), the page did not navigate, Chromium's own DOM (after its parser, where
mutation XSS would show) holds no script, handler, frame or `javascript:` URL, nothing was fetched
from another origin, and the only Content-Security-Policy violations are images the CSP was right
to block (an owner's Markdown may link a picture elsewhere; readers' browsers do not fetch it).
The pages that carry the most payloads are loaded a second time with the CSP switched off, so
what is proven is the markup itself, not only the policy that would have stopped it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.e2e.conftest import chromium_browser  # noqa: F401 (the fixture)
from tests.hostile.xss_world import PAYLOADS, World, quoted, same_origin

pytestmark = pytest.mark.browser

TRAPS = """
window.__xss_calls = [];
for (const name of ['alert', 'confirm', 'prompt', 'print']) {
  window[name] = (...args) => { window.__xss_calls.push(name + '(' + args.join(',') + ')'); };
}
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push({directive: e.effectiveDirective, blocked: e.blockedURI || 'inline'});
});
"""

# Chromium's DOM after parsing, walked for anything that could run script or lead elsewhere.
DOM_AUDIT = """
() => {
  const bad = [];
  const forbidden = new Set(['script', 'iframe', 'frame', 'frameset', 'object', 'embed',
    'applet', 'base', 'template', 'style', 'svg', 'math', 'noscript', 'audio', 'video',
    'source', 'portal']);
  for (const el of document.querySelectorAll('*')) {
    const tag = el.localName;
    if (forbidden.has(tag)) bad.push('<' + tag + '>');
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase();
      if (name.startsWith('on') || ['style', 'srcdoc', 'formaction'].includes(name)) {
        bad.push(name + ' on <' + tag + '>');
      }
    }
    for (const prop of ['href', 'src', 'action', 'data', 'cite', 'poster']) {
      const value = el[prop];
      if (typeof value !== 'string' || !value) continue;
      let protocol;
      try { protocol = new URL(value, document.baseURI).protocol; } catch (e) { continue; }
      const icon = tag === 'link' && el.rel === 'icon' && value === 'data:,';
      if (!['http:', 'https:', 'mailto:'].includes(protocol) && !icon) {
        bad.push(prop + '=' + value + ' on <' + tag + '>');
      }
    }
    if (tag === 'meta' && el.httpEquiv) bad.push('<meta http-equiv>');
    if (tag === 'a' && el.target && !el.relList.contains('noopener')) bad.push('opener leak');
  }
  if (document.baseURI !== location.href.split('#')[0]) bad.push('base URI ' + document.baseURI);
  return bad;
}
"""


@dataclass
class Watch:
    """What one browser context saw: dialogs, uncaught errors, requests to other origins."""

    base: str
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("requestfinished", self._reached)
        page.on("requestfailed", self._failed)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _elsewhere(self, request: Any) -> bool:
        return not request.url.startswith("data:") and not same_origin(request.url, self.base)

    def _reached(self, request: Any) -> None:
        if self._elsewhere(request):
            self.elsewhere.append(request.url)

    def _failed(self, request: Any) -> None:
        # A request the CSP stopped is reported as failed ("csp"): it never left the browser.
        # Any other failure means it was sent (and the other server did not answer).
        blocked = (request.failure or "").lower() in ("csp", "net::err_blocked_by_csp")
        if self._elsewhere(request) and not blocked:
            self.elsewhere.append(f"{request.url} ({request.failure})")


@dataclass
class Visit:
    url: str
    problems: list[str]
    blocked_images: list[str]


def _visit(page: Page, watch: Watch, url: str, *, csp: bool) -> Visit:
    response = page.goto(watch.base + url, wait_until="load")
    assert response is not None and response.status < 500, url
    landed = response.url  # after the server's own redirects, if any
    state = page.evaluate(
        "() => ({xss: window.__xss, calls: window.__xss_calls, csp: window.__csp,"
        " title: document.title, at: location.href})"
    )
    problems = [f"DOM: {p}" for p in page.evaluate(DOM_AUDIT)]
    if state["xss"] is not None:
        problems.append(f"window.__xss = {state['xss']!r}")
    if state["calls"]:
        problems.append(f"called {state['calls']}")
    if state["title"] == "__xss__":
        problems.append("document.title was set")
    if state["at"].split("#")[0] != landed:
        problems.append(f"navigated to {state['at']}")
    blocked = []
    for violation in state["csp"] if csp else []:
        image = violation["directive"] == "img-src"
        if image and not same_origin(violation["blocked"], watch.base):
            blocked.append(violation["blocked"])  # an owner's external image: rightly blocked
        else:
            problems.append(f"CSP violation {violation}")
    return Visit(url, problems, blocked)


@pytest.fixture
def world(xss_world: World) -> World:
    return xss_world


def _context(browser: Browser, world: World, *, csp: bool) -> tuple[BrowserContext, Watch]:
    context = browser.new_context(bypass_csp=not csp)
    context.add_init_script(TRAPS)
    session = world.owner.cookies.get("fedistream_session")
    assert session
    context.add_cookies([{"name": "fedistream_session", "value": session, "url": world.app.base}])
    return context, Watch(world.app.base)


def _listing(world: World, first: str, owner: bool) -> list[str]:
    return [url for url, _html in world.pages(world.owner if owner else world.reader, first)]


def _rich_pages(world: World) -> list[str]:
    """The pages that carry every payload at once (lists, threads)."""
    return [
        *_listing(world, "/", owner=False),
        f"/p/{world.thread_post}",
        f"/admin/posts/{world.thread_post}/thread",
        *_listing(world, "/admin/timeline", owner=True),
        *_listing(world, "/admin/notifications", owner=True),
        *_listing(world, "/admin", owner=True),
        *_listing(world, "/search?q=x", owner=False),
    ]


def _sampled_pages(world: World) -> list[str]:
    """Pages that show one payload each (every one of them is audited as HTML in test_xss.py):
    every twentieth payload, so each kind of page is seen in Chromium too."""
    picks = range(0, len(PAYLOADS), 20)
    return [
        *(f"/admin/posts/{world.post_ids[i]}/edit" for i in picks),
        *(f"/p/{world.post_ids[i]}" for i in picks),
        *(f"/tags/{quoted(PAYLOADS[i])}" for i in picks),
        *(f"/search?q={quoted(PAYLOADS[i][:200])}" for i in picks),
        *(f"/admin/reply?to={quoted(world.note_ids[2 * i])}" for i in picks),
    ]


FIGURES: dict[str, int] = {}
BATCH = 10  # payloads per profile: the name, the bio (all ten), four link labels, four URLs


def _run(browser: Browser, world: World, urls: list[str], *, csp: bool) -> list[Visit]:
    context, watch = _context(browser, world, csp=csp)
    try:
        page = context.new_page()
        watch.attach(page)
        visits = [_visit(page, watch, url, csp=csp) for url in urls]
    finally:
        context.close()
    assert watch.dialogs == [], watch.dialogs
    assert watch.errors == [], watch.errors
    if csp:  # with the CSP off, an owner's external image is fetched: that is what CSP is for
        assert watch.elsewhere == [], watch.elsewhere
    return visits


def test_no_payload_runs_in_chromium(chromium_browser: Browser, world: World) -> None:  # noqa: F811
    urls = _rich_pages(world) + _sampled_pages(world)
    visits = _run(chromium_browser, world, urls, csp=True)
    failures = {v.url: v.problems for v in visits if v.problems}
    assert failures == {}
    blocked = sorted({b for v in visits for b in v.blocked_images})
    FIGURES["pages loaded with the CSP on"] = len(visits)
    FIGURES["external images the CSP blocked"] = len(blocked)


def test_no_payload_runs_even_without_the_csp(chromium_browser: Browser, world: World) -> None:  # noqa: F811
    lists = [u for u in _rich_pages(world) if not u.startswith(("/admin?", "/search"))]
    visits = _run(chromium_browser, world, lists, csp=False)
    failures = {v.url: v.problems for v in visits if v.problems}
    assert failures == {}
    FIGURES["pages loaded with the CSP off"] = len(visits)


def test_profile_payloads_in_chromium(chromium_browser: Browser, world: World) -> None:  # noqa: F811
    """The profile holds one set of values at a time: set each batch, load its pages."""
    context, watch = _context(chromium_browser, world, csp=True)
    loads = 0
    try:
        page = context.new_page()
        watch.attach(page)
        failures: dict[str, list[str]] = {}
        for start in range(0, len(PAYLOADS), BATCH):
            chunk = PAYLOADS[start : start + BATCH]
            name = " ".join(chunk[0].split())[:100] or "x"
            links = [(p[:100], "https://127.0.0.1:9/" + p[:400]) for p in chunk[1:5]]
            assert world.set_profile(name, "\n\n".join(chunk), links).status_code == 303
            for url in ("/", "/admin/profile"):
                visit = _visit(page, watch, url, csp=True)
                loads += 1
                if visit.problems:
                    failures[f"{url} with profile batch {start}"] = visit.problems
    finally:
        context.close()
        world.set_profile("Ada", "", [])
    assert failures == {}
    assert watch.dialogs == [] and watch.errors == [] and watch.elsewhere == []
    FIGURES["profile pages loaded"] = loads


def test_zz_print_figures() -> None:
    print(f"\n[hostile] XSS in Chromium ({len(PAYLOADS)} payloads): {FIGURES}")
    assert FIGURES
