"""logfmt lines: plain values bare, anything else quoted and escaped onto one line."""

from __future__ import annotations

from fedistream.core.logfmt import LogfmtLine, format_value, logfmt


def test_plain_values_stay_bare_and_in_order() -> None:
    fields = {"event": "request", "status": 200, "path": "/p/0001", "ok": True, "ms": 1.25}
    assert logfmt(fields) == "event=request status=200 path=/p/0001 ok=true ms=1.2"


def test_missing_values_are_a_dash() -> None:
    assert logfmt({"status": None, "client": ""}) == 'status=- client=""'


def test_spaces_quotes_equals_and_backslashes_are_quoted() -> None:
    assert format_value("HTTP 500: oops") == '"HTTP 500: oops"'
    assert format_value('say "hi"') == '"say \\"hi\\""'
    assert format_value("a=b") == '"a=b"'
    assert format_value("C:\\path") == '"C:\\\\path"'


def test_control_characters_cannot_break_the_line() -> None:
    # A peer's error body is attacker-controlled: a newline must not forge a second log line.
    line = logfmt({"reason": "bad\nts=forged level=info\r\x1b[31m\tx"})
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\t" not in line
    assert line == 'reason="bad\\nts=forged level=info\\r\\x1b[31m\\x09x"'


def test_a_logfmt_line_is_formatted_only_when_read() -> None:
    class Counting:
        calls = 0

        def __str__(self) -> str:
            Counting.calls += 1
            return "x y"

    line = LogfmtLine({"event": "request", "client": Counting()})
    assert Counting.calls == 0
    assert str(line) == 'event=request client="x y"'
    assert Counting.calls == 1
