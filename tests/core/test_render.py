"""Markdown rendering: CommonMark, hashtags, plain text, and no payload that injects script."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedistream.core.render import excerpt, normalize_tag, render_markdown, tag_path


def test_paragraphs_emphasis_and_links() -> None:
    out = render_markdown("Hello *there* and **you**.\n\nSee [the docs](https://127.0.0.1:9/docs).")
    assert "<p>Hello <em>there</em> and <strong>you</strong>.</p>" in out.html
    assert '<a href="https://127.0.0.1:9/docs" rel="nofollow noopener">the docs</a>' in out.html


def test_bare_urls_are_autolinked() -> None:
    out = render_markdown("read https://127.0.0.1:9/a?b=1&c=2 today")
    assert '<a href="https://127.0.0.1:9/a?b=1&amp;c=2" rel="nofollow noopener">' in out.html


def test_lists_quotes_and_code() -> None:
    source = "1. one\n2. two\n\n- a\n- b\n\n> quoted\n\n```\nx < 1\n```\n\nand `inline`"
    html = render_markdown(source).html
    assert "<ol>\n<li>one</li>\n<li>two</li>\n</ol>" in html
    assert "<ul>\n<li>a</li>\n<li>b</li>\n</ul>" in html
    assert "<blockquote>\n<p>quoted</p>\n</blockquote>" in html
    assert "<pre><code>x &lt; 1\n</code></pre>" in html
    assert "<code>inline</code>" in html


def test_ordered_list_start_is_kept() -> None:
    assert '<ol start="3">' in render_markdown("3. three\n4. four").html


def test_headings_sit_below_the_thought_title() -> None:
    html = render_markdown("# Big\n\n## Smaller").html
    assert "<h3>Big</h3>" in html and "<h4>Smaller</h4>" in html
    assert "<h1>" not in html and "<h2>" not in html


def test_hashtags_link_to_tag_pages_and_are_collected() -> None:
    out = render_markdown("On #Python and #python, also #café. Not a#tag, not #123, not `#code`.")
    assert out.tags == ("python", "café")
    assert '<a href="/tags/python" class="hashtag" rel="tag">#Python</a>' in out.html
    assert 'href="/tags/caf%C3%A9"' in out.html
    assert "a#tag" in out.html
    assert "#123" in out.html and "/tags/123" not in out.html
    assert "<code>#code</code>" in out.html


def test_hashtag_inside_a_link_label_stays_text() -> None:
    out = render_markdown("[#notatag](https://127.0.0.1:9/)")
    assert out.tags == ()
    assert "/tags/" not in out.html


def test_hashtag_at_start_of_line_is_a_tag_not_a_heading() -> None:
    out = render_markdown("#monday\nmorning")
    assert out.tags == ("monday",)
    assert "<h" not in out.html.replace("href", "")


def test_plain_text_keeps_words_and_drops_markup() -> None:
    out = render_markdown(
        "# Title\n\nSome *emphasis* and [a link](https://127.0.0.1:9/).\n\n- item"
    )
    assert out.text == "Title\n\nSome emphasis and a link.\n\nitem"


def test_normalize_tag_and_path() -> None:
    assert normalize_tag("Straße") == "strasse"
    assert tag_path("C#") == "/tags/c%23"


def test_excerpt_cuts_at_a_word() -> None:
    assert excerpt("one two three four", 10) == "one two…"
    assert excerpt("  short\ntext ", 50) == "short text"


# --- XSS: nothing a thought contains may become script, an event handler or a dangerous URL ----

XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//127.0.0.1:9/xss.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<iframe src=javascript:alert(1)>",
    "<body onload=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](javascript&colon;alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](  javascript:alert(1))",
    "[click](java\u0000script:alert(1))",
    "![x](javascript:alert(1))",
    '![x](x" onerror="alert(1))',
    '![x" onerror="alert(1)](https://127.0.0.1:9/a.png)',
    '[x](https://127.0.0.1:9/" onmouseover="alert(1))',
    "<a href=x onmouseover=alert(1)>x</a>",
    "<details open ontoggle=alert(1)>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<style>body{background:url(javascript:alert(1))}</style>",
    "<link rel=stylesheet href=javascript:alert(1)>",
    '<meta http-equiv=refresh content="0;url=javascript:alert(1)">',
    "<object data=javascript:alert(1)>",
    "<embed src=javascript:alert(1)>",
    "<form action=javascript:alert(1)><button>x</button></form>",
    "<input autofocus onfocus=alert(1)>",
    "<video><source onerror=alert(1)></video>",
    "<marquee onstart=alert(1)>",
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<!--<script>alert(1)//-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
    '<https://127.0.0.1:9/" onclick="alert(1)>',
    "<javascript:alert(1)>",
    "[a]: javascript:alert(1)\n\n[x][a]",
    "#<script>alert(1)</script>",
    "#tag<img/src/onerror=alert(1)>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<a href="&#x6A;avascript:alert(1)">x</a>',
    '<base href="javascript:alert(1)//">',
    "<isindex type=image src=1 onerror=alert(1)>",
    "<x onclick=alert(1)>click",
    "<table background=javascript:alert(1)>",
]


_SAFE_ELEMENTS = {
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
}


class _Audit(HTMLParser):
    """Parses rendered HTML the way a browser tokenizes it and lists anything that could run."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SAFE_ELEMENTS:
            self.problems.append(f"element <{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name in ("style", "srcdoc", "formaction"):
                self.problems.append(f"attribute {name} on <{tag}>")
            if name in ("href", "src") and value is not None:
                scheme = urlsplit(value.strip()).scheme.lower()
                if scheme not in ("", "http", "https", "mailto"):
                    self.problems.append(f"{name}={value!r} on <{tag}>")


def _dangerous(html: str) -> list[str]:
    audit = _Audit()
    audit.feed(html)
    audit.close()
    return audit.problems


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_payload_cannot_inject_script(payload: str) -> None:
    html = render_markdown(payload).html
    assert _dangerous(html) == [], html


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("<>\"'=/ ajvscriptonerolad:()[]!#&;`*_-\n")), max_size=80)
)
def test_random_markup_soup_stays_safe(source: str) -> None:
    assert _dangerous(render_markdown(source).html) == []


def test_the_audit_itself_catches_what_it_must() -> None:
    assert _dangerous("<p><script>x</script></p>")
    assert _dangerous('<img src="x" onerror="y">')
    assert _dangerous('<a href=" javascript:alert(1)">x</a>')
    assert _dangerous('<p><a href="/tags/x" rel="tag">#x</a></p>') == []


def test_mentions_are_collected_and_linked_only_when_resolved() -> None:
    out = render_markdown(
        "hi @Bob@Example.com and @ann@127.0.0.1:8001, not a@b.c nor `@x@y.z`",
        {"bob@example.com": "https://example.com/@bob"},
    )
    assert out.mentions == ("bob@example.com", "ann@127.0.0.1:8001")
    assert (
        '<span class="h-card" translate="no"><a href="https://example.com/@bob" '
        'class="u-url mention" rel="nofollow noopener">@Bob</a></span>'
    ) in out.html
    assert "@ann@127.0.0.1:8001" in out.html and 'href="https://127' not in out.html
    assert "<code>@x@y.z</code>" in out.html


def test_mention_inside_a_link_label_is_not_a_mention() -> None:
    out = render_markdown("[@bob@example.com](https://127.0.0.1:9/)", {"bob@example.com": "x"})
    assert out.mentions == ()
