"""Remote HTML is cut down to Mastodon's allowlist (R78–R82): allowed markup and microformat
classes survive, links get rel/target, scripts, handlers and non-web links do not, and the
unsupported blocks, images and MathML Mastodon rewrites are rewritten the same way."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedistream.core.sanitize import ALLOWED_TAGS, sanitize_remote_html

LINK_ATTRS = 'target="_blank" rel="nofollow noopener noreferrer"'


@pytest.mark.parametrize(
    ("remote", "clean"),
    [
        ("<p>Hello <b>bold</b> <em>em</em></p>", "<p>Hello <b>bold</b> <em>em</em></p>"),
        # Mastodon's mention markup survives whole
        (
            '<p><span class="h-card" translate="no"><a href="https://a.example/@u" '
            'class="u-url mention">@<span>u</span></a></span> hi</p>',
            '<p><span class="h-card" translate="no"><a href="https://a.example/@u" '
            f'class="u-url mention" {LINK_ATTRS}>@<span>u</span></a></span> hi</p>',
        ),
        # link display spans (R82)
        (
            '<p><a href="https://e.example/x"><span class="invisible">https://</span>'
            '<span class="ellipsis">e.example/x</span></a></p>',
            f'<p><a href="https://e.example/x" {LINK_ATTRS}><span class="invisible">https://</span>'
            '<span class="ellipsis">e.example/x</span></a></p>',
        ),
        # classes outside the list go; translate is kept only as "no"
        (
            '<p class="quote-inline bad"><span class="p-name evil" translate="yes">x</span></p>',
            '<p class="quote-inline"><span class="p-name">x</span></p>',
        ),
        # rel and target are forced whatever the sender wrote
        (
            '<p><a href="https://e.example/" rel="me" target="_self" class="hashtag">#t</a></p>',
            f'<p><a href="https://e.example/" class="hashtag" {LINK_ATTRS}>#t</a></p>',
        ),
        ('<p lang="de">Hallo</p>', '<p lang="de">Hallo</p>'),
        (
            '<ol start="3" reversed><li value="4">x</li></ol>',
            '<ol start="3" reversed=""><li value="4">x</li></ol>',
        ),
        (
            '<p><abbr title="HyperText">HTML</abbr> H<sub>2</sub>O x<sup>2</sup></p>',
            '<p><abbr title="HyperText">HTML</abbr> H<sub>2</sub>O x<sup>2</sup></p>',
        ),
        (
            "<ruby>漢<rp>(</rp><rt>kan</rt><rp>)</rp></ruby>",
            "<p><ruby>漢<rp>(</rp><rt>kan</rt><rp>)</rp></ruby></p>",
        ),
        (
            "<h1>a</h1><h5>b</h5><pre><code>c</code></pre><blockquote><p>d</p></blockquote>",
            "<h1>a</h1><h5>b</h5><pre><code>c</code></pre><blockquote><p>d</p></blockquote>",
        ),
        (
            "<p>x<br>y</p><p><del>d</del><s>s</s><u>u</u><i>i</i><strong>st</strong></p>",
            "<p>x<br>y</p><p><del>d</del><s>s</s><u>u</u><i>i</i><strong>st</strong></p>",
        ),
    ],
)
def test_allowed_markup_survives(remote: str, clean: str) -> None:
    assert sanitize_remote_html(remote) == clean


@pytest.mark.parametrize(
    ("remote", "clean"),
    [
        ("<script>alert(1)</script><p>x</p>", "<p>x</p>"),
        ("<style>p{color:red}</style><p>x</p>", "<p>x</p>"),
        ('<p onclick="steal()" style="color:red" id="x">x</p>', "<p>x</p>"),
        ('<p><a href="javascript:alert(1)">click</a></p>', "<p>click</p>"),
        ('<p><a href="java\tscript:alert(1)">click</a></p>', "<p>click</p>"),
        ('<p><a href="JAVASCRIPT:alert(1)">click</a></p>', "<p>click</p>"),
        ('<p><a href="data:text/html,x">d</a></p>', "<p>d</p>"),
        ('<p><a href="/relative">r</a> <a>no href</a></p>', "<p>r no href</p>"),
        ('<p><a href="https://[broken/">b</a></p>', "<p>b</p>"),
        ('<p><a href="mailto:a@b.example">m</a></p>', "<p>m</p>"),
        ("<p><iframe src='https://e.example'>inner</iframe>x</p>", "<p>x</p>"),
        ('<p><svg><circle onload="x()"/></svg>shape</p>', "<p>shape</p>"),
        ("<!-- secret --><p>x</p>", "<p>x</p>"),
        ("<form><input value='x'><button>b</button></form>", "<p>b</p>"),
        (
            '<blockquote cite="javascript:x">q</blockquote><blockquote cite="https://c.example/">r'
            "</blockquote>",
            '<blockquote>q</blockquote><blockquote cite="https://c.example/">r</blockquote>',
        ),
        (
            "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp;</p>",
            "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp;</p>",
        ),
    ],
)
def test_dangerous_markup_goes(remote: str, clean: str) -> None:
    assert sanitize_remote_html(remote) == clean


@pytest.mark.parametrize(
    ("remote", "clean"),
    [
        # images become links labelled with their alt text (R78)
        (
            '<p><img src="https://i.example/cat.png" alt="a cat"></p>',
            f'<p><a href="https://i.example/cat.png" {LINK_ATTRS}>[🖼  a cat]</a></p>',
        ),
        (
            '<p><img src="https://www.i.example/a/very/long/path/to/the/picture.png"></p>',
            '<p><a href="https://www.i.example/a/very/long/path/to/the/picture.png" '
            f"{LINK_ATTRS}>[🖼  i.example/a/very/long/path/to/…]</a></p>",
        ),
        ('<p><img src="data:image/png;base64,AAA" alt="inline"></p>', "<p>[🖼  inline]</p>"),
        ('<p><img src="javascript:x"></p>', ""),
        # MathML shows its TeX annotation (FEP-dc88)
        (
            '<p><math><semantics><mi>x</mi><annotation encoding="application/x-tex">x^2'
            "</annotation></semantics></math> done</p>",
            "<p>$x^2$ done</p>",
        ),
        (
            '<math display="block"><semantics><mi>x</mi><annotation encoding="application/x-tex">'
            "\\frac{a}{b}</annotation></semantics></math>",
            "<p>$$\\frac{a}{b}$$</p>",
        ),
        (
            '<p><math><semantics><mi>x</mi><annotation encoding="text/plain">x squared'
            "</annotation></semantics></math></p>",
            "<p>x squared</p>",
        ),
        ("<p><math><mi>y</mi></math></p>", "<p>y</p>"),
        # unsupported blocks become paragraphs, so words stay apart
        ("<div>one</div><div>two<div>three</div></div>", "<p>one</p><p>two</p><p>three</p>"),
        ("<h6>Small heading</h6><p>x</p>", "<p><strong>Small heading</strong></p><p>x</p>"),
        ("<table><tr><td>a</td><td>b</td></tr></table>", "<p>a b </p>"),
        # bare fragments (Misskey, Pixelfed, Friendica) get a paragraph
        ("just text", "<p>just text</p>"),
        (
            'Shadows <a href="https://px.example/t" class="hashtag" rel="external">#t</a>',
            f'<p>Shadows <a href="https://px.example/t" class="hashtag" {LINK_ATTRS}>#t</a></p>',
        ),
        ("intro<p>para</p>outro", "<p>intro</p><p>para</p><p>outro</p>"),
        ("a</p>b", "<p>a</p><p>b</p>"),
        ("<p>a</p>\n<br>\n<p>b</p>", "<p>a</p>\n<p>b</p>"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_rewrites_like_mastodon(remote: str, clean: str) -> None:
    assert sanitize_remote_html(remote) == clean


FIXTURE_NOTES = [
    "friendica-create-note.json",
    "gotosocial-note-mention.json",
    "mastodon-create-note-cw-hashtag.json",
    "mastodon-create-note-reply-mention.json",
    "mastodon-note-attachment-blurhash.json",
    "misskey-create-note-mention.json",
    "misskey-note-quote.json",
    "pixelfed-create-note-image.json",
    "pleroma-create-note.json",
]


class _Audit(HTMLParser):
    """Collects every tag and attribute so tests can check them against the allowlist."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text += data


