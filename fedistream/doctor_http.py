"""What `fedistream doctor` is made of: findings, one capped HTTP fetch, the local key, the report.

Beside `doctor.py`. Kept apart from the checks so each check reads as "fetch, look, judge".
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fedistream.core.httpsig import PrivateKey, load_private_key
from fedistream.services.keys import PRIVATE_KEY, PUBLIC_KEY

MAX_BYTES = 1024 * 1024  # what any peer would read of one document (R16)
MAX_REDIRECTS = 5


class Status(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict: what was checked and seen, and what to do about it."""

    status: Status
    check: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.value}  {self.check}: {self.detail}"
        return f"{text} — fix: {self.fix}" if self.fix and self.status is not Status.PASS else text


class Unreachable(Exception):
    """No HTTP answer at all (refused, timed out, TLS failed); `check` is who asked."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


# --- HTTP ----------------------------------------------------------------------------------


class _Links(HTMLParser):
    """Every `<a>`/`<link>` with rel containing `me`: (href, rel tokens)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, set[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("a", "link"):
            return
        values = {name: value or "" for name, value in attrs}
        rel = set(values.get("rel", "").lower().split())
        if "me" in rel and values.get("href"):
            self.found.append((values["href"], rel))


def _same_page(a: str, b: str) -> bool:
    """Profile URLs compare without case in scheme/host and without a trailing slash."""
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme.lower(), x.netloc.lower(), x.path.rstrip("/"), x.query) == (
        y.scheme.lower(),
        y.netloc.lower(),
        y.path.rstrip("/"),
        y.query,
    )


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer, read in full (capped), with when it was asked and answered (local clock)."""

    url: str  # the URL that finally answered, after redirects
    status: int
    headers: httpx.Headers
    body: bytes
    sent_at: float
    received_at: float

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def local_midpoint(self) -> float:
        return (self.sent_at + self.received_at) / 2

    def text(self, limit: int) -> str:
        return " ".join(self.body[:limit].decode("utf-8", "replace").split())

    def json_object(self) -> dict[str, Any] | None:
        try:
            document = json.loads(self.body)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    def links_back_to(self, ours: Iterable[str]) -> bool:
        """Does this HTML page carry a rel=me link to one of `ours`?"""
        parser = _Links()
        parser.feed(self.body.decode("utf-8", "replace"))
        targets = [urljoin(self.url, href) for href, _rel in parser.found]
        return any(_same_page(t, mine) for t in targets for mine in ours)


async def fetch(
    client: httpx.AsyncClient,
    check: str,
    url: str,
    *,
    accept: str = "*/*",
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    follow: bool = False,
) -> Reply:
    """One request (and its redirects when `follow`), the answer capped at MAX_BYTES.
    Raises Unreachable when there is no HTTP answer."""
    sent_at = time.time()
    current = url
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            request = client.build_request(
                method, current, headers={"Accept": accept, **(headers or {})}, content=body
            )
            response = await client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if follow and response.is_redirect and location:
                    current = urljoin(current, location)
                    continue
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= MAX_BYTES:
                        break
                return Reply(
                    url=current,
                    status=response.status_code,
                    headers=response.headers,
                    body=b"".join(chunks)[:MAX_BYTES],
                    sent_at=sent_at,
                    received_at=time.time(),
                )
            finally:
                await response.aclose()
    except httpx.HTTPError as exc:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise Unreachable(check, f"no answer from {current} ({detail})") from None
    raise Unreachable(check, f"{url} redirected more than {MAX_REDIRECTS} times")


# --- the actor's profile links -------------------------------------------------------------


def rel_me_targets(actor: Mapping[str, Any]) -> list[str]:
    """The web links of the profile fields (PropertyValue values written as rel=me anchors)."""
    found: list[str] = []
    for field_ in actor.get("attachment") or []:
        if not isinstance(field_, dict) or field_.get("type") != "PropertyValue":
            continue
        parser = _Links()
        parser.feed(str(field_.get("value", "")))
        for href, _rel in parser.found:
            if href.startswith(("https://", "http://")) and href not in found:
                found.append(href)
    return found


# --- the local key -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalKey:
    """The owner's key pair as the server's database holds it."""

    private_pem: str
    public_pem: str
    source: str  # where it was read, for messages


def read_local_key(db_path: Path) -> tuple[LocalKey | None, str]:
    """The key pair from the database, opened read-only (doctor never writes), or None and why.
    Blocking sqlite3 is fine: the command has nothing else running yet."""
    if not db_path.is_file():
        return None, f"no database at {db_path}"
    # With the server running, its WAL holds recent writes: read through it. With the server
    # stopped there is no WAL, and `immutable` makes SQLite create none either — a -wal/-shm
    # made by root here would lock the server out of its own database at the next start.
    running = db_path.with_name(db_path.name + "-wal").exists()
    mode = "mode=ro" if running else "mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?{mode}", uri=True, timeout=5)
        try:
            rows = dict(
                conn.execute(
                    "SELECT key, value FROM meta WHERE key IN (?, ?)", (PRIVATE_KEY, PUBLIC_KEY)
                ).fetchall()
            )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return None, f"cannot read {db_path}: {exc} (run doctor as the fedistream user)"
    if not rows.get(PRIVATE_KEY) or not rows.get(PUBLIC_KEY):
        return None, f"{db_path} holds no key pair yet (start the server once)"
    return LocalKey(rows[PRIVATE_KEY], rows[PUBLIC_KEY], str(db_path)), f"read from {db_path}"


def same_key(pem: str, other_pem: str) -> bool:
    """Two PEMs of one public key (their line breaks or headers may differ)."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        keys = [serialization.load_pem_public_key(text.encode()) for text in (pem, other_pem)]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return keys[0].public_bytes(*spki) == keys[1].public_bytes(*spki)


def signing_key(local: LocalKey | None, key_id: str) -> tuple[PrivateKey, str, bool]:
    """(private key, key id, is it ours): the server's own key, else a throwaway one that
    claims an address no server will resolve (it only shows whether signed GETs pass)."""
    if local is not None:
        return load_private_key(local.private_pem), key_id, True
    throwaway = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return throwaway, "https://doctor.invalid/actor#main-key", False


# --- the report ----------------------------------------------------------------------------


def report(findings: Iterable[Finding]) -> tuple[str, bool]:
    """The printed report (one line per finding, then a tally) and whether anything failed."""
    findings = list(findings)
    lines = [f.line() for f in findings]
    tally = {status: sum(f.status is status for f in findings) for status in Status}
    lines.append(
        f"{tally[Status.PASS]} passed, {tally[Status.WARN]} warnings, {tally[Status.FAIL]} failed"
    )
    return "\n".join(lines), tally[Status.FAIL] > 0
