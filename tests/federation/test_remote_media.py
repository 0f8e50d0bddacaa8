"""Remote avatars and attachments served from our origin (services/remote_media.py,
federation/media_fetch.py, the `remote_media_url` filter): real HTTP against a loopback peer,
real SQLite, real files.

What must hold: images are fetched in the background through the SSRF-safe client, capped in
size and type, verified and re-encoded by Pillow, stored under media/remote/<sha256>.<ext>; pages
show our copy or a placeholder and never the remote URL, and rendering never fetches.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.testclient import TestClient

from fedistream.app import build_app
from fedistream.core.remote_actor import RemoteActor
from fedistream.core.remote_note import parse_note
from fedistream.core.urls import Urls
from fedistream.federation.http import build_http_client
from fedistream.federation.media_fetch import MediaFetcher, fetch_image_bytes
from fedistream.services import inbox as inbox_service
from fedistream.services import posts as post_service
from fedistream.services import remote_media
from fedistream.services.inbox import InboxPolicy, InboxProcessor
from fedistream.services.posts import Draft
from fedistream.settings import Settings
from fedistream.store import actors as actor_store
from fedistream.store import followers as follower_store
from fedistream.store import remote_media as remote_media_store
from fedistream.store.db import Database
from tests.conftest import log_in
from tests.federation.peer import Peer, running_peer

AS = "https://www.w3.org/ns/activitystreams"
PUBLIC = AS + "#Public"


def png(size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (10, 200, 90)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def jpeg_with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc."
    out = io.BytesIO()
    Image.new("RGB", (3000, 2000), (200, 100, 50)).save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def serve_bytes(peer: Peer, path: str, body: bytes, content_type: str) -> None:
    async def answer(_request: Request) -> Response:
        return Response(body, media_type=content_type)

    peer.route(path, answer)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = build_http_client(allow_private_networks=True, user_agent="fedistream-test")
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def app_db(settings: Settings) -> AsyncIterator[Database]:
    """The database the app itself opens, so a page rendered afterwards sees the same rows."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = await Database.open(settings.db_path)
    try:
        yield database
    finally:
        await database.close()


def fetcher(
    db: Database, http: httpx.AsyncClient, settings: Settings, **options: Any
) -> MediaFetcher:
    return MediaFetcher(db, http, settings.media_dir, retry_delay=0.0, **options)


async def queue(db: Database, *urls: str) -> None:
    async with db.transaction() as conn:
        await remote_media_store.enqueue(conn, list(urls))


async def state(db: Database, url: str) -> str:
    row = await remote_media_store.get(db, url)
    assert row is not None
    return str(row["state"])


def remote_files(settings: Settings) -> list[str]:
    folder = remote_media.remote_dir(settings.media_dir)
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --- fetching ----------------------------------------------------------------------------------


async def test_an_image_is_fetched_verified_reencoded_and_stored(
    app_db: Database, http: httpx.AsyncClient, settings: Settings
) -> None:
    async with running_peer() as peer:
        serve_bytes(peer, "/media/photo.jpg", jpeg_with_exif(), "image/jpeg")
        url = peer.url("/media/photo.jpg")
        assert remote_media.local_url(settings.media_dir, url) == ""  # not cached yet
        await queue(app_db, url)
        assert await fetcher(app_db, http, settings).run_once() == 1
    name = remote_media.url_key(url) + ".jpg"
    assert remote_files(settings) == [name]
    assert remote_media.local_url(settings.media_dir, url) == "/media/remote/" + name
    stored = Image.open(remote_media.remote_dir(settings.media_dir) / name)
    assert stored.size == (2048, 1365) and not stored.getexif()
    row = await remote_media_store.get(app_db, url)
    assert row is not None and row["state"] == "ok" and row["name"] == name
    assert row["mime_type"] == "image/jpeg" and row["size"] > 0
    # Media is public: fetched unsigned, asking for images.
    [seen] = peer.requests_to("/media/photo.jpg")
    assert seen.header("signature") is None and "image/" in (seen.header("accept") or "")


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"<html>not an image</html>", "text/html", "not an image"),
        (b"\x89PNG\r\n\x1a\n garbage", "image/png", "not a usable image"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "image/svg+xml",
            "not a usable image",
        ),
    ],
)
async def test_anything_but_a_raster_image_is_refused(
    app_db: Database,
    http: httpx.AsyncClient,
    settings: Settings,
    body: bytes,
    content_type: str,
    reason: str,
) -> None:
    async with running_peer() as peer:
        serve_bytes(peer, "/x", body, content_type)
        await queue(app_db, peer.url("/x"))
        await fetcher(app_db, http, settings).run_once()
        row = await remote_media_store.get(app_db, peer.url("/x"))
    assert row is not None and row["state"] == "failed" and reason in row["error"]
    assert remote_files(settings) == []


