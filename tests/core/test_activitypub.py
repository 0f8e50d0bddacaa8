"""Outgoing ActivityStreams: our actor, Notes and activities carry every key Mastodon's own carry
(with the same JSON types), ids follow urls.py, and what we send classifies back on the other side
into the command we meant."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from fedistream.core import activities
from fedistream.core import activitypub as ap
from fedistream.core.as2 import PUBLIC, has_as_context
from fedistream.core.inbound import (
    CreateNote,
    DeleteObject,
    FollowAccepted,
    FollowRejected,
    FollowUs,
    UndoFollow,
    UpdateActor,
    UpdateNote,
    classify,
)
from fedistream.core.models import Post
from fedistream.core.render import render_markdown
from fedistream.core.urls import Urls

URLS = Urls(base="https://blog.example.test")
PEER = "https://peer.example/users/alice"
CREATED = datetime(2026, 3, 5, 17, 45, 12, tzinfo=UTC)
PEM = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"

# Keys Mastodon emits that we leave out on purpose (the test fails if any other goes missing).
NOTE_KEYS_NOT_EMITTED = {
    "atomUri": "OStatus legacy, only read by pre-2018 servers (R54)",
    "inReplyToAtomUri": "OStatus legacy (R54)",
    "conversation": "OStatus thread tag; peers thread by inReplyTo",
    "likes": "we publish no interaction counts",
    "shares": "we publish no interaction counts",
}
ACTOR_KEYS_NOT_EMITTED = {"devices": "Mastodon's abandoned end-to-end encryption devices"}


def load(shared_fixtures: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared_fixtures / name).read_text("utf-8"))
    return data


def make_post(
    source: str = "Hello #Fediverse, a [link](https://example.org/).", **changes: Any
) -> Post:
    rendered = render_markdown(source)
    post = Post(
        id="0123456789abcdef",
        source=source,
        html=rendered.html,
        text=rendered.text,
        title=None,
        summary=None,
        created_at=CREATED,
        tags=rendered.tags,
    )
    return replace(post, **changes)


def actor(**changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "username": "ada",
        "display_name": "Ada",
        "summary_html": "<p>Thinking in public.</p>",
        "avatar": ap.MediaRef("https://blog.example.test/media/a.png", "image/png"),
        "header": ap.MediaRef("https://blog.example.test/media/h.jpg", "image/jpeg"),
        "links": [("Site", "https://ada.example/")],
        "public_key_pem": PEM,
        "published": CREATED,
        "manually_approves_followers": False,
    }
    arguments.update(changes)
    return ap.actor_document(URLS, **arguments)


def json_kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def assert_same_shape(
    theirs: dict[str, Any], ours: dict[str, Any], skipped: dict[str, str]
) -> None:
    """Every key of Mastodon's document is in ours with the same JSON type (null fits anything)."""
    for key, value in theirs.items():
        if key in skipped or key in ("@context", "signature"):
            continue
        assert key in ours, f"Mastodon emits {key!r}, we do not"
        if value is not None and ours[key] is not None:
            assert json_kind(ours[key]) == json_kind(value), key


# --- actor ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture", ["actors/mastodon-person.json", "activities/mastodon-update-person.json"]
)
def test_actor_has_every_key_mastodon_emits(shared_fixtures: Path, fixture: str) -> None:
    theirs = load(shared_fixtures, fixture)
    theirs = theirs.get("object", theirs)
    ours = actor()
    assert_same_shape(theirs, ours, ACTOR_KEYS_NOT_EMITTED)
    for nested in ("publicKey", "endpoints", "icon", "image"):
        if nested in theirs:
            assert set(theirs[nested]) <= set(ours[nested]), nested


def test_actor_context_has_mastodons_term_definitions(shared_fixtures: Path) -> None:
    theirs = load(shared_fixtures, "activities/mastodon-update-person.json")["@context"][2]
    ours = ap.ACTOR_CONTEXT
    assert ours[:2] == ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"]
    assert ap.WEBFINGER_CONTEXT in ours
    terms = ours[-1]
    for term in (
        "manuallyApprovesFollowers",
        "toot",
        "featured",
        "featuredTags",
        "alsoKnownAs",
        "movedTo",
        "schema",
        "PropertyValue",
        "value",
        "discoverable",
        "indexable",
        "memorial",
        "suspended",
        "Hashtag",
        "focalPoint",
    ):
        assert terms[term] == theirs[term], term
    assert terms["schema"] == "http://schema.org#"  # wrong but what everyone expects (R13)
    assert has_as_context(actor())