def audit(markup: str) -> _Audit:
    parser = _Audit()
    parser.feed(markup)
    return parser


ALLOWED_ATTRS = {
    "a": {"href", "class", "title", "translate", "rel", "target", "lang"},
    "span": {"class", "translate", "lang"},
    "p": {"class", "lang"},
    "abbr": {"title", "lang"},
    "blockquote": {"cite", "lang"},
    "ol": {"start", "reversed", "lang"},
    "li": {"value", "lang"},
}


def assert_within_allowlist(markup: str) -> None:
    for tag, attrs in audit(markup).tags:
        assert tag in ALLOWED_TAGS, tag
        assert set(attrs) <= ALLOWED_ATTRS.get(tag, {"lang"}), (tag, attrs)
        if tag == "a":
            assert attrs["rel"] == "nofollow noopener noreferrer"
            assert attrs["target"] == "_blank"
            assert re.match(r"https?://", attrs["href"] or "")


@pytest.mark.parametrize("name", FIXTURE_NOTES)
def test_real_notes_keep_their_text_and_mentions(shared_fixtures: Path, name: str) -> None:
    data = json.loads((shared_fixtures / "activities" / name).read_text("utf-8"))
    content = data.get("object", data)["content"]
    clean = sanitize_remote_html(content)
    assert_within_allowlist(clean)
    assert " ".join(audit(clean).text.split()) == " ".join(audit(content).text.split())
    for tag, attrs in audit(content).tags:
        if tag == "a" and "mention" in (attrs.get("class") or ""):
            assert f'href="{attrs["href"]}"' in clean  # mentions stay links


