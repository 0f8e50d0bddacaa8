"""draft-cavage HTTP signatures (what Mastodon, GoToSocial and Akkoma send): parse the `Signature`
header, build the signing string, check and verify inbound requests, sign outgoing ones.
Layer: core (pure: the clock and keys are passed in).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from fedistream.core.digest import digest_header, verify_digest_header
from fedistream.core.httpmsg import (
    ACTIVITY_JSON,
    HeaderInput,
    HttpRequest,
    Now,
    PrivateKey,
    PublicKey,
    SignatureError,
    SignatureMismatch,
    VerifiedSignature,
    check_digest,
    check_window,
    format_http_date,
    header_pairs,
    load_private_key,
    parse_http_date,
    signature_matches,
)

_TOKEN = r"[0-9A-Za-z!#$%&'*+.^_`|~-]+"
# The quoted string is written as "runs of plain characters, then escapes": one alternation per
# character made parsing a 344-character signature cost 25 µs, a tenth of an inbox POST.
_PARAM = re.compile(
    rf'\s*({_TOKEN})\s*=\s*(?:({_TOKEN})|"([^"\\]*(?:\\.[^"\\]*)*)")\s*', re.DOTALL | re.ASCII
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
        if quoted is None:
            params[name] = m.group(2)
        else:
            params[name] = re.sub(r"\\(.)", r"\1", quoted, flags=re.S) if "\\" in quoted else quoted
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
class CavageSignature:
    """A parsed cavage `Signature` header with defaults applied (parameters still as text)."""

    key_id: str
    algorithm: str  # as declared: rsa-sha256 or hs2019
    headers: tuple[str, ...]
    signature: str
    created: str | None
    expires: str | None


def _resolve_cavage(params: dict[str, str]) -> CavageSignature:
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
    return CavageSignature(
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


def prepare_cavage(request: HttpRequest, now: Now) -> CavageSignature:
    """Every cavage check that needs no key: syntax, window, Mastodon's coverage, the Digest.

    Remembered on the request for the same `now`: the inbox checks a request before fetching
    the key and verifies it after, and each pass costs as much as the RSA verify itself.
    """
    memo_key = ("prepare_cavage", now)
    remembered = request.derived.get(memo_key)
    if isinstance(remembered, CavageSignature):
        return remembered
    sig = _prepare_cavage(request, now)
    request.derived[memo_key] = sig
    return sig


def _prepare_cavage(request: HttpRequest, now: Now) -> CavageSignature:
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
    check_window(created, expires, now)
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
        check_digest(lambda: verify_digest_header(digest, request.body))
    return sig


def verify_cavage(request: HttpRequest, key: PublicKey, now: Now) -> VerifiedSignature:
    """`prepare_cavage`, then the signature itself; SignatureMismatch if no candidate verifies."""
    sig = prepare_cavage(request, now)
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
    given = dict(header_pairs(headers))
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


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error:
        raise SignatureError("The signature is not valid base64") from None
