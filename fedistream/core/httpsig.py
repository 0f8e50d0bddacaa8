"""HTTP signatures for federation: verify draft-cavage (as Mastodon does) and RFC 9421 requests,
and sign outgoing draft-cavage requests. Layer: core (pure: the clock and keys are passed in).

Inbound use: `key_id = check_request(req, now)` (every check that needs no key, so a stale or
tampered request never costs a key fetch), fetch the key, then `verify_request(req, key, now)`.
On `SignatureMismatch` refetch the key once (INTEROP R29). Errors::

    SignatureError            reason shown to the peer as {"error": reason}; status 401
     ├── MalformedHeader      an RFC 8941 header (Content-Digest, Signature-Input) unparsable; 400
     └── SignatureMismatch    well-formed, but the signature does not verify with this key; 401
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import unquote_plus, urlsplit

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from fedistream.core.digest import (
    DigestError,
    Item,
    Params,
    StructuredFieldError,
    digest_header,
    parse_dictionary,
    serialize_bare_item,
    serialize_inner_list,
    serialize_params,
    verify_content_digest,
    verify_digest_header,
)

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


def _header_pairs(headers: HeaderInput) -> tuple[tuple[str, str], ...]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(name).lower(), str(value)) for name, value in items)


def _field_value(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    # Repeated field lines are joined with ", " (cavage-12 §2.3, RFC 9421 §2.1).
    values = [value.strip() for key, value in headers if key == name]
    return ", ".join(values) if values else None


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _header_pairs(self.headers))

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """Every header line as (lower-case name, value), in received order."""
        return self.headers  # type: ignore[return-value]  # normalised in __post_init__

    def header(self, name: str) -> str | None:
        """The field value (case-insensitive name), or None when absent."""
        return _field_value(self.fields, name.lower())


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A response, only so RFC 9421 `@status` signatures (Appendix B.2.4) can be checked."""

    status: int
    headers: HeaderInput = ()
    body: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _header_pairs(self.headers))

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        return self.headers  # type: ignore[return-value]  # normalised in __post_init__

    def header(self, name: str) -> str | None:
        return _field_value(self.fields, name.lower())


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


def _check_window(created: float | None, expires: float | None, now: Now) -> None:
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


def _default_algorithm(key: PublicKey) -> str:
    # RFC 9421 lets the key decide when `alg` is absent; Mastodon 4.5/4.6 keys are RSA.
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa-v1_5-sha256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa-p256-sha256"
    return "hmac-sha256"


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error:
        raise SignatureError("The signature is not valid base64") from None


# --- draft-cavage ---

_TOKEN = r"[0-9A-Za-z!#$%&'*+.^_`|~-]+"
_PARAM = re.compile(
    rf'\s*({_TOKEN})\s*=\s*(?:({_TOKEN})|"((?:[^"\\]|\\.)*)")\s*', re.DOTALL | re.ASCII
)
_UNSUPPORTED = "Unsupported signature algorithm (only rsa-sha256 and hs2019 are supported)"


def parse_signature_header(value: str) -> dict[str, str]:
    """Parse a cavage `Signature` header into its parameters (INTEROP R20).

    Values are tokens or quoted strings; whitespace around `=` and `,` is tolerated; a leading
    `Signature ` (old node-http-signature) is dropped; a repeated parameter is refused, since
    two `headers=` could make the verifier and the signer read different lists (Mastodon #37375).
    """
    text = value.strip().removeprefix("Signature ")
    params: dict[str, str] = {}
    pos = 0
    while True:
        m = _PARAM.match(text, pos)
        if m is None:
            raise SignatureError("Error parsing signature parameters")
        name = m.group(1)
        if name in params:
            raise SignatureError(f"Error parsing signature parameters: duplicate parameter {name}")
        quoted = m.group(3)
        params[name] = m.group(2) if quoted is None else re.sub(r"\\(.)", r"\1", quoted, flags=re.S)
        pos = m.end()
        if pos == len(text):
            break
        if text[pos] != ",":
            raise SignatureError("Error parsing signature parameters")
        pos += 1
    if not params.get("keyId") or not params.get("signature"):
        raise SignatureError("Incompatible request signature. keyId and signature are required")
    return params


