"""Body digests: RFC 3230 `Digest` and RFC 9530 `Content-Digest`. Layer: core (pure; no I/O,
stdlib only). The RFC 8941 structured-field parser under `Content-Digest` lives in
`structured_fields`; its names are re-exported here for callers that imported them from us.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable

from fedistream.core.structured_fields import (
    BareItem,
    InnerList,
    Item,
    Member,
    Params,
    StructuredFieldError,
    Token,
    parse_dictionary,
    serialize_bare_item,
    serialize_inner_list,
    serialize_params,
)

__all__ = [
    "BareItem",
    "DigestError",
    "InnerList",
    "Item",
    "MalformedDigest",
    "Member",
    "Params",
    "StructuredFieldError",
    "Token",
    "content_digest_header",
    "digest_header",
    "parse_dictionary",
    "serialize_bare_item",
    "serialize_inner_list",
    "serialize_params",
    "sha256_b64",
    "verify_content_digest",
    "verify_digest_header",
]

# --- errors ---


class DigestError(ValueError):
    """A body digest is missing, unsupported or wrong; `reason` is safe to show the sender.

    `status` is the HTTP status we would answer: 401 like Mastodon for a digest that does not
    match, 400 for a header that cannot even be parsed (see `MalformedDigest`).
    """

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedDigest(DigestError):
    """The `Content-Digest` header is not a valid RFC 8941 dictionary (Mastodon answers 400)."""

    status = 400


# --- RFC 3230 Digest ---

_HASHES: dict[str, Callable[[bytes], bytes]] = {
    "sha-256": lambda body: hashlib.sha256(body).digest(),
    "sha-512": lambda body: hashlib.sha512(body).digest(),
}


def sha256_b64(body: bytes) -> str:
    """Standard base64 (with padding) of SHA-256 over the exact bytes."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def digest_header(body: bytes) -> str:
    """The RFC 3230 value Mastodon sends and requires on signed POSTs: `SHA-256=<base64>`."""
    return f"SHA-256={sha256_b64(body)}"


def verify_digest_header(value: str, body: bytes) -> None:
    """Check an RFC 3230 `Digest` header against the raw body, with Mastodon's error texts.

    Pairs are split on `,` and on the first `=` only (base64 contains `=`); names are
    case-insensitive (Mastodon sends `SHA-256`, some peers `sha-256`). Only SHA-256 is checked,
    as Mastodon does, so an offer of only SHA-512 is refused rather than silently trusted.
    """
    offered: list[tuple[str, str]] = []
    for part in value.split(","):
        name, _, given = part.partition("=")
        offered.append((name.strip().lower(), given.strip()))
    given_sha256 = next((v for name, v in offered if name == "sha-256"), None)
    if given_sha256 is None:
        names = ", ".join(name for name, _ in offered)
        raise DigestError(
            f"Only SHA-256 is supported in the Digest header. Offered algorithms: {names}"
        )
    computed = sha256_b64(body)
    if given_sha256 == computed:
        return
    try:
        size = len(base64.b64decode(given_sha256, validate=True))
    except binascii.Error:
        raise DigestError(
            "Invalid Digest value. The provided Digest value is not a valid base64 string. "
            f"Given digest: {given_sha256}"
        ) from None
    if size != 32:
        raise DigestError(
            "Invalid Digest value. The provided Digest value is not a SHA-256 digest. "
            f"Given digest: {given_sha256}"
        )
    raise DigestError(
        f"Invalid Digest value. Computed SHA-256 digest: {computed}; given: {given_sha256}"
    )


# --- RFC 9530 Content-Digest ---


def content_digest_header(body: bytes, algorithms: tuple[str, ...] = ("sha-256",)) -> str:
    """`Content-Digest` value, e.g. `sha-256=:<base64>:` (RFC 9530 §2), over the bytes as sent."""
    parts = []
    for name in algorithms:
        if name not in _HASHES:
            raise ValueError(f"unsupported digest algorithm {name!r}")
        parts.append(f"{name}=:{base64.b64encode(_HASHES[name](body)).decode('ascii')}:")
    return ", ".join(parts)


def verify_content_digest(value: str, body: bytes, *, required: str | None = "sha-256") -> str:
    """Check a `Content-Digest` header against the raw body; return the algorithm that matched.

    Every algorithm we know (sha-256, sha-512) that is offered must match; unknown ones are
    ignored (RFC 9530 §2 lets a recipient pick). `required` mirrors Mastodon, which insists on
    sha-256; pass None to accept any known algorithm (the RFC 9421 examples only carry sha-512).
    """
    try:
        members = parse_dictionary(value)
    except StructuredFieldError:
        raise MalformedDigest(
            "Content-Digest could not be parsed. It does not contain a valid RFC8941 dictionary."
        ) from None
    known = [name for name in members if name in _HASHES]
    if not known or (required is not None and required not in members):
        want = required or " or ".join(_HASHES)
        raise DigestError(
            f"Only {want} is supported in the Content-Digest header. "
            f"Offered algorithms: {', '.join(members)}"
        )
    for name in known:
        given = members[name][0]
        if not isinstance(given, bytes):
            raise MalformedDigest(f"Content-Digest {name} value is not a byte sequence.")
        computed = _HASHES[name](body)
        if given != computed:
            label = name.upper()
            raise DigestError(
                f"Invalid Digest value. Computed {label} digest: "
                f"{base64.b64encode(computed).decode('ascii')}; "
                f"given: {base64.b64encode(given).decode('ascii')}"
            )
    return required if required is not None else known[0]