def test_actor_identity_fields() -> None:
    doc = actor()
    assert doc["id"] == doc["url"] == "https://blog.example.test/"
    assert doc["type"] == "Person"
    assert doc["preferredUsername"] == "ada"
    assert doc["webfinger"] == "ada@blog.example.test"
    assert doc["inbox"] == doc["endpoints"]["sharedInbox"] == "https://blog.example.test/inbox"
    assert doc["publicKey"] == {
        "id": "https://blog.example.test/#main-key",
        "owner": "https://blog.example.test/",
        "publicKeyPem": PEM,
    }
    assert doc["featured"] == URLS.featured and doc["featuredTags"] == URLS.featured_tags
    assert doc["icon"] == {"type": "Image", "mediaType": "image/png", "url": URLS.media("a.png")}
    assert doc["image"]["mediaType"] == "image/jpeg"
    assert doc["tag"] == [] and doc["memorial"] is False
    assert doc["manuallyApprovesFollowers"] is False
    assert doc["discoverable"] is True and doc["indexable"] is True
    assert "alsoKnownAs" not in doc


def test_actor_optional_parts() -> None:
    doc = actor(
        avatar=None,
        header=None,
        display_name="",
        also_known_as=["https://old.example/u/ada"],
        manually_approves_followers=True,
        discoverable=False,
    )
    assert "icon" not in doc and "image" not in doc
    assert doc["name"] == "ada"  # Mastodon falls back to the username too
    assert doc["alsoKnownAs"] == ["https://old.example/u/ada"]
    assert doc["manuallyApprovesFollowers"] is True and doc["discoverable"] is False


def test_actor_webfinger_keeps_a_port() -> None:
    doc = ap.actor_document(Urls("http://127.0.0.1:8000"), **{**_actor_args(), "username": "me"})
    assert doc["webfinger"] == "me@127.0.0.1:8000"


def _actor_args() -> dict[str, Any]:
    return {
        "username": "ada",
        "display_name": "Ada",
        "summary_html": "",
        "avatar": None,
        "header": None,
        "links": [],
        "public_key_pem": PEM,
        "published": CREATED,
        "manually_approves_followers": False,
    }


@pytest.mark.parametrize(
    ("published", "day"),
    [
        (CREATED, "2026-03-05T00:00:00Z"),
        # 01:30 at +02:00 is still the 5th in UTC
        (datetime(2026, 3, 6, 1, 30, tzinfo=timezone(timedelta(hours=2))), "2026-03-05T00:00:00Z"),
    ],
)
def test_actor_published_is_the_creation_day_at_midnight_utc(published: datetime, day: str) -> None:
    assert actor(published=published)["published"] == day


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        self.text += data


def parse_links(markup: str) -> _Links:
    parser = _Links()
    parser.feed(markup)
    return parser


def test_profile_fields_are_rel_me_links_like_mastodons() -> None:
    url = 'https://ada.example/a/very/long/path/beyond/thirty/characters?x=1&y="2"'
    doc = actor(
        links=[("Site <b>", "https://www.ada.example/"), ("Long", url), ("Phone", "+1 555")]
    )
    short, long, plain = doc["attachment"]
    assert short == {
        "type": "PropertyValue",
        "name": "Site <b>",  # names are plain text, the receiver escapes them
        "value": '<a href="https://www.ada.example/" target="_blank" rel="nofollow noopener'
        ' noreferrer me" translate="no"><span class="invisible">https://www.</span>'
        '<span class="">ada.example/</span><span class="invisible"></span></a>',
    }
    parsed = parse_links(long["value"])
    assert parsed.links[0]["href"] == url  # escaping round-trips
    assert "me" in (parsed.links[0]["rel"] or "").split()
    assert parsed.text == url  # the display is the URL, split into visible and hidden parts
    assert '<span class="ellipsis">' in long["value"]
    assert plain["value"] == "+1 555" and "<a" not in plain["value"]


def test_profile_field_that_is_not_a_web_link_is_escaped_text() -> None:
    doc = actor(links=[("x", 'javascript:alert("<1>")')])
    assert doc["attachment"][0]["value"] == "javascript:alert(&quot;&lt;1&gt;&quot;)"