@dataclass(frozen=True, slots=True)
class _Cavage:
    key_id: str
    algorithm: str  # as declared: rsa-sha256 or hs2019
    headers: tuple[str, ...]
    signature: str
    created: str | None
    expires: str | None


def _resolve_cavage(params: dict[str, str]) -> _Cavage:
    algorithm = params.get("algorithm", "hs2019").lower()  # absent means hs2019 (R22)
    if algorithm not in ("rsa-sha256", "hs2019"):
        raise SignatureError(_UNSUPPORTED)
    if "headers" in params:
        headers = tuple(params["headers"].lower().split())
    else:  # cavage-12 §2.1.6 defaults, as Mastodon applies them (R23)
        headers = ("(created)",) if algorithm == "hs2019" else ("date",)
    for pseudo in ("(created)", "(expires)"):
        if pseudo in headers:
            if algorithm != "hs2019":
                raise SignatureError(f"Invalid pseudo-header {pseudo} for rsa-sha256")
            if not params.get(pseudo[1:-1]):
                raise SignatureError(
                    f"Pseudo-header {pseudo} used but corresponding argument missing"
                )
    return _Cavage(
        params["keyId"],
        algorithm,
        headers,
        params["signature"],
        params.get("created"),
        params.get("expires"),
    )


def _unix_param(name: str, value: str) -> float:
    if not re.fullmatch(r"[0-9]{1,12}(\.[0-9]+)?", value.strip()):
        raise SignatureError(f"Invalid {name} parameter: {value}")
    return float(value)


def cavage_signing_string(
    request: HttpRequest,
    headers: Iterable[str],
    *,
    created: str | None = None,
    expires: str | None = None,
    with_query: bool = True,
) -> str:
    """The cavage string to sign: `name: value` lines joined by LF, no trailing LF (R24).

    `(request-target)` is the lower-cased method and the raw target as received; a header the
    signer listed but the request lacks is an error rather than Mastodon's empty string (R33).
    """
    lines = []
    for name in headers:
        if name == "(request-target)":
            target = request.target if with_query else request.target.split("?", 1)[0]
            value: str | None = f"{request.method.lower()} {target}"
        elif name in ("(created)", "(expires)"):
            value = created if name == "(created)" else expires
        else:
            value = request.header(name)
        if value is None:
            raise SignatureError(f"Signed header {name} is missing from the request")
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


def _prepare_cavage(request: HttpRequest, now: Now) -> _Cavage:
    raw = request.header("signature")
    if raw is None:
        raise SignatureError("Request not signed")
    sig = _resolve_cavage(parse_signature_header(raw))
    covered = set(sig.headers)
    # A created/expires parameter the signature does not cover is attacker-controlled, so the
    # window trusts it only when `(created)`/`(expires)` is signed; otherwise the signed Date.
    created = (
        _unix_param("created", sig.created) if "(created)" in covered and sig.created else None
    )
    expires = (
        _unix_param("expires", sig.expires) if "(expires)" in covered and sig.expires else None
    )
    date = request.header("date")
    if created is None and date is not None:
        created = parse_http_date(date)
    _check_window(created, expires, now)
    # Mastodon's verify_signature_strength! (R25): the minimum a peer must cover.
    method = request.method.upper()
    if not covered & {"date", "(created)"}:
        raise SignatureError(
            "fedistream requires the Date header or (created) pseudo-header to be signed"
        )
    if not covered & {"(request-target)", "digest"}:
        raise SignatureError(
            "fedistream requires the Digest header or (request-target) pseudo-header to be signed"
        )
    if method == "GET" and "host" not in covered:
        raise SignatureError(
            "fedistream requires the Host header to be signed when doing a GET request"
        )
    if method == "POST" and "digest" not in covered:
        raise SignatureError(
            "fedistream requires the Digest header to be signed when doing a POST request"
        )
    if "digest" in covered:
        digest = request.header("digest")
        if digest is None:
            raise SignatureError("Digest header missing")
        _check_digest(lambda: verify_digest_header(digest, request.body))
    return sig


