"""`fedistream doctor` against deliberately broken servers on loopback, and its parts.

The fake site builds its documents with the same core functions as fedistream (actor, WebFinger,
NodeInfo, host-meta) and verifies inbox signatures like it, so with no fault every check passes;
each test then breaks one thing and expects exactly that FAIL, with its fix.
"""

from __future__ import annotations

import json
import sqlite3
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fedistream.core import activitypub, discovery, httpsig
from fedistream.core.urls import Urls
from fedistream.doctor import diagnose
from fedistream.doctor_http import Finding, LocalKey, Status, read_local_key, report
from fedistream.doctor_site import check_tls
from fedistream.services.keys import _generate
from tests.loopback import free_port, serving

AS2 = "application/activity+json"


@pytest.fixture(scope="module")
def key() -> LocalKey:
    pair = _generate()
    return LocalKey(pair.private_pem, pair.public_pem, "test database")


@pytest.fixture(scope="module")
def other_key() -> LocalKey:
    pair = _generate()
    return LocalKey(pair.private_pem, pair.public_pem, "another database")


@dataclass
class FakeSite:
    """A fedistream-shaped site. `claimed_base` is what it believes its address is."""

    claimed_base: str
    public_pem: str
    faults: set[str] = field(default_factory=set)
    clock_offset: timedelta = timedelta(0)
    links: list[tuple[str, str]] = field(default_factory=list)

    @property
    def urls(self) -> Urls:
        return Urls(self.claimed_base)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def _dated(self, response: Response) -> Response:
        # uvicorn's own Date header is off (date_header=False): this server's clock speaks.
        response.headers["date"] = format_datetime(self.now(), usegmt=True)
        return response

    async def root(self, request: Request) -> Response:
        if "activity+json" not in request.headers.get("accept", ""):
            page = f'<a rel="me" href="{self.urls.actor}">me</a>'
            return self._dated(Response(page, media_type="text/html", headers={"Vary": "Accept"}))
        document = activitypub.actor_document(
            self.urls,
            username="owner",
            display_name="Owner",
            summary_html="",
            avatar=None,
            header=None,
            links=self.links,
            public_key_pem=self.public_pem,
            published=datetime(2026, 1, 1, tzinfo=UTC),
            manually_approves_followers=False,
        )
        media_type = "application/json" if "content_type" in self.faults else AS2
        return self._dated(
            Response(json.dumps(document), media_type=media_type, headers={"Vary": "Accept"})
        )

    async def webfinger(self, request: Request) -> Response:
        domain = self.claimed_base.split("://", 1)[1]
        document = discovery.webfinger_document(self.urls, "owner", domain)
        if "self_link" in self.faults:
            for link in document["links"]:
                if link["rel"] == "self":
                    link["href"] = self.claimed_base + "/users/owner"
        return self._dated(JSONResponse(document, media_type="application/jrd+json"))

    async def host_meta(self, request: Request) -> Response:
        xml = discovery.host_meta_xml(self.claimed_base)
        return self._dated(Response(xml, media_type="application/xrd+xml"))

    async def nodeinfo_links(self, request: Request) -> Response:
        return self._dated(JSONResponse(discovery.nodeinfo_links(self.claimed_base)))

    async def nodeinfo(self, request: Request) -> Response:
        document = discovery.nodeinfo("2.1", software_version="0.1.0", local_posts=1)
        return self._dated(JSONResponse(document))

    async def atom(self, request: Request) -> Response:
        base = self.claimed_base
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<feed xmlns="http://www.w3.org/2005/Atom"><title>Owner</title>'
            f"<id>{base}/</id><updated>2026-01-01T00:00:00Z</updated>"
            f"<entry><id>{base}/p/0001</id><title>one</title>"
            "<updated>2026-01-01T00:00:00Z</updated></entry></feed>"
        )
        return self._dated(Response(xml, media_type="application/atom+xml"))

    async def json_feed(self, request: Request) -> Response:
        document = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "Owner",
            "items": [{"id": self.claimed_base + "/p/0001", "content_text": "one"}],
        }
        body = json.dumps(document)
        if "json_feed" in self.faults:
            body = body[: len(body) // 2]  # cut off mid-document, as a broken cache might
        return self._dated(Response(body, media_type="application/feed+json"))

    async def page(self, request: Request) -> Response:
        back = request.path_params["name"] == "links-back"
        html = f'<a rel="me" href="{self.urls.actor}">Owner</a>' if back else "<p>nothing</p>"
        return self._dated(Response(html, media_type="text/html"))

    async def inbox(self, request: Request) -> Response:
        """As fedistream's inbox: verify the signature, then refuse a Note not the actor's."""
        body = await request.body()
        signed = httpsig.HttpRequest(
            "POST", request.url.path, list(request.headers.items()), body, scheme="http"
        )
        try:
            httpsig.verify_request(signed, self.public_pem, self.now())
        except httpsig.SignatureError as exc:
            return self._dated(JSONResponse({"error": exc.reason}, status_code=401))
        note = json.loads(body)["object"]
        if note.get("attributedTo") != json.loads(body)["actor"]:
            refusal = "Activity refused: Create of an object attributed to someone else."
            return self._dated(JSONResponse({"error": refusal}, status_code=400))
        return self._dated(Response(status_code=202))

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/", self.root),
                Route("/.well-known/webfinger", self.webfinger),
                Route("/.well-known/host-meta", self.host_meta),
                Route("/.well-known/nodeinfo", self.nodeinfo_links),
                Route("/nodeinfo/2.1", self.nodeinfo),
                Route("/feed.xml", self.atom),
                Route("/feed.json", self.json_feed),
                Route("/pages/{name}", self.page),
                Route("/inbox", self.inbox, methods=["POST"]),
            ]
        )


