"""Time-sortable ids: 48 bits of milliseconds then 32 random bits, in lower-case Crockford base32.

Pure: the caller passes the time and the random bits. Ids sort (as strings) in creation order, which
lets pages use keyset pagination on the primary key alone.
"""

from __future__ import annotations

from datetime import datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
ID_LENGTH = 16  # 80 bits / 5 bits per character
_RANDOM_BITS = 32


def make_id(when: datetime, random_bits: int) -> str:
    """Id for an object created at `when` (timezone-aware) with `random_bits` (< 2**32)."""
    millis = int(when.timestamp() * 1000)
    if millis < 0:
        raise ValueError("ids cannot encode times before 1970")
    value = (millis << _RANDOM_BITS) | (random_bits & ((1 << _RANDOM_BITS) - 1))
    chars = []
    for _ in range(ID_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def looks_like_id(text: str) -> bool:
    return len(text) == ID_LENGTH and all(c in _ALPHABET for c in text)
