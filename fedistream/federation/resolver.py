"""Remote actors, their keys and their handles: fetched (signed), checked and cached.

Layer: federation. `ActorResolver` implements `services.ports.ActorDirectory` over the
`actors` table (store/actors.py) and the guarded client (federation/http.py). The checks are
Mastodon's, so whatever Mastodon can resolve we can too, and no one can pass a key off as
another actor's: R9 (AS context), R28 (key id → actor), R29 (refetch limits), R93 (ids).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urldefrag, urlsplit

import httpx

from fedistream.core.as2 import as_list, has_as_context, id_of
from fedistream.core.netsafety import parse_ip_literal
from fedistream.core.remote_actor import ACTOR_TYPES, RemoteActor, domain_of, parse_actor
from fedistream.errors import BadInput, FedistreamError
from fedistream.federation.http import (
    JRD_ACCEPT,
    BadRemoteStatus,
    RemoteFetchFailed,
    fetch_document,
    fetch_json,
)
from fedistream.federation.signing import Signer
from fedistream.store import actors as actor_store
from fedistream.store.db import Database

log = logging.getLogger("fedistream.resolver")

REFETCH_INTERVAL = timedelta(days=1)  # a cached actor older than this is fetched again
FORCED_REFETCH_COOLDOWN = timedelta(minutes=5)  # R29: one forced refetch per host per 5 min
# First-sight key fetches per host: a burst, then one more per interval. Made-up key ids
# (`/users/u123#main-key`) would otherwise have us GET the host they name once per request.
NEW_KEY_BURST = 30
NEW_KEY_INTERVAL = timedelta(seconds=2)
# A signer's key, once read from the `actors` table, is trusted from memory this long: every
# inbox POST asks for it, and a table read is a thread hop. Writes this resolver makes replace
# the entry at once; others (an Update or Delete of the actor applied by the inbox processor, a
# CLI process) show after at most this long, and a key that fails to verify is always re-read
# (`refresh`), so a rotated key is never held against its owner.
KEY_MEMORY = timedelta(seconds=30)
KEY_MEMORY_SIZE = 1024
_SELF_LINK_TYPES = (
    "application/activity+json",
    'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
)


class ActorUnusable(FedistreamError, ValueError):
    """A document was fetched but is no actor we may use: no AS context, id mismatch, no
    inbox, or a key the actor does not own. (A ValueError too: the inbox answers 401.)"""

    status = 502


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ActorResolver:
    """Finds actors by id, key id or handle; one per app, sharing the app's client and DB.

    `known_actor` answers from memory: call `await load_known()` once at start-up.
    """

    def __init__(
        self,
        db: Database,
        client: httpx.AsyncClient,
        signer: Signer | None,
        *,
        now: Callable[[], datetime] = _utc_now,
        refetch_interval: timedelta = REFETCH_INTERVAL,
        refetch_cooldown: timedelta = FORCED_REFETCH_COOLDOWN,
        allow_private_networks: bool = False,
        new_key_burst: int = NEW_KEY_BURST,
        new_key_interval: timedelta = NEW_KEY_INTERVAL,
    ) -> None:
        self._db = db
        self._client = client
        self._signer = signer
        self._now = now
        self._refetch_interval = refetch_interval
        self._cooldown = refetch_cooldown
        self._allow_private = allow_private_networks
        self._known: set[str] | None = None
        self._last_forced: dict[str, datetime] = {}  # host → time of its last forced refetch
        self._new_key_burst = new_key_burst
        self._new_key_interval = new_key_interval
        self._new_key_tokens: dict[str, tuple[float, datetime]] = {}  # host → (tokens, as of)
        # key id → (the cached actor, when it was read from the table); see KEY_MEMORY.
        self._keys: OrderedDict[str, tuple[actor_store.CachedActor, datetime]] = OrderedDict()

    # --- ActorDirectory ---

    async def get_actor(self, actor_id: str, *, refresh: bool = False) -> RemoteActor:
        """The actor, from the cache while fresh; fetched when stale, unknown or `refresh`."""
        cached = await actor_store.get(self._db, actor_id)
        if cached is not None and not self._should_fetch(cached, actor_id, refresh):
            return cached.actor
        try:
            return await self._fetch_actor(actor_id)
        except RemoteFetchFailed as exc:
            return self._fall_back(cached, exc)

    async def actor_for_key(self, key_id: str, *, refresh: bool = False) -> RemoteActor:
        """The actor owning `key_id` (R28), its `key_id`/`public_key_pem` being that key."""
        if key_id.startswith("acct:"):
            # Legacy keyId form Mastodon still accepts: WebFinger, then the account's key.
            try:
                return await self.lookup_handle(key_id.removeprefix("acct:"))
            except BadInput as exc:
                raise ActorUnusable(f"Key id {key_id} is not a usable handle") from exc
        cached = None if refresh else self._remembered_key(key_id)
        if cached is None:
            cached = await actor_store.get_by_key_id(self._db, key_id)
            if cached is not None:
                self._remember_key(key_id, cached)
        if cached is not None and not self._should_fetch(cached, key_id, refresh):
            return cached.actor
        if cached is None:
            await self._check_new_key(key_id)
        self._keys.pop(key_id, None)
        try:
            return await self._fetch_key_owner(key_id)
        except RemoteFetchFailed as exc:
            return self._fall_back(cached, exc)

    async def lookup_handle(self, handle: str) -> RemoteActor:
        """`@user@domain` (or `user@domain`, `acct:user@domain`) via WebFinger (R4)."""
        user, domain = split_handle(handle)
        url = httpx.URL(
            f"{self._webfinger_scheme(domain)}://{domain}/.well-known/webfinger",
            params={"resource": f"acct:{user}@{domain}"},
        )
        # R4: Mastodon's WebFinger requests are unsigned, and so are ours.
        jrd = await fetch_json(
            self._client, str(url), signer=None, accept=JRD_ACCEPT, expect_as2=False
        )
        subject = jrd.get("subject")
        if not isinstance(subject, str) or not subject:
            raise ActorUnusable(f"WebFinger for {user}@{domain} answered without a subject")
        href = self_link(jrd)
        if href is None:
            raise ActorUnusable(f"WebFinger for {user}@{domain}: Missing self link")
        return await self.get_actor(href)

    def _remembered_key(self, key_id: str) -> actor_store.CachedActor | None:
        entry = self._keys.get(key_id)
        if entry is None:
            return None
        cached, read_at = entry
        if self._now() - read_at >= KEY_MEMORY:
            del self._keys[key_id]
            return None
        self._keys.move_to_end(key_id)
        return cached

    def _remember_key(self, key_id: str, cached: actor_store.CachedActor) -> None:
        self._keys[key_id] = (cached, self._now())
        self._keys.move_to_end(key_id)
        if len(self._keys) > KEY_MEMORY_SIZE:
            self._keys.popitem(last=False)

    def known_actor(self, actor_id: str) -> bool:
        """Whether we hold this actor in the cache (R32 decides from this without fetching)."""
        if self._known is None:
            raise RuntimeError("ActorResolver.known_actor needs `await load_known()` first")
        return actor_id in self._known

    async def load_known(self) -> None:
        self._known = set(await actor_store.all_ids(self._db))

    # --- fetching ---

    async def _fetch_document(self, url: str) -> dict[str, Any]:
        fetched = await fetch_document(self._client, url, signer=self._signer, now=self._now)
        document = fetched.document
        if not has_as_context(document):
            # R9: Mastodon drops documents without the ActivityStreams context; so do we.
            raise ActorUnusable(f"{url} lacks the ActivityStreams @context")
        claimed = document.get("id")
        if isinstance(claimed, str) and _origin(claimed) != _origin(fetched.url):
            # A redirect (maybe an open one on the peer's site) brought us to a server that
            # claims to speak for another: only an id's own origin may (Mastodon checks so too).
            raise ActorUnusable(f"{fetched.url} claims the id {claimed} of another origin")
        return document

    async def _fetch_actor(self, actor_id: str, *, key_id: str | None = None) -> RemoteActor:
        document = await self._fetch_document(actor_id)
        document_id = document.get("id")
        if document_id != actor_id:
            # R93: a document is only authoritative at its own id. If it names another, fetch
            # that once; the answer there must then be canonical.
            if not isinstance(document_id, str) or not document_id:
                raise ActorUnusable(f"{actor_id} answered a document without an id")
            document = await self._fetch_document(document_id)
            if document.get("id") != document_id:
                raise ActorUnusable(f"{document_id} answered a document with another id")
        return await self._remember(document, key_id=key_id)

    async def _fetch_key_owner(self, key_id: str) -> RemoteActor:
        document = await self._fetch_document(key_id)
        document_id = id_of(document.get("id"))
        if any(t in ACTOR_TYPES for t in as_list(document.get("type"))):
            if document_id == urldefrag(key_id).url and document.get("inbox"):
                # Mastodon's `…#main-key`: the key is a fragment of the actor document we
                # just fetched from the actor's own id.
                actor = await self._remember(document, key_id=key_id)
            elif document_id:
                # GoToSocial's `/main-key` answers an actor stub (no inbox), and any document
                # served at another URL only speaks for itself at its own id: fetch it there.
                actor = await self._fetch_actor(document_id, key_id=key_id)
            else:
                raise ActorUnusable(f"The document at {key_id} has no id")
        else:
            # A bare key object: its owner must list it among its own keys (R28).
            owner = id_of(document.get("owner")) or id_of(document.get("controller"))
            if document_id != key_id or not owner:
                raise ActorUnusable(f"{key_id} is neither an actor nor a key with an owner")
            actor = await self._fetch_actor(owner, key_id=key_id)
        if actor.key_id != key_id:
            raise ActorUnusable(f"{actor.id} does not list {key_id} among its keys")
        return actor

    async def _remember(self, document: dict[str, Any], *, key_id: str | None) -> RemoteActor:
        try:
            actor = parse_actor(document, key_id=key_id)
        except ValueError as exc:
            raise ActorUnusable(f"{document.get('id')} is not a usable actor: {exc}") from None
        await actor_store.upsert(self._db, actor, document, self._now())
        if actor.key_id:
            self._keys.pop(actor.key_id, None)
        if self._known is not None:
            self._known.add(actor.id)
        return actor

    # --- cache policy ---

    def _should_fetch(self, cached: actor_store.CachedActor, url: str, refresh: bool) -> bool:
        if self._now() - cached.fetched_at >= self._refetch_interval:
            return True
        return refresh and self._may_force(url)

    def _may_force(self, url: str) -> bool:
        """R29: a forced refetch (key rotation) at most once per host per cool-down."""
        now = self._now()
        host = domain_of(url)
        last = self._last_forced.get(host)
        if last is not None and now - last < self._cooldown:
            log.info("not refetching %s: %s was refetched at %s", url, host, last)
            return False
        if len(self._last_forced) > 1000:  # forget hosts whose cool-down is over
            self._last_forced = {
                h: t for h, t in self._last_forced.items() if now - t < self._cooldown
            }
        self._last_forced[host] = now
        return True

    async def _check_new_key(self, key_id: str) -> None:
        """R29 for key ids we do not know: raise instead of fetching when the fetch is not due.

        A new key id on an actor we hold fresh (`…#key-7`) is a refetch of that actor, so the
        forced-refetch cool-down applies; any other is a first sight, drawn from the host's
        budget (503 when it is spent: peers retry later, as for any key we cannot fetch).
        """
        owner = await actor_store.get(self._db, urldefrag(key_id).url)
        if owner is not None and self._now() - owner.fetched_at < self._refetch_interval:
            if not self._may_force(key_id):
                raise ActorUnusable(f"{owner.actor.id} does not list {key_id} among its keys")
            return
        if not self._may_fetch_new_key(key_id):
            raise RemoteFetchFailed(
                f"too many unknown keys from {domain_of(key_id)} just now; try again later"
            )

    def _may_fetch_new_key(self, url: str) -> bool:
        """A token bucket per host: `new_key_burst` tokens, one back per `new_key_interval`."""
        now = self._now()
        host = domain_of(url)
        tokens, as_of = self._new_key_tokens.get(host, (float(self._new_key_burst), now))
        tokens = min(float(self._new_key_burst), tokens + (now - as_of) / self._new_key_interval)
        if len(self._new_key_tokens) > 1000:  # forget hosts whose bucket has filled up again
            full_after = self._new_key_interval * self._new_key_burst
            self._new_key_tokens = {
                h: (t, at) for h, (t, at) in self._new_key_tokens.items() if now - at < full_after
            }
        if tokens < 1:
            self._new_key_tokens[host] = (tokens, now)
            log.info("not fetching key %s: %s spent its budget for unknown keys", url, host)
            return False
        self._new_key_tokens[host] = (tokens - 1, now)
        return True

    @staticmethod
    def _fall_back(cached: actor_store.CachedActor | None, exc: RemoteFetchFailed) -> RemoteActor:
        # An unreachable peer keeps its cached actor (deliveries and verification go on);
        # an actor that is gone (410) or never seen cannot be answered from the cache.
        gone = isinstance(exc, BadRemoteStatus) and exc.remote_status == 410
        if cached is None or gone:
            raise exc
        log.warning("refetch of %s failed, using the cached copy: %s", cached.actor.id, exc)
        return cached.actor

    def _webfinger_scheme(self, domain: str) -> str:
        # Only https in production (R4). Loopback test peers (allow-private-networks, an IP
        # or localhost with a port) speak plain http.
        host, _, port = domain.rpartition(":")
        local = host.lower() == "localhost" or parse_ip_literal(host) is not None
        return "http" if self._allow_private and port.isdigit() and local else "https"


def _origin(url: str) -> tuple[str, str]:
    return urlsplit(url).scheme.lower(), domain_of(url)


def split_handle(handle: str) -> tuple[str, str]:
    """('user', 'domain[:port]') from `@user@domain`, `user@domain` or `acct:user@domain`."""
    text = handle.strip().removeprefix("acct:").removeprefix("@")
    user, at, domain = text.partition("@")
    if not at or not user or _NOT_IN_USER & set(user) or not _DOMAIN.fullmatch(domain):
        raise BadInput(f"{handle!r} is not a handle like @user@domain")
    try:
        httpx.URL(f"https://{domain}/")  # what the WebFinger URL will be built from
    except httpx.InvalidURL:
        raise BadInput(f"{handle!r} does not name a valid domain") from None
    return user, domain.lower()


_NOT_IN_USER = frozenset("/?#@\\:[] \t\r\n")
# A host name (IDN allowed) or a bracketed IPv6 literal, and maybe a port.
_DOMAIN = re.compile(r"(?:[^\s/?#@\\\[\]:%]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def self_link(jrd: dict[str, Any]) -> str | None:
    """R4: the `self` link whose type is AS2 (activity+json, or ld+json with the AS profile)."""
    links = jrd.get("links")
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict) or link.get("rel") != "self":
            continue
        href = link.get("href")
        if link.get("type") in _SELF_LINK_TYPES and isinstance(href, str) and href:
            return href
    return None
