"""Blocking actors and whole domains: the block, its effects and the checks the edges ask.
Layer: services.

Blocking an actor does what Mastodon's BlockService does, in one transaction: Undo our Follow of
them, Reject their Follow of us, send them a `Block` (R70: their server then drops its side and
hides us from them), delete their notes, interactions and notifications, and set aside their
queued activities. A domain block does the same for every account there, without a `Block`
(Mastodon's domain blocks send none either). The inbox then refuses them with 403 (R31).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiosqlite

from fedistream.core import activities
from fedistream.core.remote_actor import domain_of
from fedistream.core.timefmt import to_iso
from fedistream.core.urls import Urls
from fedistream.errors import BadInput, FedistreamError, NotFound
from fedistream.services import outbox
from fedistream.services.follows import UnknownActor, actor_inbox, stored_follow
from fedistream.services.ports import ActorDirectory
from fedistream.store import blocks as block_store
from fedistream.store import meta
from fedistream.store.db import Database

ACTOR, DOMAIN = block_store.ACTOR, block_store.DOMAIN
# A host name (punycode for IDNs), optionally with a port: what `domain_of` produces.
_DOMAIN = re.compile(r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*(?::[0-9]{1,5})?$")


@dataclass(frozen=True, slots=True)
class Block:
    kind: str  # actor | domain
    target: str  # the actor id, or the domain (host[:port], lower-case)


@dataclass(frozen=True, slots=True)
class BlockOutcome:
    block: Block
    added: bool  # False: it was already blocked, nothing changed
    removed_followers: int = 0
    removed_following: int = 0


# --- matching (pure) ----------------------------------------------------------------------------


def domain_keys(host: str) -> list[str]:
    """The `blocks.target` values that cover an actor on `host` ("host[:port]"): the host with
    its port, then the host and each parent domain without one. A domain blocked without a port
    covers every port; one blocked with a port (two test servers on one address) only that."""
    host = host.lower().rstrip(".")
    keys = [host]
    name = host
    if name.startswith("["):  # an IPv6 literal: "[::1]:8000" → "[::1]"
        name = name[: name.find("]") + 1] or name
    elif ":" in name:
        name = name.rsplit(":", 1)[0]
    if name != host:
        keys.append(name)
    if name.startswith("[") or _is_ip(name):
        return keys
    labels = name.split(".")
    keys.extend(".".join(labels[i:]) for i in range(1, len(labels)))
    return keys


def _is_ip(name: str) -> bool:
    if not name.replace(".", "").isdigit():
        return False  # a name (IPv6 literals are bracketed): no exception raised per inbox POST
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def covers(block_domain: str, host: str) -> bool:
    """Does a block on `block_domain` cover an actor on `host`?"""
    return block_domain in domain_keys(host)


def parse_target(text: str) -> tuple[str, str]:
    """What the owner typed → (kind, value): ("url", actor URL), ("handle", "@user@domain") or
    ("domain", "host[:port]"). BadInput when it is none of these."""
    cleaned = text.strip()
    if not cleaned or " " in cleaned:
        raise BadInput("Give an account as @user@domain or its URL, or a domain like example.com.")
    if cleaned.startswith(("https://", "http://")):
        try:
            parts = urlsplit(cleaned)
            has_host = bool(parts.hostname)
        except ValueError:
            has_host = False
        if not has_host:
            raise BadInput("That URL has no host.")
        return "url", cleaned
    if "@" in cleaned:
        user, _, domain = cleaned.lstrip("@").partition("@")
        if not user or not domain or "@" in domain:
            raise BadInput("Give the account as @user@domain.")
        return "handle", "@" + cleaned.lstrip("@")
    domain = cleaned.lower().rstrip(".")
    if not _DOMAIN.match(domain):
        raise BadInput(f"“{cleaned}” is not a domain name (like example.com).")
    return "domain", domain


# --- checks the edges make ----------------------------------------------------------------------


_MEMO_KEYS = "moderation.domain_keys"
_MEMO_KEYS_MAX = 4096


def _keys_of(db: Database, url: str) -> list[str]:
    """`domain_keys(domain_of(url))`, remembered per URL on the app's database object: asked
    twice on every inbox POST (keyId, actor) for the few URLs of the peers that write to us."""
    memo: dict[str, list[str]] = db.memo.setdefault(_MEMO_KEYS, {})
    keys = memo.get(url)
    if keys is None:
        if len(memo) >= _MEMO_KEYS_MAX:
            memo.clear()
        keys = memo[url] = domain_keys(domain_of(url))
    return keys


async def blocked_reason(db: Database, actor_id: str) -> str | None:
    """Why `actor_id` is refused, or None when it is not blocked."""
    match = await block_store.find(db, actor_id, _keys_of(db, actor_id))
    return _reason(match, actor_id)


async def domain_blocked_reason(db: Database, url: str) -> str | None:
    """Is the host of `url` (a signature's keyId) a blocked domain? Asked before fetching the
    key, so a blocked server never makes us fetch anything."""
    match = await block_store.find(db, "", _keys_of(db, url))
    return _reason(match, url)


async def is_blocked_in(conn: aiosqlite.Connection, actor_id: str) -> bool:
    """`blocked_reason` inside a transaction (e.g. when choosing whom to deliver to)."""
    return await block_store.find_in(conn, actor_id, domain_keys(domain_of(actor_id))) is not None


def _reason(match: block_store.Match | None, subject: str) -> str | None:
    if match is None:
        return None
    kind, target = match.kind, match.target
    if kind == DOMAIN:
        return f"The domain {target} is blocked by this server."
    return f"The actor {subject} is blocked by this server."


# --- block and unblock --------------------------------------------------------------------------


async def _resolve(text: str, directory: ActorDirectory | None, urls: Urls) -> Block:
    """The block to make. Network lookups happen here, before any transaction; the directory
    caches the actor, so its inbox is known for the Reject/Undo/Block."""
    kind, value = parse_target(text)
    if kind == "domain":
        if covers(value, domain_of(urls.actor)):
            raise BadInput("That is your own domain.")
        return Block(DOMAIN, value)
    if kind == "handle":
        if directory is None:
            raise BadInput("Federation is not running: block the account by its URL instead.")
        try:
            actor = await directory.lookup_handle(value)
        except (FedistreamError, LookupError, ValueError) as exc:
            raise NotFound(f"Could not find {value}: {exc}") from exc
        actor_id = actor.id
    else:
        actor_id = value
        if directory is not None:
            # Fetched to send them the Block; a block still stands if their server is down.
            with contextlib.suppress(FedistreamError, LookupError, ValueError):
                actor_id = (await directory.get_actor(value)).id
    if actor_id == urls.actor:
        raise BadInput("That is you.")
    return Block(ACTOR, actor_id)


async def block(
    db: Database,
    urls: Urls,
    text: str,
    *,
    directory: ActorDirectory | None = None,
    now: datetime | None = None,
) -> BlockOutcome:
    """Block what the owner typed: `@user@domain`, an actor URL, or a domain."""
    target = await _resolve(text, directory, urls)
    when = now or datetime.now(UTC)
    try:
        return await _block_in_transaction(db, urls, target, when)
    finally:
        block_store.forget_cached(db)


async def _block_in_transaction(
    db: Database, urls: Urls, target: Block, when: datetime
) -> BlockOutcome:
    stamp = to_iso(when)
    async with db.transaction() as conn:
        if not await block_store.add(conn, target.target, target.kind, stamp):
            return BlockOutcome(target, added=False)
        if target.kind == ACTOR:
            victims = [target.target]
            hosts: list[str] = []
        else:
            victims = [
                a for a in await block_store.known_actor_ids(conn)
                if covers(target.target, domain_of(a))
            ]  # fmt: skip
            hosts = [h for h in await block_store.pending_hosts(conn) if covers(target.target, h)]
        # First give up what was queued for them, then queue the goodbyes below.
        await block_store.cancel_deliveries(conn, recipients=victims, hosts=hosts, now=stamp)
        followers = following = 0
        for actor_id in victims:
            followers += await _reject_their_follow(conn, urls, actor_id, when)
            following += await _undo_our_follow(conn, urls, actor_id, when)
        if target.kind == ACTOR:
            await _send_block(conn, urls, target.target, when)
        await block_store.purge_content(conn, victims, stamp)
        await meta.bump_stream_version(conn)  # their likes and replies leave public pages
    return BlockOutcome(target, True, followers, following)


async def _inbox_or_none(conn: aiosqlite.Connection, actor_id: str) -> str | None:
    try:
        return await actor_inbox(conn, actor_id)
    except UnknownActor:
        return None


async def _reject_their_follow(
    conn: aiosqlite.Connection, urls: Urls, actor_id: str, now: datetime
) -> int:
    follow_id = await block_store.take_follower(conn, actor_id)
    if follow_id is None:
        return 0
    inbox = await _inbox_or_none(conn, actor_id)
    if inbox is not None:  # R49: their server then drops the follow too
        reject = activities.reject_follow(
            urls, stored_follow(follow_id, actor_id, urls), secrets.token_hex(8)
        )
        await outbox.emit(conn, reject, post_id=None, targets=[(inbox, actor_id)], now=now)
    return 1


async def _undo_our_follow(
    conn: aiosqlite.Connection, urls: Urls, actor_id: str, now: datetime
) -> int:
    follow_id = await block_store.take_following(conn, actor_id)
    if follow_id is None:
        return 0
    inbox = await _inbox_or_none(conn, actor_id)
    if inbox is not None:
        original = {"id": follow_id, "type": "Follow", "actor": urls.actor, "object": actor_id}
        undo = activities.undo_activity(urls, original, secrets.token_hex(8))
        await outbox.emit(conn, undo, post_id=None, targets=[(inbox, actor_id)], now=now)
    return 1


async def _send_block(conn: aiosqlite.Connection, urls: Urls, actor_id: str, now: datetime) -> None:
    inbox = await _inbox_or_none(conn, actor_id)
    if inbox is None:  # never seen: there is nobody to tell
        return
    activity = activities.block_activity(urls, actor_id, secrets.token_hex(8))
    await outbox.emit(conn, activity, post_id=None, targets=[(inbox, actor_id)], now=now)


async def unblock(db: Database, urls: Urls, target: str, *, now: datetime | None = None) -> Block:
    """Lift a block. For an actor we sent a `Block`, an `Undo` of it follows (as Mastodon's
    UnblockService does). Follows removed by the block are not restored."""
    when = now or datetime.now(UTC)
    try:
        return await _unblock_in_transaction(db, urls, target, when)
    finally:
        block_store.forget_cached(db)


async def _unblock_in_transaction(db: Database, urls: Urls, target: str, when: datetime) -> Block:
    async with db.transaction() as conn:
        row = await block_store.remove(conn, target)
        if row is None:
            raise NotFound("That is not blocked.")
        lifted = Block(str(row["kind"]), str(row["target"]))
        if lifted.kind == ACTOR:
            sent = await block_store.last_block_activity(conn, lifted.target)
            inbox = await _inbox_or_none(conn, lifted.target)
            if sent is not None and inbox is not None:
                undo = activities.undo_activity(urls, json.loads(sent), secrets.token_hex(8))
                await outbox.emit(
                    conn, undo, post_id=None, targets=[(inbox, lifted.target)], now=when
                )
    return lifted


async def list_blocks(db: Database) -> list[dict[str, object]]:
    return [dict(row) for row in await block_store.list_all(db)]
