"""The composer's multipart form (web layer): reading it within limits, and its image slots.

Slot i (1-based) is sent as `image_i` (a new file), `media_i` (an image stored by an earlier
preview, or already attached to the thought being edited), `alt_i` and `remove_i`. The handlers
in web/admin.py turn the slots into images with services.attachments.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from fedistream.errors import BadInput, PayloadTooLarge
from fedistream.services import attachments as attachment_service
from fedistream.services.attachments import ImageAttachment, Slot
from fedistream.services.media import too_large_message
from fedistream.settings import Settings
from fedistream.store.db import Database
from fedistream.web.bodylimit import within

# Room to say "at most four" about a crafted fifth file instead of failing to read the form.
MAX_FORM_FILES = 2 * attachment_service.MAX_ATTACHMENTS
MAX_TEXT_PART = 1024 * 1024  # one text field (the thought itself is far smaller)
_SLOT_FIELD = re.compile(r"^(image|media|alt|remove)_([1-8])$")
# The button shown with the alt-text warning: publish (or save) as it is.
WITHOUT_ALT = "without_alt"


def form_limit(settings: Settings) -> int:
    """The most a composer form can need: four images and the text."""
    return attachment_service.MAX_ATTACHMENTS * settings.max_upload_bytes + 2 * MAX_TEXT_PART


async def read_form(request: Request, settings: Settings) -> FormData:
    """The form; files are spooled to disk by Starlette, so a big one costs no memory. A body
    over `form_limit` is refused (PayloadTooLarge) before it is read to the end."""
    limited = within(
        request,
        form_limit(settings),
        "The form is larger than four images within the upload limit: nothing was saved.",
    )
    try:
        return await limited.form(
            max_files=MAX_FORM_FILES, max_fields=60, max_part_size=MAX_TEXT_PART
        )
    except (MultiPartException, HTTPException) as exc:
        raise BadInput(
            f"The form could not be read: at most {attachment_service.MAX_ATTACHMENTS} images, "
            "each within the upload limit."
        ) from exc


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def slot_numbers(form: FormData) -> list[int]:
    numbers = {int(m.group(2)) for key in form if (m := _SLOT_FIELD.match(key))}
    return sorted(numbers)


def stored_slots(form: FormData) -> list[Slot]:
    """The slots without their new files: what a refused form can show again."""
    return [
        Slot(alt=_text(form, f"alt_{i}"), name=_text(form, f"media_{i}"),
             remove=bool(form.get(f"remove_{i}")), number=i)
        for i in slot_numbers(form)
    ]  # fmt: skip


async def slots(form: FormData, settings: Settings) -> list[Slot]:
    """Every slot with its new file read. Raises PayloadTooLarge before reading a file over
    the upload limit."""
    found: list[Slot] = []
    limit = settings.max_upload_bytes
    for i in slot_numbers(form):
        upload = form.get(f"image_{i}")
        data = b""
        if isinstance(upload, UploadFile) and upload.filename:
            if upload.size is not None and upload.size > limit:
                raise PayloadTooLarge(f"Image {i}: {too_large_message(limit)}")
            data = await upload.read(limit + 1)
            if len(data) > limit:
                raise PayloadTooLarge(f"Image {i}: {too_large_message(limit)}")
        found.append(
            Slot(
                alt=_text(form, f"alt_{i}"),
                name=_text(form, f"media_{i}"),
                upload=data,
                remove=bool(form.get(f"remove_{i}")),
                number=i,
            )
        )
    return found


def composer_context(images: list[ImageAttachment], *, warn: bool) -> dict[str, Any]:
    """Template values for the image part of the composer; `warn` (a preview, or a publish
    stopped on the warning): show the preview and list the missing alt texts."""
    missing = attachment_service.missing_alt(images) if warn else []
    return {
        "images": images,
        "max_images": attachment_service.MAX_ATTACHMENTS,
        "max_alt_chars": attachment_service.MAX_ALT_CHARS,
        "alt_warnings": [attachment_service.alt_warning(n) for n in missing],
        "previewing": warn,  # the preview shows the images too
    }


async def images_from(
    db: Database, settings: Settings, form: FormData, *, post_id: str | None = None
) -> tuple[list[ImageAttachment] | None, BadInput | None]:
    """(the form's images, None), or (what it still holds, the error) when an image is refused
    (nothing is stored then). (None, None) for a form without image fields at all (a client
    that knows nothing of images): the thought keeps the images it has."""
    if not slot_numbers(form):
        return None, None
    try:
        found = await attachment_service.resolve(
            db, settings, await slots(form, settings), post_id=post_id
        )
    except BadInput as exc:
        kept = await attachment_service.carried(db, stored_slots(form), post_id=post_id)
        return kept, exc
    return found, None
