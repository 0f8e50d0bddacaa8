"""The stream file: many thoughts in one Markdown/text file, for `fedistream import` and `export`.

Pure (core): text in, entries out, and back. The format, for people writing it by hand:

    date: 2024-05-01T10:00Z        optional header lines at the top of a thought, in any order,
    cw: spoilers for season 2      with no blank line between them: `date:`, `cw:` (content
    # A title                      warning) and a `# Title` line
                                   the first blank or other line starts the thought itself
    The thought, in Markdown.

    ---                            a line of just `---` (trailing blanks allowed) separates thoughts

`---` lines inside fenced code (``` or ~~~) do not separate. A thought that needs a `---` line of
its own writes `\\---`; one backslash is removed on import (and added on export), so export and
import round-trip any source exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fedistream.core.models import Post
from fedistream.core.timefmt import parse_iso, to_iso

_SEPARATOR = re.compile(r"---[ \t]*")
# A separator-looking line with one or more backslashes in front: the escaped form of a `---` line
# inside a thought. Import drops one backslash, export adds one, so the mapping is reversible.
_ESCAPED_SEPARATOR = re.compile(r"(\\+)(---[ \t]*)")
_NEEDS_ESCAPE = re.compile(r"\\*---[ \t]*")
# CommonMark fences: up to 3 spaces of indent, then 3+ backticks or tildes; a backtick fence's info
# string may not contain a backtick (otherwise the line is inline code, not a fence).
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_TITLE = re.compile(r"#[ \t]+(\S.*)")
_HEADER = re.compile(r"(date|cw)[ \t]*:(.*)", re.IGNORECASE)

SEPARATOR_LINE = "---"
FIRST_LINE_CHARS = 60


@dataclass(frozen=True, slots=True)
class Entry:
    """One non-empty chunk of the file. `error` says why it cannot be imported (then skip it)."""

    number: int  # 1-based position among all chunks of the file, empty ones included
    line: int  # 1-based line of the file where the chunk's text starts
    first_line: str  # the chunk's first non-blank line, shortened, to name it in reports
    source: str  # the thought's Markdown, separator escapes removed
    title: str = ""
    summary: str = ""  # content warning
    created_at: datetime | None = None  # None: no `date:` header, the importer picks a time
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedStream:
    entries: tuple[Entry, ...]
    empty: int  # chunks with nothing but whitespace (skipped, counted for the summary)


# --- fences ---------------------------------------------------------------------------------


def _fence_opener(line: str) -> tuple[str, int] | None:
    match = _FENCE_OPEN.fullmatch(line)
    if match is None:
        return None
    fence, info = match.group(1), match.group(2)
    if fence[0] == "`" and "`" in info:
        return None
    return fence[0], len(fence)


def _closes(fence: tuple[str, int], line: str) -> bool:
    match = _FENCE_CLOSE.fullmatch(line)
    if match is None:
        return False
    return match.group(1)[0] == fence[0] and len(match.group(1)) >= fence[1]


def code_lines(lines: Sequence[str], *, protect_unclosed: bool) -> list[bool]:
    """For each line, whether it belongs to a fenced code block (fence lines included).

    In one Markdown document an unclosed fence runs to the end (`protect_unclosed=True`). In a
    whole stream file that would swallow every later thought, so there a fence that is never
    closed protects nothing: it is read as a plain line.
    """
    count = len(lines)
    # longest[c][i]: the longest closing fence of character c on line i or later, so "is this
    # fence ever closed?" costs O(1) and the scan stays linear even for a file full of openers.
    longest = {"`": [0] * (count + 1), "~": [0] * (count + 1)}
    for i in range(count - 1, -1, -1):
        for char in longest:
            longest[char][i] = longest[char][i + 1]
        match = _FENCE_CLOSE.fullmatch(lines[i])
        if match is not None:
            char, size = match.group(1)[0], len(match.group(1))
            longest[char][i] = max(longest[char][i], size)
    in_code = [False] * count
    fence: tuple[str, int] | None = None
    for i, line in enumerate(lines):
        if fence is None:
            fence = _fence_opener(line)
            if fence is not None and not protect_unclosed and longest[fence[0]][i + 1] < fence[1]:
                fence = None
            in_code[i] = fence is not None
        else:
            in_code[i] = True
            if _closes(fence, line):
                fence = None
    return in_code


# --- parsing --------------------------------------------------------------------------------


def _normalise(text: str) -> list[str]:
    """Lines of the text with a leading BOM and Windows line endings removed.

    A lone CR is left alone: the web form keeps it too, and the round trip must not change it.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").split("\n")


def _shorten(line: str) -> str:
    line = line.strip()
    return line if len(line) <= FIRST_LINE_CHARS else line[: FIRST_LINE_CHARS - 1] + "…"


def parse_date(value: str) -> datetime:
    """`2024-05-01`, `2024-05-01T10:00Z`, `2024-05-01 10:00:00+02:00`…; naive means UTC.

    Raises ValueError with a message naming the value.
    """
    try:
        return parse_iso(value)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"bad date {value.strip()!r} (use e.g. 2024-05-01T10:00Z)") from exc