def test_update_actor_embeds_the_actor_under_its_own_id() -> None:
    now = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
    update = ap.update_actor_activity(URLS, actor(), now)
    assert update["id"] == URLS.actor_update_activity(int(now.timestamp()))
    assert update["type"] == "Update" and update["to"] == [PUBLIC]
    assert update["object"]["id"] == update["actor"] == URLS.actor  # Mastodon requires this (R18)
    assert "@context" not in update["object"] and update["@context"] == ap.ACTOR_CONTEXT
    assert classify(update, our_actor=PEER) == UpdateActor(URLS.actor, update["object"])


# --- Notes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture",
    [
        "activities/mastodon-create-note-reply-mention.json",
        "activities/mastodon-note-attachment-blurhash.json",
    ],
)
def test_note_has_every_key_mastodon_emits(shared_fixtures: Path, fixture: str) -> None:
    theirs = load(shared_fixtures, fixture)
    theirs = theirs.get("object", theirs)
    image = ap.Attachment(
        "https://blog.example.test/media/i.jpg",
        "image/jpeg",
        "alt",
        4,
        3,
        "LEHV6nWB2yk8pyo0adR*.7kCMdnj",
        (0.0, 0.5),
    )
    ours = ap.note_object(URLS, make_post(), attachments=[image])
    assert_same_shape(theirs, ours, NOTE_KEYS_NOT_EMITTED)
    assert_same_shape(theirs["replies"], ours["replies"], {})
    assert_same_shape(theirs["replies"]["first"], ours["replies"]["first"], {})
    for their_attachment in theirs["attachment"]:
        assert_same_shape(their_attachment, ours["attachment"][0], {})
    assert json.loads(json.dumps(ours)) == ours


def test_note_fields() -> None:
    post = make_post()
    note = ap.note_object(URLS, post)
    assert note["@context"] == ap.NOTE_CONTEXT
    assert note["id"] == note["url"] == "https://blog.example.test/p/0123456789abcdef"
    assert note["type"] == "Note" and note["attributedTo"] == URLS.actor
    assert note["to"] == [PUBLIC] and note["cc"] == [URLS.followers]
    assert note["published"] == "2026-03-05T17:45:12Z"
    assert "updated" not in note and note["inReplyTo"] is None
    assert note["summary"] is None and note["sensitive"] is False
    assert note["contentMap"] == {"en": note["content"]}
    assert note["tag"] == [
        {
            "type": "Hashtag",
            "href": "https://blog.example.test/tags/fediverse",
            "name": "#fediverse",
        }
    ]
    assert note["attachment"] == []
    assert note["replies"] == {
        "id": note["id"] + "/replies",
        "type": "Collection",
        "first": {
            "type": "CollectionPage",
            "next": note["id"] + "/replies?only_other_accounts=true&page=true",
            "partOf": note["id"] + "/replies",
            "items": [],
        },
    }


def test_note_links_are_absolute() -> None:
    """Our renderer links hashtags by path; peers drop relative links, so the Note has full ones."""
    note = ap.note_object(URLS, make_post("A #Tag and [x](https://example.org/y)"))
    hrefs = [link["href"] for link in parse_links(note["content"]).links]
    assert hrefs == ["https://blog.example.test/tags/tag", "https://example.org/y"]


def test_titled_thought_leads_with_its_escaped_title_and_has_no_name() -> None:
    note = ap.note_object(URLS, make_post("Body.", title="Fish & <Chips>"))
    assert note["content"].startswith("<p><strong>Fish &amp; &lt;Chips&gt;</strong></p><p>Body.")
    assert "name" not in note


def test_content_warning_makes_the_note_sensitive() -> None:
    note = ap.note_object(URLS, make_post(summary="spoilers"))
    assert note["summary"] == "spoilers" and note["sensitive"] is True


def test_edited_note_carries_updated() -> None:
    edited = CREATED + timedelta(hours=2)
    note = ap.note_object(URLS, make_post(updated_at=edited))
    assert note["updated"] == "2026-03-05T19:45:12Z"


def test_unicode_hashtag_href_is_percent_encoded() -> None:
    note = ap.note_object(URLS, make_post("Un #café"))
    assert note["tag"] == [
        {"type": "Hashtag", "href": "https://blog.example.test/tags/caf%C3%A9", "name": "#café"}
    ]


