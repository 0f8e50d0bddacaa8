"""Outgoing ActivityStreams for relationships and interactions: the follow dance, the owner's likes,
boosts and blocks, pin changes, and collections (R45–R51, R83–R87). Pure.

Notes, the actor and the activities about thoughts are in `core.activitypub`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fedistream.core.activitypub import AS_CONTEXT, NOTE_CONTEXT, PUBLIC, embedded, hashtag
from fedistream.core.as2 import id_of
from fedistream.core.timefmt import to_iso
from fedistream.core.urls import Urls

# --- the follow dance ---------------------------------------------------------------------------


def _follow_as_received(follow: dict[str, Any]) -> dict[str, Any]:
    """The Follow reduced to id/type/actor/object: what Accept and Reject embed (R46, R49)."""
    reduced = {
        "id": id_of(follow.get("id")),
        "type": "Follow",
        "actor": id_of(follow.get("actor")),
        "object": id_of(follow.get("object")),
    }
    return {key: value for key, value in reduced.items() if value is not None}


def _answer_follow(
    kind: str, activity_id: str, urls: Urls, follow: dict[str, Any]
) -> dict[str, Any]:
    embedded_follow = _follow_as_received(follow)
    answer: dict[str, Any] = {
        "@context": AS_CONTEXT,
        "id": activity_id,
        "type": kind,
        "actor": urls.actor,
        "object": embedded_follow,
    }
    if "actor" in embedded_follow:
        answer["to"] = [embedded_follow["actor"]]  # Lemmy and GoToSocial address answers too
    return answer


def accept_follow(urls: Urls, follow: dict[str, Any], token: str) -> dict[str, Any]:
    return _answer_follow("Accept", urls.accept_activity(token), urls, follow)


def reject_follow(urls: Urls, follow: dict[str, Any], token: str) -> dict[str, Any]:
    return _answer_follow("Reject", urls.reject_activity(token), urls, follow)


def follow_activity(urls: Urls, target_actor_id: str, token: str) -> dict[str, Any]:
    return {
        "@context": AS_CONTEXT,
        "id": urls.follow_activity(token),
        "type": "Follow",
        "actor": urls.actor,
        "object": target_actor_id,
    }


def undo_activity(urls: Urls, inner: dict[str, Any], token: str) -> dict[str, Any]:
    """Undo one of our activities (unfollow, …), the original embedded as peers expect (R50)."""
    undo: dict[str, Any] = {
        "@context": AS_CONTEXT,
        "id": urls.undo_activity(token),
        "type": "Undo",
        "actor": urls.actor,
        "object": embedded(inner),
    }
    for key in ("to", "cc"):
        if key in inner:
            undo[key] = inner[key]
    return undo


def block_activity(urls: Urls, target_actor_id: str, token: str) -> dict[str, Any]:
    """The owner blocks an actor (R70). Mastodon sends this so the blocked account's server
    drops its follows and hides us from them; it is addressed to that actor alone."""
    return {
        "@context": AS_CONTEXT,
        "id": f"{urls.base}/#blocks/{token}",
        "type": "Block",
        "actor": urls.actor,
        "object": target_actor_id,
        "to": [target_actor_id],
    }


# --- the owner's likes and boosts of other servers' posts -------------------------------------


def like_activity(urls: Urls, object_id: str, token: str) -> dict[str, Any]:
    """A favourite, as Mastodon sends one (R66): addressed by delivery to the author alone."""
    return {
        "@context": AS_CONTEXT,
        "id": f"{urls.base}/#likes/{token}",
        "type": "Like",
        "actor": urls.actor,
        "object": object_id,
    }


def announce_activity(
    urls: Urls, object_id: str, author_id: str, token: str, now: datetime
) -> dict[str, Any]:
    """A boost (R67): public, with the author and our followers in `cc`."""
    return {
        "@context": AS_CONTEXT,
        "id": f"{urls.base}/#announces/{token}",
        "type": "Announce",
        "actor": urls.actor,
        "published": to_iso(now),
        "to": [PUBLIC],
        "cc": [author_id, urls.followers],
        "object": object_id,
    }


# --- pinned thoughts (the `featured` collection, R86) ------------------------------------------


def _featured_change(kind: str, urls: Urls, post_id: str, token: str) -> dict[str, Any]:
    # Mastodon's Add/Remove name the Note by id and the collection as `target`; peers then
    # update their copy of our featured collection without refetching it.
    return {
        "@context": AS_CONTEXT,
        "id": f"{urls.post(post_id)}#{kind.lower()}/{token}",
        "type": kind,
        "actor": urls.actor,
        "to": [PUBLIC],
        "cc": [urls.followers],
        "object": urls.post(post_id),
        "target": urls.featured,
    }


def add_featured_activity(urls: Urls, post_id: str, token: str) -> dict[str, Any]:
    """A thought was pinned: `Add{object: Note id, target: featured}`."""
    return _featured_change("Add", urls, post_id, token)


def remove_featured_activity(urls: Urls, post_id: str, token: str) -> dict[str, Any]:
    """A thought was unpinned: `Remove{object: Note id, target: featured}`."""
    return _featured_change("Remove", urls, post_id, token)


# --- collections --------------------------------------------------------------------------------


def _context_for(items: Sequence[Any]) -> Any:
    return NOTE_CONTEXT if any(isinstance(item, dict) for item in items) else AS_CONTEXT


def ordered_collection(
    collection_id: str, total: int, first: str | None, last: str | None = None
) -> dict[str, Any]:
    """A collection root: the count and where the pages start (R83, R85)."""
    document: dict[str, Any] = {
        "@context": AS_CONTEXT,
        "id": collection_id,
        "type": "OrderedCollection",
        "totalItems": total,
    }
    if first is not None:
        document["first"] = first
    if last is not None:
        document["last"] = last
    return document


def ordered_collection_page(
    page_id: str,
    part_of: str,
    items: Sequence[Any],
    next: str | None = None,
    prev: str | None = None,
) -> dict[str, Any]:
    """One page of a collection; embedded documents lose their own `@context` (R84)."""
    document: dict[str, Any] = {
        "@context": _context_for(items),
        "id": page_id,
        "type": "OrderedCollectionPage",
        "partOf": part_of,
        "orderedItems": [embedded(i) if isinstance(i, dict) else i for i in items],
    }
    if next is not None:
        document["next"] = next
    if prev is not None:
        document["prev"] = prev
    return document


def featured_collection(urls: Urls, notes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pinned thoughts: one unpaged collection of full Notes, as Mastodon reads it (R86)."""
    return {
        "@context": NOTE_CONTEXT,
        "id": urls.featured,
        "type": "OrderedCollection",
        "totalItems": len(notes),
        "orderedItems": [embedded(note) for note in notes],
    }


def featured_tags_collection(urls: Urls, tags: Sequence[str]) -> dict[str, Any]:
    return {
        "@context": [AS_CONTEXT, {"Hashtag": "as:Hashtag"}],
        "id": urls.featured_tags,
        "type": "Collection",
        "totalItems": len(tags),
        "items": [hashtag(urls, tag) for tag in tags],
    }
