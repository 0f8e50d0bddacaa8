"""The stream file format: splitting, headers, dates, line endings, fences, and the round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedistream.core.models import Post
from fedistream.core.stream_file import (
    Entry,
    code_lines,
    escape_source,
    format_post,
    format_thought,
    join_chunks,
    json_record,
    parse_date,
    parse_stream,
)

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def sources(text: str) -> list[str]:
    return [e.source for e in parse_stream(text).entries]


# --- separators -----------------------------------------------------------------------------


def test_thoughts_are_split_on_dash_lines_with_trailing_blanks() -> None:
    text = "Small things compound.\n---\nA second one.\n---   \t\nAnd a third.\n"
    assert sources(text) == ["Small things compound.", "A second one.", "And a third."]


def test_dashes_with_indent_or_text_do_not_split() -> None:
    text = "one\n ---\ntwo\n----\nthree --- four\n--- not a separator\n"
    assert len(parse_stream(text).entries) == 1


def test_empty_chunks_are_counted_and_skipped_and_edges_are_not_chunks() -> None:
    parsed = parse_stream("---\nfirst\n---\n\n   \n---\n---\nsecond\n---\n")
    assert [e.source for e in parsed.entries] == ["first", "second"]
    assert parsed.empty == 2
    assert [e.number for e in parsed.entries] == [1, 4]


def test_an_empty_file_has_nothing() -> None:
    assert parse_stream("") == parse_stream("\n\n") == parse_stream("---\n")
    assert parse_stream("").entries == () and parse_stream("").empty == 0


def test_entries_know_their_line_and_first_line() -> None:
    text = "alpha\n---\n\n\ndate: 2024-05-01\nbeta " + "x" * 100 + "\n"
    second = parse_stream(text).entries[1]
    assert second.line == 5
    assert second.first_line == "date: 2024-05-01"
    first_of_long = parse_stream("y" * 100).entries[0].first_line
    assert len(first_of_long) == 60 and first_of_long.endswith("…")


# --- headers --------------------------------------------------------------------------------


def test_a_first_hash_line_is_the_title() -> None:
    (entry,) = parse_stream("# Early lessons\n\nThe field is its people.\n").entries
    assert (entry.title, entry.source) == ("Early lessons", "The field is its people.")


def test_title_may_be_followed_directly_by_the_text() -> None:
    (entry,) = parse_stream("# Lists\n1. one\n2. two\n").entries
    assert (entry.title, entry.source) == ("Lists", "1. one\n2. two")


def test_lower_headings_and_indented_hashes_are_not_titles() -> None:
    (h2,) = parse_stream("## A section\n\ntext").entries
    assert h2.title == "" and h2.source.startswith("## A section")
    (indented,) = parse_stream("    # code comment\n").entries
    assert indented.title == ""


def test_date_before_or_after_title_and_cw() -> None:
    a = parse_stream("date: 2024-05-01T10:00Z\n# T\ncw: spoilers\n\nbody").entries[0]
    b = parse_stream("# T\nDate: 2024-05-01T10:00Z\nCW: spoilers\nbody").entries[0]
    for entry in (a, b):
        assert (entry.title, entry.summary, entry.source) == ("T", "spoilers", "body")
        assert entry.created_at == T0


def test_a_blank_line_ends_the_headers() -> None:
    (entry,) = parse_stream("date: 2024-05-01\n\n# Not a title\n\ndate: not a header").entries
    assert entry.error is None
    assert entry.title == ""
    assert entry.source == "# Not a title\n\ndate: not a header"


def test_only_the_first_hash_line_is_the_title() -> None:
    (entry,) = parse_stream("# First\n# Second\n").entries
    assert (entry.title, entry.source) == ("First", "# Second")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T10:00Z", T0),
        ("2024-05-01T10:00", T0),
        ("2024-05-01 10:00:00", T0),
        ("2024-05-01T12:00:00+02:00", T0),
        ("2024-05-01T10:00:00.250Z", T0 + timedelta(milliseconds=250)),
        ("  2024-05-01t10:00z ", T0),
    ],
)
def test_dates_in_many_shapes_naive_means_utc(value: str, expected: datetime) -> None:
    parsed = parse_date(value)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_a_bad_date_marks_the_entry_with_an_error() -> None:
    parsed = parse_stream("fine\n---\ndate: 2024-13-01\nnot fine\n---\nalso fine")
    bad = parsed.entries[1]
    assert bad.error is not None and "2024-13-01" in bad.error
    assert (bad.number, bad.line, bad.first_line) == (2, 3, "date: 2024-13-01")
    assert [e.error for e in (parsed.entries[0], parsed.entries[2])] == [None, None]


def test_two_date_lines_are_an_error_and_empty_date_too() -> None:
    assert parse_stream("date: 2024-05-01\ndate: 2024-05-02\nx").entries[0].error
    assert parse_stream("date:\nx").entries[0].error


# --- bytes on the wire: BOM, CRLF -------------------------------------------------------------


def test_bom_and_crlf_are_handled() -> None:
    text = "\ufeffdate: 2024-05-01T10:00Z\r\n# Title\r\n\r\nline one\r\nline two\r\n---\r\nnext\r\n"
    first, second = parse_stream(text).entries
    assert (first.title, first.created_at) == ("Title", T0)
    assert first.source == "line one\nline two"
    assert second.source == "next"


# --- fenced code ----------------------------------------------------------------------------


def test_dashes_inside_fenced_code_do_not_split() -> None:
    text = (
        "Front matter looks like this:\n\n```yaml\n---\ntitle: x\n---\n```\n"
        "---\n~~~~\n---\n~~~\n---\n~~~~\n"
    )
    first, second = parse_stream(text).entries
    assert first.source == "Front matter looks like this:\n\n```yaml\n---\ntitle: x\n---\n```"
    assert second.source == "~~~~\n---\n~~~\n---\n~~~~"


def test_a_fence_is_closed_only_by_the_same_kind_and_at_least_its_length() -> None:
    text = "````\n```\n---\n~~~\n````\n---\nafter"
    assert sources(text) == ["````\n```\n---\n~~~\n````", "after"]


def test_backtick_info_with_backtick_is_not_a_fence() -> None:
    assert sources("``` not `a fence`\n---\nsecond") == ["``` not `a fence`", "second"]


def test_an_unclosed_fence_does_not_swallow_the_rest_of_the_file() -> None:
    text = "broken\n```python\nprint(1)\n---\nsecond\n---\nthird"
    assert sources(text) == ["broken\n```python\nprint(1)", "second", "third"]


def test_code_lines_marks_fences_and_their_content() -> None:
    lines = ["a", "```", "---", "```", "b"]
    assert code_lines(lines, protect_unclosed=True) == [False, True, True, True, False]
    assert code_lines(["```", "x"], protect_unclosed=True) == [True, True]
    assert code_lines(["```", "x"], protect_unclosed=False) == [False, False]


# --- escapes and formatting -----------------------------------------------------------------


def test_escaped_separator_lines_lose_one_backslash() -> None:
    (entry,) = parse_stream("Setext\n\\---\nand \\\\---\n\\\\---\n").entries
    assert entry.source == "Setext\n---\nand \\\\---\n\\---"


def test_escape_source_adds_backslashes_outside_code_only() -> None:
    assert escape_source("a\n---\n\\---\n```\n---\n```") == "a\n\\---\n\\\\---\n```\n---\n```"


def test_escape_source_closes_a_fence_left_open() -> None:
    assert escape_source("x\n~~~~\ncode") == "x\n~~~~\ncode\n~~~~"


def test_format_thought_writes_headers_then_a_blank_line() -> None:
    chunk = format_thought("body", created_at=T0, title="  A   title ", summary="food")
    assert chunk == "date: 2024-05-01T10:00:00Z\ncw: food\n# A title\n\nbody\n"
    assert format_thought("x", created_at=T0) == "date: 2024-05-01T10:00:00Z\n\nx\n"


def test_join_chunks_puts_separators_between() -> None:
    assert "".join(join_chunks(["a\n", "b\n"])) == "a\n\n---\n\nb\n"
    assert "".join(join_chunks([])) == ""


def _post(source: str, title: str | None = None, summary: str | None = None) -> Post:
    return Post(
        id="0000000000000000", source=source, html="<p>h</p>", text="t", title=title,
        summary=summary, created_at=T0, updated_at=T0 + timedelta(hours=1), tags=("tag",),
    )  # fmt: skip


def test_format_post_round_trips_tricky_sources() -> None:
    tricky = [
        ("# Looks like a title\n\nbut is a heading", None, None),
        ("date: tomorrow\ncw: no", "Real title", "real cw"),
        ("Heading\n---\n\nText", None, None),
        ("```\nunclosed fence\n---", None, None),
        ("> quote\n>\n> — someone", "Epigraph", None),
        ("line with two trailing spaces  \nnext", None, None),
    ]
    text = "".join(join_chunks(format_post(_post(*t)) for t in tricky))
    parsed = parse_stream(text)
    assert parsed.empty == 0
    got = [(e.source, e.title or None, e.summary or None, e.created_at) for e in parsed.entries]
    expected = [(s, t, c, T0) for s, t, c in tricky]
    expected[3] = ("```\nunclosed fence\n---\n```", None, None, T0)  # closed: renders the same
    assert got == expected


def test_json_record_has_the_documented_fields() -> None:
    record = json_record(_post("hi #tag", title="T", summary="cw"), "https://x.test/p/0")
    assert record == {
        "id": "0000000000000000", "title": "T", "content_warning": "cw", "markdown": "hi #tag",
        "html": "<p>h</p>", "created_at": "2024-05-01T10:00:00Z",
        "updated_at": "2024-05-01T11:00:00Z", "tags": ["tag"], "url": "https://x.test/p/0",
    }  # fmt: skip


# --- the round trip as a property -------------------------------------------------------------

_LINES = st.sampled_from(
    ["", "text", "---", "--- ", "\\---", "\\\\---", "```", "````", "~~~", "``` py", "# Head",
     "## Sub", "date: 2020-01-01", "cw: x", "  indented", "> quote", "1. item", "#tag here"]
)  # fmt: skip
_ONE_LINE = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30)


def _clean(source: str) -> str:
    """What `services.posts.validate` stores: stripped, LF line ends."""
    return source.replace("\r\n", "\n").strip()


@given(
    st.lists(
        st.tuples(
            st.lists(st.one_of(_LINES, _ONE_LINE), min_size=1, max_size=12).map("\n".join),
            st.one_of(st.none(), _ONE_LINE),
            st.one_of(st.none(), _ONE_LINE),
            st.datetimes(
                min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                timezones=st.just(UTC),
            ),
        ),
        min_size=1, max_size=6,
    )
)  # fmt: skip
def test_format_then_parse_gives_back_every_thought(
    thoughts: list[tuple[str, str | None, str | None, datetime]],
) -> None:
    kept = [(_clean(s), t, c, d) for s, t, c, d in thoughts if _clean(s)]
    chunks = [format_thought(s, created_at=d, title=t, summary=c) for s, t, c, d in kept]
    parsed = parse_stream("".join(join_chunks(chunks)))
    assert parsed.empty == 0
    assert len(parsed.entries) == len(kept)
    for entry, (source, title, summary, created) in zip(parsed.entries, kept, strict=True):
        assert isinstance(entry, Entry) and entry.error is None
        # An unclosed fence comes back closed (see escape_source); everything else is exact.
        if entry.source != source:
            assert entry.source.startswith(source + "\n")
            closer = entry.source[len(source) + 1 :]
            assert len(closer) >= 3 and set(closer) in ({"`"}, {"~"}) and closer in source
        assert entry.title == " ".join((title or "").split())
        assert entry.summary == " ".join((summary or "").split())
        assert entry.created_at == created.replace(microsecond=0)
