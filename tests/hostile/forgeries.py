"""The catalogue of forged and replayed requests for tests/hostile/test_forged_requests.py.

Each `Forged` case builds a request no honest peer would send to POST /inbox (the body and the
headers), and says what the inbox must answer: the status and words its `{"error": …}` must
contain, and whether the request must be refused before any key is fetched. Builders reuse the
keys, actors and signing helpers of tests/web/test_inbox.py and tests/core/test_httpsig.py.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from fedistream.core import httpsig
from fedistream.core.as2 import AS_CONTEXT
from fedistream.core.digest import content_digest_header, digest_header
from tests.core.test_httpsig import rfc9421_signed
from tests.web.test_inbox import (
    ALICE,
    AS2,
    BOB,
    HOST,
    _key,
    encode,
    follow,
    key_id,
    signed,
)

MALLORY = "http://127.0.0.2:9/users/mallory"  # another host than Alice's
BLOCKED_HOST_ACTOR = "http://127.0.0.3:9/users/eve"  # a domain the owner blocked
BLOCKED_ACTOR = "http://127.0.0.1:9/users/troll"  # an account the owner blocked


# --- building requests no honest peer would send ----------------------------------------------


def at(offset: timedelta = timedelta(0)) -> datetime:
    return datetime.now(UTC) + offset


def cavage(
    body: bytes,
    names: list[str],
    *,
    key_name: str = "alice",
    actor_id: str = ALICE,
    algorithm: str = "hs2019",
    date: datetime | None = None,
    created: int | None = None,
    expires: int | None = None,
    target: str = "/inbox",
    host: str = HOST,
    digest: str | None = None,
    extra: str = "",
) -> dict[str, str]:
    """A draft-cavage signature over exactly `names`, with (created)/(expires) when asked."""
    headers = {
        "Host": host,
        "Date": httpsig.format_http_date(date or at()),
        "Digest": digest if digest is not None else digest_header(body),
        "Content-Type": AS2,
    }
    text = httpsig.cavage_signing_string(
        httpsig.HttpRequest("POST", target, headers, body),
        names,
        created=None if created is None else str(created),
        expires=None if expires is None else str(expires),
    )
    raw = _key(key_name).sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    params = [f'keyId="{key_id(actor_id)}"', f'algorithm="{algorithm}"']
    if created is not None:
        params.append(f"created={created}")
    if expires is not None:
        params.append(f"expires={expires}")
    params += [f'headers="{" ".join(names)}"', f'signature="{base64.b64encode(raw).decode()}"']
    headers["Signature"] = ",".join(params) + extra
    return headers


FULL = ["(request-target)", "host", "date", "digest"]
CREATED = ["(request-target)", "host", "(created)", "digest"]


def rfc9421(
    body: bytes,
    components: str = '"@method" "@target-uri" "content-digest"',
    *,
    key_name: str = "alice",
    actor_id: str = ALICE,
    created: int | None = None,
    host: str = HOST,
    signed_host: str | None = None,
    content_digest: str | None = None,
    params: str = "",
) -> dict[str, str]:
    """An RFC 9421 signature (Mastodon 4.5+ style) made with tests/core's signer. `signed_host`
    lets the signature cover another authority than the Host header sent."""
    stamp = int(time.time()) if created is None else created
    digest = content_digest if content_digest is not None else content_digest_header(body)
    request = httpsig.HttpRequest(
        "POST", "/inbox", {"Host": signed_host or host, "Content-Digest": digest}, body
    )
    signature_input = f'({components});created={stamp};keyid="{key_id(actor_id)}"{params}'
    made = rfc9421_signed(request, _key(key_name), signature_input)
    headers = {name: value for name, value in made.fields if name != "host"}
    return {**headers, "Host": host, "Content-Type": AS2}


def _note(note_id: str, author: str) -> dict[str, Any]:
    return {
        "id": note_id,
        "type": "Note",
        "attributedTo": author,
        "content": "<p>words</p>",
        "published": "2024-01-01T00:00:00Z",
    }


def _activity(kind: str, obj: Any, *, actor: str = ALICE, suffix: str = "1") -> dict[str, Any]:
    return {
        "@context": AS_CONTEXT,
        "id": f"{actor}/activities/{kind.lower()}-{suffix}",
        "type": kind,
        "actor": actor,
        "object": obj,
    }


def _person(actor_id: str) -> dict[str, Any]:
    return {"id": actor_id, "type": "Person", "inbox": actor_id + "/inbox", "name": "me now"}


BODY = encode(follow())


# --- the cases ---------------------------------------------------------------------------------

Build = Callable[[], tuple[bytes, dict[str, str]]]


@dataclass(frozen=True)
class Forged:
    id: str
    build: Build
    status: int
    says: tuple[str, ...]
    before_key_fetch: bool = False  # refused before we would fetch any key


def _send(activity: dict[str, Any], **sign: Any) -> tuple[bytes, dict[str, str]]:
    body = encode(activity)
    return body, signed(body, **sign)


def _tampered() -> tuple[bytes, dict[str, str]]:
    return encode(follow(suffix="other")), signed(BODY)


def _without(header: str) -> Build:
    def build() -> tuple[bytes, dict[str, str]]:
        headers = signed(BODY)
        del headers[header]
        return BODY, headers

    return build


def _sig_edit(edit: Callable[[str], str]) -> Build:
    def build() -> tuple[bytes, dict[str, str]]:
        headers = signed(BODY)
        headers["Signature"] = edit(headers["Signature"])
        return BODY, headers

    return build


def _sig_date(value: str) -> Build:
    def build() -> tuple[bytes, dict[str, str]]:
        return BODY, {**signed(BODY), "Date": value}

    return build


def _when(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Offsets (timedelta) made into times when the request is built, not when this module is
    imported: a long test session must not age the cases."""
    made = {}
    for name, value in kwargs.items():
        if isinstance(value, timedelta):
            value = at(value) if name == "date" else unix(value)
        made[name] = value
    return made


