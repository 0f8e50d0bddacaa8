"""POST /inbox, the one inbox (personal and shared): hostile until size, shape and signature pass.

Order of checks (INTEROP R31): size (413, before reading it all) → content type → signed at all
(401) → JSON shape (400) → addressed to our Host (401) → signature syntax, Date window and
Digest (400/401) → keyId on a blocked domain (403) → the signer's key, fetched or cached (503
when it cannot be fetched) → verify, with one refetch on failure for key rotation (R29) → signer
blocked (403) → signer == activity actor (R30) → the actor acts only on its own objects (R30,
R54; 400) → store (idempotent by id) → 202. Errors are `{"error": "…"}` so the peer's operator
can see what was wrong; nothing refused is stored.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from fedistream.core import httpsig, inbound
from fedistream.core.as2 import has_as_context, id_of
from fedistream.core.negotiation import is_acceptable_inbox_content_type
from fedistream.core.remote_actor import RemoteActor
from fedistream.errors import RemoteFetchFailed
from fedistream.services import inbox as inbox_service
from fedistream.services import moderation
from fedistream.store import actors as actor_store
from fedistream.web.context import WebContext, context

log = logging.getLogger("fedistream.inbox")

MAX_BODY_BYTES = 1024 * 1024


class InboxRefusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_body(request: Request, declared: str | None) -> bytes:
    if declared is not None:
        if not declared.isdigit():
            raise InboxRefusal(400, "Content-Length is not a number.")
        if int(declared) > MAX_BODY_BYTES:
            raise InboxRefusal(413, f"Payload over {MAX_BODY_BYTES} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InboxRefusal(413, f"Payload over {MAX_BODY_BYTES} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_activity(body: bytes) -> tuple[dict[str, Any], str]:
    """The activity, and the JSON text to store for it (checked to be valid UTF-8)."""
    try:
        activity = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InboxRefusal(400, f"Body is not JSON: {exc}") from exc
    except RecursionError as exc:  # `[[[[…` a MiB deep: the parser gives up, we must not 500
        raise InboxRefusal(400, "Body is not JSON we can read: nested too deeply.") from exc
    if not isinstance(activity, dict):
        raise InboxRefusal(400, "Body must be a JSON object (an activity).")
    text = _stored_text(body, activity)
    if not has_as_context(activity):
        raise InboxRefusal(
            400, "Unsupported JSON-LD context: the ActivityStreams context is missing."
        )
    if not isinstance(activity.get("type"), str):
        raise InboxRefusal(400, "The activity needs a string 'type'.")
    activity_id = activity.get("id")
    # GoToSocial documents its Delete without an id (core.inbound reads it); we key it by content.
    if not (isinstance(activity_id, str) and activity_id) and activity["type"] != "Delete":
        raise InboxRefusal(400, "The activity needs a string 'id'.")
    if not id_of(activity.get("actor")):
        raise InboxRefusal(400, "The activity needs an 'actor'.")
    return activity, text


# A `\uD800`–`\uDFFF` escape: it may parse to a lone surrogate (when not part of a pair).
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _stored_text(body: bytes, activity: dict[str, Any]) -> str:
    """The JSON text to store: the body as sent when it is plain UTF-8 that escapes no
    surrogate (nearly always), else the activity serialized again, which must encode as UTF-8:
    a lone surrogate (escaped, or raw bytes json.loads let through) is refused, as no UTF-8
    text, nor SQLite, holds it. Re-serializing every body cost ~7 µs a POST."""
    if not _ESCAPED_SURROGATE.search(body):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if not text.startswith("\ufeff"):  # json.loads skips a BOM; stored, it would not
                return text
    try:
        text = json.dumps(activity, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InboxRefusal(
            400, "Body is not valid Unicode: it holds an unpaired UTF-16 surrogate."
        ) from exc
    except (RecursionError, ValueError) as exc:
        raise InboxRefusal(400, "Body is not JSON we can read: nested too deeply.") from exc
    return text


def _check_addressed_to_us(host: str, base_url: str) -> None:
    """The signature covers the Host (cavage `host`, RFC 9421 `@target-uri`) as the client sent
    it, so a request signed for another server and replayed here with that server's Host would
    verify: it must name us (R24)."""
    parts = urlsplit(base_url)
    default = ":443" if parts.scheme == "https" else ":80"
    ours = parts.netloc.lower().removesuffix(default)
    if host.strip().lower().removesuffix(default) != ours:
        raise InboxRefusal(
            401,
            f"The request is addressed to {host or 'no host'}, not to this server ({ours}): "
            "a signature made for another server is not accepted here.",
        )


def _check_meaning(activity: dict[str, Any], our_actor: str) -> None:
    """R30/R54 beyond the signer: an actor may only create, change or delete its own objects.
    Checked here (pure, no fetch) so a refused activity is never stored, only answered 400."""
    try:
        inbound.classify(activity, our_actor=our_actor)
    except inbound.BadActivity as exc:
        raise InboxRefusal(400, f"Activity refused: {exc}.") from exc
    except Exception as exc:
        # A shape the classifier cannot read is our bug, but answering 500 would make the peer
        # retry it for days: refuse it, and log it so the operator can report it.
        log.exception("inbox: could not classify %s", activity.get("id"))
        raise InboxRefusal(400, "Activity refused: its shape could not be read.") from exc


def _is_unknown_actor_self_delete(activity: dict[str, Any], actor_id: str) -> bool:
    """R32: an actor we never saw deleting itself. Its key is gone; fetching it would fail."""
    return activity.get("type") == "Delete" and id_of(activity.get("object")) == actor_id


async def _signer(ctx: WebContext, key_id: str, *, refresh: bool) -> RemoteActor:
    if ctx.directory is None:
        raise InboxRefusal(503, "Federation is not running on this server.")
    try:
        return await ctx.directory.actor_for_key(key_id, refresh=refresh)
    except RemoteFetchFailed as exc:
        raise InboxRefusal(503, f"Could not fetch the signing key {key_id}: {exc}") from exc
    except ValueError as exc:
        raise InboxRefusal(401, f"The signing key {key_id} is unusable: {exc}") from exc


MAX_CACHED_KEYS = 1024


def _public_key(ctx: WebContext, pem: str) -> httpsig.PublicKey:
    """Parsed once per PEM (key objects are immutable): reparsing on every POST costs ~10 % of
    inbox throughput (DESIGN.md). A PEM that does not parse raises, and is not cached. The cache
    lives on the app context (least recently used keys are dropped)."""
    cache = ctx.public_keys
    key = cache.get(pem)
    if key is None:
        key = httpsig.load_public_key(pem)
        cache[pem] = key
        if len(cache) > MAX_CACHED_KEYS:
            cache.popitem(last=False)
    else:
        cache.move_to_end(pem)
    return key


def _verify(
    ctx: WebContext, request: httpsig.HttpRequest, signer: RemoteActor, now: datetime
) -> None:
    if not signer.public_key_pem:
        raise httpsig.SignatureMismatch(f"Actor {signer.id} publishes no public key")
    httpsig.verify_request(request, _public_key(ctx, signer.public_key_pem), now)


async def _verified_signer(
    ctx: WebContext, request: httpsig.HttpRequest, key_id: str, now: datetime
) -> RemoteActor:
    signer = await _signer(ctx, key_id, refresh=False)
    try:
        _verify(ctx, request, signer, now)
    except httpsig.SignatureMismatch:
        # The key may have rotated: fetch it once more (the directory rate-limits per host).
        signer = await _signer(ctx, key_id, refresh=True)
        try:
            _verify(ctx, request, signer, now)
        except httpsig.SignatureError as exc:
            raise InboxRefusal(401, f"Verification failed for {key_id}: {exc.reason}") from exc
    except httpsig.SignatureError as exc:
        raise InboxRefusal(exc.status or 401, exc.reason) from exc
    return signer


async def inbox(request: Request) -> Response:
    ctx = context(request)
    now = datetime.now(UTC)
    # Decoded once: Starlette's Headers decodes and scans the raw list on every look-up.
    header_pairs = request.headers.items()
    fields = dict(reversed(header_pairs))  # a repeated field: its first value, as .get() gives
    try:
        body = await _read_body(request, fields.get("content-length"))
        if not is_acceptable_inbox_content_type(fields.get("content-type")):
            raise InboxRefusal(
                415, "Content-Type must be application/activity+json or application/ld+json."
            )
        if "signature" not in fields and "signature-input" not in fields:
            raise InboxRefusal(401, "Request not signed")
        activity, json_text = _parse_activity(body)
        actor_id = id_of(activity["actor"])
        assert actor_id is not None
        _check_addressed_to_us(fields.get("host", ""), ctx.settings.base_url)
        # The signature covers the path exactly as sent (R24), so use the raw bytes.
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string", b"")
        target = (raw_path + (b"?" + query if query else b"")).decode("latin-1")
        signed = httpsig.HttpRequest(
            method=request.method,
            target=target,
            headers=header_pairs,
            body=body,
            scheme=ctx.settings.base_url.split(":", 1)[0],
        )
        try:
            key_id = httpsig.check_request(signed, now)
        except httpsig.SignatureError as exc:
            raise InboxRefusal(exc.status or 401, exc.reason) from exc
        # A blocked domain never makes us fetch a key (R31: 403 for a blocked signer).
        if reason := await moderation.domain_blocked_reason(ctx.db, key_id):
            raise InboxRefusal(403, reason)
        if _is_unknown_actor_self_delete(activity, actor_id) and not await actor_store.get(
            ctx.db, actor_id
        ):
            return Response(status_code=202)
        signer = await _verified_signer(ctx, signed, key_id, now)
        if reason := await moderation.blocked_reason(ctx.db, signer.id):
            raise InboxRefusal(403, reason)
        if signer.id != actor_id:
            raise InboxRefusal(
                401, f"The request is signed by {signer.id} but the activity's actor is {actor_id}."
            )
        _check_meaning(activity, ctx.urls.actor)
    except InboxRefusal as refusal:
        log.info("inbox refused (%s): %s", refusal.status, refusal.message)
        return _refuse(refusal.status, refusal.message)
    if await inbox_service.receive(ctx.db, activity, actor_id, now, json_text=json_text):
        ctx.wake_inbox()
    return Response(status_code=202)


routes = [Route("/inbox", inbox, methods=["POST"])]


class InboxFirst:
    """Middleware, the innermost of ours: `POST /inbox` goes straight to its endpoint.

    The one route peers hit in bursts. Starlette's router would match it first anyway (it is
    the first route); this skips the exception layer and the routing code between the access
    log and the endpoint, ~11 % of the CPU an inbox POST costs (0.259 → 0.230 ms in process,
    bench/README.md). The endpoint answers every refusal itself; anything it raises still
    reaches Starlette's outermost error layer (a logged 500). Other methods on /inbox go
    through the router (405).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._inbox = request_response(inbox)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/inbox" and scope["method"] == "POST":
            await self._inbox(scope, receive, send)
        else:
            await self.app(scope, receive, send)
