"""classify: every activity in the shared fixtures maps to the command it means; every Undo,
Accept and Reject shape peers send is read; R30's "only your own objects" holds; and no JSON at
all makes it raise anything but BadActivity."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedistream.core.inbound import (
    Announce,
    BadActivity,
    Command,
    CreateNote,
    DeleteActor,
    DeleteObject,
    EmojiReact,
    FollowAccepted,
    FollowRejected,
    FollowUs,
    Ignore,
    Like,
    UndoAnnounce,
    UndoEmojiReact,
    UndoFollow,
    UndoLike,
    UndoReference,
    UpdateActor,
    UpdateNote,
    classify,
)
from tests.conftest import SHARED_FIXTURES

ACTIVITIES = SHARED_FIXTURES / "activities"
FILES = sorted(p.name for p in ACTIVITIES.glob("*.json")) if ACTIVITIES.is_dir() else []
OURS = "https://blog.example.test/"
PEER = "https://peer.example/users/bob"

Check = Callable[[Command], bool]


def note_check(actor: str, note_id: str, content_start: str) -> Check:
    def check(command: Command) -> bool:
        return (
            isinstance(command, CreateNote)
            and command.actor == actor
            and command.note.id == note_id
            and command.note.actor_id == actor
            and command.note.content_html.startswith(content_start)
        )

    return check


def ignored(words: str) -> Check:
    return lambda command: isinstance(command, Ignore) and words in command.reason


# file → (the actor id we play, what the activity must become)
EXPECTED: dict[str, tuple[str, Check]] = {
    "friendica-create-note.json": (
        OURS,
        note_check(
            "https://soc.schuerz.at/profile/jakob",
            "https://soc.schuerz.at/objects/4edd2508-4361-edb8-c4d8-b45181083984",
            '<span class="h-card">',
        ),
    ),
    # GoToSocial's documented Delete has no id at all; a Delete needs none.
    "gotosocial-delete-status.json": (
        OURS,
        lambda c: (
            c
            == DeleteObject(
                "http://example.org/users/admin",
                "http://example.org/users/admin/statuses/01FF25D5Q0DH7CHD57CTRS6WK0",
            )
        ),
    ),
    "gotosocial-note-mention.json": (OURS, ignored("Note is an object, not an activity")),
    "lemmy-accept.json": (
        "http://ds9.lemmy.ml/u/lemmy_alpha",
        lambda c: (
            c
            == FollowAccepted(
                "http://enterprise.lemmy.ml/c/main",
                "http://ds9.lemmy.ml/activities/follow/6abcd50b-b8ca-4952-86b0-a6dd8cc12866",
            )
        ),
    ),
    "lemmy-delete-user.json": (
        OURS,
        lambda c: c == DeleteActor("http://ds9.lemmy.ml/u/lemmy_alpha"),
    ),
    "mastodon-accept-follow-embedded.json": (
        "http://localtesting.pleroma.lol/users/lain",
        lambda c: (
            c
            == FollowAccepted(
                "http://mastodon.example.org/users/admin",
                "http://localtesting.pleroma.lol/users/lain#follows/4",
            )
        ),
    ),
    "mastodon-announce.json": (
        OURS,
        lambda c: (
            c
            == Announce(
                "https://mastodon.social/users/mczachurski",
                "https://mastodon.social/users/mczachurski/statuses/111330332088404363/activity",
                "https://mastodon.social/users/TomaszSusul/statuses/111305598148116184",
            )
        ),
    ),
    "mastodon-create-note-cw-hashtag.json": (
        OURS,
        lambda c: (
            note_check(
                "http://mastodon.example.org/users/admin",
                "http://mastodon.example.org/users/admin/statuses/99512778738411822",
                "<p>",
            )(c)
            and isinstance(c, CreateNote)
            and c.note.summary == "cw"
            and c.note.tags == ("NSFW",)
        ),
    ),
    "mastodon-create-note-reply-mention.json": (
        OURS,
        note_check(
            "https://mastodon.madrid/users/felix",
            "https://mastodon.madrid/users/felix/statuses/107224289116410645",
            '<p><span class="h-card">',
        ),
    ),
    "mastodon-delete-actor.json": (
        OURS,
        lambda c: c == DeleteActor("http://mastodon.example.org/users/admin"),
    ),
    "mastodon-delete-note-tombstone.json": (
        OURS,
        lambda c: (
            c
            == DeleteObject(
                "https://mastodon.madrid/users/felix",
                "https://mastodon.madrid/users/felix/statuses/107773559874184870",
            )
        ),
    ),
    "mastodon-docs-block.json": (OURS, ignored("Block")),
    "mastodon-docs-flag.json": (OURS, ignored("Flag")),
    "mastodon-docs-move.json": (OURS, ignored("Move")),
    "mastodon-follow.json": (
        "https://ds9.lemmy.ml/c/testcom",
        lambda c: (
            isinstance(c, FollowUs)
            and c.follow_id == "https://masto.asonix.dog/1ea87517-63c5-4118-8831-460ee641b2cf"
            and c.actor == "https://masto.asonix.dog/users/asonix"
            and c.follow["type"] == "Follow"
        ),
    ),
    "mastodon-like.json": (
        OURS,
        lambda c: (
            c
            == Like(
                "http://mastodon.example.org/users/admin",
                "http://mastodon.example.org/users/admin#likes/2",
                "http://localtesting.pleroma.lol/objects/eb92579d-3417-42a8-8652-2492c2d4f454",
                None,
            )
        ),
    ),
    "mastodon-note-attachment-blurhash.json": (OURS, ignored("not an activity")),
    "mastodon-note-direct-message.json": (OURS, ignored("not an activity")),
    "mastodon-reject-follow.json": (
        "http://localtesting.pleroma.lol/users/lain",
        lambda c: (
            c
            == FollowRejected(
                "http://mastodon.example.org/users/admin",
                "http://localtesting.pleroma.lol/users/lain#follows/4",
            )
        ),
    ),
    "mastodon-undo-follow.json": (
        "https://ds9.lemmy.ml/c/testcom",
        lambda c: (
            c
            == UndoFollow(
                "https://masto.asonix.dog/users/asonix",
                "https://masto.asonix.dog/1ea87517-63c5-4118-8831-460ee641b2cf",
            )
        ),
    ),
    "mastodon-undo-like.json": (
        OURS,
        lambda c: (
            c
            == UndoLike(
                "http://mastodon.example.org/users/admin",
                "http://mastodon.example.org/users/admin#likes/2",
                "http://localtesting.pleroma.lol/objects/eb92579d-3417-42a8-8652-2492c2d4f454",
            )
        ),
    ),
    "mastodon-update-person.json": (
        OURS,
        lambda c: (
            isinstance(c, UpdateActor)
            and c.actor == c.document["id"] == "https://mastodon.art/users/alinamiko"
        ),
    ),
    "misskey-create-note-mention.json": (
        OURS,
        note_check(
            "https://misskey.usbharu.dev/users/97ws8y3rj6",
            "https://misskey.usbharu.dev/notes/9f2i9cm88e",
            "<p><a href",
        ),
    ),
    "misskey-like-custom-emoji-reaction.json": (
        OURS,
        lambda c: (
            c
            == Like(
                "https://misskey.local.live/users/8x8yep20u2",
                "https://misskey.local.live/likes/917ocsybgp",
                "https://pleroma.local.live/objects/89937a53-2692-4631-bb62-770091267391",
                ":hanapog:",
            )
        ),
    ),
    "misskey-note-quote.json": (OURS, ignored("not an activity")),
    "pixelfed-announce.json": (
        OURS,
        lambda c: (
            c
            == Announce(
                "https://pixelfed.social/users/mczachurski",
                "https://pixelfed.social/p/mczachurski/624586708985817828/activity",
                "https://mastodonapp.uk/@damianward/111322877716364793",
            )
        ),
    ),
    "pixelfed-create-note-image.json": (
        OURS,
        lambda c: (
            note_check(
                "https://pixelfed.social/users/mczachurski",
                "https://pixelfed.social/p/mczachurski/624592411232880406",
                "Shadows",
            )(c)
            and isinstance(c, CreateNote)
            and len(c.note.attachments) == 1
        ),
    ),
    "pixelfed-create-reply-single-tag-object.json": (
        OURS,
        lambda c: (
            note_check(
                "https://pixelfed.social/users/mczachurski",
                "https://pixelfed.social/p/mczachurski/650595293594582993",
                "Extra colours!",
            )(c)
            and isinstance(c, CreateNote)
            and c.note.mentions == ("https://gram.social/users/Alice",)
        ),
    ),
    "pleroma-create-note.json": (
        OURS,
        note_check(
            "https://greenish.red/users/nutomic",
            "https://greenish.red/objects/1a522f2e-d5ab-454b-93d7-e58bc0650c2a",
            '<span class="h-card">',
        ),
    ),
    "pleroma-emoji-react.json": (
        OURS,
        lambda c: (
            c
            == EmojiReact(
                "http://mastodon.example.org/users/admin",
                "http://mastodon.example.org/users/admin#reactions/2",
                "http://localtesting.pleroma.lol/objects/eb92579d-3417-42a8-8652-2492c2d4f454",
                "👌",
            )
        ),
    ),
    "pleroma-follow.json": (
        "https://lemmy.ca/u/kinetix",
        lambda c: (
            isinstance(c, FollowUs)
            and c.follow_id == "https://mycrowd.ca/activities/dab6a4d3-0db0-41ee-8aab-7bfa4929b4fd"
        ),
    ),
}


def load(shared_fixtures: Path, name: str) -> Any:
    return json.loads((shared_fixtures / "activities" / name).read_text("utf-8"))


def test_every_fixture_has_an_expectation(shared_fixtures: Path) -> None:
    assert sorted(EXPECTED) == FILES


@pytest.mark.parametrize("name", FILES)
def test_fixture_maps_to_its_command(shared_fixtures: Path, name: str) -> None:
    our_actor, check = EXPECTED[name]
    command = classify(load(shared_fixtures, name), our_actor=our_actor)
    assert check(command), command


@pytest.mark.parametrize("name", ["mastodon-follow.json", "pleroma-follow.json"])
def test_follow_of_someone_else_is_ignored(shared_fixtures: Path, name: str) -> None:
    assert classify(load(shared_fixtures, name), our_actor=OURS) == Ignore("Follow of someone else")


# --- shapes --------------------------------------------------------------------------------------


def activity(kind: str, obj: Any, **extra: Any) -> dict[str, Any]:
    return {"id": PEER + "#a/1", "type": kind, "actor": PEER, "object": obj, **extra}


FOLLOW = {"id": PEER + "#follows/1", "type": "Follow", "actor": PEER, "object": OURS}


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        (FOLLOW, UndoFollow(PEER, PEER + "#follows/1")),
        ({**FOLLOW, "id": None}, UndoFollow(PEER, None)),  # matched by actor pair (R50)
        ({"type": "Follow", "object": OURS}, UndoFollow(PEER, None)),
        (PEER + "#follows/1", UndoReference(PEER, PEER + "#follows/1")),  # bare id: look it up
        ({"id": PEER + "#follows/1"}, UndoReference(PEER, PEER + "#follows/1")),
        (
            {**FOLLOW, "object": "https://else.example/u"},
            Ignore("Undo of a Follow of someone else"),
        ),
        ({"id": "l", "type": "Like", "object": OURS + "p/1"}, UndoLike(PEER, "l", OURS + "p/1")),
        (
            {"id": "b", "type": "Announce", "object": OURS + "p/1"},
            UndoAnnounce(PEER, "b", OURS + "p/1"),
        ),
        (
            {"id": "r", "type": "EmojiReact", "object": OURS + "p/1"},
            UndoEmojiReact(PEER, "r", OURS + "p/1"),
        ),
        ({"id": "k", "type": "Block", "object": OURS}, Ignore("Undo of Block is not handled")),
    ],
)
def test_undo_shapes(inner: Any, expected: Command) -> None:
    assert classify(activity("Undo", inner), our_actor=OURS) == expected


def test_undo_of_someone_elses_activity_is_refused() -> None:
    with pytest.raises(BadActivity, match="another actor"):
        classify(activity("Undo", {**FOLLOW, "actor": "https://x.example/u"}), our_actor=OURS)
    with pytest.raises(BadActivity, match="without an object"):
        classify(activity("Undo", None), our_actor=OURS)


OUR_FOLLOW = {"id": OURS + "#follows/abc", "type": "Follow", "actor": OURS, "object": PEER}


@pytest.mark.parametrize("kind", ["Accept", "Reject"])
@pytest.mark.parametrize(
    ("obj", "follow_id"),
    [
        (OUR_FOLLOW, OURS + "#follows/abc"),  # embedded (Mastodon, Lemmy)
        (OURS + "#follows/abc", OURS + "#follows/abc"),  # by id
        ({k: v for k, v in OUR_FOLLOW.items() if k != "id"}, None),  # matched by actor pair
    ],
)
def test_answers_to_our_follow(kind: str, obj: Any, follow_id: str | None) -> None:
    command = classify(activity(kind, obj), our_actor=OURS)
    expected = FollowAccepted if kind == "Accept" else FollowRejected
    assert command == expected(PEER, follow_id)


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ("https://else.example/activities/1", "not ours"),
        ({**OUR_FOLLOW, "actor": "https://x.example/u"}, "someone else's Follow"),
        ({"id": OURS + "#q/1", "type": "QuoteRequest"}, "QuoteRequest"),
    ],
)
def test_answers_we_ignore(obj: Any, reason: str) -> None:
    command = classify(activity("Accept", obj), our_actor=OURS)
    assert isinstance(command, Ignore) and reason in command.reason


def test_accept_by_someone_we_did_not_follow_is_refused() -> None:
    with pytest.raises(BadActivity, match="Follow of another actor"):
        classify(
            activity("Accept", {**OUR_FOLLOW, "object": "https://x.example/u"}), our_actor=OURS
        )


def note(**changes: Any) -> dict[str, Any]:
    return {
        "id": "https://peer.example/notes/1",
        "type": "Note",
        "attributedTo": PEER,
        "content": "<p>hi</p>",
        "published": "2024-01-02T03:04:05Z",
        **changes,
    }


def test_create_and_update_of_a_note() -> None:
    created = classify(activity("Create", note()), our_actor=OURS)
    assert isinstance(created, CreateNote) and created.note.content_html == "<p>hi</p>"
    updated = classify(activity("Update", note(updated="2024-01-03T00:00:00Z")), our_actor=OURS)
    assert isinstance(updated, UpdateNote) and updated.note.updated is not None
    # an embedded actor object (some servers) names the actor too
    embedded_actor = {**activity("Create", note()), "actor": {"id": PEER, "type": "Person"}}
    assert isinstance(classify(embedded_actor, our_actor=OURS), CreateNote)


def test_a_note_with_several_authors_belongs_to_the_sending_one() -> None:
    authors = ["https://peer.example/users/eve", {"type": "Person", "id": PEER}]
    command = classify(activity("Create", note(attributedTo=authors)), our_actor=OURS)
    assert isinstance(command, CreateNote) and command.note.actor_id == PEER


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (
            activity("Create", note(attributedTo="https://peer.example/users/eve")),
            "attributed to someone else",
        ),
        (activity("Create", note(id="https://else.example/notes/1")), "another host"),
        (
            activity("Update", note(attributedTo="https://peer.example/users/eve")),
            "attributed to someone else",
        ),
        (
            activity("Delete", note(attributedTo="https://peer.example/users/eve")),
            "attributed to someone else",
        ),
        (activity("Delete", "https://else.example/notes/1"), "another host"),
        (
            activity("Delete", {"id": "https://peer.example/users/eve", "type": "Person"}),
            "another actor",
        ),
        (
            activity("Update", {"id": "https://peer.example/users/eve", "type": "Person"}),
            "another actor",
        ),
        (activity("Create", note(published="never")), "unusable Create object"),
        (activity("Create", {"type": "Note"}), "unusable Create object"),
    ],
)
def test_only_your_own_objects(bad: dict[str, Any], reason: str) -> None:
    """R30/R54: an actor creates, changes and deletes only its own objects, on its own host."""
    with pytest.raises(BadActivity, match=reason):
        classify(bad, our_actor=OURS)


def test_other_creates_and_updates_are_ignored() -> None:
    reference = classify(activity("Create", "https://peer.example/notes/1"), our_actor=OURS)
    assert isinstance(reference, Ignore) and "reference" in reference.reason
    chat = classify(
        activity("Create", {"id": "https://peer.example/c/1", "type": "ChatMessage"}),
        our_actor=OURS,
    )
    assert chat == Ignore("Create of ChatMessage is not handled")
    actor_by_reference = classify(activity("Update", PEER), our_actor=OURS)
    assert isinstance(actor_by_reference, Ignore)
    collection = classify(
        activity("Update", {"id": PEER + "/featured", "type": "OrderedCollection"}), our_actor=OURS
    )
    assert isinstance(collection, Ignore)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("not an object", "not a JSON object"),
        ([], "not a JSON object"),
        ({"id": "x", "actor": PEER}, "no type"),
        ({"id": "x", "type": "Like", "object": "o"}, "no actor"),
        ({"type": "Like", "actor": PEER, "object": "o"}, "no id"),
        ({"id": "", "type": "Follow", "actor": PEER, "object": OURS}, "no id"),
        ({"id": 7, "type": "Follow", "actor": PEER, "object": OURS}, "no id"),
        (activity("Like", None), "without an object"),
        (activity("Announce", []), "without an object"),
        (activity("Follow", None), "without an object"),
        ({"type": "Delete", "actor": PEER}, "without an object"),
    ],
)
def test_malformed_activities(bad: Any, reason: str) -> None:
    with pytest.raises(BadActivity, match=reason):
        classify(bad, our_actor=OURS)


def test_unknown_types_and_objects_are_ignored() -> None:
    assert classify(activity("Wave", OURS), our_actor=OURS) == Ignore(
        "unsupported activity type Wave"
    )
    assert classify({"id": PEER, "type": "Person"}, our_actor=OURS) == Ignore(
        "Person is an object, not an activity"
    )


def test_reactions() -> None:
    plain = classify(activity("Like", OURS + "p/1"), our_actor=OURS)
    assert plain == Like(PEER, PEER + "#a/1", OURS + "p/1", None)
    misskey = classify(activity("Like", OURS + "p/1", _misskey_reaction="⭐"), our_actor=OURS)
    assert isinstance(misskey, Like) and misskey.reaction == "⭐"
    react = classify(activity("EmojiReact", {"id": OURS + "p/1"}, content=":blob:"), our_actor=OURS)
    assert react == EmojiReact(PEER, PEER + "#a/1", OURS + "p/1", ":blob:")


# --- robustness ----------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=25,
)
TYPES = [
    "Follow",
    "Undo",
    "Accept",
    "Reject",
    "Create",
    "Update",
    "Delete",
    "Like",
    "EmojiReact",
    "Announce",
    "Note",
    "Person",
    "Tombstone",
    "Block",
    "Article",
    "Group",
]
PLAUSIBLE = st.sampled_from(
    [
        OURS,
        PEER,
        PEER + "#x",
        "https://peer.example/notes/1",
        "https://else.example/n",
        "http://[",
        "",
        "2024-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        *TYPES,
    ]
)
KEYS = ("id", "type", "actor", "object", "attributedTo", "content", "published", "to", "tag", "url")
VALUE = st.recursive(
    PLAUSIBLE | st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.fixed_dictionaries({}, optional={key: children for key in KEYS})
    ),
    max_leaves=12,
)
OBJECT = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES), "id": PLAUSIBLE},
    optional={
        "attributedTo": st.just(PEER) | VALUE,
        "actor": st.just(PEER) | VALUE,
        "object": st.just(OURS) | VALUE,
        "content": st.just("<p>x</p>") | VALUE,
        "published": st.just("2024-01-01T00:00:00Z") | VALUE,
        "tag": VALUE,
        "attachment": VALUE,
        "url": VALUE,
        "to": VALUE,
    },
)
# Mostly well-formed envelopes, so the examples reach the per-type code, not just the id check.
ACTIVITY = st.fixed_dictionaries(
    {
        "type": st.sampled_from(TYPES),
        "id": st.sampled_from([PEER + "#a/1", PEER + "#b/2"]) | VALUE,
        "actor": st.sampled_from([PEER, {"id": PEER}, [PEER]]),
    },
    optional={"object": OBJECT | VALUE, "content": VALUE, "to": VALUE},
)


@settings(max_examples=300)
@given(JSON)
def test_any_json_is_a_command_or_bad_activity(value: Any) -> None:
    try:
        command = classify(value, our_actor=OURS)
    except BadActivity:
        return
    assert isinstance(command, Command)


@settings(max_examples=500)
@given(ACTIVITY)
def test_activity_shaped_json_is_a_command_or_bad_activity(value: dict[str, Any]) -> None:
    try:
        command = classify(value, our_actor=OURS)
    except BadActivity:
        return
    assert isinstance(command, Command)
