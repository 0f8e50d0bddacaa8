"""Remote media cache (services layer): where a remote image lives on our disk, and its queue.

Remote avatars and attachments are never hot-linked to readers: a background fetch
(`federation/media_fetch.py`) stores them under `<data_dir>/media/remote/<sha256-of-url>.<ext>`
and records them in `remote_media`; pages only ever look at the disk, never at the network.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from fedistream.core.remote_note import RemoteAttachment, RemoteNote
from fedistream.store import remote_media as remote_media_store

REMOTE_DIR = "remote"
URL_PREFIX = "/media/remote/"
# Every stored file is re-encoded by Pillow into one of these (GIF becomes PNG).
EXTENSIONS = ("jpg", "png", "webp")
NAME_PATTERN = re.compile(r"^[0-9a-f]{64}\.(jpg|png|webp)$")
MAX_URL_CHARS = 2048
MAX_REMOTE_ATTACHMENTS = 4


def url_key(url: str) -> str:
    """The file stem for a remote URL: its SHA-256, so a hostile URL never shapes a path."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def remote_dir(media_dir: Path) -> Path:
    return media_dir / REMOTE_DIR


def is_fetchable(url: object) -> bool:
    """Only absolute http(s) URLs of sane length are worth queueing."""
    return (
        isinstance(url, str)
        and len(url) <= MAX_URL_CHARS
        and (url.startswith("https://") or url.startswith("http://"))
    )


def cached_name(media_dir: Path, url: object) -> str | None:
    """The stored file name for `url` when it has been fetched, else None (a few stat calls)."""
    if not is_fetchable(url):
        return None
    assert isinstance(url, str)
    stem = url_key(url)
    folder = remote_dir(media_dir)
    for ext in EXTENSIONS:
        if (folder / f"{stem}.{ext}").is_file():
            return f"{stem}.{ext}"
    return None


def local_url(media_dir: Path, url: object) -> str:
    """Our own URL for a cached remote image, or "" — never the remote URL itself."""
    name = cached_name(media_dir, url)
    return URL_PREFIX + name if name else ""


# --- remote attachments as stored in remote_posts.attachments -----------------------------------


@dataclass(frozen=True, slots=True)
class RemoteImage:
    """One attachment of a remote note, as templates/_attachments.html shows it."""

    url: str  # the remote URL: the key of the cache, never put in a page
    media_type: str | None = None
    alt: str = ""
    width: int | None = None
    height: int | None = None
    blurhash: str | None = None

    remote = True

    @property
    def is_image(self) -> bool:
        # Peers that omit mediaType (Pixelfed's Image objects sometimes) still send images.
        return self.media_type is None or self.media_type.startswith("image/")


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def attachments_json(attachments: Sequence[RemoteAttachment]) -> str | None:
    """The `remote_posts.attachments` column for a parsed note: at most four, like Mastodon
    (R59), http(s) URLs only. None when there are none."""
    kept = [a for a in attachments if is_fetchable(a.url)][:MAX_REMOTE_ATTACHMENTS]
    if not kept:
        return None
    return json.dumps(
        [
            {
                "url": a.url,
                "media_type": a.media_type,
                "alt": a.name or "",
                "width": a.width,
                "height": a.height,
                "blurhash": a.blurhash,
            }
            for a in kept
        ],
        ensure_ascii=False,
    )


def parse_attachments(text: object) -> list[RemoteImage]:
    """Read the column back; anything malformed is skipped rather than breaking a page."""
    if not isinstance(text, str) or not text:
        return []
    try:
        items = json.loads(text)
    except ValueError:
        return []
    found: list[RemoteImage] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not is_fetchable(item.get("url")):
            continue
        media_type = item.get("media_type")
        alt = item.get("alt")
        blurhash = item.get("blurhash")
        found.append(
            RemoteImage(
                url=item["url"],
                media_type=media_type if isinstance(media_type, str) else None,
                alt=alt if isinstance(alt, str) else "",
                width=_int_or_none(item.get("width")),
                height=_int_or_none(item.get("height")),
                blurhash=blurhash if isinstance(blurhash, str) else None,
            )
        )
    return found[:MAX_REMOTE_ATTACHMENTS]


async def note_stored(conn: aiosqlite.Connection, note: RemoteNote) -> None:
    """Call right after a remote note is stored, in the same transaction: records its
    attachments on the row and queues its images and its author's avatar for fetching."""
    column = attachments_json(note.attachments)
    await remote_media_store.set_post_attachments(conn, note.id, column)
    wanted = [image.url for image in parse_attachments(column) if image.is_image]
    await remote_media_store.enqueue(conn, wanted)
    await remote_media_store.enqueue_actor_icon(conn, note.actor_id)
