"""Images attached to thoughts (services layer): checked uploads, alt text, order, federation.

The composer sends up to four slots. A new upload is validated and stored at once as an
*unattached* `media` row (so a preview or a refused publish never asks for the file again); the
thought's transaction then attaches the rows in order (`attach`). Every check runs before any
file is written, so a bad image, an oversized one or a fifth one changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import aiosqlite

from fedistream.core.activitypub import Attachment
from fedistream.core.blurhash import encode_image
from fedistream.core.images import PreparedImage
from fedistream.core.timefmt import to_iso
from fedistream.core.urls import Urls
from fedistream.errors import BadInput
from fedistream.services import media as media_service
from fedistream.settings import Settings
from fedistream.store import media as media_store
from fedistream.store.db import Database

MAX_ATTACHMENTS = 4  # Mastodon keeps at most four (R59); so do we
MAX_ALT_CHARS = 1500  # Mastodon's limit for a description
KIND = media_store.ATTACHMENT
NAME_PATTERN = re.compile(r"^attachment-[0-9a-f]{16}\.(jpg|png|webp)$")
ABANDONED_AFTER = timedelta(days=1)  # an upload no thought took (an abandoned preview)


@dataclass(frozen=True, slots=True)
class ImageAttachment:
    """One image of a thought (or of the composer, before it is published)."""

    name: str
    mime_type: str
    width: int
    height: int
    alt: str = ""
    blurhash: str | None = None

    @property
    def url(self) -> str:
        """Root-relative: pages are served from our own origin."""
        return "/media/" + self.name

    # templates/_attachments.html shows local and remote images alike
    remote = False
    is_image = True


@dataclass(frozen=True, slots=True)
class Slot:
    """What the composer sent for one image: a file already stored (`name`) or a new upload."""

    alt: str = ""
    name: str = ""  # an earlier upload or an attachment of the thought being edited
    upload: bytes = b""
    remove: bool = False
    number: int = 0  # as the form labels it ("Image 2"); 0: by position


def alt_warning(position: int) -> str:
    return (
        f"Image {position} has no description (alt text). People who cannot see it will only "
        "know it is there: describe what it shows, or publish without one if it is decorative."
    )


def missing_alt(images: Sequence[ImageAttachment]) -> list[int]:
    """1-based positions of the images without alt text."""
    return [i for i, image in enumerate(images, start=1) if not image.alt.strip()]


def _from_row(row: sqlite3.Row) -> ImageAttachment:
    return ImageAttachment(
        name=row["name"],
        mime_type=row["mime_type"],
        width=row["width"],
        height=row["height"],
        alt=row["alt"] or "",
        blurhash=row["blurhash"],
    )


def _clean_alt(alt: str, position: int) -> str:
    alt = alt.replace("\r\n", "\n").strip()
    if len(alt) > MAX_ALT_CHARS:
        raise BadInput(
            f"The description of image {position} is {len(alt):,} characters; "
            f"the limit is {MAX_ALT_CHARS:,}."
        )
    return alt


async def _prepare(settings: Settings, data: bytes, position: int) -> tuple[PreparedImage, str]:
    try:
        prepared = await media_service.prepare(settings, data, KIND)
    except BadInput as exc:
        raise type(exc)(f"Image {position}: {exc.public_message}") from exc
    return prepared, await asyncio.to_thread(encode_image, prepared.data)


async def resolve(
    db: Database, settings: Settings, slots: Sequence[Slot], *, post_id: str | None = None
) -> list[ImageAttachment]:
    """The composer's images, in order, new uploads stored (unattached). Raises BadInput —
    with nothing written — for an unusable file, a file over the limit or more than four.

    A `name` is honoured only for an attachment upload that no thought has taken yet, or one
    of the thought being edited (`post_id`): a form cannot steal another thought's image."""
    wanted: list[Slot] = []
    for slot in slots:
        if slot.remove or not (slot.name or slot.upload):
            continue
        if slot.name and any(slot.name == w.name for w in wanted):
            continue  # the same stored image sent twice: once is enough
        wanted.append(slot)
    if len(wanted) > MAX_ATTACHMENTS:
        raise BadInput(
            f"A thought can have at most {MAX_ATTACHMENTS} images; this one has {len(wanted)}. "
            "Remove some and try again."
        )
    numbers = [slot.number or i for i, slot in enumerate(wanted, start=1)]
    alts = [_clean_alt(slot.alt, n) for slot, n in zip(wanted, numbers, strict=True)]
    names = [s.name for s in wanted if s.name]
    known = {row["name"]: row for row in await media_store.get_many(db, names)}
    for name in names:
        row = known.get(name)
        usable = (
            NAME_PATTERN.match(name)
            and row is not None
            and row["kind"] == KIND
            and row["post_id"] in (None, post_id)
        )
        if not usable:
            raise BadInput("An image of this form is no longer available: add it again.")
    # Every new file is checked before any is stored.
    new = [(slot.upload, n) for slot, n in zip(wanted, numbers, strict=True) if not slot.name]
    results = await asyncio.gather(
        *(_prepare(settings, data, n) for data, n in new), return_exceptions=True
    )
    for result in results:  # the first failure by position, whichever thread finished first
        if isinstance(result, BaseException):
            raise result
    fresh = iter(r for r in results if not isinstance(r, BaseException))
    images: list[ImageAttachment] = []
    for slot, alt in zip(wanted, alts, strict=True):
        if slot.name:
            images.append(replace(_from_row(known[slot.name]), alt=alt))
            continue
        image, blurhash = next(fresh)
        name = await media_service.save_prepared(db, settings, image, KIND, blurhash=blurhash)
        images.append(
            ImageAttachment(name, image.mime_type, image.width, image.height, alt, blurhash)
        )
    return images


