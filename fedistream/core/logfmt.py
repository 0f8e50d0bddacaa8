"""logfmt: `key=value` log lines that people read and `grep`/Loki/Vector parse. Layer: core (pure).

Values with spaces, quotes, `=` or control characters are double-quoted with backslash escapes,
so one event is always one line (a peer's error body with a newline in it cannot split it).
None is written as `-`, the way access logs say "no value".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# A value written bare: no space, quote, `=`, backslash, control character or DEL.
_BARE = re.compile(r'[^\x00-\x20"=\\\x7f]+')


def format_value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.1f}"
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    # Other control characters (a tab, an escape sequence from a hostile peer) as \xNN.
    escaped = "".join(c if c >= " " and c != "\x7f" else f"\\x{ord(c):02x}" for c in escaped)
    return f'"{escaped}"'


def logfmt(fields: Mapping[str, object]) -> str:
    """`{"a": 1, "b": "x y"}` → `a=1 b="x y"`, in the mapping's order."""
    return " ".join(f"{key}={format_value(value)}" for key, value in fields.items())


class LogfmtLine:
    """A log message that is formatted only when read: `log.info(LogfmtLine(fields), extra=
    {"fields": fields})`. fedistream's own formatters write the structured fields and never
    read the message, so a line per request and per delivery is formatted once, not twice."""

    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[str, object]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return logfmt(self.fields)