def _c(names: list[str], **kwargs: Any) -> Build:
    return lambda: (BODY, cavage(BODY, names, **_when(kwargs)))


def _r(**kwargs: Any) -> Build:
    def build() -> tuple[bytes, dict[str, str]]:
        made = _when(kwargs)
        if "expires" in made:
            made["params"] = made.get("params", "") + f";expires={made.pop('expires')}"
        return BODY, rfc9421(BODY, **made)

    return build


def unix(offset: timedelta = timedelta(0)) -> int:
    return int(at(offset).timestamp())


H = timedelta(hours=1)
# The window is Mastodon's: (created or Date) + 5 min, or `expires`, plus one hour of skew. A
# signature created 64 minutes ago would still pass on its own; its `expires` 63 minutes ago
# is what must refuse it.
MIN = timedelta(minutes=1)
NOW = timedelta(0)
SHA512 = "SHA-512=" + base64.b64encode(hashlib.sha512(BODY).digest()).decode()

FORGED: list[Forged] = [
    # -- who may say what (R28, R30, R54)
    Forged("unsigned", lambda: (BODY, {"Content-Type": AS2}), 401, ("Request not signed",), True),
    Forged("wrong-key", _c(FULL, key_name="mallory"), 401, ("Verification failed for",)),
    Forged(
        "key-owner-is-not-the-actor",
        lambda: _send(follow(ALICE), key_name="bob", actor_id=BOB),
        401,
        (f"signed by {BOB}", f"actor is {ALICE}"),
    ),
    Forged(
        "keyid-on-another-host-than-the-actor",
        lambda: _send(follow(ALICE), key_name="mallory", actor_id=MALLORY),
        401,
        (f"signed by {MALLORY}", f"actor is {ALICE}"),
    ),
    Forged(
        "create-of-someone-elses-object",
        lambda: _send(_activity("Create", _note(BOB + "/notes/1", BOB))),
        400,
        ("Create of an object attributed to someone else",),
    ),
    Forged(
        "update-of-someone-elses-object",
        lambda: _send(_activity("Update", _note(BOB + "/notes/1", BOB))),
        400,
        ("Update of an object attributed to someone else",),
    ),
    Forged(
        "delete-of-someone-elses-object",
        lambda: _send(_activity("Delete", _note(BOB + "/notes/1", BOB))),
        400,
        ("Delete of an object attributed to someone else",),
    ),
    Forged(
        "create-of-an-object-on-another-host",
        lambda: _send(_activity("Create", _note(MALLORY + "/notes/1", ALICE))),
        400,
        ("Create of an object on another host than its actor",),
    ),
    Forged(
        "delete-by-reference-on-another-host",
        lambda: _send(_activity("Delete", MALLORY + "/notes/1")),
        400,
        ("Delete of an object on another host than its actor",),
    ),
    Forged(
        "update-of-another-actor",
        lambda: _send(_activity("Update", _person(BOB))),
        400,
        ("Update of another actor",),
    ),
    Forged(
        "delete-of-another-actor",
        lambda: _send(_activity("Delete", _person(BOB))),
        400,
        ("Delete of another actor",),
    ),
    Forged(
        "undo-of-another-actors-activity",
        lambda: _send(_activity("Undo", follow(BOB))),
        400,
        ("Undo of another actor's activity",),
    ),
    Forged(
        "activity-id-on-another-host-than-the-actor",
        lambda: _send({**follow(), "id": MALLORY + "/follows/squatted"}),
        400,
        ("id", "another host than its actor"),
    ),
    Forged(
        "blocked-domain",
        lambda: _send(follow(BLOCKED_HOST_ACTOR), key_name="eve", actor_id=BLOCKED_HOST_ACTOR),
        403,
        ("blocked",),
        True,
    ),
    Forged(
        "blocked-actor",
        lambda: _send(follow(BLOCKED_ACTOR), key_name="troll", actor_id=BLOCKED_ACTOR),
        403,
        ("blocked",),
    ),
    # -- the body and its digest (R26, R31)
    Forged("tampered-body-old-digest", _tampered, 401, ("Invalid Digest value", "Computed"), True),
    Forged("digest-missing", _without("Digest"), 401, ("Digest header",), True),
    Forged(
        "digest-sha512-only",
        _c(FULL, digest=SHA512),
        401,
        ("Only SHA-256", "sha-512"),
        True,
    ),
    Forged(
        "digest-not-base64",
        _c(FULL, digest="SHA-256=not base64!"),
        401,
        ("not a valid base64",),
        True,
    ),
    # -- coverage (R25)
    Forged(
        "too-few-headers-no-digest",
        _c(["(request-target)", "host", "date"]),
        401,
        ("Digest header to be signed",),
        True,
    ),
    Forged(
        "too-few-headers-no-date",
        _c(["(request-target)", "host", "digest"]),
        401,
        ("Date header or (created)",),
        True,
    ),
    Forged("too-few-headers-date-only", _c(["date"]), 401, ("Digest header",), True),
    Forged(
        "signed-for-another-path",
        _c(FULL, target="/users/owner/inbox"),
        401,
        ("Verification failed for",),
    ),
    Forged(
        "signed-for-another-server",
        _c(FULL, host="other.example"),
        401,
        ("other.example", "not to this server"),
        True,
    ),
    # -- time (R27)
    Forged(
        "date-stale",
        _c(FULL, algorithm="rsa-sha256", date=-2 * H),
        401,
        ("outside acceptable time window",),
        True,
    ),
    Forged(
        "date-far-future",
        _c(FULL, algorithm="rsa-sha256", date=2 * H),
        401,
        ("outside acceptable time window",),
        True,
    ),
    Forged("date-missing", _without("Date"), 401, ("Signed header date is missing",)),
    Forged(
        "date-unreadable",
        _sig_date("yesterday at noon"),
        401,
        ("Invalid Date header",),
        True,
    ),
    Forged(
        "created-stale",
        _c(CREATED, created=-2 * H),
        401,
        ("outside acceptable time window",),
        True,
    ),
    Forged(
        "created-far-future",
        _c(CREATED, created=2 * H),
        401,
        ("outside acceptable time window",),
        True,
    ),
    Forged(
        "expires-passed",
        _c([*CREATED, "(expires)"], created=-64 * MIN, expires=-63 * MIN),
        401,
        ("outside acceptable time window",),
        True,
    ),
    Forged(
        "expires-far-future-cannot-stretch-created",
        _c([*CREATED, "(expires)"], created=-14 * H, expires=24 * H),
        401,
        ("outside acceptable time window",),
        True,
    ),
    Forged(
        "unsigned-created-cannot-rescue-a-stale-date",
        _c(FULL, date=-2 * H, created=NOW),
        401,
        ("outside acceptable time window",),
        True,
    ),
    Forged(
        "created-with-rsa-sha256",
        _c(CREATED, algorithm="rsa-sha256", created=NOW),
        401,
        ("(created) for rsa-sha256",),
        True,
    ),
    # -- the Signature header itself (R20–R22)
    Forged(
        "unknown-algorithm",
        _c(FULL, algorithm="rsa-sha1"),
        401,
        ("Unsupported signature algorithm",),
        True,
    ),
    Forged(
        "hmac-algorithm",
        _c(FULL, algorithm="hmac-sha256"),
        401,
        ("Unsupported signature algorithm",),
        True,
    ),
    Forged(
        "duplicate-headers-parameter",
        _sig_edit(lambda s: s + ',headers="date"'),
        401,
        ("duplicate parameter headers",),
        True,
    ),
    Forged(
        "duplicate-keyid-parameter",
        _sig_edit(lambda s: s + f',keyId="{key_id(BOB)}"'),
        401,
        ("duplicate parameter keyId",),
        True,
    ),
    Forged(
        "duplicate-signature-parameter",
        _sig_edit(lambda s: s + ',signature="AAAA"'),
        401,
        ("duplicate parameter signature",),
        True,
    ),
    Forged(
        "keyid-missing",
        _sig_edit(lambda s: s.split(",", 1)[1]),
        401,
        ("keyId and signature are required",),
        True,
    ),
    Forged(
        "signature-header-garbage",
        _sig_edit(lambda s: "garbage;;;"),
        401,
        ("Error parsing signature parameters",),
        True,
    ),
    Forged(
        "signature-not-base64",
        _sig_edit(lambda s: s.rsplit('signature="', 1)[0] + 'signature="%%%"'),
        401,
        ("not valid base64",),
    ),
    # -- RFC 9421 (R41)
    Forged(
        "rfc9421-wrong-target-uri",
        _r(signed_host="other.example"),
        401,
        ("Verification failed for",),
    ),
    Forged(
        "rfc9421-replayed-to-us-from-another-server",
        _r(host="other.example"),
        401,
        ("other.example", "not to this server"),
        True,
    ),
    Forged(
        "rfc9421-target-uri-not-covered",
        _r(components='"@method" "@path" "@authority" "content-digest"'),
        401,
        ("@method and @target-uri",),
        True,
    ),
    Forged(
        "rfc9421-content-digest-not-covered",
        _r(components='"@method" "@target-uri"'),
        401,
        ("Content-Digest header to be signed",),
        True,
    ),
    Forged(
        "rfc9421-tampered-body",
        lambda: (encode(follow(suffix="other")), rfc9421(BODY)),
        401,
        ("Invalid Digest value", "Computed SHA-256 digest"),
        True,
    ),
    Forged(
        "rfc9421-created-stale",
        _r(created=-2 * H),
        401,
        ("outside acceptable time window",),
        True,
    ),
    Forged(
        "rfc9421-created-far-future",
        _r(created=2 * H),
        401,
        ("outside acceptable time window",),
        True,
    ),
    Forged(
        "rfc9421-expires-passed",
        _r(created=-64 * MIN, expires=-63 * MIN),
        401,
        ("outside acceptable time window",),
        True,
    ),
    Forged(
        "rfc9421-unknown-alg",
        _r(params=';alg="rsa-sha1"'),
        401,
        ("Unsupported signature algorithm",),
    ),
    Forged(
        "rfc9421-duplicate-keyid-last-wins-and-is-checked",
        _r(key_name="mallory", params=f';keyid="{key_id(MALLORY)}"'),
        401,
        (f"signed by {MALLORY}", f"actor is {ALICE}"),
    ),
    Forged(
        "rfc9421-malformed-signature-input",
        lambda: (
            BODY,
            {**rfc9421(BODY), "Signature-Input": 'sig1=("@method" "@target-uri"'},
        ),
        400,
        ("not a valid RFC8941 dictionary",),
        True,
    ),
]
