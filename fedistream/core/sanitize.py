"""Remote HTML → HTML safe to store and show, to Mastodon's allowlist (INTEROP R78–R82). Pure.

Two passes. A small rewriter (stdlib HTMLParser) does what an allowlist cannot: images become
links, links to anything but http(s) become their text, MathML becomes its TeX, unsupported
blocks become paragraphs and bare top-level text is put in paragraphs (Misskey, Pixelfed and
Friendica send fragments). Then nh3 applies the allowlist itself, so safety never depends on the
rewriter being right.
"""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser
from urllib.parse import urlsplit

import nh3

ALLOWED_TAGS = frozenset(
    {
        "p",
        "br",
        "span",
        "a",
        "abbr",
        "del",
        "s",
        "pre",
        "blockquote",
        "code",
        "b",
        "strong",
        "u",
        "sub",
        "sup",
        "i",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "ul",
        "ol",
        "li",
        "ruby",
        "rt",
        "rp",
    }
)
_ATTRIBUTES = {
    "*": {"lang"},
    "a": {"href", "class", "title", "translate"},
    "abbr": {"title"},
    "span": {"class", "translate"},
    "blockquote": {"cite"},
    "ol": {"start", "reversed"},
    "li": {"value"},
    "p": {"class"},
}
LINK_REL = "nofollow noopener noreferrer"
_CLASS_PATTERN = re.compile(
    r"^(?:(?:h|p|u|dt|e)-.+|mention|hashtag|ellipsis|invisible|quote-inline)$"
)
_BLOCK_TAGS = frozenset({"p", "pre", "blockquote", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5"})
# Unsupported elements that separate text: each becomes a paragraph so words don't run together.
_PARAGRAPH_LIKE = frozenset(
    {
        "div",
        "section",
        "article",
        "header",
        "footer",
        "aside",
        "main",
        "nav",
        "figure",
        "figcaption",
        "details",
        "summary",
        "address",
        "dl",
        "dt",
        "dd",
        "table",
        "caption",
        "tr",
        "center",
        "h6",
    }
)
_DROP_CONTENT = frozenset({"script", "style", "template", "noscript", "title", "head", "iframe"})
_VOID = frozenset(
    {
        "br",
        "img",
        "hr",
        "wbr",
        "area",
        "base",
        "col",
        "embed",
        "input",
        "link",
        "meta",
        "source",
        "track",
    }
)
_EMPTY_PARAGRAPH = re.compile(r"<p>(?:\s|<br>)*</p>")
_URL_JUNK = re.compile(r"[\t\n\r]")  # browsers drop these inside URLs ("java\tscript:")


def _web_url(value: str | None) -> str | None:
    """The URL when it is absolute http(s); relative and other schemes are refused (R81)."""
    if not value:
        return None
    url = _URL_JUNK.sub("", value).strip()
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def _image_label(src: str | None, alt: str | None) -> str:
    if alt and alt.strip():
        return f"[🖼  {alt.strip()}]"
    shown = re.sub(r"\Ahttps?://(www\.)?", "", src or "")
    return f"[🖼  {shown[:30]}{'…' if len(shown) > 30 else ''}]"


class _Rewriter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._links: list[bool] = []  # per open <a>: was it kept?
        self._converted: list[str] = []  # open unsupported blocks written as <p>
        self._block_depth = 0
        self._auto_p = False  # a <p> we opened around bare top-level content
        self._drop_depth = 0
        self._math_depth = 0
        self._math_display = False
        self._annotation: str | None = None  # encoding of the open <annotation>
        self._math_text: dict[str, list[str]] = {}

    # -- output helpers
    def _inline(self, markup: str) -> None:
        if self._block_depth == 0 and not self._auto_p:
            self.out.append("<p>")
            self._auto_p = True
        self.out.append(markup)

    def _open_block(self, markup: str) -> None:
        if self._auto_p:
            self.out.append("</p>")
            self._auto_p = False
        self._block_depth += 1
        self.out.append(markup)

    def _close_block(self, markup: str) -> None:
        self._block_depth = max(0, self._block_depth - 1)
        self.out.append(markup)

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value for name, value in attrs}
        if self._drop_depth or self._math_depth:
            self._start_hidden(tag, values)
            return
        if tag in _DROP_CONTENT:
            self._drop_depth += tag not in _VOID
        elif tag == "math":
            self._math_depth, self._math_display = 1, values.get("display") == "block"
            self._math_text = {}
        elif tag == "img":
            self._image(values)
        elif tag == "a":
            href = _web_url(values.get("href"))
            self._links.append(href is not None)
            if href is not None:
                self._inline(self._start_markup("a", [("href", href), *attrs]))
        elif tag == "blockquote":
            cite = _web_url(values.get("cite"))
            kept = [(k, v) for k, v in attrs if k != "cite"] + ([("cite", cite)] if cite else [])
            self._open_block(self._start_markup(tag, kept))
        elif tag in _PARAGRAPH_LIKE:
            self._converted.append(tag)
            self._open_block("<p><strong>" if tag == "h6" else "<p>")
        elif tag in _BLOCK_TAGS:
            self._open_block(self._start_markup(tag, attrs))
        elif tag in ALLOWED_TAGS:
            self._inline(self._start_markup(tag, attrs))
        # anything else: the tag goes, its content stays (as nh3 would do)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._drop_depth:
            self._drop_depth -= tag in _DROP_CONTENT
            return
        if self._math_depth:
            self._end_hidden(tag)
            return
        if tag == "a":
            if self._links and self._links.pop():
                self.out.append("</a>")
        elif tag in _PARAGRAPH_LIKE:
            if tag in self._converted:
                del self._converted[len(self._converted) - 1 - self._converted[::-1].index(tag)]
                self._close_block("</strong></p>" if tag == "h6" else "</p>")
        elif tag in _BLOCK_TAGS or tag == "blockquote":
            if self._block_depth:
                self._close_block(f"</{tag}>")
            elif self._auto_p:  # a stray end tag ends the paragraph we opened
                self.out.append("</p>")
                self._auto_p = False
        elif tag in ALLOWED_TAGS and tag not in _VOID:
            self.out.append(f"</{tag}>")
        elif tag in ("td", "th"):
            self.out.append(" ")  # table cells: keep the words apart

    def handle_data(self, data: str) -> None:
        if self._drop_depth:
            return
        if self._math_depth:
            key = self._annotation if self._annotation is not None else ""
            self._math_text.setdefault(key, []).append(data)
            return
        if self._block_depth == 0 and not self._auto_p and not data.strip():
            self.out.append(escape(data, quote=False))  # whitespace between blocks
            return
        self._inline(escape(data, quote=False))

    # -- pieces
    @staticmethod
    def _start_markup(tag: str, attrs: list[tuple[str, str | None]]) -> str:
        seen: set[str] = set()
        parts = [tag]
        for name, value in attrs:
            if name in seen:  # first one wins, as in browsers; our href replacement comes first
                continue
            seen.add(name)
            parts.append(f'{name}="{escape(value or "", quote=True)}"')
        return "<" + " ".join(parts) + ">"

    def _image(self, values: dict[str, str | None]) -> None:
        """Mastodon turns an image into a link to it labelled with its alt text (R78)."""
        src = _web_url(values.get("src"))
        label = escape(_image_label(values.get("src"), values.get("alt")), quote=False)
        if src:
            self._inline(f'<a href="{escape(src, quote=True)}">{label}</a>')
        elif values.get("alt") and (values.get("alt") or "").strip():
            self._inline(label)

    def _start_hidden(self, tag: str, values: dict[str, str | None]) -> None:
        if self._drop_depth:
            self._drop_depth += tag in _DROP_CONTENT and tag not in _VOID
            return
        if tag == "math":
            self._math_depth += 1
        elif tag == "annotation":
            self._annotation = (values.get("encoding") or "").lower()

    def _end_hidden(self, tag: str) -> None:
        if tag == "annotation":
            self._annotation = None
        elif tag == "math":
            self._math_depth -= 1
            if self._math_depth == 0:
                self._flush_math()

    def _flush_math(self) -> None:
        """FEP-dc88 MathML: show its TeX annotation as $…$, else its plain-text one (R78)."""
        tex = "".join(self._math_text.get("application/x-tex", [])).strip()
        plain = "".join(self._math_text.get("text/plain", [])).strip()
        if tex:
            text = f"$${tex}$$" if self._math_display else f"${tex}$"
        else:
            text = plain or "".join(self._math_text.get("", []))
        if text:
            self._inline(escape(text, quote=False))
        self._math_text = {}

    def finish(self) -> str:
        self.close()
        if self._math_depth:
            self._math_depth = 0
            self._flush_math()
        if self._auto_p:
            self.out.append("</p>")
        return "".join(self.out)


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "class":
        kept = [name for name in value.split() if _CLASS_PATTERN.match(name)]
        return " ".join(kept) or None
    if attribute == "translate":
        return value if value == "no" else None  # only the opt-out means anything (R79)
    return value


def sanitize_remote_html(html: str) -> str:
    """Clean HTML from another server for storage and display on our pages."""
    rewriter = _Rewriter()
    rewriter.feed(html)
    cleaned = nh3.clean(
        rewriter.finish(),
        tags=set(ALLOWED_TAGS),
        clean_content_tags={"script", "style"},
        attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
        attribute_filter=_filter_attribute,
        url_schemes={"http", "https"},
        link_rel=LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )
    return _EMPTY_PARAGRAPH.sub("", cleaned).strip()
