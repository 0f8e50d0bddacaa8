"""`fedistream doctor`, the site's other faces: NodeInfo, host-meta, feeds, rel=me links, TLS.

Beside `doctor.py` (which checks the actor, WebFinger, signatures and the clock). Each function
fetches, looks and returns its findings; none raises for a bad answer, only `Unreachable` when
there was no answer at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import time
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlsplit

import httpx

from fedistream.doctor_http import Finding, Status, Unreachable, fetch, rel_me_targets

ATOM = "{http://www.w3.org/2005/Atom}"
XRD = "{http://docs.oasis-open.org/ns/xri/xrd-1.0}"
NODEINFO_REL = "http://nodeinfo.diaspora.software/ns/schema/"
CERT_WARN_DAYS = 14
PROXY_FIX = (
    "check that fedistream is running (systemctl status fedistream) and that the reverse proxy "
    "forwards this path to it"
)
_SOFTWARE_NAME = re.compile(r"^[a-z0-9-]+$")
_FEED_FIX = "feed readers cannot subscribe; " + PROXY_FIX


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


# --- NodeInfo and host-meta ------------------------------------------------------------------


def nodeinfo_problems(document: dict[str, Any] | None, version: str) -> list[str]:
    """What R89 requires of a NodeInfo 2.0/2.1 document that this one lacks."""
    if document is None:
        return ["not a JSON object"]
    software = document.get("software")
    usage = document.get("usage")
    services = document.get("services")
    checks = [
        (document.get("version") == version, f"version is not {version!r}"),
        (
            isinstance(software, dict)
            and isinstance(software.get("name"), str)
            and bool(_SOFTWARE_NAME.match(software["name"]))
            and isinstance(software.get("version"), str),
            "software name/version missing or malformed",
        ),
        ("activitypub" in (document.get("protocols") or []), "protocols lack activitypub"),
        (
            isinstance(services, dict)
            and isinstance(services.get("inbound"), list)
            and isinstance(services.get("outbound"), list),
            "services.inbound/outbound missing",
        ),
        (isinstance(document.get("openRegistrations"), bool), "openRegistrations not a boolean"),
        (isinstance(usage, dict) and isinstance(usage.get("users"), dict), "usage.users missing"),
        (isinstance(document.get("metadata"), dict), "metadata not an object"),
    ]
    return [problem for ok, problem in checks if not ok]


async def check_nodeinfo(client: httpx.AsyncClient, base: str) -> Finding:
    url = origin(base) + "/.well-known/nodeinfo"
    links = (
        await fetch(client, "nodeinfo", url, accept="application/json", follow=True)
    ).json_object()
    hrefs = {
        str(link.get("rel", "")).removeprefix(NODEINFO_REL): link.get("href")
        for link in (links or {}).get("links") or []
        if isinstance(link, dict)
    }
    version = "2.1" if isinstance(hrefs.get("2.1"), str) else "2.0"
    href = hrefs.get(version)
    if not isinstance(href, str):
        return Finding(
            Status.FAIL,
            "nodeinfo",
            f"{url} lists no NodeInfo 2.x document",
            "serve /.well-known/nodeinfo from fedistream; " + PROXY_FIX,
        )
    reply = await fetch(client, "nodeinfo", href, accept="application/json", follow=True)
    document = reply.json_object()
    problems = nodeinfo_problems(document, version)
    if problems:
        return Finding(
            Status.FAIL,
            "nodeinfo",
            f"{href} (HTTP {reply.status}): {'; '.join(problems)}",
            "NodeInfo must be fedistream's own document; " + PROXY_FIX,
        )
    assert document is not None
    software = document["software"]
    posts = document["usage"].get("localPosts", "?")
    return Finding(
        Status.PASS,
        "nodeinfo",
        f"NodeInfo {version}: {software['name']} {software['version']}, {posts} posts",
    )


async def check_host_meta(client: httpx.AsyncClient, base: str) -> Finding:
    url = origin(base) + "/.well-known/host-meta"
    reply = await fetch(client, "host-meta", url, accept="application/xrd+xml", follow=True)
    expected = origin(base) + "/.well-known/webfinger?resource={uri}"
    template = None
    if reply.status == 200:
        try:
            # Our own server's answer (expat refuses entity-expansion bombs by itself).
            root: ET.Element | None = ET.fromstring(reply.body)
        except ET.ParseError:
            root = None
        for link in root.iter(XRD + "Link") if root is not None else ():
            if link.get("rel") == "lrdd":
                template = link.get("template")
    if template == expected:
        return Finding(Status.PASS, "host-meta", f"{url} points at WebFinger")
    return Finding(
        Status.FAIL,
        "host-meta",
        f"{url} (HTTP {reply.status}): lrdd template {template!r}, expected {expected!r}",
        f"set FEDISTREAM_BASE_URL to {origin(base)} and route /.well-known/ to fedistream",
    )


# --- feeds -------------------------------------------------------------------------------------


async def check_atom_feed(client: httpx.AsyncClient, base: str) -> Finding:
    url = base + "/feed.xml"
    reply = await fetch(client, "atom feed", url, accept="application/atom+xml", follow=True)
    if reply.status != 200:
        return Finding(Status.FAIL, "atom feed", f"{url} answered HTTP {reply.status}", _FEED_FIX)
    try:
        root = ET.fromstring(reply.body)
    except ET.ParseError as exc:
        return Finding(Status.FAIL, "atom feed", f"{url} is not well-formed XML: {exc}", _FEED_FIX)
    entries = root.findall(ATOM + "entry")
    without_id = [e for e in entries if not (e.findtext(ATOM + "id") or "").strip()]
    if root.tag != ATOM + "feed" or not (root.findtext(ATOM + "id") or "").strip():
        return Finding(Status.FAIL, "atom feed", f"{url} is not an Atom feed with an id", _FEED_FIX)
    if without_id:
        return Finding(
            Status.FAIL, "atom feed", f"{url}: {len(without_id)} entries lack an id", _FEED_FIX
        )
    if not entries:
        return Finding(Status.WARN, "atom feed", f"{url} is valid Atom with no entries yet")
    return Finding(Status.PASS, "atom feed", f"{url}: valid Atom, {len(entries)} entries")


async def check_json_feed(client: httpx.AsyncClient, base: str) -> Finding:
    url = base + "/feed.json"
    reply = await fetch(client, "json feed", url, accept="application/feed+json", follow=True)
    if reply.status != 200:
        return Finding(Status.FAIL, "json feed", f"{url} answered HTTP {reply.status}", _FEED_FIX)
    try:
        document = json.loads(reply.body)
    except ValueError as exc:
        return Finding(Status.FAIL, "json feed", f"{url} is not valid JSON: {exc}", _FEED_FIX)
    if not isinstance(document, dict):
        return Finding(Status.FAIL, "json feed", f"{url} is not a JSON object", _FEED_FIX)
    items = document.get("items")
    if not str(document.get("version")).startswith("https://jsonfeed.org/version/"):
        return Finding(Status.FAIL, "json feed", f"{url} has no JSON Feed version", _FEED_FIX)
    if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("id") for i in items):
        return Finding(Status.FAIL, "json feed", f"{url}: items missing or without ids", _FEED_FIX)
    if not items:
        return Finding(Status.WARN, "json feed", f"{url} is a valid JSON Feed with no items yet")
    return Finding(Status.PASS, "json feed", f"{url}: JSON Feed, {len(items)} items")


# --- rel=me ------------------------------------------------------------------------------------


async def check_rel_me(client: httpx.AsyncClient, actor: dict[str, Any]) -> list[Finding]:
    """Each profile link should link back with rel=me (that is what makes Mastodon show it as
    verified). A site that does not is reported, never failed: it may be out of our hands."""
    links = rel_me_targets(actor)
    if not links:
        return [Finding(Status.PASS, "rel=me", "no profile links to verify")]
    ours = {str(actor["id"]), str(actor.get("url") or actor["id"])}
    findings = []
    for link in links:
        try:
            reply = await fetch(client, "rel=me", link, accept="text/html", follow=True)
        except Unreachable as exc:
            findings.append(Finding(Status.WARN, "rel=me", str(exc)))
            continue
        if reply.links_back_to(ours):
            findings.append(Finding(Status.PASS, "rel=me", f"{link} links back with rel=me"))
        else:
            findings.append(
                Finding(
                    Status.WARN,
                    "rel=me",
                    f"{link} (HTTP {reply.status}) does not link back with rel=me",
                    f'add <a rel="me" href="{actor["id"]}"> to that page so Mastodon shows '
                    "the link as verified",
                )
            )
    return findings


# --- TLS ---------------------------------------------------------------------------------------


async def check_tls(base: str, context: ssl.SSLContext | None, seconds: float) -> Finding:
    parts = urlsplit(base)
    if parts.scheme != "https":
        return Finding(
            Status.WARN,
            "tls",
            f"{base} is plain http: fine on loopback, but the fediverse needs https",
            "put Caddy or nginx with a certificate in front (deploy/) and set "
            "FEDISTREAM_BASE_URL=https://your.domain",
        )
    host = parts.hostname or ""
    try:
        async with asyncio.timeout(seconds):
            _reader, writer = await asyncio.open_connection(
                host,
                parts.port or 443,
                ssl=context or ssl.create_default_context(),
                server_hostname=host,
            )
    except ssl.SSLCertVerificationError as exc:
        return Finding(
            Status.FAIL,
            "tls",
            f"the certificate is not valid for {host}: {exc.verify_message or exc}",
            f"issue a certificate that names {host} (Caddy does it by itself; nginx: certbot) "
            "and check that the proxy serves it",
        )
    except (OSError, TimeoutError) as exc:
        return Finding(Status.FAIL, "tls", f"no TLS connection to {host}: {exc}", PROXY_FIX)
    certificate = writer.get_extra_info("peercert") or {}
    writer.close()
    # The server may drop an idle TLS connection abruptly; the check is done by then.
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    days = int((ssl.cert_time_to_seconds(certificate["notAfter"]) - time.time()) // 86400)
    if days < CERT_WARN_DAYS:
        return Finding(
            Status.WARN,
            "tls",
            f"the certificate for {host} expires in {days} days",
            "automatic renewal may be failing: check Caddy's log or `certbot renew --dry-run`",
        )
    return Finding(Status.PASS, "tls", f"the certificate for {host} is valid {days} more days")