def _check_digest(check: Callable[[], object]) -> None:
    try:
        check()
    except DigestError as error:
        cls = MalformedHeader if error.status == 400 else SignatureError
        raise cls(error.reason) from None


def _verify_cavage(request: HttpRequest, key: PublicKey, now: Now) -> VerifiedSignature:
    sig = _prepare_cavage(request, now)
    signature = _b64decode(sig.signature)
    if isinstance(key, rsa.RSAPublicKey):
        # hs2019 means "whatever the key implies"; GoToSocial also accepts RSA-SHA512 for it.
        candidates = (
            ["rsa-sha256"] if sig.algorithm == "rsa-sha256" else ["rsa-sha256", "rsa-sha512"]
        )
    elif isinstance(key, ed25519.Ed25519PublicKey) and sig.algorithm == "hs2019":
        candidates = ["ed25519"]
    else:
        raise SignatureMismatch(f"A {type(key).__name__} cannot verify {sig.algorithm} signatures")
    # Mastodon >= 4.4 signs (request-target) with the query; older Mastodon, GoToSocial's retry
    # and Akkoma sign the bare path, so Mastodon checks both and so do we (R24, R100, R105).
    attempts = [True]
    if "(request-target)" in sig.headers and "?" in request.target:
        attempts.append(False)
    for with_query in attempts:
        text = cavage_signing_string(
            request, sig.headers, created=sig.created, expires=sig.expires, with_query=with_query
        ).encode()
        for algorithm in candidates:
            if signature_matches(key, algorithm, text, signature):
                return VerifiedSignature(
                    sig.key_id, algorithm, sig.headers, "draft-cavage", query_dropped=not with_query
                )
    raise SignatureMismatch(f"Verification failed for {sig.key_id} using {'/'.join(candidates)}")