async def test_size_is_capped_declared_or_streamed(
    app_db: Database, http: httpx.AsyncClient, settings: Settings
) -> None:
    big = png((300, 300)) + b"\0" * 5000

    async def streamed(_request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 1000):
                yield big[start : start + 1000]

        return StreamingResponse(chunks(), media_type="image/png")  # no Content-Length

    async with running_peer() as peer:
        serve_bytes(peer, "/declared.png", big, "image/png")
        peer.route("/streamed.png", streamed)
        urls = [peer.url("/declared.png"), peer.url("/streamed.png")]
        await queue(app_db, *urls)
        await fetcher(app_db, http, settings, max_bytes=4000).run_once()
        for url in urls:
            row = await remote_media_store.get(app_db, url)
            assert row is not None and row["state"] == "failed"
            assert "larger than 4000 bytes" in row["error"]
    assert remote_files(settings) == []


async def test_private_addresses_are_refused_by_the_safe_client(
    app_db: Database, settings: Settings
) -> None:
    guarded = build_http_client(allow_private_networks=False, user_agent="fedistream-test")
    try:
        async with running_peer() as peer:
            serve_bytes(peer, "/a.png", png(), "image/png")
            await queue(app_db, peer.url("/a.png"))
            await fetcher(app_db, guarded, settings).run_once()
            assert peer.seen == []  # the request never left
    finally:
        await guarded.aclose()
    row = await remote_media_store.get(app_db, peer.url("/a.png"))
    assert row is not None and row["state"] == "failed" and "Refusing" in row["error"]


async def test_redirects_are_followed_a_few_times_only(http: httpx.AsyncClient) -> None:
    async with running_peer() as peer:
        serve_bytes(peer, "/final.png", png(), "image/png")
        peer.status("/hop", 302, {"Location": "/final.png"})
        peer.status("/loop", 302, {"Location": "/loop"})
        assert await fetch_image_bytes(http, peer.url("/hop")) == png()
        with pytest.raises(Exception, match="redirected more than 3 times"):
            await fetch_image_bytes(http, peer.url("/loop"))
        assert len(peer.requests_to("/loop")) == 4


async def test_server_errors_are_retried_then_given_up(
    app_db: Database, http: httpx.AsyncClient, settings: Settings
) -> None:
    async with running_peer() as peer:
        peer.status("/busy.png", 503)
        peer.status("/gone.png", 404)
        busy, gone = peer.url("/busy.png"), peer.url("/gone.png")
        await queue(app_db, busy, gone)
        worker = fetcher(app_db, http, settings)
        await worker.run_once()
        assert await state(app_db, busy) == "pending"  # may come back
        assert await state(app_db, gone) == "failed"  # will not
        await worker.run_once()
        await worker.run_once()
        assert await state(app_db, busy) == "failed"
        assert len(peer.requests_to("/busy.png")) == 3
        assert len(peer.requests_to("/gone.png")) == 1


# --- what gets queued --------------------------------------------------------------------------


def note_with_images(peer: Peer, *, sensitive: bool = False) -> dict[str, Any]:
    return {
        "@context": AS,
        "id": peer.url("/notes/1"),
        "type": "Note",
        "attributedTo": peer.url("/users/carol"),
        "content": "<p>Look at these</p>",
        "published": "2024-05-01T12:00:00Z",
        "to": [PUBLIC],
        "sensitive": sensitive,
        "attachment": [
            {"type": "Document", "mediaType": "image/png", "url": peer.url("/m/1.png"),
             "name": "A green square", "width": 40, "height": 30},
            {"type": "Document", "mediaType": "video/mp4", "url": peer.url("/m/2.mp4"),
             "name": "A clip"},
        ],
    }  # fmt: skip


