"""HTTP signatures for federation: verify draft-cavage (as Mastodon does) and RFC 9421 requests,
and sign outgoing draft-cavage requests. Layer: core (pure: the clock and keys are passed in).

This is the front door: it re-exports the public API of `httpmsg` (values, errors, dates, keys),
`cavage` (draft-cavage) and `rfc9421` (RFC 9421), and owns the inbound entry points that pick
the scheme. Import from here.

Inbound use: `key_id = check_request(req, now)` (every check that needs no key, so a stale or
tampered request never costs a key fetch), fetch the key, then `verify_request(req, key, now)`.
On `SignatureMismatch` refetch the key once (INTEROP R29). Errors::

    SignatureError            reason shown to the peer as {"error": reason}; status 401
     ├── MalformedHeader      an RFC 8941 header (Content-Digest, Signature-Input) unparsable; 400
     └── SignatureMismatch    well-formed, but the signature does not verify with this key; 401
"""

from __future__ import annotations

from fedistream.core.cavage import (
    cavage_signing_string,
    parse_signature_header,
    prepare_cavage,
    sign_request,
    verify_cavage,
)
from fedistream.core.httpmsg import (
    ACTIVITY_JSON,
    CLOCK_SKEW,
    DEFAULT_LIFETIME,
    MAX_LIFETIME,
    HeaderInput,
    HttpRequest,
    HttpResponse,
    MalformedHeader,
    Now,
    PrivateKey,
    PublicKey,
    SharedSecret,
    SignatureError,
    SignatureMismatch,
    VerifiedSignature,
    format_http_date,
    load_private_key,
    load_public_key,
    parse_http_date,
    signature_matches,
    unix_seconds,
)
from fedistream.core.rfc9421 import (
    parse_rfc9421,
    prepare_rfc9421,
    rfc9421_signature_base,
    verify_message_signature,
)

__all__ = [
    "ACTIVITY_JSON",
    "CLOCK_SKEW",
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "HeaderInput",
    "HttpRequest",
    "HttpResponse",
    "MalformedHeader",
    "Now",
    "PrivateKey",
    "PublicKey",
    "SharedSecret",
    "SignatureError",
    "SignatureMismatch",
    "VerifiedSignature",
    "cavage_signing_string",
    "check_request",
    "format_http_date",
    "load_private_key",
    "load_public_key",
    "parse_http_date",
    "parse_signature_header",
    "request_key_id",
    "rfc9421_signature_base",
    "sign_request",
    "signature_matches",
    "unix_seconds",
    "verify_message_signature",
    "verify_request",
]


def request_key_id(request: HttpRequest) -> str:
    """The key id a request claims to be signed with, so the caller can fetch that key."""
    if request.header("signature-input") is not None:  # R21: RFC 9421 iff Signature-Input
        key_id = parse_rfc9421(request, None).param("keyid", str)
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
        return str(prepare_rfc9421(request, now).param("keyid", str))
    return prepare_cavage(request, now).key_id


def verify_request(
    request: HttpRequest, public_key: PublicKey | str | bytes, now: Now
) -> VerifiedSignature:
    """Verify an inbound request's signature as Mastodon would, or raise SignatureError."""
    key = load_public_key(public_key)
    if request.header("signature-input") is None:
        return verify_cavage(request, key, now)
    prepare_rfc9421(request, now)
    if isinstance(key, SharedSecret):  # a remote actor's key is never a shared secret
        raise SignatureMismatch("Shared secrets are not accepted for inbound requests")
    return verify_message_signature(request, key, now)