async def carried(
    db: Database, slots: Sequence[Slot], *, post_id: str | None = None
) -> list[ImageAttachment]:
    """The images a refused form still holds (already stored, not removed), to show it again
    without asking for the files twice. Never raises: what is not usable is left out."""
    names = [s.name for s in slots if s.name and not s.remove and NAME_PATTERN.match(s.name)]
    rows = {row["name"]: row for row in await media_store.get_many(db, names)}
    images: list[ImageAttachment] = []
    for slot in slots:
        row = rows.pop(slot.name, None) if slot.name and not slot.remove else None
        if row is not None and row["kind"] == KIND and row["post_id"] in (None, post_id):
            alt = slot.alt.replace("\r\n", "\n").strip()[:MAX_ALT_CHARS]
            images.append(replace(_from_row(row), alt=alt))
    return images[:MAX_ATTACHMENTS]


async def attach(
    conn: aiosqlite.Connection, post_id: str, images: Sequence[ImageAttachment]
) -> None:
    """Inside the thought's transaction: these images, in this order, are its attachments; any
    other it had is let go (unattached, its file removed by `discard`/`prune_abandoned`)."""
    await media_store.release_others(conn, post_id, [image.name for image in images])
    await media_store.attach(conn, post_id, [(image.name, image.alt) for image in images])


async def for_posts(db: Database, post_ids: Sequence[str]) -> dict[str, list[ImageAttachment]]:
    """The attachments of a page of thoughts, in one query."""
    found: dict[str, list[ImageAttachment]] = {}
    for row in await media_store.for_posts(db, list(dict.fromkeys(post_ids))):
        found.setdefault(row["post_id"], []).append(_from_row(row))
    return found


async def for_post(db: Database, post_id: str) -> list[ImageAttachment]:
    return (await for_posts(db, [post_id])).get(post_id, [])


def note_attachments(urls: Urls, images: Sequence[ImageAttachment]) -> list[Attachment]:
    """The images as the Note's `Document` attachments (R59): absolute URLs, alt as `name`."""
    return [
        Attachment(
            url=urls.base + image.url,
            media_type=image.mime_type,
            name=image.alt or None,
            width=image.width,
            height=image.height,
            blurhash=image.blurhash,
        )
        for image in images
    ]


async def discard(db: Database, settings: Settings, names: Sequence[str]) -> None:
    """Forget images no thought uses any more: rows first, then files (a missing file is fine)."""
    names = [n for n in names if NAME_PATTERN.match(n)]
    if not names:
        return
    rows = await media_store.get_many(db, names)
    gone = [row["name"] for row in rows if row["kind"] == KIND and row["post_id"] is None]
    await media_store.delete(db, gone)
    for name in gone:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread((settings.media_dir / name).unlink)


async def prune_abandoned(db: Database, settings: Settings, now: datetime) -> None:
    """Uploads from previews that were never published, older than a day."""
    names = await media_store.unattached_before(db, to_iso(now - ABANDONED_AFTER), 100)
    await discard(db, settings, names)


async def documents_for(
    db: Database, urls: Urls, post_ids: Sequence[str]
) -> dict[str, list[Attachment]]:
    """`note_attachments` for several thoughts at once (a page of Notes): one query."""
    found = await for_posts(db, post_ids)
    return {post_id: note_attachments(urls, images) for post_id, images in found.items()}
