"""Inbound activities → commands: what a (signature-checked) activity asks us to do. Pure.

`classify` reads every shape peers send (INTEROP R45–R50, R62–R70, R102–R108) and answers one
small command, `Ignore` for what we deliberately do not act on, or raises `BadActivity` for an
activity that is malformed or claims what its actor may not do (R30). It never fetches: a
reference that would need a fetch is reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from fedistream.core.as2 import as_list, first_str, first_value, id_of, type_of
from fedistream.core.remote_note import NOTE_TYPES, RemoteNote, parse_note

ACTOR_TYPES = frozenset({"Person", "Service", "Application", "Group", "Organization"})
# Delivered to us, understood, and not acted on (yet): the reason goes into the inbox row.
_IGNORED_TYPES = {
    "Block": "Block is not acted on (we show nothing private)",
    "Flag": "Flag reports are not handled",
    "Move": "Move is not handled yet",
    "Add": "Add (featured collections) is not handled",
    "Remove": "Remove (featured collections) is not handled",
    "QuoteRequest": "quote requests are not handled",
    "FeatureRequest": "feature requests are not handled",
    "View": "View is not handled",
    "Read": "Read is not handled",
}


class BadActivity(ValueError):
    """Malformed, or not the actor's to send: answer 400 and do not retry."""


@dataclass(frozen=True, slots=True)
class FollowUs:
    follow_id: str
    actor: str
    follow: dict[str, Any]  # as received: Accept/Reject embed it (R46)


@dataclass(frozen=True, slots=True)
class UndoFollow:
    actor: str
    follow_id: str | None


@dataclass(frozen=True, slots=True)
class FollowAccepted:
    actor: str
    follow_id: str | None  # our Follow's id, when the peer names it


@dataclass(frozen=True, slots=True)
class FollowRejected:
    actor: str
    follow_id: str | None


@dataclass(frozen=True, slots=True)
class DeleteActor:
    actor: str


@dataclass(frozen=True, slots=True)
class DeleteObject:
    actor: str
    object_id: str


@dataclass(frozen=True, slots=True)
class UpdateActor:
    actor: str
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CreateNote:
    actor: str
    note: RemoteNote


@dataclass(frozen=True, slots=True)
class UpdateNote:
    actor: str
    note: RemoteNote


@dataclass(frozen=True, slots=True)
class Like:
    actor: str
    activity_id: str
    object_id: str
    reaction: str | None  # Misskey sends reactions as Likes with `content` (R68)


@dataclass(frozen=True, slots=True)
class UndoLike:
    actor: str
    activity_id: str | None
    object_id: str | None


@dataclass(frozen=True, slots=True)
class Announce:
    actor: str
    activity_id: str
    object_id: str


@dataclass(frozen=True, slots=True)
class UndoAnnounce:
    actor: str
    activity_id: str | None
    object_id: str | None


@dataclass(frozen=True, slots=True)
class EmojiReact:
    actor: str
    activity_id: str
    object_id: str
    reaction: str | None


@dataclass(frozen=True, slots=True)
class UndoEmojiReact:
    actor: str
    activity_id: str | None
    object_id: str | None


@dataclass(frozen=True, slots=True)
class UndoReference:
    """`Undo` naming only an id: which of the actor's activities it was needs a lookup (R50)."""

    actor: str
    object_id: str


@dataclass(frozen=True, slots=True)
class Ignore:
    reason: str


Command = (
    FollowUs
    | UndoFollow
    | FollowAccepted
    | FollowRejected
    | DeleteActor
    | DeleteObject
    | UpdateActor
    | CreateNote
    | UpdateNote
    | Like
    | UndoLike
    | Announce
    | UndoAnnounce
    | EmojiReact
    | UndoEmojiReact
    | UndoReference
    | Ignore
)


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return ""


def _is_web_url(value: str) -> bool:
    return value.lower().startswith(("https://", "http://"))


def _object_id(activity: dict[str, Any]) -> str:
    object_id = id_of(first_value(activity.get("object")))
    if object_id is None:
        raise BadActivity(f"{type_of(activity)} without an object")
    return object_id


def _is_post(obj: Any) -> bool:
    kinds = as_list(obj.get("type")) if isinstance(obj, dict) else []
    return any(isinstance(kind, str) and kind in NOTE_TYPES for kind in kinds)


def _reaction(activity: dict[str, Any]) -> str | None:
    for key in ("content", "_misskey_reaction"):
        value = activity.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _check_own_object(actor: str, obj: dict[str, Any], verb: str) -> None:
    """R30/R54: an actor may create, change or delete only its own objects, on its own host."""
    object_id = id_of(obj)
    if object_id and _host(object_id) != _host(actor):
        raise BadActivity(f"{verb} of an object on another host than its actor")
    if "attributedTo" in obj:
        authors = [a for a in map(id_of, as_list(obj["attributedTo"])) if a]
        if actor not in authors:
            raise BadActivity(f"{verb} of an object attributed to someone else")


def _note(actor: str, obj: Any, verb: str) -> RemoteNote:
    if not isinstance(obj, dict):
        raise BadActivity(f"{verb} object must be embedded")
    _check_own_object(actor, obj, verb)
    try:
        note = parse_note(obj)
    except ValueError as exc:
        raise BadActivity(f"unusable {verb} object: {exc}") from exc
    # The actor is among the authors (checked above); with several, it is the one we keep.
    return note if note.actor_id == actor else replace(note, actor_id=actor)


def _create(actor: str, activity: dict[str, Any]) -> Command:
    obj = first_value(activity.get("object"))
    if isinstance(obj, str):
        # Mastodon dereferences a bare URI; we would need a signed fetch (not done here).
        return Ignore("Create with an object reference, not an embedded object")
    if not _is_post(obj):
        _object_id(activity)
        return Ignore(f"Create of {type_of(obj)} is not handled")
    return CreateNote(actor, _note(actor, obj, "Create"))


