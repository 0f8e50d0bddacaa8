"""Reading ActivityStreams JSON as peers really send it. Pure.

Single values arrive where arrays are expected (GoToSocial `"to": "…#Public"`,
Pixelfed `"tag": {…}`, R103), links arrive as strings or objects, and `@context` may be a
string, list or object. These helpers normalise every shape so parsers never index into a guess.
"""

from __future__ import annotations

from typing import Any

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
# Peers also address the public collection by its compacted forms.
PUBLIC_ALIASES = frozenset({PUBLIC, "as:Public", "Public"})


def as_list(value: Any) -> list[Any]:
    """None → [], a list stays a list, anything else becomes a one-item list."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def id_of(value: Any) -> str | None:
    """The id of a link or object: a string itself, or an object's `id` (or `href` for Links)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        for key in ("id", "href"):
            candidate = value.get(key)
            if isinstance(candidate, str) and candidate:
                return candidate
    return None


def first_value(value: Any) -> Any:
    """The first item of a list, or the value itself (None for an empty list)."""
    items = as_list(value)
    return items[0] if items else None


def ids_of(value: Any) -> list[str]:
    return [i for i in (id_of(v) for v in as_list(value)) if i]


def first_str(value: Any) -> str | None:
    for item in as_list(value):
        if isinstance(item, str) and item:
            return item
    return None


def type_of(value: Any) -> str | None:
    """The first `type` of an object (types may be arrays, e.g. ["Note", "Article"])."""
    if not isinstance(value, dict):
        return None
    return first_str(value.get("type"))


def has_as_context(document: Any) -> bool:
    """Mastodon drops documents whose @context lacks the ActivityStreams context (R9)."""
    if not isinstance(document, dict):
        return False
    for entry in as_list(document.get("@context")):
        if entry in (AS_CONTEXT, AS_CONTEXT + "/", "https://www.w3.org/ns/activitystreams.jsonld"):
            return True
    return False


def is_public(addressing: Any) -> bool:
    return any(i in PUBLIC_ALIASES for i in ids_of(addressing))
