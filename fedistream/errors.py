"""The error tree: each error raised on purpose carries an HTTP status and a public message.

Leaf module. The web edge turns these into responses; nothing else needs to know about HTTP.
"""

from __future__ import annotations


class FedistreamError(Exception):
    """Base error. `public_message` is safe to show to whoever sent the request."""

    status: int = 500

    def __init__(self, public_message: str, *, status: int | None = None) -> None:
        super().__init__(public_message)
        self.public_message = public_message
        if status is not None:
            self.status = status


class BadInput(FedistreamError):
    """The input cannot be accepted as it is; the message says what to change."""

    status = 400


class PayloadTooLarge(BadInput):
    status = 413


class NotFound(FedistreamError):
    status = 404


class Gone(FedistreamError):
    """The thing existed and was deleted (answered 410 with a Tombstone or a 'deleted' page)."""

    status = 410


class Unauthorized(FedistreamError):
    status = 401


class Forbidden(FedistreamError):
    status = 403


class TooManyRequests(FedistreamError):
    status = 429

    def __init__(self, public_message: str, *, retry_after: int) -> None:
        super().__init__(public_message)
        self.retry_after = retry_after


class RemoteFetchFailed(FedistreamError):
    """Another server could not be reached or answered something unusable (peers see 503)."""

    status = 503