def _parse_chunk(number: int, start: int, lines: list[str]) -> Entry | None:
    """One chunk (its lines, separator escapes already removed) → an Entry, or None if empty."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return None
    fields: dict[str, str] = {}
    title: str | None = None
    error: str | None = None
    body_at = first
    for line in lines[first:]:
        # Headers start at the margin: an indented `# x` is code or a heading, not a title.
        header = _HEADER.fullmatch(line.rstrip())
        title_match = _TITLE.fullmatch(line.rstrip()) if title is None else None
        if header is not None:
            key = header.group(1).lower()
            if key in fields and error is None:
                error = f"more than one '{key}:' line"
            fields[key] = header.group(2).strip()
        elif title_match is not None:
            title = title_match.group(1).strip()
        else:
            break
        body_at += 1
    created_at: datetime | None = None
    if "date" in fields:
        try:
            created_at = parse_date(fields["date"])
        except ValueError as exc:
            error = error or str(exc)
    return Entry(
        number=number,
        line=start + first + 1,
        first_line=_shorten(lines[first]),
        source="\n".join(lines[body_at:]).strip(),
        title=title or "",
        summary=fields.get("cw", ""),
        created_at=created_at,
        error=error,
    )


def parse_stream(text: str) -> ParsedStream:
    """Split a stream file into entries (see the module docstring for the format).

    Blank text before the first or after the last separator is not a chunk at all (a file may
    start or end with `---`); a blank chunk between two separators counts as empty.
    """
    lines = _normalise(text)
    in_code = code_lines(lines, protect_unclosed=False)
    chunks: list[tuple[int, list[str]]] = [(0, [])]
    for i, line in enumerate(lines):
        if not in_code[i] and _SEPARATOR.fullmatch(line):
            chunks.append((i + 1, []))
            continue
        escaped = None if in_code[i] else _ESCAPED_SEPARATOR.fullmatch(line)
        chunks[-1][1].append(escaped.group(1)[1:] + escaped.group(2) if escaped else line)

    def blank(chunk: tuple[int, list[str]]) -> bool:
        return not "".join(chunk[1]).strip()

    if chunks and blank(chunks[-1]):
        chunks.pop()
    if chunks and blank(chunks[0]):
        chunks.pop(0)
    entries: list[Entry] = []
    for number, (start, chunk_lines) in enumerate(chunks, start=1):
        entry = _parse_chunk(number, start, chunk_lines)
        if entry is not None:
            entries.append(entry)
    return ParsedStream(entries=tuple(entries), empty=len(chunks) - len(entries))


# --- formatting -----------------------------------------------------------------------------


def escape_source(source: str) -> str:
    """The source as it must appear in a stream file to come back unchanged from `parse_stream`.

    `---` lines outside code get a backslash; a fence left open at the end of the thought is
    closed, since otherwise it would run on into the next thought (the rendering is the same).
    """
    lines = source.split("\n")
    in_code = code_lines(lines, protect_unclosed=True)
    out = [
        "\\" + line if not code and _NEEDS_ESCAPE.fullmatch(line) else line
        for line, code in zip(lines, in_code, strict=True)
    ]
    fence: tuple[str, int] | None = None
    for line in lines:
        if fence is None:
            fence = _fence_opener(line)
        elif _closes(fence, line):
            fence = None
    if fence is not None:
        out.append(fence[0] * fence[1])
    return "\n".join(out)


def format_thought(
    source: str, *, created_at: datetime, title: str | None = None, summary: str | None = None
) -> str:
    """One thought as a chunk of a stream file, ending with a newline.

    The `date:` line always comes first and a blank line always ends the headers, so a thought
    whose own text starts with `# Heading` or `date:` is not mistaken for headers on import.
    """
    head = [f"date: {to_iso(created_at)}"]
    if summary:
        head.append(f"cw: {' '.join(summary.split())}")
    if title:
        head.append(f"# {' '.join(title.split())}")
    return "\n".join(head) + "\n\n" + escape_source(source.strip()) + "\n"


def format_post(post: Post) -> str:
    return format_thought(
        post.source, created_at=post.created_at, title=post.title, summary=post.summary
    )


def join_chunks(chunks: Iterable[str]) -> Iterable[str]:
    """Yield the pieces of a stream file: the chunks with separator lines between them."""
    for index, chunk in enumerate(chunks):
        if index:
            yield f"\n{SEPARATOR_LINE}\n\n"
        yield chunk


def json_record(post: Post, url: str) -> dict[str, Any]:
    """One thought as a JSON Lines record for `fedistream export --format jsonl`."""
    return {
        "id": post.id,
        "title": post.title,
        "content_warning": post.summary,
        "markdown": post.source,
        "html": post.html,
        "created_at": to_iso(post.created_at),
        "updated_at": to_iso(post.updated_at) if post.updated_at else None,
        "tags": list(post.tags),
        "url": url,
    }
