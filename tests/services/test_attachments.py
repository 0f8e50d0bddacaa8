"""Images attached to thoughts (services/attachments.py, with services/posts.py) on real SQLite and
a real media folder: checks before any write, EXIF stripped, scaling, blurhash, order and alt
text, the Document attachments of Create/Update, edit and delete, and clean-up of leftovers."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from fedistream.core.blurhash import ALPHABET
from fedistream.core.urls import Urls
from fedistream.errors import BadInput, PayloadTooLarge
from fedistream.services import attachments
from fedistream.services import posts as post_service
from fedistream.services.attachments import Slot
from fedistream.services.posts import Draft
from fedistream.settings import Settings
from fedistream.store.db import Database

URLS = Urls("https://blog.example.test")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def image_bytes(
    fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 80, 40)
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def jpeg_with_gps() -> bytes:
    image = Image.new("RGB", (3000, 1000), (10, 120, 200))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc."  # Make
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPSInfo: where the photo was taken
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def media_files(settings: Settings) -> list[str]:
    folder = settings.media_dir
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


async def media_rows(db: Database) -> list[dict[str, object]]:
    rows = await db.fetchall("SELECT * FROM media ORDER BY post_id, position, name")
    return [dict(row) for row in rows]


async def created_note(db: Database, kind: str = "Create") -> dict[str, object]:
    row = await db.fetchone(
        "SELECT json FROM activities WHERE type = ? ORDER BY rowid DESC LIMIT 1", (kind,)
    )
    assert row is not None
    return json.loads(row["json"])["object"]


async def test_a_new_upload_is_cleaned_scaled_hashed_and_stored_unattached(
    db: Database, settings: Settings
) -> None:
    [image] = await attachments.resolve(
        db, settings, [Slot(alt=" A blue field ", upload=jpeg_with_gps())]
    )
    assert image.alt == "A blue field"
    assert (image.width, image.height) == (2048, 683)  # scaled into the 2048 px box
    assert image.mime_type == "image/jpeg" and image.url == "/media/" + image.name
    assert image.blurhash and len(image.blurhash) == 28 and set(image.blurhash) <= set(ALPHABET)
    stored = Image.open(settings.media_dir / image.name)
    assert stored.size == (2048, 683)
    assert not stored.getexif()  # no camera, no GPS
    [row] = await media_rows(db)
    assert row["post_id"] is None and row["kind"] == "attachment"
    assert row["blurhash"] == image.blurhash and (row["width"], row["height"]) == (2048, 683)


@pytest.mark.parametrize(
    ("fmt", "mime"), [("PNG", "image/png"), ("WEBP", "image/webp"), ("GIF", "image/png")]
)
async def test_accepted_formats(db: Database, settings: Settings, fmt: str, mime: str) -> None:
    [image] = await attachments.resolve(db, settings, [Slot(upload=image_bytes(fmt))])
    assert image.mime_type == mime
    assert (settings.media_dir / image.name).is_file()


@pytest.mark.parametrize(
    ("slots", "error", "message"),
    [
        (
            [Slot(upload=image_bytes()), Slot(upload=b"%PDF-1.4 not an image", number=2)],
            BadInput,
            "Image 2: The file is not an image",
        ),
        ([Slot(upload=image_bytes())] * 5, BadInput, "at most 4 images; this one has 5"),
        ([Slot(upload=image_bytes(), alt="x" * 1501)], BadInput, "description of image 1"),
    ],
)
async def test_refused_forms_store_nothing(
    db: Database, settings: Settings, slots: list[Slot], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await attachments.resolve(db, settings, slots)
    assert media_files(settings) == []
    assert await media_rows(db) == []


async def test_a_file_over_the_upload_limit_is_refused(db: Database, tmp_path: Path) -> None:
    small = Settings(data_dir=tmp_path / "small", max_upload_bytes=1000)
    with pytest.raises(PayloadTooLarge, match="Image 1: The file is larger than the upload limit"):
        await attachments.resolve(db, small, [Slot(upload=image_bytes("PNG", (400, 400)))])
    assert media_files(small) == []


async def test_publish_attaches_in_order_and_federates_documents(
    db: Database, settings: Settings
) -> None:
    images = await attachments.resolve(
        db,
        settings,
        [Slot(upload=image_bytes(color=(255, 0, 0)), alt="Red"), Slot(upload=image_bytes("PNG"))],
    )
    post = await post_service.publish(
        db, Draft("Two pictures"), max_chars=5000, now=T0, urls=URLS, attachments=images
    )
    found = await attachments.for_post(db, post.id)
    assert [(i.name, i.alt) for i in found] == [(images[0].name, "Red"), (images[1].name, "")]
    note = await created_note(db)
    assert note["attachment"] == [
        {
            "type": "Document",
            "mediaType": "image/jpeg",
            "url": f"https://blog.example.test/media/{images[0].name}",
            "name": "Red",
            "blurhash": images[0].blurhash,
            "width": 64,
            "height": 48,
        },
        {
            "type": "Document",
            "mediaType": "image/png",
            "url": f"https://blog.example.test/media/{images[1].name}",
            "name": None,  # no alt text: Mastodon shows none rather than a file name
            "blurhash": images[1].blurhash,
            "width": 64,
            "height": 48,
        },
    ]
    assert attachments.missing_alt(found) == [2]
    assert "Image 2 has no description (alt text)" in attachments.alt_warning(2)


async def test_an_image_of_another_thought_cannot_be_taken(
    db: Database, settings: Settings
) -> None:
    [image] = await attachments.resolve(db, settings, [Slot(upload=image_bytes())])
    first = await post_service.publish(db, Draft("mine"), max_chars=5000, attachments=[image])
    with pytest.raises(BadInput, match="no longer available"):
        await attachments.resolve(db, settings, [Slot(name=image.name)])
    with pytest.raises(BadInput, match="no longer available"):
        await attachments.resolve(db, settings, [Slot(name="../fedistream.sqlite3")])
    # …but the thought being edited may keep it.
    [kept] = await attachments.resolve(db, settings, [Slot(name=image.name)], post_id=first.id)
    assert kept.name == image.name


async def test_edit_keeps_reorders_removes_and_updates_alt(
    db: Database, settings: Settings
) -> None:
    one, two = await attachments.resolve(
        db, settings, [Slot(upload=image_bytes(), alt="one"), Slot(upload=image_bytes("PNG"))]
    )
    post = await post_service.publish(db, Draft("v1"), max_chars=5000, attachments=[one, two])

    # A client that sends no images keeps them, and the Update still carries them.
    await post_service.edit(db, post.id, Draft("v2"), max_chars=5000, urls=URLS, now=T0)
    assert [i.name for i in await attachments.for_post(db, post.id)] == [one.name, two.name]
    assert len((await created_note(db, "Update"))["attachment"]) == 2

    slots = [Slot(name=two.name, alt="two, described"), Slot(name=one.name, remove=True)]
    images = await attachments.resolve(db, settings, slots, post_id=post.id)
    await post_service.edit(db, post.id, Draft("v3"), max_chars=5000, attachments=images)
    assert [(i.name, i.alt) for i in await attachments.for_post(db, post.id)] == [
        (two.name, "two, described")
    ]
    await attachments.discard(db, settings, [one.name, two.name])  # `two` is in use: kept
    assert media_files(settings) == [two.name]


async def test_delete_lets_the_images_go(db: Database, settings: Settings) -> None:
    images = await attachments.resolve(db, settings, [Slot(upload=image_bytes())])
    post = await post_service.publish(db, Draft("soon gone"), max_chars=5000, attachments=images)
    await post_service.delete(db, post.id)
    assert await attachments.for_post(db, post.id) == []
    await attachments.discard(db, settings, [images[0].name])
    assert media_files(settings) == [] and await media_rows(db) == []


async def test_for_posts_loads_a_page_in_one_go(db: Database, settings: Settings) -> None:
    ids = []
    for n in range(3):
        images = await attachments.resolve(
            db, settings, [Slot(upload=image_bytes(), alt=f"{n}")] * (n + 1)
        )
        ids.append(
            (await post_service.publish(db, Draft(f"t{n}"), max_chars=5000, attachments=images)).id
        )
    bare = (await post_service.publish(db, Draft("no images"), max_chars=5000)).id
    found = await attachments.for_posts(db, [*ids, bare])
    assert [len(found[i]) for i in ids] == [1, 2, 3]
    assert bare not in found
    documents = await attachments.documents_for(db, URLS, ids)
    assert documents[ids[2]][0].url.startswith("https://blog.example.test/media/attachment-")


async def test_abandoned_previews_are_pruned_after_a_day(db: Database, settings: Settings) -> None:
    [used] = await attachments.resolve(db, settings, [Slot(upload=image_bytes())])
    await post_service.publish(db, Draft("kept"), max_chars=5000, attachments=[used])
    [abandoned] = await attachments.resolve(db, settings, [Slot(upload=image_bytes())])
    now = datetime.now(UTC)
    await attachments.prune_abandoned(db, settings, now)
    assert set(media_files(settings)) == {used.name, abandoned.name}  # too recent
    await attachments.prune_abandoned(db, settings, now + timedelta(days=2))
    assert media_files(settings) == [used.name]


async def test_carried_shows_a_refused_form_its_stored_images(
    db: Database, settings: Settings
) -> None:
    [stored] = await attachments.resolve(db, settings, [Slot(upload=image_bytes())])
    kept = await attachments.carried(
        db, [Slot(name=stored.name, alt="kept alt"), Slot(name="attachment-0000000000000000.jpg")]
    )
    assert [(i.name, i.alt) for i in kept] == [(stored.name, "kept alt")]
