"""parse_note reads every post shape in the shared fixtures (Mastodon, Misskey, Pleroma, Pixelfed,
GoToSocial, Friendica) and the Article/Page/PeerTube variants, and says why when it cannot."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedistream.core.as2 import PUBLIC
from fedistream.core.remote_note import RemoteAttachment, RemoteNote, parse_note

CREATES = [
    "friendica-create-note.json",
    "mastodon-create-note-cw-hashtag.json",
    "mastodon-create-note-reply-mention.json",
    "misskey-create-note-mention.json",
    "pixelfed-create-note-image.json",
    "pixelfed-create-reply-single-tag-object.json",
    "pleroma-create-note.json",
]
BARE_NOTES = [
    "gotosocial-note-mention.json",
    "mastodon-note-attachment-blurhash.json",
    "mastodon-note-direct-message.json",
    "misskey-note-quote.json",
]


def note_json(shared_fixtures: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared_fixtures / "activities" / name).read_text("utf-8"))
    return data["object"] if data.get("type") == "Create" else data


def parse(shared_fixtures: Path, name: str) -> RemoteNote:
    return parse_note(note_json(shared_fixtures, name))


@pytest.mark.parametrize("name", CREATES + BARE_NOTES)
def test_every_fixture_note_parses(shared_fixtures: Path, name: str) -> None:
    raw = note_json(shared_fixtures, name)
    note = parse_note(raw)
    assert note.id == raw["id"]
    assert note.actor_id == raw["attributedTo"]
    assert note.content_html == raw["content"]  # raw: sanitising is a separate step
    assert note.published.tzinfo is not None
    assert note.url.startswith(("http://", "https://"))


def test_mastodon_public_reply(shared_fixtures: Path) -> None:
    note = parse(shared_fixtures, "mastodon-create-note-reply-mention.json")
    assert note.type == "Note"
    assert note.in_reply_to == "https://mamot.fr/users/retiolus/statuses/107224244380204526"
    assert note.url == "https://mastodon.madrid/@felix/107224289116410645"
    assert note.mentions == ("https://mamot.fr/users/retiolus",)
    assert note.to == ("https://mastodon.madrid/users/felix/followers",)
    assert note.cc == (PUBLIC, "https://mamot.fr/users/retiolus")
    assert note.is_public  # unlisted counts: Public is in cc
    assert note.summary is None and note.sensitive is False
    assert note.language == "en"
    assert note.published == datetime(2021, 11, 5, 11, 46, 50, tzinfo=UTC)
    assert note.updated is None and note.quote_of is None and note.attachments == ()


def test_mastodon_content_warning_and_hashtag(shared_fixtures: Path) -> None:
    note = parse(shared_fixtures, "mastodon-create-note-cw-hashtag.json")
    assert note.summary == "cw" and note.sensitive is True  # no `sensitive` key: the CW decides
    assert note.tags == ("NSFW",)
    assert note.mentions == ("http://localtesting.pleroma.lol/users/lain",)


def test_mastodon_attachment_with_blurhash(shared_fixtures: Path) -> None:
    note = parse(shared_fixtures, "mastodon-note-attachment-blurhash.json")
    assert note.attachments == (
        RemoteAttachment(
            url="https://cdn.masto.host/floss/media_attachments/files/113/306/826/682/985/891/original/c8d906a2f2ab2334.jpg",
            media_type="image/jpeg",
            name="The KDE dragons Katie and Konqi stand on either side of a pot filling up with"
            " gold coins. Donate!",
            width=1500,
            height=1095,
            blurhash="USQv:h-W-qI-^,W;RPs=^-R%NZxbo#sDobSc",
        ),
    )


def test_mastodon_direct_message_is_not_public(shared_fixtures: Path) -> None:
    note = parse(shared_fixtures, "mastodon-note-direct-message.json")
    assert note.to == ("https://ds9.lemmy.ml/u/nutomic",) and note.cc == ()
    assert not note.is_public
    assert note.language == "es"


def test_misskey_reply_and_quote(shared_fixtures: Path) -> None:
    reply = parse(shared_fixtures, "misskey-create-note-mention.json")
    assert reply.published == datetime(2023, 5, 22, 14, 26, 53, 600000, tzinfo=UTC)
    assert reply.mentions == ("https://calckey.jp/users/9bu1xzwjyb",)
    assert reply.language is None
    quote = parse(shared_fixtures, "misskey-note-quote.json")
    assert quote.quote_of == "https://example.com/objects/43479e20-c0f8-4f49-bf7f-13fab8234924"
    assert quote.in_reply_to is None and quote.summary is None


@pytest.mark.parametrize("key", ["quote", "quoteUri", "quoteUrl", "_misskey_quote"])
def test_every_quote_property(key: str) -> None:
    note = parse_note({**minimal(), key: "https://peer.example/notes/q"})
    assert note.quote_of == "https://peer.example/notes/q"


def test_pixelfed_image_post(shared_fixtures: Path) -> None:
    note = parse(shared_fixtures, "pixelfed-create-note-image.json")
    assert note.published == datetime(2023, 10, 30, 13, 7, 15, tzinfo=UTC)  # "+00:00" offset
    assert note.tags == ("streetphotography", "colorphotography")
    assert note.content_html.startswith("Shadows <a")  # a bare fragment, no <p>
    (image,) = note.attachments
    assert image.media_type == "image/jpeg" and image.width == 1620 and image.height == 1080
    assert image.name and image.name.startswith("Stickers on the glass")
    assert image.blurhash == "U9AmM5?GIp9b~UNGoeRk4=E2oeax4;ofxtWB"


def test_pixelfed_single_tag_object(shared_fixtures: Path) -> None:
    note = parse(shared_fixtures, "pixelfed-create-reply-single-tag-object.json")
    assert note.mentions == ("https://gram.social/users/Alice",)
    assert note.in_reply_to == "https://gram.social/p/Alice/650350850687790456"


def test_gotosocial_single_valued_properties(shared_fixtures: Path) -> None:
    note = parse(shared_fixtures, "gotosocial-note-mention.json")
    assert note.to == (PUBLIC,)  # sent as a bare string (R103)
    assert note.mentions == ("http://localhost:8080/users/the_mighty_zork",)
    assert note.summary is None and note.sensitive is False  # "" is no content warning
    assert note.url == "http://localhost:8080/@admin/statuses/01FF25D5Q0DH7CHD57CTRS6WK0"


def test_pleroma_note(shared_fixtures: Path) -> None:
    note = parse(shared_fixtures, "pleroma-create-note.json")
    assert note.published == datetime(2021, 10, 26, 10, 28, 35, 602455, tzinfo=UTC)
    assert note.summary is None  # Pleroma's "" summary
    assert note.url == note.id  # no `url`: the id is the permalink (R113)
    assert note.mentions == ("https://enterprise.lemmy.ml/u/picard",)


def test_friendica_note_and_content_map_only(shared_fixtures: Path) -> None:
    raw = note_json(shared_fixtures, "friendica-create-note.json")
    assert parse_note(raw).content_html == raw["content"]
    only_map = {k: v for k, v in raw.items() if k != "content"}
    note = parse_note(only_map)
    assert note.content_html == raw["contentMap"]["de"] and note.language == "de"


def minimal(**changes: Any) -> dict[str, Any]:
    note = {
        "id": "https://peer.example/notes/1",
        "type": "Note",
        "attributedTo": "https://peer.example/users/bob",
        "content": "<p>hi</p>",
        "published": "2024-01-02T03:04:05Z",
    }
    note.update(changes)
    return note


def test_minimal_note_defaults() -> None:
    note = parse_note(minimal())
    assert note.to == () and note.cc == () and note.tags == () and note.mentions == ()
    assert note.url == "https://peer.example/notes/1"
    assert note.name is None and note.language is None and note.sensitive is False


def test_article_and_page_keep_their_title() -> None:
    page = parse_note(
        minimal(type="Page", name="A Lemmy post", content=None, url="https://x.example/")
    )
    assert page.type == "Page" and page.name == "A Lemmy post" and page.content_html == ""
    article = parse_note(minimal(type=["Article", "Object"], name="Essay"))
    assert article.type == "Article" and article.name == "Essay"


def test_peertube_shapes() -> None:
    note = parse_note(
        minimal(
            type="Video",
            attributedTo=[
                {"type": "Group", "id": "https://tube.example/video-channels/c"},
                {"type": "Person", "id": "https://tube.example/accounts/a"},
            ],
            url=[
                {"type": "Link", "mediaType": "video/mp4", "href": "https://tube.example/v.mp4"},
                {"type": "Link", "mediaType": "text/html", "href": "https://tube.example/w/1"},
            ],
        )
    )
    assert note.actor_id == "https://tube.example/accounts/a"
    assert note.url == "https://tube.example/w/1"  # the HTML link is the permalink (R113)


def test_links_and_attachments_in_object_form() -> None:
    note = parse_note(
        minimal(
            url={"type": "Link", "href": "https://peer.example/@bob/1"},
            inReplyTo={"id": "https://else.example/n/2", "type": "Note"},
            attributedTo={"id": "https://peer.example/users/bob", "type": "Person"},
            attachment={
                "type": "Video",
                "url": [
                    {
                        "type": "Link",
                        "href": "https://cdn.example/v.webm",
                        "mediaType": "video/webm",
                    }
                ],
                "summary": "a described video",
                "name": "file.webm",
                "width": True,  # nonsense values are dropped
                "height": -3,
            },
            tag=[
                {"type": "Hashtag", "name": "#x"},
                {"type": "Hashtag", "name": "#x"},
                "junk",
                {"type": "Emoji"},
            ],
        )
    )
    assert note.url == "https://peer.example/@bob/1"
    assert note.in_reply_to == "https://else.example/n/2"
    assert note.actor_id == "https://peer.example/users/bob"
    assert note.attachments == (
        RemoteAttachment(
            "https://cdn.example/v.webm", "video/webm", "a described video", None, None, None
        ),
    )
    assert note.tags == ("x",)


def test_attachments_without_a_web_url_are_dropped() -> None:
    note = parse_note(
        minimal(
            attachment=[
                {"type": "Document", "url": "javascript:x"},
                {"type": "Link", "href": "https://a"},
            ]
        )
    )
    assert note.attachments == ()


def test_image_only_post_without_text() -> None:
    note = parse_note(
        minimal(content="", attachment=[{"type": "Image", "url": "https://cdn.example/i.png"}])
    )
    assert note.content_html == "" and len(note.attachments) == 1


def test_updated_is_read() -> None:
    assert parse_note(minimal(updated="2024-01-02T05:00:00+02:00")).updated == datetime(
        2024, 1, 2, 3, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ("https://peer.example/notes/1", "not a JSON object"),
        ([minimal()], "not a JSON object"),
        (minimal(type="Person"), "not a post type"),
        (minimal(type=None), "not a post type"),
        (minimal(id=None), "no http"),
        (minimal(id="urn:uuid:1"), "no http"),
        (minimal(id="https://[oops/"), "no http"),
        (minimal(attributedTo=None), "no attributedTo"),
        (minimal(published=None), "published"),
        (minimal(published="yesterday"), "published"),
        (minimal(published="0001-01-01T00:00:00+05:00"), "published"),  # before year 1 in UTC
        (minimal(content="  "), "no content"),
    ],
)
def test_unusable_posts_say_why(obj: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_note(obj)


def test_parse_does_not_modify_its_input(shared_fixtures: Path) -> None:
    raw = note_json(shared_fixtures, "pixelfed-create-note-image.json")
    before = copy.deepcopy(raw)
    parse_note(raw)
    assert raw == before


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
NOTE_KEYS = [
    "id",
    "type",
    "attributedTo",
    "content",
    "contentMap",
    "published",
    "updated",
    "url",
    "to",
    "cc",
    "tag",
    "attachment",
    "summary",
    "sensitive",
    "inReplyTo",
    "name",
    "quote",
]


@given(
    st.dictionaries(
        st.sampled_from(NOTE_KEYS),
        JSON
        | st.sampled_from(
            [
                "Note",
                "Page",
                "https://peer.example/x",
                "2024-01-01T00:00:00Z",
                "http://[",
                "Hashtag",
            ]
        ),
    ).map(lambda d: {**minimal(), **d})
)
def test_parse_note_only_ever_raises_value_error(obj: dict[str, Any]) -> None:
    try:
        note = parse_note(obj)
    except ValueError:
        return
    assert note.id.startswith(("http://", "https://"))
    assert isinstance(note.content_html, str)