async def follow_carol(db: Database, peer: Peer) -> None:
    carol = peer.url("/users/carol")
    actor = RemoteActor(
        id=carol, type="Person", inbox=carol + "/inbox", shared_inbox=None, key_id=None,
        public_key_pem=None, username="carol", domain=peer.base.split("//")[1], name="Carol",
        url=carol, icon_url=peer.url("/avatars/carol.png"), summary=None,
    )  # fmt: skip
    await actor_store.upsert(db, actor, {"id": carol}, datetime.now(UTC))
    async with db.transaction() as conn:
        await follower_store.upsert_following(
            conn, carol, "https://blog.example.test/#f/1", "accepted", "2024-05-01T00:00:00Z"
        )


async def test_inbox_processing_queues_a_notes_images_and_its_authors_avatar(
    app_db: Database, http: httpx.AsyncClient, settings: Settings
) -> None:
    async with running_peer() as peer:
        await follow_carol(app_db, peer)
        serve_bytes(peer, "/m/1.png", png(), "image/png")
        serve_bytes(peer, "/avatars/carol.png", png((64, 64), (250, 0, 0)), "image/png")
        note = note_with_images(peer)
        create = {"@context": AS, "id": peer.url("/notes/1/activity"), "type": "Create",
                  "actor": note["attributedTo"], "object": note, "to": [PUBLIC]}  # fmt: skip
        assert await inbox_service.receive(app_db, create, create["actor"])
        policy = InboxPolicy(Urls(settings.base_url), manually_approves_followers=False)
        await InboxProcessor(app_db, policy).run_once()
        assert peer.seen == []  # processing queues; it never fetches

        row = await app_db.fetchone(
            "SELECT attachments FROM remote_posts WHERE id = ?", (note["id"],)
        )
        assert row is not None
        stored = json.loads(row["attachments"])
        assert [a["url"] for a in stored] == [peer.url("/m/1.png"), peer.url("/m/2.mp4")]
        assert stored[0]["alt"] == "A green square"
        queued = {r["url"] for r in await app_db.fetchall("SELECT url FROM remote_media")}
        assert queued == {peer.url("/m/1.png"), peer.url("/avatars/carol.png")}  # no video

        assert await fetcher(app_db, http, settings).run_once() == 2
        assert len(remote_files(settings)) == 2


async def test_discovery_finds_known_avatars_and_stored_attachments(
    app_db: Database, http: httpx.AsyncClient, settings: Settings
) -> None:
    async with running_peer() as peer:
        await follow_carol(app_db, peer)  # an actor cached by some other path
        parsed = parse_note(note_with_images(peer))
        async with app_db.transaction() as conn:
            await conn.execute(
                "INSERT INTO remote_posts (id, actor_id, content_html, published, json, "
                "received_at, attachments) VALUES (?, ?, '', '2024-05-01T12:00:00Z', '{}', "
                "'2024-05-01T12:00:00Z', ?)",
                (parsed.id, parsed.actor_id, remote_media.attachments_json(parsed.attachments)),
            )
            await conn.execute(
                "INSERT INTO remote_posts (id, actor_id, content_html, published, json, "
                "received_at, attachments) VALUES ('x', 'y', '', '2024-05-01T12:00:00Z', '{}', "
                "'2024-05-01T12:00:00Z', 'not json')"
            )
        worker = fetcher(app_db, http, settings)
        await worker.run_once()  # the first pass looks at everything
    queued = {r["url"]: r["state"] for r in await app_db.fetchall("SELECT * FROM remote_media")}
    assert set(queued) == {peer.url("/m/1.png"), peer.url("/avatars/carol.png")}


@pytest.mark.parametrize(
    ("fixture", "count"),
    [("mastodon-note-attachment-blurhash.json", 1), ("pixelfed-create-note-image.json", 1)],
)
def test_attachments_of_real_notes_round_trip(
    shared_fixtures: Path, fixture: str, count: int
) -> None:
    document = json.loads((shared_fixtures / "activities" / fixture).read_text())
    note = parse_note(
        document.get("object", document) if document.get("type") == "Create" else document
    )
    images = remote_media.parse_attachments(remote_media.attachments_json(note.attachments))
    assert len(images) == count
    assert images[0].is_image and images[0].remote
    assert images[0].url == note.attachments[0].url and images[0].alt == (
        note.attachments[0].name or ""
    )