def test_attachment_is_a_mastodon_document() -> None:
    image = ap.Attachment(URLS.media("i.jpg"), "image/jpeg", "a cat", 640, 480, "LKO2", (0.1, -0.2))
    note = ap.note_object(URLS, make_post(), attachments=[image])
    assert note["attachment"] == [
        {
            "type": "Document",
            "mediaType": "image/jpeg",
            "url": URLS.media("i.jpg"),
            "name": "a cat",
            "blurhash": "LKO2",
            "focalPoint": [0.1, -0.2],
            "width": 640,
            "height": 480,
        }
    ]
    bare = ap.note_object(
        URLS, make_post(), attachments=[ap.Attachment(URLS.media("f.png"), "image/png")]
    )
    assert bare["attachment"] == [
        {"type": "Document", "mediaType": "image/png", "url": URLS.media("f.png"), "name": None}
    ]


def test_deleted_thought_is_no_note() -> None:
    with pytest.raises(ValueError, match="Tombstone"):
        ap.note_object(URLS, make_post(deleted_at=CREATED))


# --- activities about Notes -----------------------------------------------------------------------


def test_create_wraps_the_note_like_mastodon(shared_fixtures: Path) -> None:
    theirs = load(shared_fixtures, "activities/mastodon-create-note-reply-mention.json")
    note = ap.note_object(URLS, make_post())
    create = ap.create_activity(URLS, note)
    assert_same_shape(theirs, create, {})
    assert create["id"] == URLS.create_activity("0123456789abcdef")
    assert create["actor"] == URLS.actor and create["published"] == note["published"]
    assert create["to"] == note["to"] and create["cc"] == note["cc"]
    assert create["object"] == {k: v for k, v in note.items() if k != "@context"}
    assert create["@context"] == ap.NOTE_CONTEXT


def test_create_refuses_a_note_that_is_not_ours() -> None:
    with pytest.raises(ValueError, match="not one of our Notes"):
        ap.create_activity(URLS, {"id": "https://elsewhere.example/p/1", "published": "x"})


def test_update_carries_the_edited_note() -> None:
    now = CREATED + timedelta(days=1)
    note = ap.note_object(URLS, make_post(updated_at=now))
    update = ap.update_activity(URLS, note, now)
    assert update["id"] == URLS.update_activity("0123456789abcdef", int(now.timestamp()))
    assert update["object"]["updated"] == "2026-03-06T17:45:12Z"
    assert update["to"] == [PUBLIC] and update["cc"] == [URLS.followers]


def test_delete_and_tombstone(shared_fixtures: Path) -> None:
    deleted = CREATED + timedelta(days=2)
    delete = ap.delete_activity(URLS, "0123456789abcdef", deleted)
    theirs = load(shared_fixtures, "activities/mastodon-delete-note-tombstone.json")
    assert_same_shape(theirs, delete, {})
    assert delete["id"] == URLS.delete_activity("0123456789abcdef")
    assert delete["object"] == {"id": URLS.post("0123456789abcdef"), "type": "Tombstone"}
    assert delete["to"] == [PUBLIC] and delete["cc"] == [URLS.followers]
    gone = ap.tombstone(URLS, "0123456789abcdef", deleted)
    assert gone["id"] == URLS.post("0123456789abcdef") and gone["type"] == "Tombstone"
    assert gone["deleted"] == "2026-03-07T17:45:12Z" and has_as_context(gone)


def test_what_we_send_classifies_back_to_what_we_meant() -> None:
    post = make_post("Round #trip, *with* [a link](https://example.org/).", summary="cw")
    note = ap.note_object(URLS, post)
    command = classify(ap.create_activity(URLS, note), our_actor=PEER)
    assert isinstance(command, CreateNote)
    assert command.actor == URLS.actor
    remote = command.note
    assert remote.id == note["id"] and remote.actor_id == URLS.actor
    assert remote.content_html == note["content"]
    assert remote.tags == post.tags == ("trip",)
    assert remote.published == post.created_at
    assert remote.summary == "cw" and remote.sensitive
    assert remote.is_public and remote.language == "en"

    edited = replace(post, updated_at=CREATED + timedelta(minutes=5))
    update = ap.update_activity(URLS, ap.note_object(URLS, edited), CREATED + timedelta(minutes=5))
    updated = classify(update, our_actor=PEER)
    assert isinstance(updated, UpdateNote) and updated.note.updated == edited.updated_at

    delete = ap.delete_activity(URLS, post.id, CREATED + timedelta(hours=1))
    assert classify(delete, our_actor=PEER) == DeleteObject(URLS.actor, note["id"])


# --- follows --------------------------------------------------------------------------------------