@contextmanager
def fake_site(
    public_pem: str,
    *,
    faults: set[str] | None = None,
    clock_offset: timedelta = timedelta(0),
    claimed_base: str | None = None,
    links: list[tuple[str, str]] | None = None,
) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site = FakeSite(claimed_base or base, public_pem, faults or set(), clock_offset)
    site.links = [(label, url.format(base=base)) for label, url in links or []]
    with serving(site.app(), port=port, date_header=False):
        yield base


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        yield client


def failed(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings if f.status is Status.FAIL}


def status_of(findings: list[Finding], check: str) -> list[Status]:
    return [f.status for f in findings if f.check == check]


# --- a sound site, then one fault at a time ------------------------------------------------


async def test_a_sound_site_passes_everything_but_plain_http(
    key: LocalKey, http: httpx.AsyncClient
) -> None:
    with fake_site(key.public_pem) as base:
        findings = await diagnose(base, http, key=key)
    assert failed(findings) == {}
    warned = {f.check for f in findings if f.status is Status.WARN}
    assert warned == {"tls"}, [f.line() for f in findings]
    checks = [f.check for f in findings]
    for check in ("actor", "clock", "webfinger", "signed fetch", "own signature",
                  "inbound signature", "nodeinfo", "host-meta", "atom feed", "json feed",
                  "rel=me"):  # fmt: skip
        assert status_of(findings, check) == [Status.PASS], check
    assert len(checks) == len(set(checks))  # one line per check
    text, any_failed = report(findings)
    assert not any_failed and text.endswith("11 passed, 1 warnings, 0 failed")


async def test_wrong_self_link_fails_webfinger_with_its_fix(
    key: LocalKey, http: httpx.AsyncClient
) -> None:
    with fake_site(key.public_pem, faults={"self_link"}) as base:
        findings = await diagnose(base, http, key=key)
    (webfinger,) = failed(findings).values()
    assert webfinger.check == "webfinger"
    assert f"{base}/users/owner" in webfinger.detail and f"{base}/" in webfinger.detail
    assert "byte for byte" in webfinger.fix and "/.well-known/" in webfinger.fix
    line = webfinger.line()
    assert line.startswith("FAIL  webfinger: ") and "— fix: " in line


async def test_wrong_content_type_fails_the_actor(key: LocalKey, http: httpx.AsyncClient) -> None:
    with fake_site(key.public_pem, faults={"content_type"}) as base:
        findings = await diagnose(base, http, key=key)
    assert set(failed(findings)) == {"actor"}
    actor = failed(findings)["actor"]
    assert "application/json" in actor.detail and "Vary: Accept" in actor.fix
    # Checks that need the actor say they were skipped rather than pass blindly.
    assert status_of(findings, "webfinger") == [Status.WARN]
    assert status_of(findings, "inbound signature") == [Status.WARN]


