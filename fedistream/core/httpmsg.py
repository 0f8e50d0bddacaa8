"""The shared ground of HTTP signatures: request/response values, the error tree, HTTP dates and
the time window, key loading and the signature algorithms. Layer: core (pure: the clock and keys
are passed in). `cavage` and `rfc9421` build on this; `httpsig` is the front door.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from fedistream.core.digest import DigestError

ACTIVITY_JSON = "application/activity+json"
CLOCK_SKEW = 3600  # Mastodon CLOCK_SKEW_MARGIN: 1 hour either side
DEFAULT_LIFETIME = 300  # a signature without `expires` lives 5 minutes (Mastodon)
MAX_LIFETIME = 12 * 3600  # and never more than 12 hours, whatever `expires` says

# --- errors ---


class SignatureError(Exception):
    """A request's signature was refused; `reason` tells the peer's operator what to fix."""

    status = 401

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status


class MalformedHeader(SignatureError):
    """A structured header cannot be parsed (Mastodon answers 400 for Content-Digest)."""

    status = 400


class SignatureMismatch(SignatureError):
    """The signature is well-formed but does not verify: the only error worth a key refetch."""


# --- values ---

Now = datetime | int | float
HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class SharedSecret:
    """An HMAC key (RFC 9421 hmac-sha256), wrapped so raw bytes are never mistaken for a PEM."""

    secret: bytes = field(repr=False)


PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | SharedSecret
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def header_pairs(headers: HeaderInput) -> tuple[tuple[str, str], ...]:
    """Headers as (lower-case name, value) pairs, in the order given."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(name).lower(), str(value)) for name, value in items)


def _field_index(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Each field's value by lower-case name. Repeated field lines are joined with ", "
    (cavage-12 §2.3, RFC 9421 §2.1)."""
    values: dict[str, list[str]] = {}
    for key, value in headers:
        values.setdefault(key, []).append(value.strip())
    return {key: ", ".join(found) for key, found in values.items()}


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An inbound request as received: `target` is the raw path and query (`/inbox?a=1`).

    `scheme` is only needed for RFC 9421 `@target-uri`; behind our TLS proxy it is https.
    """

    method: str
    target: str
    headers: HeaderInput = ()
    body: bytes = b""
    scheme: str = "https"
    # Values derived from the (immutable) request, computed once: the header index, and the
    # parsed signature that checking and then verifying both need (cavage.prepare_cavage).
    derived: dict[object, object] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", header_pairs(self.headers))

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """Every header line as (lower-case name, value), in received order."""
        return self.headers  # type: ignore[return-value]  # normalised in __post_init__

    def header(self, name: str) -> str | None:
        """The field value (case-insensitive name), or None when absent."""
        index = self.derived.get(_HEADER_INDEX)
        if index is None:
            index = self.derived[_HEADER_INDEX] = _field_index(self.fields)
        assert isinstance(index, dict)
        return index.get(name.lower())


_HEADER_INDEX = "header-index"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A response, only so RFC 9421 `@status` signatures (Appendix B.2.4) can be checked."""

    status: int
    headers: HeaderInput = ()
    body: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", header_pairs(self.headers))

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        return self.headers  # type: ignore[return-value]  # normalised in __post_init__

    def header(self, name: str) -> str | None:
        return _field_index(self.fields).get(name.lower())


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """What a good signature proved: who signed (key id), how, and over which parts."""

    key_id: str
    algorithm: str  # the check that passed: rsa-sha256, rsa-sha512, ed25519, rsa-v1_5-sha256...
    covered: tuple[str, ...]  # header names / component identifiers, in signed order
    scheme: Literal["draft-cavage", "rfc9421"]
    query_dropped: bool = False  # cavage only: verified over the path without its query


# --- time ---

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAY, _MON = "|".join(_WEEKDAYS), "|".join(_MONTHS)
_LONG_DAY = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_HMS = r"(\d\d):(\d\d):(\d\d)"
# The three HTTP-date forms RFC 7231 §7.1.1.1 obliges a recipient to accept, as Ruby's
# Time.httpdate (Mastodon) does: IMF-fixdate, obsolete RFC 850, and asctime.
_IMF_FIXDATE = re.compile(rf"(?:{_DAY}), (\d\d) ({_MON}) (\d{{4}}) {_HMS} GMT", re.ASCII)
_RFC850 = re.compile(rf"(?:{_LONG_DAY}), (\d\d)-({_MON})-(\d\d) {_HMS} GMT", re.ASCII)
_ASCTIME = re.compile(rf"(?:{_DAY}) ({_MON}) ([ \d]\d) {_HMS} (\d{{4}})", re.ASCII)


def unix_seconds(now: Now) -> float:
    """`now` as Unix seconds; a naive datetime is refused rather than guessed."""
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        return now.timestamp()
    return float(now)


def format_http_date(now: Now) -> str:
    """IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), locale-independent, as Date must be."""
    t = datetime.fromtimestamp(int(unix_seconds(now)), tz=UTC)
    return (
        f"{_WEEKDAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT"
    )


def parse_http_date(value: str) -> int:
    """Unix seconds of an HTTP-date; SignatureError with Mastodon's wording if it is not one."""
    text = value.strip()
    if m := _IMF_FIXDATE.fullmatch(text):
        day, mon, year, hh, mm, ss = m.groups()
    elif m := _RFC850.fullmatch(text):
        day, mon, yy, hh, mm, ss = m.groups()
        year = str(int(yy) + (2000 if int(yy) < 50 else 1900))
    elif m := _ASCTIME.fullmatch(text):
        mon, day, hh, mm, ss, year = m.groups()
    else:
        raise SignatureError(f'Invalid Date header: not RFC 2616 compliant date: "{value}"')
    try:
        stamp = datetime(int(year), _MONTHS.index(mon) + 1, int(day), int(hh), int(mm), int(ss))
    except ValueError:
        raise SignatureError(
            f'Invalid Date header: not RFC 2616 compliant date: "{value}"'
        ) from None
    return calendar.timegm(stamp.timetuple())


