"""Storing uploaded images: size cap, Pillow clean-up off the event loop, file + row."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

from fedistream.core.images import PreparedImage, prepare_image
from fedistream.core.timefmt import to_iso
from fedistream.errors import PayloadTooLarge
from fedistream.settings import Settings
from fedistream.store import media as media_store
from fedistream.store.db import Database

BOXES = {"avatar": (400, 400), "header": (1500, 500), "attachment": (2048, 2048)}


def too_large_message(limit: int) -> str:
    return f"The file is larger than the upload limit of {limit // (1024 * 1024)} MB."


async def prepare(settings: Settings, data: bytes, kind: str) -> PreparedImage:
    """Check the size, then validate, strip and scale off the event loop. Raises BadInput."""
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(too_large_message(settings.max_upload_bytes))
    width, height = BOXES[kind]
    return await asyncio.to_thread(prepare_image, data, width, height)


async def save_prepared(
    db: Database,
    settings: Settings,
    prepared: PreparedImage,
    kind: str,
    *,
    blurhash: str | None = None,
) -> str:
    """Write a prepared image under a fresh random name and record it; returns the name."""
    name = f"{kind}-{secrets.token_hex(8)}.{prepared.extension}"
    settings.media_dir.mkdir(parents=True, exist_ok=True)
    path = settings.media_dir / name
    await asyncio.to_thread(path.write_bytes, prepared.data)
    await media_store.insert(
        db,
        name=name,
        kind=kind,
        mime_type=prepared.mime_type,
        size=len(prepared.data),
        width=prepared.width,
        height=prepared.height,
        created_at=to_iso(datetime.now(UTC)),
        blurhash=blurhash,
    )
    return name


async def store_image(db: Database, settings: Settings, data: bytes, kind: str) -> str:
    """Save an uploaded image of `kind` (avatar/header/attachment); returns its media file name."""
    return await save_prepared(db, settings, await prepare(settings, data, kind), kind)
