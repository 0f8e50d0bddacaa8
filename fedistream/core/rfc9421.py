"""RFC 9421 HTTP message signatures (Mastodon 4.5+): parse `Signature-Input`/`Signature`, build the
signature base, and verify requests (with Mastodon's inbound policy) or any message.
Layer: core (pure: the clock and keys are passed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_plus

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from fedistream.core.digest import verify_content_digest
from fedistream.core.httpmsg import (
    HttpRequest,
    HttpResponse,
    MalformedHeader,
    Now,
    PublicKey,
    SignatureError,
    SignatureMismatch,
    VerifiedSignature,
    check_digest,
    check_window,
    load_public_key,
    signature_matches,
)
from fedistream.core.structured_fields import (
    Item,
    Params,
    StructuredFieldError,
    parse_dictionary,
    serialize_bare_item,
    serialize_inner_list,
    serialize_params,
)


@dataclass(frozen=True, slots=True)
class Rfc9421Signature:
    """One labelled RFC 9421 signature: its covered components, parameters and raw bytes."""

    label: str
    components: list[Item]
    params: Params
    signature: bytes

    def param(self, name: str, kind: type) -> object:
        """A signature parameter, None when absent; SignatureError if not of `kind`."""
        value = self.params.get(name)
        if value is not None and (type(value) is not kind):
            raise SignatureError(f"Signature parameter {name} has the wrong type")
        return value


def parse_rfc9421(message: HttpRequest | HttpResponse, label: str | None) -> Rfc9421Signature:
    """The labelled (default: first) signature of a message's Signature-Input / Signature."""
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
    return Rfc9421Signature(label, components, params, signature)


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
    return _signature_base(message, parse_rfc9421(message, label))


def _signature_base(message: HttpRequest | HttpResponse, sig: Rfc9421Signature) -> str:
    lines, seen = [], set()
    for name, params in sig.components:
        ident = serialize_bare_item(name) + serialize_params(params)
        if ident in seen:
            raise SignatureError(f"Component {ident} is covered twice")
        seen.add(ident)
        lines.append(f"{ident}: {_component_value(message, str(name), params)}")
    lines.append(f'"@signature-params": {serialize_inner_list(sig.components, sig.params)}')
    return "\n".join(lines)


def _rfc9421_window(sig: Rfc9421Signature, now: Now) -> None:
    created, expires = sig.param("created", int), sig.param("expires", int)
    check_window(created, expires, now)  # type: ignore[arg-type]


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
    sig = parse_rfc9421(message, label)
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


def prepare_rfc9421(request: HttpRequest, now: Now) -> Rfc9421Signature:
    """Every RFC 9421 check that needs no key: syntax, window, coverage, the Content-Digest."""
    # Mastodon 4.5+'s requirements for an inbound RFC 9421 signature (INTEROP R41).
    sig = parse_rfc9421(request, None)
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
        check_digest(lambda: verify_content_digest(value, request.body))
    return sig


def _default_algorithm(key: PublicKey) -> str:
    # RFC 9421 lets the key decide when `alg` is absent; Mastodon 4.5/4.6 keys are RSA.
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa-v1_5-sha256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa-p256-sha256"
    return "hmac-sha256"