def sign_request(
    method: str,
    url: str,
    headers: HeaderInput,
    body: bytes,
    private_key: PrivateKey | str | bytes,
    key_id: str,
    now: Now,
) -> dict[str, str]:
    """The headers to add to an outgoing request so every peer accepts it (R34–R37).

    Returns Host, Date and Signature, plus Digest and Content-Type for requests with a body.
    POST signs `(request-target) host date digest content-type`, GET `(request-target) host
    date`, with `algorithm="rsa-sha256"` (hs2019 for an Ed25519 key). `url` must be what the
    client will send byte for byte (e.g. `str(httpx.URL(url))`); the body must be sent unchanged.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"cannot sign a request to {url!r}")
    if '"' in key_id:
        raise ValueError("key id must not contain a double quote")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if parts.port is not None and parts.port != (443 if parts.scheme == "https" else 80):
        host += f":{parts.port}"  # Host carries a non-default port, as httpx will send it
    given = dict(_header_pairs(headers))
    added = {"Host": host, "Date": format_http_date(now)}
    names = ["(request-target)", "host", "date"]
    if method.upper() not in ("GET", "HEAD"):
        added["Digest"] = digest_header(body)
        added["Content-Type"] = given.get("content-type", ACTIVITY_JSON)
        names += ["digest", "content-type"]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    text = cavage_signing_string(HttpRequest(method, target, added, body), names).encode()
    key = load_private_key(private_key)
    if isinstance(key, rsa.RSAPrivateKey):
        # PKCS#1 v1.5 is deterministic, so the same inputs give the same headers.
        algorithm, raw = "rsa-sha256", key.sign(text, padding.PKCS1v15(), hashes.SHA256())
    else:
        algorithm, raw = "hs2019", key.sign(text)
    signature = base64.b64encode(raw).decode("ascii")
    covered = " ".join(names)
    added["Signature"] = (
        f'keyId="{key_id}",algorithm="{algorithm}",headers="{covered}",signature="{signature}"'
    )
    return added


# --- RFC 9421 ---


@dataclass(frozen=True, slots=True)
class _Rfc9421:
    label: str
    components: list[Item]
    params: Params
    signature: bytes

    def param(self, name: str, kind: type) -> object:
        value = self.params.get(name)
        if value is not None and (type(value) is not kind):
            raise SignatureError(f"Signature parameter {name} has the wrong type")
        return value


def _parse_rfc9421(message: HttpRequest | HttpResponse, label: str | None) -> _Rfc9421:
    raw_input, raw_sig = message.header("signature-input"), message.header("signature")
    if raw_input is None or raw_sig is None:
        raise SignatureError("Signature-Input and Signature headers must both be present")
    try:
        inputs, signatures = parse_dictionary(raw_input), parse_dictionary(raw_sig)
    except StructuredFieldError as error:
        raise MalformedHeader(
            f"Signature-Input or Signature is not a valid RFC8941 dictionary: {error}"
        ) from None
    if not inputs:
        raise MalformedHeader("Signature-Input is empty")
    label = label if label is not None else next(iter(inputs))
    if label not in inputs or label not in signatures:
        raise SignatureError(f"No signature labelled {label}")
    components, params = inputs[label]
    signature = signatures[label][0]
    if not isinstance(components, list) or not isinstance(signature, bytes):
        raise MalformedHeader(f"Signature {label} is not an inner list with a byte sequence")
    for name, _ in components:
        if type(name) is not str or name != name.lower():
            raise MalformedHeader(f"Component identifiers must be lower-case strings: {name!r}")
    return _Rfc9421(label, components, params, signature)


def _query_params(target: str) -> list[tuple[str, str]]:
    # HTML URL form parsing, then re-encoded so names and values are unambiguous (RFC 9421 §2.2.8).
    def encode(text: str) -> str:
        safe = b"*-._0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        return "".join(chr(b) if b in safe else f"%{b:02X}" for b in text.encode())

    query = target.partition("?")[2]
    pairs = [piece.partition("=") for piece in query.split("&") if piece]
    return [(encode(unquote_plus(n)), encode(unquote_plus(v))) for n, _, v in pairs]


def _component_value(message: HttpRequest | HttpResponse, name: str, params: Params) -> str:
    if not name.startswith("@"):
        if params:  # sf, key, bs, req, tr: no peer we federate with uses them
            raise SignatureError(f"Unsupported component parameters on {name}")
        value = message.header(name)
        if value is None:
            raise SignatureError(f"Signed header {name} is missing from the request")
        return value
    if set(params) - ({"name"} if name == "@query-param" else set()):
        raise SignatureError(f"Unsupported component parameters on {name}")
    if isinstance(message, HttpResponse):
        if name == "@status":
            return str(message.status)
        raise SignatureError(f"Component {name} is not available on a response")
    host = message.header("host")
    scheme = message.scheme.lower()
    authority = (host or "").lower().removesuffix(":443" if scheme == "https" else ":80")
    path, _, query = message.target.partition("?")
    if name in ("@target-uri", "@authority") and not authority:
        raise SignatureError(f"Cannot build {name} without a Host header")
    values = {
        "@method": message.method,
        "@target-uri": f"{scheme}://{authority}{message.target}",
        "@authority": authority,
        "@scheme": scheme,
        "@request-target": message.target,
        "@path": path or "/",
        "@query": f"?{query}",
    }
    if name in values:
        return values[name]
    wanted = params.get("name")
    if name == "@query-param" and isinstance(wanted, str):
        found = [v for n, v in _query_params(message.target) if n == wanted]
        if len(found) != 1:  # RFC 9421 §2.2.8: absent or repeated names must not be signed
            raise SignatureError(f"Query parameter {wanted} is missing or repeated")
        return found[0]
    raise SignatureError(f"Unsupported component {name}")


def rfc9421_signature_base(message: HttpRequest | HttpResponse, label: str | None = None) -> str:
    """The RFC 9421 §2.5 signature base for the labelled (default: first) signature."""
    return _signature_base(message, _parse_rfc9421(message, label))


def _signature_base(message: HttpRequest | HttpResponse, sig: _Rfc9421) -> str:
    lines, seen = [], set()
    for name, params in sig.components:
        ident = serialize_bare_item(name) + serialize_params(params)
        if ident in seen:
            raise SignatureError(f"Component {ident} is covered twice")
        seen.add(ident)
        lines.append(f"{ident}: {_component_value(message, str(name), params)}")
    lines.append(f'"@signature-params": {serialize_inner_list(sig.components, sig.params)}')
    return "\n".join(lines)


def _rfc9421_window(sig: _Rfc9421, now: Now) -> None:
    created, expires = sig.param("created", int), sig.param("expires", int)
    _check_window(created, expires, now)  # type: ignore[arg-type]


def verify_message_signature(
    message: HttpRequest | HttpResponse,
    public_key: PublicKey | str | bytes,
    now: Now,
    *,
    label: str | None = None,
    algorithm: str | None = None,
) -> VerifiedSignature:
    """Verify one RFC 9421 signature with no fediverse policy on top (for any message).

    The algorithm is `algorithm` (known out of band, e.g. rsa-pss-sha512), else the `alg`
    parameter, else what the key implies. `created`/`expires` get the same window as cavage.
    """
    sig = _parse_rfc9421(message, label)
    key = load_public_key(public_key)
    declared = sig.param("alg", str)
    if algorithm is not None and declared is not None and declared != algorithm:
        raise SignatureMismatch(f"Signature {sig.label} declares alg {declared}, not {algorithm}")
    chosen = algorithm or str(declared or _default_algorithm(key))
    _rfc9421_window(sig, now)
    base = _signature_base(message, sig).encode()
    key_id = str(sig.param("keyid", str) or "")
    if not signature_matches(key, chosen, base, sig.signature):
        raise SignatureMismatch(f"Verification failed for {key_id or sig.label} using {chosen}")
    covered = tuple(str(name) + serialize_params(params) for name, params in sig.components)
    return VerifiedSignature(key_id, chosen, covered, "rfc9421")


def _prepare_rfc9421(request: HttpRequest, now: Now) -> _Rfc9421:
    # Mastodon 4.5+'s requirements for an inbound RFC 9421 signature (INTEROP R41).
    sig = _parse_rfc9421(request, None)
    if sig.param("keyid", str) is None or sig.param("created", int) is None:
        raise SignatureError("Incompatible request signature. keyid and created are required")
    names = {str(name) for name, _ in sig.components}
    if not {"@method", "@target-uri"} <= names:
        raise SignatureError(
            "fedistream requires the @method and @target-uri components to be signed"
        )
    _rfc9421_window(sig, now)
    if request.method.upper() == "POST" and "content-digest" not in names:
        raise SignatureError(
            "fedistream requires the Content-Digest header to be signed when doing a POST request"
        )
    if "content-digest" in names:
        value = request.header("content-digest")
        if value is None:
            raise SignatureError("Content-Digest header missing")
        _check_digest(lambda: verify_content_digest(value, request.body))
    return sig


# --- inbound entry points ---


def request_key_id(request: HttpRequest) -> str:
    """The key id a request claims to be signed with, so the caller can fetch that key."""
    if request.header("signature-input") is not None:  # R21: RFC 9421 iff Signature-Input
        key_id = _parse_rfc9421(request, None).param("keyid", str)
        if not key_id:
            raise SignatureError("Incompatible request signature. keyid and created are required")
        return str(key_id)
    raw = request.header("signature")
    if raw is None:
        raise SignatureError("Request not signed")
    return parse_signature_header(raw)["keyId"]


def check_request(request: HttpRequest, now: Now) -> str:
    """Every check that needs no key (syntax, algorithm, window, coverage, digest); the key id."""
    if request.header("signature-input") is not None:
        return str(_prepare_rfc9421(request, now).param("keyid", str))
    return _prepare_cavage(request, now).key_id


def verify_request(
    request: HttpRequest, public_key: PublicKey | str | bytes, now: Now
) -> VerifiedSignature:
    """Verify an inbound request's signature as Mastodon would, or raise SignatureError."""
    key = load_public_key(public_key)
    if request.header("signature-input") is None:
        return _verify_cavage(request, key, now)
    _prepare_rfc9421(request, now)
    if isinstance(key, SharedSecret):  # a remote actor's key is never a shared secret
        raise SignatureMismatch("Shared secrets are not accepted for inbound requests")
    return verify_message_signature(request, key, now)