def _update(actor: str, activity: dict[str, Any]) -> Command:
    obj = first_value(activity.get("object"))
    object_id = _object_id(activity)
    kind = type_of(obj)
    if kind in ACTOR_TYPES or object_id == actor:
        if object_id != actor:
            raise BadActivity("Update of another actor")  # Mastodon requires object.id == actor
        if not isinstance(obj, dict):
            return Ignore("Update of an actor by reference; refetch it instead")
        return UpdateActor(actor, obj)
    if _is_post(obj):
        return UpdateNote(actor, _note(actor, obj, "Update"))
    return Ignore(f"Update of {kind or 'a reference'} is not handled")


def _delete(actor: str, activity: dict[str, Any]) -> Command:
    obj = first_value(activity.get("object"))
    object_id = _object_id(activity)
    if object_id == actor:
        return DeleteActor(actor)  # Mastodon embeds the Person, Lemmy names the actor (R63, R107)
    if isinstance(obj, dict):
        if type_of(obj) in ACTOR_TYPES:
            raise BadActivity("Delete of another actor")
        _check_own_object(actor, obj, "Delete")
    elif _host(object_id) != _host(actor):
        raise BadActivity("Delete of an object on another host than its actor")
    return DeleteObject(actor, object_id)


def _undo(actor: str, activity: dict[str, Any], our_actor: str) -> Command:
    inner = first_value(activity.get("object"))
    inner_id = id_of(inner)
    if not isinstance(inner, dict) or type_of(inner) is None:
        if inner_id is None:
            raise BadActivity("Undo without an object")
        return UndoReference(actor, inner_id)
    inner_actor = id_of(first_value(inner.get("actor")))
    if inner_actor is not None and inner_actor != actor:
        raise BadActivity("Undo of another actor's activity")
    kind = type_of(inner)
    target = id_of(first_value(inner.get("object")))
    if kind == "Follow":
        if target is not None and target != our_actor:
            return Ignore("Undo of a Follow of someone else")
        return UndoFollow(actor, inner_id)
    if kind == "Like":
        return UndoLike(actor, inner_id, target)
    if kind == "Announce":
        return UndoAnnounce(actor, inner_id, target)
    if kind == "EmojiReact":
        return UndoEmojiReact(actor, inner_id, target)
    return Ignore(f"Undo of {kind} is not handled")


def _answer(actor: str, activity: dict[str, Any], our_actor: str) -> Command:
    """Accept/Reject of our Follow: embedded (Mastodon, Lemmy) or by id (R46, R49)."""
    accepted = type_of(activity) == "Accept"
    obj = first_value(activity.get("object"))
    if isinstance(obj, dict) and type_of(obj) is not None:
        if type_of(obj) != "Follow":
            return Ignore(f"{type_of(activity)} of {type_of(obj)} is not handled")
        follower = id_of(first_value(obj.get("actor")))
        followed = id_of(first_value(obj.get("object")))
        if follower is not None and follower != our_actor:
            return Ignore(f"{type_of(activity)} of someone else's Follow")
        if followed is not None and followed != actor:
            raise BadActivity(f"{type_of(activity)} of a Follow of another actor")
        follow_id = id_of(obj)
    else:
        follow_id = _object_id(activity)
        if not follow_id.startswith(our_actor):
            return Ignore(f"{type_of(activity)} of an activity that is not ours")
    return FollowAccepted(actor, follow_id) if accepted else FollowRejected(actor, follow_id)


def classify(activity: Any, *, our_actor: str) -> Command:
    """What an inbound activity means for us. Raises BadActivity when it is malformed."""
    if not isinstance(activity, dict):
        raise BadActivity("activity is not a JSON object")
    kind = type_of(activity)
    if kind is None:
        raise BadActivity("activity has no type")
    actor = id_of(first_value(activity.get("actor")))
    if actor is None:
        if kind in NOTE_TYPES or kind in ACTOR_TYPES:
            return Ignore(f"{kind} is an object, not an activity")
        raise BadActivity("activity has no actor")
    activity_id = activity.get("id")
    if not (isinstance(activity_id, str) and activity_id):
        # GoToSocial's documented Delete carries no id; nothing we do with a Delete needs one.
        if kind == "Delete":
            return _delete(actor, activity)
        raise BadActivity("activity has no id")
    if _is_web_url(activity_id) and _host(activity_id) != _host(actor):
        # Inbox rows are keyed by activity id: an id on another server would claim it, and the
        # activity that server really sends later would be dropped as a replay.
        raise BadActivity("activity id on another host than its actor")
    match kind:
        case "Follow":
            if _object_id(activity) != our_actor:
                return Ignore("Follow of someone else")
            return FollowUs(activity_id, actor, activity)
        case "Undo":
            return _undo(actor, activity, our_actor)
        case "Accept" | "Reject":
            return _answer(actor, activity, our_actor)
        case "Create":
            return _create(actor, activity)
        case "Update":
            return _update(actor, activity)
        case "Delete":
            return _delete(actor, activity)
        case "Like":
            return Like(actor, activity_id, _object_id(activity), _reaction(activity))
        case "EmojiReact":
            return EmojiReact(actor, activity_id, _object_id(activity), _reaction(activity))
        case "Announce":
            return Announce(actor, activity_id, _object_id(activity))
    if kind in _IGNORED_TYPES:
        return Ignore(_IGNORED_TYPES[kind])
    if kind in NOTE_TYPES or kind in ACTOR_TYPES:
        return Ignore(f"{kind} is an object, not an activity")
    return Ignore(f"unsupported activity type {first_str(kind)}")