@pytest.mark.parametrize(
    ("offset", "expected", "words"),
    [
        (timedelta(minutes=10), Status.FAIL, "ahead of"),
        (timedelta(minutes=-10), Status.FAIL, "behind"),
        (timedelta(seconds=90), Status.WARN, "ahead of"),
    ],
)
async def test_skewed_date_is_reported(
    key: LocalKey, http: httpx.AsyncClient, offset: timedelta, expected: Status, words: str
) -> None:
    with fake_site(key.public_pem, clock_offset=offset) as base:
        findings = await diagnose(base, http, key=key)
    (clock,) = [f for f in findings if f.check == "clock"]
    assert clock.status is expected and words in clock.detail
    assert "NTP" in clock.fix
    # Signatures live within Mastodon's ±1 h window: only the clock line complains.
    assert set(failed(findings)) <= {"clock"}


async def test_invalid_json_feed_fails(key: LocalKey, http: httpx.AsyncClient) -> None:
    with fake_site(key.public_pem, faults={"json_feed"}) as base:
        findings = await diagnose(base, http, key=key)
    assert set(failed(findings)) == {"json feed"}
    assert "not valid JSON" in failed(findings)["json feed"].detail
    assert status_of(findings, "atom feed") == [Status.PASS]


async def test_a_server_that_thinks_it_lives_elsewhere_is_told_its_base_url(
    key: LocalKey, http: httpx.AsyncClient
) -> None:
    # The classic: FEDISTREAM_BASE_URL left at a local default behind the public address.
    with fake_site(key.public_pem, claimed_base="http://127.0.0.1:9") as base:
        findings = await diagnose(base, http, key=key)
    bad = failed(findings)
    assert f"set FEDISTREAM_BASE_URL to {base}" in bad["actor"].fix
    assert "http://127.0.0.1:9/" in bad["actor"].detail
    assert "set FEDISTREAM_BASE_URL" in bad["host-meta"].fix


async def test_a_key_that_is_not_the_databases_fails_own_signature(
    key: LocalKey, other_key: LocalKey, http: httpx.AsyncClient
) -> None:
    with fake_site(other_key.public_pem) as base:
        findings = await diagnose(base, http, key=key)
    assert set(failed(findings)) == {"own signature"}
    own = failed(findings)["own signature"]
    assert "does not verify" in own.detail and "FEDISTREAM_DATA_DIR" in own.fix
    # The inbox probe would be refused for the same reason: it says so instead of blaming Host.
    assert status_of(findings, "inbound signature") == [Status.WARN]


async def test_a_key_from_another_instance_is_put_aside_when_not_expected(
    key: LocalKey, other_key: LocalKey, http: httpx.AsyncClient
) -> None:
    # doctor run on one server about another site: its database key is not that site's.
    with fake_site(other_key.public_pem) as base:
        findings = await diagnose(base, http, key=key, key_expected=False)
    assert failed(findings) == {}
    (note,) = [f for f in findings if f.check == "local key"]
    assert note.status is Status.WARN and "does not publish the key" in note.detail
    assert status_of(findings, "own signature") == [Status.WARN]
    assert "throwaway" in next(f.detail for f in findings if f.check == "signed fetch")


async def test_a_published_key_is_used_even_when_the_url_was_given_by_hand(
    key: LocalKey, http: httpx.AsyncClient
) -> None:
    with fake_site(key.public_pem) as base:
        findings = await diagnose(base, http, key=key, key_expected=False)
    assert status_of(findings, "own signature") == [Status.PASS]
    assert status_of(findings, "inbound signature") == [Status.PASS]
    assert status_of(findings, "local key") == []


async def test_without_the_key_signed_checks_are_skipped_not_failed(
    key: LocalKey, http: httpx.AsyncClient
) -> None:
    with fake_site(key.public_pem) as base:
        findings = await diagnose(base, http, key=None)
    assert failed(findings) == {}
    assert status_of(findings, "signed fetch") == [Status.PASS]  # with a throwaway key
    assert "throwaway" in next(f.detail for f in findings if f.check == "signed fetch")
    assert status_of(findings, "own signature") == [Status.WARN]
    assert status_of(findings, "inbound signature") == [Status.WARN]


