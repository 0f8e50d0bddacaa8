"""Owner Markdown → safe HTML, plain text and hashtags (CommonMark via markdown-it-py, then nh3).

Pure. Raw HTML in the source is shown as text (markdown-it `html=False`), and the output is passed
through nh3 with a small allowlist anyway, so no payload can add script or event handlers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import nh3

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.rules_inline import StateInline
    from markdown_it.token import Token

# Headings inside a thought sit below the page title (h1) and the thought title (h2).
_HEADING_SHIFT = 2

_ALLOWED_TAGS = {
    "p",
    "br",
    "a",
    "em",
    "strong",
    "del",
    "s",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "img",
    "span",
}
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "rel", "class"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "code": {"class"},
    "span": {"class", "translate"},
}
_URL_SCHEMES = {"http", "https", "mailto"}

# A hashtag: '#' then letters/digits/underscore, at least one of them not a digit ("#1" is no tag).
_TAG_BODY = re.compile(r"[^\W]+", re.UNICODE)
MAX_TAG_LENGTH = 100


@dataclass(frozen=True, slots=True)
class Rendered:
    html: str
    text: str
    tags: tuple[str, ...]  # normalised (NFC, case-folded), in order of first appearance
    mentions: tuple[str, ...] = ()  # every "user@domain" written as @user@domain, lower-case


# @user@domain: the user part as Mastodon allows it, a domain with an optional port.
_MENTION = re.compile(
    r"@([A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?(?::[0-9]{1,5})?)"
)


def _mention_rule(state: StateInline, silent: bool) -> bool:
    """Inline rule for `@user@domain`: a link when `env["mention_links"]` knows the account,
    plain text otherwise; every handle seen is collected in `env["mentions"]`."""
    pos = state.pos
    if state.src[pos] != "@" or state.linkLevel > 0:
        return False
    before = state.src[pos - 1] if pos > 0 else ""
    if not _is_tag_boundary(before):
        return False
    match = _MENTION.match(state.src, pos)
    if not match:
        return False
    user, domain = match.group(1), match.group(2).rstrip(".")
    handle = f"{user}@{domain}".lower()
    end = pos + 1 + len(user) + 1 + len(domain)
    if not silent:
        state.env.setdefault("mentions", {}).setdefault(handle, None)
        href = state.env.get("mention_links", {}).get(handle)
        if href:
            card = state.push("mention_open", "span", 1)
            card.attrs = {"class": "h-card", "translate": "no"}
            link = state.push("link_open", "a", 1)
            link.attrs = {"href": href, "class": "u-url mention"}
            link.meta = {"mention": handle}
            text = state.push("text", "", 0)
            text.content = "@" + user
            state.push("link_close", "a", -1)
            state.push("mention_close", "span", -1)
        else:
            text = state.push("text", "", 0)
            text.content = state.src[pos:end]
    state.pos = end
    return True


def normalize_tag(tag: str) -> str:
    """The form a tag is stored and linked by: `#Python` and `#python` are one tag."""
    return unicodedata.normalize("NFC", tag).casefold()


def tag_path(tag: str) -> str:
    return "/tags/" + quote(normalize_tag(tag), safe="")


def _is_tag_boundary(char: str) -> bool:
    return char == "" or char.isspace() or char in "([{\"'“‘«—–-,;:!?."


def _hashtag_rule(state: StateInline, silent: bool) -> bool:
    """Inline rule turning `#tag` into a link to /tags/tag (not inside links, not mid-word)."""
    pos = state.pos
    if state.src[pos] != "#" or state.linkLevel > 0:
        return False
    before = state.src[pos - 1] if pos > 0 else ""
    if not _is_tag_boundary(before):
        return False
    match = _TAG_BODY.match(state.src, pos + 1)
    if not match:
        return False
    body = match.group(0)
    # A trailing run of underscores is punctuation-ish ("#tag_"); drop it.
    body = body.rstrip("_")
    if not body or body.isdigit() or len(body) > MAX_TAG_LENGTH:
        return False
    if not silent:
        normal = normalize_tag(body)
        token = state.push("link_open", "a", 1)
        token.attrs = {"href": tag_path(body), "class": "hashtag", "rel": "tag"}
        token.meta = {"hashtag": normal}
        text = state.push("text", "", 0)
        text.content = "#" + body
        state.push("link_close", "a", -1)
    state.pos = pos + 1 + len(body)
    return True


@cache
def _markdown() -> MarkdownIt:
    """The parser, built on first use: markdown-it is ~60 modules that only writing needs, so
    a server that is only read never imports them (bench/README.md, idle RSS)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False})
    md.enable(["linkify", "strikethrough"])
    md.inline.ruler.before("emphasis", "hashtag", _hashtag_rule)
    md.inline.ruler.before("emphasis", "mention", _mention_rule)
    md.add_render_rule(
        "mention_open",
        lambda self, tokens, idx, options, env: '<span class="h-card" translate="no">',
    )
    md.add_render_rule("mention_close", lambda self, tokens, idx, options, env: "</span>")
    return md


def _shift_headings(tokens: list[Token]) -> None:
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            level = int(token.tag[1])
            token.tag = f"h{min(6, level + _HEADING_SHIFT)}"


def _collect_tags(tokens: list[Token]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for token in tokens:
        for child in token.children or ():
            if child.type == "link_open" and child.meta.get("hashtag"):
                seen.setdefault(child.meta["hashtag"], None)
    return tuple(seen)


def _plain_text(tokens: list[Token]) -> str:
    blocks: list[str] = []
    for token in tokens:
        if token.type == "inline":
            parts = []
            for child in token.children or ():
                if child.type in ("text", "code_inline"):
                    parts.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    parts.append("\n")
                elif child.type == "image":
                    parts.append(child.content)
            blocks.append("".join(parts))
        elif token.type in ("code_block", "fence"):
            blocks.append(token.content.rstrip("\n"))
    return "\n\n".join(b for b in blocks if b)


def sanitize_html(html: str) -> str:
    """Clean HTML to the allowlist our own rendering produces (defence in depth)."""
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel=None,
        strip_comments=True,
    )


def render_markdown(source: str, mention_links: Mapping[str, str] | None = None) -> Rendered:
    """Render owner Markdown. Links get rel="nofollow noopener" unless they are hashtags.
    `mention_links` maps resolved "user@domain" handles to profile URLs; others stay text."""
    env: dict[str, Any] = {"mention_links": dict(mention_links or {})}
    markdown = _markdown()
    tokens = markdown.parse(source, env)
    _shift_headings(tokens)
    for token in tokens:
        for child in token.children or ():
            if child.type == "link_open" and not child.meta.get("hashtag"):
                child.attrSet("rel", "nofollow noopener")
    html = markdown.renderer.render(tokens, markdown.options, env)
    return Rendered(
        html=sanitize_html(html),
        text=_plain_text(tokens),
        tags=_collect_tags(tokens),
        mentions=tuple(env.get("mentions", {})),
    )


def excerpt(text: str, limit: int = 200) -> str:
    """A one-line summary for meta descriptions and feed titles."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1].rsplit(" ", 1)[0]
    return cut + "…"
