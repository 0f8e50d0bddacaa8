"""`fedistream doctor [URL]`: check a live deployment the way the fediverse sees it.

A command beside `cli.py` (it may use every layer). It talks HTTP to the public URL as a peer
would and, run on the server, opens the database read-only to sign with the owner's key. Every
check yields Findings (PASS/WARN/FAIL, what was seen, the fix). Here: the actor, the clock,
WebFinger (R6) and signatures; `doctor_site` checks NodeInfo, host-meta, feeds, rel=me and TLS;
`doctor_http` holds the fetch, the local key and the report. Loopback and private addresses are
allowed: it checks your own server.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import ssl
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

import fedistream
from fedistream import doctor_signatures as signatures
from fedistream import doctor_site as site
from fedistream.doctor_http import (
    Finding,
    LocalKey,
    Reply,
    Status,
    Unreachable,
    fetch,
    read_local_key,
    report,
    same_key,
)
from fedistream.federation.http import AS2_ACCEPT, JRD_ACCEPT, is_as2_content_type
from fedistream.settings import Settings

ACTOR_TYPES = frozenset({"Person", "Service", "Application", "Group", "Organization"})
CLOCK_WARN_S = 30
CLOCK_FAIL_S = 300
_NO_ACTOR = "skipped: the actor document could not be read (see the actor check)"
PROXY_FIX = site.PROXY_FIX

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _self_link(jrd: dict[str, Any]) -> str | None:
    for link in jrd.get("links") or []:
        if (
            isinstance(link, dict)
            and link.get("rel") == "self"
            and is_as2_content_type(str(link.get("type", "")))
        ):
            href = link.get("href")
            return href if isinstance(href, str) else None
    return None


class Doctor:
    """Runs every check against `base_url`; `run()` returns the findings in a fixed order."""

    def __init__(
        self,
        base_url: str,
        client: httpx.AsyncClient,
        *,
        key: LocalKey | None = None,
        key_expected: bool = True,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        now: Clock = _utcnow,
    ) -> None:
        self.base = base_url.rstrip("/")
        # Is `key` supposed to be this site's (the configured base URL is the one checked)?
        # If not, it is used only when the site turns out to publish it.
        self.key_expected = key_expected
        self.actor_url = self.base + "/"
        self.client = client
        self.key = key
        self.tls_context = tls_context
        self.timeout = timeout
        self.now = now
        self.findings: list[Finding] = []
        self.actor: dict[str, Any] | None = None
        self.actor_reply: Reply | None = None

    def _add(self, status: Status, check: str, detail: str, fix: str = "") -> None:
        self.findings.append(Finding(status, check, detail, fix))

    async def run(self) -> list[Finding]:
        client, base = self.client, self.base
        steps: list[Callable[[], Any]] = [
            self.check_actor,
            self.settle_key,
            self.check_clock,
            self.check_webfinger,
            lambda: signatures.check_signed_fetch(
                client, self.actor_url, self._key_id(), self.key, self.now
            ),
            lambda: signatures.check_own_signature(
                self.actor, self.actor_url, self._key_id(), self.key, self.now
            ),
            lambda: signatures.check_inbound_signature(
                client, self.actor, self._key_id(), self.key, self.now
            ),
            lambda: site.check_nodeinfo(client, base),
            lambda: site.check_host_meta(client, base),
            lambda: site.check_atom_feed(client, base),
            lambda: site.check_json_feed(client, base),
            self.check_rel_me,
            lambda: site.check_tls(base, self.tls_context, self.timeout),
        ]
        for step in steps:
            try:
                found = await step()
            except Unreachable as exc:
                self._add(Status.FAIL, exc.check, str(exc), PROXY_FIX)
                continue
            if isinstance(found, Finding):
                self.findings.append(found)
            elif isinstance(found, list):
                self.findings.extend(found)
        return self.findings

    async def settle_key(self) -> Finding | None:
        """A database key that is not this site's (doctor run on one server about another) is
        put aside instead of failing every signature check."""
        if self.key is None or self.actor is None or self.key_expected:
            return None
        if same_key(self.key.public_pem, str(self.actor["publicKey"]["publicKeyPem"])):
            return None
        self.key = None
        return Finding(
            Status.WARN,
            "local key",
            f"{self.base} does not publish the key of the database here: not used",
            "run doctor on the server that answers this URL, with its FEDISTREAM_DATA_DIR",
        )

    def _key_id(self) -> str:
        """The key id the actor publishes (what peers will look up), or the one we mint."""
        if self.actor is not None:
            return str(self.actor["publicKey"].get("id", self.actor_url + "#main-key"))
        return self.actor_url + "#main-key"

    async def check_rel_me(self) -> list[Finding]:
        if self.actor is None:
            return [Finding(Status.WARN, "rel=me", _NO_ACTOR)]
        return await site.check_rel_me(self.client, self.actor)

    async def _get(self, check: str, url: str, accept: str, **kw: Any) -> Reply:
        return await fetch(self.client, check, url, accept=accept, **kw)

    # --- the actor -----------------------------------------------------------------------

    async def check_actor(self) -> None:
        reply = await self._get("actor", self.actor_url, AS2_ACCEPT)
        self.actor_reply = reply
        where = f"GET {self.actor_url} (Accept: activity+json)"
        if reply.status != 200:
            self._add(
                Status.FAIL,
                "actor",
                f"{where} answered HTTP {reply.status}",
                "the site root must answer servers with the actor; " + PROXY_FIX,
            )
            return
        if not is_as2_content_type(reply.content_type):
            self._add(
                Status.FAIL,
                "actor",
                f"{where} answered Content-Type {reply.content_type or 'none'!r}, "
                "not application/activity+json",
                "peers ignore an actor served with another type: the reverse proxy or a cache "
                "must pass fedistream's Content-Type through and honour `Vary: Accept` (never "
                "serve the cached HTML page to servers)",
            )
            return
        try:
            document = json.loads(reply.body)
        except ValueError as exc:
            self._add(Status.FAIL, "actor", f"{where}: invalid JSON ({exc})", PROXY_FIX)
            return
        if not isinstance(document, dict):
            self._add(Status.FAIL, "actor", f"{where}: JSON that is not an object", PROXY_FIX)
            return
        actor_id = document.get("id")
        if actor_id != self.actor_url:
            self._add(
                Status.FAIL,
                "actor",
                f"the actor at {self.actor_url} calls itself {actor_id!r}",
                f"set FEDISTREAM_BASE_URL to {self.base} (the address the fediverse uses) and "
                "restart fedistream; ids are built from it",
            )
            return
        key = document.get("publicKey")
        missing = [
            name
            for name, ok in (
                ("a Person type", document.get("type") in ACTOR_TYPES),
                ("preferredUsername", isinstance(document.get("preferredUsername"), str)),
                ("inbox", isinstance(document.get("inbox"), str)),
                ("publicKey", isinstance(key, dict) and "publicKeyPem" in key),
            )
            if not ok
        ]
        if missing:
            self._add(
                Status.FAIL,
                "actor",
                f"the actor lacks {', '.join(missing)}",
                "something other than fedistream answers at this URL; " + PROXY_FIX,
            )
            return
        self.actor = document
        if "accept" not in reply.headers.get("vary", "").lower():
            self._add(
                Status.WARN,
                "actor",
                f"{actor_id} is served without `Vary: Accept`",
                "a cache may hand browsers the JSON or servers the HTML; let the proxy pass "
                "fedistream's Vary header through",
            )
            return
        self._add(Status.PASS, "actor", f"{actor_id} is a {document['type']} with inbox and key")

    # --- clock ---------------------------------------------------------------------------

    async def check_clock(self) -> None:
        reply = self.actor_reply or await self._get("clock", self.base + "/", "text/html")
        # The first Date when a proxy added its own beside fedistream's (httpx joins them).
        raw = next(iter(reply.headers.get_list("date")), None)
        try:
            served = email.utils.parsedate_to_datetime(raw) if raw else None
        except (TypeError, ValueError):
            served = None
        if served is None or served.tzinfo is None:
            self._add(
                Status.WARN,
                "clock",
                f"no usable Date header ({raw!r})",
                "peers sign and check Date headers; make sure the proxy passes them",
            )
            return
        # A cached answer keeps its origin Date; Age says how long it sat in the cache.
        age = reply.headers.get("age", "")
        served_at = served.timestamp() + (int(age) if age.isdigit() else 0)
        skew = served_at - reply.local_midpoint
        ahead = "ahead of" if skew > 0 else "behind"
        detail = f"the server's clock is {abs(skew):.0f} s {ahead} this machine's"
        fix = (
            "peers refuse signatures whose Date is minutes off: enable NTP on the server "
            "(timedatectl set-ntp true, or chrony) — and on this machine if it is the one off"
        )
        if abs(skew) > CLOCK_FAIL_S:
            self._add(Status.FAIL, "clock", detail + f" (more than {CLOCK_FAIL_S // 60} min)", fix)
        elif abs(skew) > CLOCK_WARN_S:
            self._add(Status.WARN, "clock", detail + f" (more than {CLOCK_WARN_S} s)", fix)
        else:
            self._add(Status.PASS, "clock", detail + " (within 30 s)")

    # --- WebFinger (R6) ------------------------------------------------------------------

    async def check_webfinger(self) -> None:
        if self.actor is None:
            self._add(Status.WARN, "webfinger", _NO_ACTOR)
            return
        actor_id = self.actor["id"]
        parts = urlsplit(actor_id)
        # R6: Mastodon takes preferredUsername + the actor id's host, WebFingers it, and wants
        # the subject back (case-insensitively) and a self link byte-equal to the actor id.
        account = f"{self.actor['preferredUsername']}@{parts.netloc}"
        jrd, problem = await self._webfinger(parts.scheme, parts.netloc, account)
        if problem:
            self._add(Status.FAIL, "webfinger", *problem)
            return
        assert jrd is not None
        subject = str(jrd.get("subject", ""))
        if subject.lower() != f"acct:{account}".lower():
            other = subject.removeprefix("acct:")
            if "@" not in other:
                self._add(
                    Status.FAIL,
                    "webfinger",
                    f"acct:{account} answered subject {subject!r}",
                    "the subject must name the account (set FEDISTREAM_USERNAME and "
                    "FEDISTREAM_BASE_URL as the actor has them)",
                )
                return
            # R6: a subject on another domain is WebFingered once more, with the same checks.
            jrd, problem = await self._webfinger(parts.scheme, other.rsplit("@", 1)[1], other)
            if problem:
                self._add(Status.FAIL, "webfinger", *problem)
                return
            assert jrd is not None
        href = _self_link(jrd)
        if href != actor_id:
            self._add(
                Status.FAIL,
                "webfinger",
                f"acct:{account}: the self link is {href!r}, the actor id is {actor_id!r}",
                "Mastodon compares them byte for byte: fedistream builds both from "
                "FEDISTREAM_BASE_URL, so another server (an old instance, a static file) is "
                "answering /.well-known/webfinger — route /.well-known/ to fedistream",
            )
            return
        self._add(
            Status.PASS,
            "webfinger",
            f"acct:{account} → subject {subject}, self link equals the actor id",
        )

    async def _webfinger(
        self, scheme: str, host: str, account: str
    ) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
        url = f"{scheme}://{host}/.well-known/webfinger?resource={quote('acct:' + account)}"
        reply = await self._get("webfinger", url, JRD_ACCEPT, follow=True)
        if reply.status == 404:
            return None, (
                f"WebFinger does not know acct:{account} (HTTP 404 at {url})",
                "FEDISTREAM_USERNAME and the host of FEDISTREAM_BASE_URL make the handle; "
                "if they are right, the proxy does not send /.well-known/ to fedistream",
            )
        if reply.status != 200:
            return None, (f"{url} answered HTTP {reply.status}", PROXY_FIX)
        document = reply.json_object()
        if document is None:
            return None, (
                f"{url} answered {reply.content_type!r} that is not a JSON object",
                PROXY_FIX,
            )
        return document, None


async def diagnose(
    base_url: str,
    client: httpx.AsyncClient,
    *,
    key: LocalKey | None = None,
    key_expected: bool = True,
    tls_context: ssl.SSLContext | None = None,
    request_seconds: float = 10.0,
    now: Clock = _utcnow,
) -> list[Finding]:
    """Every check against `base_url`, in a fixed order."""
    doctor = Doctor(
        base_url,
        client,
        key=key,
        key_expected=key_expected,
        tls_context=tls_context,
        timeout=request_seconds,
        now=now,
    )
    return await doctor.run()


# --- the command ---------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    doctor = sub.add_parser("doctor", help="check a live deployment the way the fediverse sees it")
    doctor.add_argument("url", nargs="?", help="the public base URL (default: the configured one)")
    doctor.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    doctor.add_argument(
        "--no-key", action="store_true", help="do not read the signing key from the database"
    )


def _local_key(args: argparse.Namespace, settings: Settings) -> tuple[Finding, LocalKey | None]:
    """The owner's key, when this machine holds a fedistream database (doctor run on the server)."""
    if args.no_key:
        return Finding(Status.PASS, "local key", "not used (--no-key)"), None
    key, why = read_local_key(settings.db_path)
    if key is None:
        return (
            Finding(
                Status.WARN,
                "local key",
                f"{why}; the checks that sign with it are skipped",
                "run doctor on the server as the fedistream user, with FEDISTREAM_DATA_DIR set",
            ),
            None,
        )
    return Finding(Status.PASS, "local key", f"{why} (read-only)"), key


async def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    url = (args.url or settings.base_url).rstrip("/")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        print(f"error: not an http(s) URL: {url!r}", file=sys.stderr)
        return 2
    print(f"fedistream doctor: checking {url}", flush=True)
    key_finding, key = _local_key(args, settings)
    # Checking the configured site: its key must be the one published. Another URL (the
    # configuration here may not name the public address): the key is used if it is published.
    expected = site.origin(url) == site.origin(settings.base_url)
    async with httpx.AsyncClient(
        timeout=args.timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": f"fedistream-doctor/{fedistream.__version__}"},
    ) as client:
        findings = await diagnose(
            url, client, key=key, key_expected=expected, request_seconds=args.timeout
        )
    text, failed = report([key_finding, *findings])
    print(text, flush=True)
    return 1 if failed else 0