def test_sanitising_twice_changes_nothing() -> None:
    sample = (
        '<div>Hi <a href="https://e.example" rel="me">x</a><img src="https://i.example/a.png" '
        'alt="a"></div><h6>h</h6>tail'
    )
    once = sanitize_remote_html(sample)
    assert sanitize_remote_html(once) == once


FRAGMENTS = st.sampled_from(
    [
        "<p>",
        "</p>",
        "<div>",
        "</div>",
        '<a href="https://ok.example/">',
        "<a href='javascript:x'>",
        "</a>",
        "<script>",
        "</script>",
        "alert(1)",
        "<img src=x onerror=alert(1)>",
        '<img src="https://i.example/i.png" alt="i">',
        '<span class="h-card evil">',
        "</span>",
        '<math><semantics><annotation encoding="application/x-tex">',
        "</annotation>",
        "</math>",
        "<style>",
        "</style>",
        "<b>",
        "</b>",
        "<!--",
        "-->",
        "<h6>",
        "</h6>",
        "text",
        " & ",
        "<",
        ">",
        '"',
        "'",
        "<svg onload=x>",
        "<iframe srcdoc='<script>x</script>'>",
        "<br>",
        "<table>",
        "<td>",
        '<blockquote cite="javascript:x">',
        "</blockquote>",
        '<a href="//evil.example">',
        "<p onclick=x>",
        '<a href="https://[">',
        "<textarea>",
        "</textarea>",
        "<noscript>",
    ]
)


@settings(max_examples=300)
@given(st.lists(FRAGMENTS | st.text(max_size=8), max_size=25).map("".join))
def test_output_never_leaves_the_allowlist(remote: str) -> None:
    clean = sanitize_remote_html(remote)
    assert_within_allowlist(clean)
    lowered = clean.lower()
    assert "<script" not in lowered and "<style" not in lowered and "<img" not in lowered
    assert "javascript:" not in " ".join(re.findall(r'href="[^"]*"', lowered))
