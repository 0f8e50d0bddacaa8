"""Body digests (RFC 3230 `Digest`, RFC 9530 `Content-Digest`) and the RFC 8941 structured fields
they and RFC 9421 signatures are written in. Layer: core (pure; no I/O, stdlib only).

The structured-field parser lives here because `Content-Digest` is the first place we meet one;
`httpsig` reuses it for `Signature-Input` / `Signature`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import string
from collections.abc import Callable
from decimal import Decimal

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


class StructuredFieldError(ValueError):
    """Text that is not a valid RFC 8941 structured field."""


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


# --- RFC 8941 structured fields ---
#
# Values map to Python as: Integer -> int, Decimal -> Decimal, String -> str, Token -> Token,
# Byte Sequence -> bytes, Boolean -> bool. An item is (value, params); an inner list is
# (list[item], params); a dictionary maps key -> item or inner list (a bare key is True).


class Token(str):
    """An RFC 8941 token (serialised without quotes, unlike a plain `str` String)."""

    __slots__ = ()


BareItem = int | Decimal | str | bytes | bool
Params = dict[str, BareItem]
Item = tuple[BareItem, Params]
InnerList = tuple[list[Item], Params]
Member = tuple[BareItem | list[Item], Params]

_KEY_START = frozenset(string.ascii_lowercase + "*")
_KEY_CHARS = frozenset(string.ascii_lowercase + string.digits + "_-.*")
_TOKEN_START = frozenset(string.ascii_letters + "*")
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~:/")
_B64_CHARS = frozenset(string.ascii_letters + string.digits + "+/=")
_NUMBER = re.compile(r"-?([0-9]{1,15})(\.[0-9]{1,3})?")


class _Reader:
    """A cursor over the field text; every parse step advances it or raises."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise StructuredFieldError(f"expected {char!r} at offset {self.pos}")
        self.pos += 1

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def run(self, allowed: frozenset[str]) -> str:
        start = self.pos
        while self.peek() and self.peek() in allowed:
            self.pos += 1
        return self.text[start : self.pos]


def parse_dictionary(text: str) -> dict[str, Member]:
    """Parse an RFC 8941 Dictionary (§4.2.2); raises StructuredFieldError on any deviation."""
    reader = _Reader(text.strip(" \t"))
    members: dict[str, Member] = {}
    while reader.peek():
        key = _parse_key(reader)
        if reader.peek() == "=":
            reader.pos += 1
            members[key] = _parse_item_or_inner_list(reader)
        else:
            members[key] = (True, _parse_params(reader))
        reader.skip(" \t")
        if not reader.peek():
            return members
        reader.take(",")
        reader.skip(" \t")
        if not reader.peek():
            raise StructuredFieldError("trailing comma")
    return members


def _parse_item_or_inner_list(reader: _Reader) -> Member:
    if reader.peek() != "(":
        return _parse_item(reader)
    reader.pos += 1
    items: list[Item] = []
    while True:
        reader.skip(" ")
        if reader.peek() == ")":
            reader.pos += 1
            return items, _parse_params(reader)
        items.append(_parse_item(reader))
        if reader.peek() not in (" ", ")"):
            raise StructuredFieldError(f"bad inner list at offset {reader.pos}")


def _parse_item(reader: _Reader) -> Item:
    return _parse_bare_item(reader), _parse_params(reader)


def _parse_params(reader: _Reader) -> Params:
    params: Params = {}
    while reader.peek() == ";":
        reader.pos += 1
        reader.skip(" ")
        key = _parse_key(reader)
        value: BareItem = True
        if reader.peek() == "=":
            reader.pos += 1
            value = _parse_bare_item(reader)
        params[key] = value
    return params


def _parse_key(reader: _Reader) -> str:
    if reader.peek() not in _KEY_START:
        raise StructuredFieldError(f"bad key at offset {reader.pos}")
    return reader.run(_KEY_CHARS)


def _parse_bare_item(reader: _Reader) -> BareItem:
    char = reader.peek()
    if char == '"':
        return _parse_string(reader)
    if char == ":":
        reader.pos += 1
        encoded = reader.run(_B64_CHARS)
        reader.take(":")
        try:
            return base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise StructuredFieldError("bad base64 in byte sequence") from None
    if char == "?":
        reader.pos += 1
        flag = reader.peek()
        if flag not in ("0", "1"):
            raise StructuredFieldError("bad boolean")
        reader.pos += 1
        return flag == "1"
    if char in _TOKEN_START:
        return Token(reader.run(_TOKEN_CHARS))
    match = _NUMBER.match(reader.text, reader.pos)
    if match:
        reader.pos = match.end()
        if match.group(2) is None:
            return int(match.group(0))
        if len(match.group(1)) > 12:
            raise StructuredFieldError("decimal integer part too long")
        return Decimal(match.group(0))
    raise StructuredFieldError(f"unexpected {char!r} at offset {reader.pos}")


def _parse_string(reader: _Reader) -> str:
    reader.take('"')
    out: list[str] = []
    while True:
        char = reader.peek()
        if not char:
            raise StructuredFieldError("unterminated string")
        reader.pos += 1
        if char == '"':
            return "".join(out)
        if char == "\\":
            char = reader.peek()
            if char not in ('"', "\\"):
                raise StructuredFieldError("bad escape in string")
            reader.pos += 1
        elif not " " <= char <= "~":
            raise StructuredFieldError("non-printable character in string")
        out.append(char)


def serialize_bare_item(value: BareItem) -> str:
    """RFC 8941 §4.1.3 serialisation of one bare item."""
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        text = f"{value.quantize(Decimal('0.001')):f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    if isinstance(value, bytes):
        return f":{base64.b64encode(value).decode('ascii')}:"
    if isinstance(value, Token):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def serialize_params(params: Params) -> str:
    """`;key=value` pairs; a True value is written as the bare key (RFC 8941 §4.1.1.2)."""
    return "".join(
        f";{key}" if value is True else f";{key}={serialize_bare_item(value)}"
        for key, value in params.items()
    )


def serialize_inner_list(items: list[Item], params: Params) -> str:
    """RFC 8941 §4.1.1.1: `(item item);params` — the shape of an RFC 9421 `Signature-Input`."""
    inner = " ".join(serialize_bare_item(value) + serialize_params(p) for value, p in items)
    return f"({inner}){serialize_params(params)}"
