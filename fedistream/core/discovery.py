"""Discovery documents: WebFinger, host-meta and NodeInfo (INTEROP R1–R8, R88–R90). Pure.

How another server finds us from `@user@domain`: WebFinger names our actor id, host-meta points
at WebFinger for clients that start there, NodeInfo says what software we run.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlsplit

from fedistream.core.activitypub import MediaRef
from fedistream.core.urls import Urls

JRD_CONTENT_TYPE = "application/jrd+json"
XRD_CONTENT_TYPE = "application/xrd+xml"
AS2_LINK_TYPE = "application/activity+json"
SOFTWARE_NAME = "fedistream"  # NodeInfo demands ^[a-z0-9-]+$
NODEINFO_VERSIONS = ("2.1", "2.0")  # newest first: clients take the highest they know (R88)

_NODEINFO_REL = "http://nodeinfo.diaspora.software/ns/schema/"


def nodeinfo_content_type(version: str) -> str:
    return f'application/json; profile="{_NODEINFO_REL}{version}#"'


# --- WebFinger ----------------------------------------------------------------------------------


def _split_account(text: str) -> tuple[str, str]:
    user, _, host = text.rpartition("@")
    user = user.removeprefix("@")  # "@user@domain", as people paste handles
    if not user or not host or "@" in user or any(c.isspace() for c in text):
        raise ValueError(f"not an account: {text!r}")
    return user, host


def _is_our_page(resource: str, urls: Urls) -> bool:
    """Our actor id and profile page are one URL (the site root); compare it loosely."""
    ours, theirs = urlsplit(urls.actor), urlsplit(resource)
    return (
        theirs.scheme.lower() == ours.scheme.lower()
        and theirs.netloc.lower() == ours.netloc.lower()
        and theirs.path in ("", "/")
        and not theirs.query
        and not theirs.fragment
    )


def match_webfinger_resource(
    resource: str | None, *, username: str, domain: str, urls: Urls
) -> bool:
    """Is `resource` our account? True: ours. False: well formed but not ours (404).

    Accepts `acct:user@domain`, `user@domain`, `@user@domain` (Mastodon's server takes anything
    with an '@', R2) and our actor/profile URL; domain and username compare case-insensitively.
    Raises ValueError for a missing or unreadable resource (400).
    """
    text = (resource or "").strip()
    if not text:
        raise ValueError("resource is missing")
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")):
        if not urlsplit(text).netloc:
            raise ValueError(f"not a URL: {text!r}")
        return _is_our_page(text, urls)
    if lowered.startswith("acct:"):
        text = text[len("acct:") :]
    elif "@" not in text:
        raise ValueError(f"unsupported resource: {text!r}")
    user, host = _split_account(text)
    return user.casefold() == username.casefold() and host.lower() == domain.lower()


def webfinger_document(
    urls: Urls, username: str, domain: str, avatar: MediaRef | None = None
) -> dict[str, Any]:
    """The JRD for our account (R3). The self link must be byte-equal to the actor id (R6)."""
    links: list[dict[str, str]] = [
        {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": urls.actor},
        {"rel": "self", "type": AS2_LINK_TYPE, "href": urls.actor},
        {
            "rel": "http://ostatus.org/schema/1.0/subscribe",
            "template": urls.base + "/authorize_interaction?uri={uri}",
        },
    ]
    if avatar:
        links.append(
            {
                "rel": "http://webfinger.net/rel/avatar",
                "type": avatar.media_type,
                "href": avatar.url,
            }
        )
    # Mastodon lists the profile page and the actor id; for us they are the same URL.
    return {"subject": f"acct:{username}@{domain}", "aliases": [urls.actor], "links": links}


# --- host-meta ----------------------------------------------------------------------------------


def _lrdd_template(base: str) -> str:
    return base + "/.well-known/webfinger?resource={uri}"


def host_meta_xml(base: str) -> str:
    """XRD pointing at WebFinger: Mastodon's fallback when WebFinger answered 404 (R5)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">\n'
        f'  <Link rel="lrdd" template="{html.escape(_lrdd_template(base))}"/>\n'
        "</XRD>\n"
    )


def host_meta_json(base: str) -> dict[str, Any]:
    return {"links": [{"rel": "lrdd", "template": _lrdd_template(base)}]}


# --- NodeInfo -----------------------------------------------------------------------------------


def nodeinfo_links(base: str) -> dict[str, Any]:
    """`/.well-known/nodeinfo`: both schema versions we serve (R88)."""
    return {
        "links": [
            {"rel": _NODEINFO_REL + version, "href": f"{base}/nodeinfo/{version}"}
            for version in NODEINFO_VERSIONS
        ]
    }


def nodeinfo(
    version: str,
    *,
    software_version: str,
    local_posts: int,
    users: int = 1,
    open_registrations: bool = False,
    metadata: dict[str, Any] | None = None,
    repository: str | None = None,
    homepage: str | None = None,
) -> dict[str, Any]:
    """A NodeInfo 2.0 or 2.1 document, valid against the schema of that version (R89)."""
    if version not in NODEINFO_VERSIONS:
        raise ValueError(f"unsupported NodeInfo version {version!r}")
    software: dict[str, str] = {"name": SOFTWARE_NAME, "version": software_version}
    if version == "2.1":  # 2.0 forbids any other key in `software`
        if repository:
            software["repository"] = repository
        if homepage:
            software["homepage"] = homepage
    return {
        "version": version,
        "software": software,
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": open_registrations,
        "usage": {
            # One person: every count is the owner (nobody else can sign in).
            "users": {"total": users, "activeHalfyear": users, "activeMonth": users},
            "localPosts": local_posts,
        },
        "metadata": dict(metadata or {}),
    }
