"""Request bodies read within a byte budget. Layer: web (HTTP edge).

A declared Content-Length over the budget is refused before anything is read; a chunked body
is counted as it arrives and refused (413) the moment it passes the budget. Starlette's form
parser caps each text field but spools file parts of any size to disk, so without this anyone
could make the login form read and store gigabytes.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Message

from fedistream.errors import PayloadTooLarge


def declared_length(request: Request) -> int | None:
    """The Content-Length as a number, None when absent or not plain ASCII digits."""
    value = request.headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else None


def within(request: Request, max_bytes: int, message: str) -> Request:
    """`request` whose body reads raise PayloadTooLarge(`message`) past `max_bytes`."""
    length = declared_length(request)
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(message)
    received = 0
    receive = request.receive

    async def counted() -> Message:
        nonlocal received
        message_in = await receive()
        if message_in["type"] == "http.request":
            received += len(message_in.get("body", b""))
            if received > max_bytes:
                raise PayloadTooLarge(message)
        return message_in

    return Request(request.scope, counted)