def test_accept_embeds_the_follow_as_received(shared_fixtures: Path) -> None:
    follow = load(shared_fixtures, "activities/pleroma-follow.json")  # carries state/to/cc extras
    accept = activities.accept_follow(URLS, follow, "t1")
    theirs = load(shared_fixtures, "activities/mastodon-accept-follow-embedded.json")
    assert_same_shape(theirs, accept, {"nickname": "Akkoma test key"})
    assert accept["id"] == URLS.accept_activity("t1") and accept["type"] == "Accept"
    assert accept["object"] == {
        "id": follow["id"],
        "type": "Follow",
        "actor": follow["actor"],
        "object": follow["object"],
    }
    assert accept["to"] == [follow["actor"]]


def test_reject_and_accept_classify_on_the_followers_side() -> None:
    ours = activities.follow_activity(URLS, PEER, "f1")
    their_accept = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": PEER + "#accepts/1",
        "type": "Accept",
        "actor": PEER,
        "object": ours,
    }
    assert classify(their_accept, our_actor=URLS.actor) == FollowAccepted(PEER, ours["id"])
    # and the reverse direction: what we answer to a peer's Follow reads right on their side
    follow = {"id": PEER + "#follows/9", "type": "Follow", "actor": PEER, "object": URLS.actor}
    assert classify(activities.accept_follow(URLS, follow, "a"), our_actor=PEER) == FollowAccepted(
        URLS.actor, follow["id"]
    )
    reject = activities.reject_follow(URLS, follow, "r")
    assert reject["id"] == URLS.reject_activity("r")
    assert classify(reject, our_actor=PEER) == FollowRejected(URLS.actor, follow["id"])


def test_follow_and_undo_follow() -> None:
    follow = activities.follow_activity(URLS, PEER, "f2")
    assert follow == {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": URLS.follow_activity("f2"),
        "type": "Follow",
        "actor": URLS.actor,
        "object": PEER,
    }
    command = classify(follow, our_actor=PEER)
    assert isinstance(command, FollowUs) and command.follow_id == follow["id"]
    undo = activities.undo_activity(URLS, follow, "u2")
    assert undo["id"] == URLS.undo_activity("u2") and undo["type"] == "Undo"
    assert undo["object"] == {k: v for k, v in follow.items() if k != "@context"}
    assert classify(undo, our_actor=PEER) == UndoFollow(URLS.actor, follow["id"])


# --- collections ----------------------------------------------------------------------------------


def test_outbox_root_and_page_shapes() -> None:
    root = activities.ordered_collection(
        URLS.outbox, 3, URLS.outbox + "?page=true", URLS.outbox + "?min_id=0&page=true"
    )
    assert root == {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": URLS.outbox,
        "type": "OrderedCollection",
        "totalItems": 3,
        "first": URLS.outbox + "?page=true",
        "last": URLS.outbox + "?min_id=0&page=true",
    }
    hidden = activities.ordered_collection(URLS.followers, 7, None)
    assert set(hidden) == {"@context", "id", "type", "totalItems"}  # a hidden list (R85)

    create = ap.create_activity(URLS, ap.note_object(URLS, make_post()))
    page = activities.ordered_collection_page(
        URLS.outbox + "?page=true", URLS.outbox, [create], next=URLS.outbox + "?max_id=x&page=true"
    )
    assert page["type"] == "OrderedCollectionPage" and page["partOf"] == URLS.outbox
    assert page["orderedItems"][0]["id"] == create["id"]
    assert "@context" not in page["orderedItems"][0] and page["@context"] == ap.NOTE_CONTEXT
    assert page["next"] == URLS.outbox + "?max_id=x&page=true" and "prev" not in page

    ids = activities.ordered_collection_page(
        URLS.followers + "?page=1", URLS.followers, [PEER], prev="p"
    )
    assert ids["orderedItems"] == [PEER] and ids["prev"] == "p" and "next" not in ids


def test_featured_collections_match_mastodons(shared_fixtures: Path) -> None:
    theirs = load(shared_fixtures, "collections/mastodon-featured.json")
    note = ap.note_object(URLS, make_post())
    featured = activities.featured_collection(URLS, [note])
    assert_same_shape(theirs, featured, {})
    assert featured["id"] == URLS.featured and featured["totalItems"] == 1
    assert featured["orderedItems"][0]["id"] == note["id"]
    assert "@context" not in featured["orderedItems"][0]

    tags = activities.featured_tags_collection(URLS, ["python", "café"])
    assert tags["type"] == "Collection" and tags["totalItems"] == 2
    assert tags["items"][1] == {"type": "Hashtag", "href": URLS.tag("café"), "name": "#café"}