async def test_rel_me_links_are_reported_not_failed(key: LocalKey, http: httpx.AsyncClient) -> None:
    links = [("Site", "{base}/pages/links-back"), ("Elsewhere", "{base}/pages/no-link"),
             ("Gone", "http://127.0.0.1:9/")]  # fmt: skip
    with fake_site(key.public_pem, links=links) as base:
        findings = await diagnose(base, http, key=key)
    rel_me = [f for f in findings if f.check == "rel=me"]
    assert [f.status for f in rel_me] == [Status.PASS, Status.WARN, Status.WARN]
    assert f"{base}/pages/links-back links back" in rel_me[0].detail
    assert "does not link back" in rel_me[1].detail and 'rel="me"' in rel_me[1].fix
    assert "no answer" in rel_me[2].detail
    assert failed(findings) == {}


async def test_nothing_listening_fails_with_the_fix(http: httpx.AsyncClient) -> None:
    findings = await diagnose("http://127.0.0.1:9", http, key=None)
    assert {"actor", "nodeinfo", "host-meta", "atom feed", "json feed"} <= set(failed(findings))
    assert "fedistream is running" in failed(findings)["actor"].fix


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _tls_server(cert: trustme.LeafCert, tmp_path: Path) -> dict[str, str]:
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}


async def _no_http(scope: dict, receive: object, send: object) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]


async def test_tls_valid_certificate_passes_with_days_left(ca: trustme.CA, tmp_path: Path) -> None:
    cert = ca.issue_cert("127.0.0.1", not_after=datetime.now(UTC) + timedelta(days=90))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with serving(_no_http, **_tls_server(cert, tmp_path)) as port:
        finding = await check_tls(f"https://127.0.0.1:{port}", client_context, 5)
    assert finding.status is Status.PASS
    assert "valid 89 more days" in finding.detail or "valid 90 more days" in finding.detail


async def test_tls_expiring_soon_warns(ca: trustme.CA, tmp_path: Path) -> None:
    cert = ca.issue_cert("127.0.0.1", not_after=datetime.now(UTC) + timedelta(days=5, hours=1))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with serving(_no_http, **_tls_server(cert, tmp_path)) as port:
        finding = await check_tls(f"https://127.0.0.1:{port}", client_context, 5)
    assert finding.status is Status.WARN and "expires in 5 days" in finding.detail
    assert "renew" in finding.fix


async def test_tls_untrusted_or_wrong_host_fails(ca: trustme.CA, tmp_path: Path) -> None:
    cert = ca.issue_cert("other.example.test")
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with serving(_no_http, **_tls_server(cert, tmp_path)) as port:
        wrong_host = await check_tls(f"https://127.0.0.1:{port}", client_context, 5)
        untrusted = await check_tls(f"https://127.0.0.1:{port}", ssl.create_default_context(), 5)
    for finding in (wrong_host, untrusted):
        assert finding.status is Status.FAIL and "not valid for 127.0.0.1" in finding.detail
        assert "certificate that names 127.0.0.1" in finding.fix


# --- the local key -------------------------------------------------------------------------


def test_read_local_key_is_read_only_and_explains_absence(tmp_path: Path, key: LocalKey) -> None:
    missing = tmp_path / "none.sqlite3"
    assert read_local_key(missing) == (None, f"no database at {missing}")
    assert not missing.exists()  # read-only: nothing created

    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    found, why = read_local_key(path)
    assert found is None and "no key pair yet" in why

    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("private_key_pem", key.private_pem), ("public_key_pem", key.public_pem)],
        )
    before = path.read_bytes()
    found, why = read_local_key(path)
    assert found is not None and found.private_pem == key.private_pem
    assert found.public_pem == key.public_pem and why == f"read from {path}"
    assert path.read_bytes() == before


def test_read_local_key_reads_through_a_running_servers_wal(tmp_path: Path, key: LocalKey) -> None:
    path = tmp_path / "live.sqlite3"
    writer = sqlite3.connect(path)
    try:
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # the rows stay in the WAL only
        writer.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        writer.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("private_key_pem", key.private_pem), ("public_key_pem", key.public_pem)],
        )
        writer.commit()
        assert (tmp_path / "live.sqlite3-wal").exists()
        found, _why = read_local_key(path)
        assert found is not None and found.public_pem == key.public_pem
    finally:
        writer.close()
    # Stopped server (WAL checkpointed away): reading creates no -wal/-shm files.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.sqlite3"]
    found, _why = read_local_key(path)
    assert found is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.sqlite3"]