def check_window(created: float | None, expires: float | None, now: Now) -> None:
    """Refuse a signature whose created/expires (Unix seconds) puts it outside the window."""
    # Exactly Mastodon's matches_time_window? (INTEROP R27): a bare Date is good from
    # now-65min to now+60min; an explicit expires may stretch that to created+12h.
    current = unix_seconds(now)
    if created is not None:
        expires = min(
            created + DEFAULT_LIFETIME if expires is None else expires, created + MAX_LIFETIME
        )
        if created > current + CLOCK_SKEW:
            raise SignatureError("Signed request date outside acceptable time window")
    if expires is not None and current > expires + CLOCK_SKEW:
        raise SignatureError("Signed request date outside acceptable time window")


# --- keys and algorithms ---


def load_public_key(key: PublicKey | str | bytes) -> PublicKey:
    """A key object as-is, or a PEM (SPKI or PKCS#1 `RSA PUBLIC KEY`) parsed."""
    if isinstance(key, str | bytes):
        try:
            loaded = serialization.load_pem_public_key(
                key.encode() if isinstance(key, str) else key
            )
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise SignatureError("The signer's public key could not be read") from None
        if not isinstance(
            loaded, rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
        ):
            raise SignatureError(f"Unsupported public key type {type(loaded).__name__}")
        return loaded
    return key


def load_private_key(key: PrivateKey | str | bytes) -> PrivateKey:
    """A private key object as-is, or an unencrypted PEM (PKCS#1 or PKCS#8) parsed."""
    if isinstance(key, str | bytes):
        loaded = serialization.load_pem_private_key(
            key.encode() if isinstance(key, str) else key, password=None
        )
        if not isinstance(loaded, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise ValueError(f"unsupported private key type {type(loaded).__name__}")
        return loaded
    return key


_KEY_KIND = {
    "rsa-sha256": rsa.RSAPublicKey,
    "rsa-sha512": rsa.RSAPublicKey,
    "rsa-v1_5-sha256": rsa.RSAPublicKey,
    "rsa-pss-sha512": rsa.RSAPublicKey,
    "ed25519": ed25519.Ed25519PublicKey,
    "ecdsa-p256-sha256": ec.EllipticCurvePublicKey,
    "hmac-sha256": SharedSecret,
}


def signature_matches(key: PublicKey, algorithm: str, message: bytes, signature: bytes) -> bool:
    """Whether `signature` over `message` verifies with `key` under a named algorithm.

    Names are cavage's (rsa-sha256, rsa-sha512, ed25519) and RFC 9421's registry
    (rsa-v1_5-sha256, rsa-pss-sha512, ecdsa-p256-sha256, ed25519, hmac-sha256).
    """
    kind = _KEY_KIND.get(algorithm)
    if kind is None:
        raise SignatureError(f"Unsupported signature algorithm {algorithm}")
    if not isinstance(key, kind):
        raise SignatureMismatch(f"A {type(key).__name__} cannot verify {algorithm} signatures")
    try:
        if isinstance(key, SharedSecret):
            return hmac.compare_digest(
                hmac.new(key.secret, message, hashlib.sha256).digest(), signature
            )
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            # RFC 9421 §3.3.4: raw r‖s (64 bytes), not the DER that cryptography expects.
            if not isinstance(key.curve, ec.SECP256R1) or len(signature) != 64:
                return False
            der = encode_dss_signature(
                int.from_bytes(signature[:32]), int.from_bytes(signature[32:])
            )
            key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        elif algorithm == "rsa-pss-sha512":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)
            key.verify(signature, message, pss, hashes.SHA512())
        else:
            digest = hashes.SHA512() if algorithm == "rsa-sha512" else hashes.SHA256()
            key.verify(signature, message, padding.PKCS1v15(), digest)
    except InvalidSignature:
        return False
    return True


def check_digest(check: Callable[[], object]) -> None:
    """Run a digest check, turning its DigestError into the matching SignatureError."""
    try:
        check()
    except DigestError as error:
        cls = MalformedHeader if error.status == 400 else SignatureError
        raise cls(error.reason) from None