def test_stored_attachments_are_capped_and_garbage_is_skipped() -> None:
    assert remote_media.parse_attachments(None) == []
    assert remote_media.parse_attachments("{not json") == []
    text = json.dumps(
        [{"url": f"https://127.0.0.1:9/{n}.png"} for n in range(6)]
        + [{"url": "javascript:alert(1)"}, "nonsense"]
    )
    assert [i.url[-5:] for i in remote_media.parse_attachments(text)] == [
        "0.png", "1.png", "2.png", "3.png",
    ]  # fmt: skip


# --- pages -------------------------------------------------------------------------------------


def img_sources(html: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]*)"', html)


@pytest.mark.parametrize("sensitive", [False, True])
async def test_the_timeline_shows_our_copies_never_the_remote_urls(
    app_db: Database, http: httpx.AsyncClient, settings: Settings, sensitive: bool
) -> None:
    async with running_peer() as peer:
        await follow_carol(app_db, peer)
        serve_bytes(peer, "/m/1.png", png(), "image/png")
        serve_bytes(peer, "/avatars/carol.png", png((64, 64)), "image/png")
        note = note_with_images(peer, sensitive=sensitive)
        create = {"@context": AS, "id": note["id"] + "/activity", "type": "Create",
                  "actor": note["attributedTo"], "object": note, "to": [PUBLIC]}  # fmt: skip
        await inbox_service.receive(app_db, create, create["actor"])
        policy = InboxPolicy(Urls(settings.base_url), manually_approves_followers=False)
        await InboxProcessor(app_db, policy).run_once()

        def timeline() -> str:
            with TestClient(build_app(settings), base_url=settings.base_url) as client:
                log_in(client)
                return client.get("/admin/timeline").text

        before = timeline()
        assert peer.seen == []  # rendering fetched nothing
        assert "A green square" in before and "not shown here yet" in before
        assert all(not src.startswith("http") for src in img_sources(before))

        # The app's own fetcher (these settings refuse loopback) may have given up on them
        # meanwhile: queue them again for a fetcher allowed to reach the peer.
        await app_db.execute("UPDATE remote_media SET state = 'pending'")
        await fetcher(app_db, http, settings).run_once()
        after = timeline()
    sources = img_sources(after)
    image = "/media/remote/" + remote_media.url_key(peer.url("/m/1.png")) + ".png"
    avatar = "/media/remote/" + remote_media.url_key(peer.url("/avatars/carol.png")) + ".png"
    assert image in sources and avatar in sources
    assert peer.base not in "".join(sources)
    assert 'alt="A green square"' in after and 'loading="lazy"' in after
    collapsed = after[after.find('<details class="sensitive-media">') :]
    assert (image in collapsed) is sensitive
    assert ('<details class="sensitive-media">' in after) is sensitive


async def test_a_reply_in_a_thread_shows_its_image_from_our_cache(
    app_db: Database, http: httpx.AsyncClient, settings: Settings
) -> None:
    urls = Urls(settings.base_url)
    post = await post_service.publish(app_db, Draft("What did you see?"), max_chars=5000)
    async with running_peer() as peer:
        await follow_carol(app_db, peer)
        serve_bytes(peer, "/m/1.png", png(), "image/png")
        serve_bytes(peer, "/avatars/carol.png", png((64, 64)), "image/png")
        reply = {**note_with_images(peer, sensitive=True), "inReplyTo": urls.post(post.id)}
        create = {"@context": AS, "id": reply["id"] + "/activity", "type": "Create",
                  "actor": reply["attributedTo"], "object": reply, "to": [PUBLIC]}  # fmt: skip
        await inbox_service.receive(app_db, create, create["actor"])
        policy = InboxPolicy(urls, manually_approves_followers=False)
        await InboxProcessor(app_db, policy).run_once()
        await fetcher(app_db, http, settings).run_once()

    with TestClient(build_app(settings), base_url=settings.base_url) as client:
        page = client.get(f"/p/{post.id}").text
    image = "/media/remote/" + remote_media.url_key(peer.url("/m/1.png")) + ".png"
    avatar = "/media/remote/" + remote_media.url_key(peer.url("/avatars/carol.png")) + ".png"
    thread = page[page.index('id="replies"') :]
    assert avatar in img_sources(thread)
    collapsed = thread[thread.index('<details class="sensitive-media">') :]
    assert image in img_sources(collapsed) and 'alt="A green square"' in collapsed
    assert peer.base not in "".join(img_sources(page))
