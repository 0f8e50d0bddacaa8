"""RFC 8941 structured fields: the Dictionary parser and the serialisers that `Content-Digest`
(RFC 9530) and RFC 9421 `Signature-Input` / `Signature` are written in. Layer: core (pure; stdlib).
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from decimal import Decimal


class StructuredFieldError(ValueError):
    """Text that is not a valid RFC 8941 structured field."""


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
