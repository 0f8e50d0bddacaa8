"""Timestamps: the one storage/wire format (RFC 3339, UTC, 'Z') and the human form shown on pages.

Pure: `now` is always passed in.
"""

from __future__ import annotations

from datetime import UTC, datetime


def to_iso(when: datetime) -> str:
    """RFC 3339 in UTC with second precision, as ActivityPub peers and feeds expect."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """Parse RFC 3339 / ISO 8601; a naive value is taken as UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def human_date(when: datetime) -> str:
    """'26 November 2026': absolute, so a cached page never goes stale."""
    return f"{when.day} {when.strftime('%B %Y')}"


def human_datetime(when: datetime) -> str:
    return f"{human_date(when)}, {when.strftime('%H:%M')} UTC"
