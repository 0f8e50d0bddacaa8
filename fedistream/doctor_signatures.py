"""`fedistream doctor`, signatures: a signed fetch of the actor, our key against the published
one, and a signed POST to our own inbox that shows whether the proxy keeps signed requests intact.

Beside `doctor.py`. With the server's key (doctor run on the server) every check signs as the
owner; without it the signed fetch uses a throwaway key and the others are skipped.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from fedistream.core.httpsig import (
    HttpRequest,
    SignatureError,
    sign_request,
    verify_request,
)
from fedistream.doctor_http import Finding, LocalKey, Status, fetch, same_key, signing_key
from fedistream.federation.http import AS2_ACCEPT

Clock = Callable[[], datetime]
NO_ACTOR = "skipped: the actor document could not be read (see the actor check)"
NO_KEY = "skipped: the server's private key is not readable here"
KEY_FIX = "run doctor on the server as the fedistream user (FEDISTREAM_DATA_DIR set)"


async def check_signed_fetch(
    client: httpx.AsyncClient, actor_url: str, key_id: str, local: LocalKey | None, now: Clock
) -> Finding:
    key, key_id, own = signing_key(local, key_id)
    signed = sign_request("GET", actor_url, {"Accept": AS2_ACCEPT}, b"", key, key_id, now())
    reply = await fetch(client, "signed fetch", actor_url, accept=AS2_ACCEPT, headers=signed)
    whose = "our own key" if own else "a throwaway key"
    document = reply.json_object() if reply.status == 200 else None
    if document is not None:  # whether it is the right actor is the actor check's finding
        return Finding(
            Status.PASS, "signed fetch", f"GET {actor_url} signed with {whose} → the actor"
        )
    if own:
        return Finding(
            Status.FAIL,
            "signed fetch",
            f"GET {actor_url} signed with our own key answered HTTP {reply.status}",
            "peers fetch the actor with signed requests: the proxy must pass the Signature, "
            "Date and Host headers through unchanged",
        )
    return Finding(
        Status.WARN,
        "signed fetch",
        f"GET {actor_url} signed with a throwaway key answered HTTP {reply.status}",
        KEY_FIX + " to sign with the real key",
    )


async def check_own_signature(
    actor: dict[str, Any] | None, actor_url: str, key_id: str, local: LocalKey | None, now: Clock
) -> Finding:
    """Sign a GET with the database's key and verify it with the key the actor publishes: the
    same verification every peer will do. No network: both halves are already here."""
    if local is None:
        return Finding(Status.WARN, "own signature", NO_KEY, KEY_FIX)
    if actor is None:
        return Finding(Status.WARN, "own signature", NO_ACTOR)
    published = actor["publicKey"]
    if published.get("owner") != actor["id"] or not key_id.startswith(actor_url):
        return Finding(
            Status.FAIL,
            "own signature",
            f"the key {key_id!r} is owned by {published.get('owner')!r}, not {actor['id']!r}",
            "the key must belong to the actor; something else serves this actor document",
        )
    moment = now()
    headers = sign_request("GET", actor_url, {}, b"", local.private_pem, key_id, moment)
    request = HttpRequest("GET", urlsplit(actor_url).path or "/", list(headers.items()))
    try:
        verify_request(request, str(published["publicKeyPem"]), moment)
    except SignatureError as exc:
        return Finding(
            Status.FAIL,
            "own signature",
            f"a request signed with the key in {local.source} does not verify with the key "
            f"published at {key_id} ({exc.reason})",
            "this database belongs to another instance, or a cache serves an old actor "
            "document: point FEDISTREAM_DATA_DIR at the live data, or purge the cache",
        )
    return Finding(
        Status.PASS,
        "own signature",
        f"a request signed with the database key verifies with the key at {key_id}",
    )


def _probe(actor_id: str) -> bytes:
    # A Create of a note attributed to someone else: the inbox verifies the signature first
    # and refuses this afterwards (R30), so nothing is ever stored.
    return json.dumps(
        {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{actor_id}#doctor/{secrets.token_hex(8)}",
            "type": "Create",
            "actor": actor_id,
            "object": {
                "id": f"{actor_id}#doctor/note",
                "type": "Note",
                "attributedTo": "https://doctor.invalid/someone-else",
                "content": "fedistream doctor: a probe that must be refused",
            },
        }
    ).encode()


async def check_inbound_signature(
    client: httpx.AsyncClient,
    actor: dict[str, Any] | None,
    key_id: str,
    local: LocalKey | None,
    now: Clock,
) -> Finding:
    """What peers' deliveries meet: a signed POST through the proxy to our inbox."""
    if local is None or actor is None:
        return Finding(Status.WARN, "inbound signature", NO_KEY if local is None else NO_ACTOR)
    if not same_key(local.public_pem, str(actor["publicKey"].get("publicKeyPem", ""))):
        # The server would rightly refuse us, and that would say nothing about the proxy.
        return Finding(
            Status.WARN,
            "inbound signature",
            "skipped: the published key is not the database's (see own signature)",
        )
    inbox = str(actor["inbox"])
    body = _probe(str(actor["id"]))
    headers = sign_request("POST", inbox, {}, body, local.private_pem, key_id, now())
    reply = await fetch(
        client, "inbound signature", inbox, method="POST", headers=headers, body=body
    )
    said = reply.text(300)
    if (reply.status == 400 and "refused" in said.lower()) or reply.status == 202:
        return Finding(
            Status.PASS,
            "inbound signature",
            f"a signed POST to {inbox} verified at the server (the probe itself is refused "
            "by design; nothing stored)",
        )
    if reply.status == 401 and ("time window" in said or "Date header" in said):
        return Finding(
            Status.FAIL,
            "inbound signature",
            f"{inbox} refused our signature's date: {said}",
            "set the clocks right (timedatectl set-ntp true)",
        )
    if reply.status == 401:
        return Finding(
            Status.FAIL,
            "inbound signature",
            f"{inbox} could not verify a correctly signed POST: {said}",
            "your reverse proxy changes what was signed: it must pass the Host header "
            "unchanged (nginx: proxy_set_header Host $host;) and not rewrite the path or body",
        )
    if reply.status == 503:
        return Finding(
            Status.WARN,
            "inbound signature",
            f"the server could not fetch its own key to check the probe: {said}",
            "the server must reach its own public URL (DNS, hairpin NAT, firewall)",
        )
    return Finding(
        Status.FAIL,
        "inbound signature",
        f"POST {inbox} answered HTTP {reply.status}: {said}",
        "check that fedistream is running and that the reverse proxy forwards /inbox to it",
    )
