"""Content negotiation for URLs shared by people and servers (INTEROP R91–R92, R96, R109). Pure.

`/` and `/p/{id}` answer HTML to browsers and ActivityStreams JSON to servers; the decision is made
once, here, from the Accept header. Inbox POSTs are checked for an ActivityStreams media type.
"""

from __future__ import annotations

AS2_CONTENT_TYPE = "application/activity+json"
LD_JSON = "application/ld+json"
# The other spelling of the AS2 media type peers send and accept (R16, R92).
AS2_LD_CONTENT_TYPE = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'

# Media ranges that ask for ActivityStreams. `application/json` is among them because Mastodon
# (Rails maps it to the same JSON format) answers it with the AS2 document, and clients that ask
# for plain JSON at an actor URL are scripts that want data, not a page.
_AS2_TYPES = frozenset({AS2_CONTENT_TYPE, LD_JSON, "application/json"})
# What a browser asks for. Wildcards count here only: a server that wants AS2 names it.
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/*", "*/*"})


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    """(media type, q) pairs of an Accept header; unreadable q-values count as 0 (ignored)."""
    ranges = []
    for part in accept.split(","):
        media_type, *params = part.split(";")
        media_type = media_type.strip().lower()
        if not media_type:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
                if not 0.0 <= quality <= 1.0:  # also rejects nan
                    quality = 0.0
        ranges.append((media_type, quality))
    return ranges


def wants_activity_json(accept: str | None) -> bool:
    """True when the client prefers ActivityStreams JSON to HTML.

    Mastodon asks `application/activity+json, application/ld+json`, Misskey adds
    `; profile="https://www.w3.org/ns/activitystreams"` (R92). An AS2 range wins when its q is at
    least that of any HTML range; `*/*` alone (curl, browsers' fallbacks) gets HTML.
    """
    if not accept:
        return False
    as2 = html = 0.0
    for media_type, quality in _media_ranges(accept):
        if media_type in _AS2_TYPES:
            as2 = max(as2, quality)
        elif media_type in _HTML_TYPES:
            html = max(html, quality)
    return as2 > 0.0 and as2 >= html


def is_acceptable_inbox_content_type(content_type: str | None) -> bool:
    """May an inbox POST with this Content-Type be read as an activity?

    GoToSocial accepts `application/activity+json` (any charset) and `application/ld+json` with
    the AS2 profile, and answers anything else 406 (R96). We also take `application/ld+json`
    without a profile and plain `application/json`: Mastodon's inbox does not look at the type at
    all, and the signature and Digest already vouch for the body, so refusing buys nothing.
    """
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in _AS2_TYPES
