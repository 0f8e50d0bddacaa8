"""parse_actor over every real actor fixture, and the shapes peers vary (R10–R15)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fedistream.core.remote_actor import RemoteActor, actor_key_ids, domain_of, parse_actor

PEM = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"


def load(fixtures: Path, name: str) -> dict[str, Any]:
    text = (fixtures / "actors" / name).read_text("utf-8")
    return json.loads(text.replace("{{DOMAIN}}", "mastodon.example"))


def minimal(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": ["https://www.w3.org/ns/activitystreams"],
        "id": "https://peer.example/users/a",
        "type": "Person",
        "inbox": "https://peer.example/users/a/inbox",
        "preferredUsername": "a",
    }
    doc.update(extra)
    return doc


def test_mastodon_person(shared_fixtures: Path) -> None:
    actor = parse_actor(load(shared_fixtures, "mastodon-person.json"))
    base = "https://masto.qa.urbanwildlife.biz"
    assert actor.id == f"{base}/users/mastodon"
    assert actor.type == "Person"
    assert actor.inbox == f"{base}/users/mastodon/inbox"
    assert actor.shared_inbox == f"{base}/inbox"
    assert actor.key_id == f"{base}/users/mastodon#main-key"
    assert actor.public_key_pem and actor.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert actor.username == "mastodon"
    assert actor.domain == "masto.qa.urbanwildlife.biz"
    assert actor.handle == "@mastodon@masto.qa.urbanwildlife.biz"
    assert actor.name == "Mastodon"
    assert actor.url == f"{base}/@mastodon"
    assert actor.icon_url and actor.icon_url.startswith(f"{base}/system/accounts/avatars/")
    assert actor.delivery_inbox == f"{base}/inbox"


def test_mastodon_instance_actor_is_an_application(shared_fixtures: Path) -> None:
    actor = parse_actor(load(shared_fixtures, "mastodon-application-instance-actor.json"))
    assert actor.type == "Application"
    assert actor.id == "https://mastodon.example/actor"
    assert actor.key_id == "https://mastodon.example/actor#main-key"
    assert actor.username == "mastodon.example"
    assert actor.shared_inbox == "https://mastodon.example/inbox"


def test_misskey_top_level_shared_inbox(shared_fixtures: Path) -> None:
    doc = load(shared_fixtures, "misskey-person.json")
    actor = parse_actor(doc)
    assert actor.shared_inbox == "https://misskey.io/inbox"
    assert actor.key_id == "https://misskey.io/users/83ssedkv53#main-key"
    assert actor.username == "aimu"
    assert actor.name == "あいむ"
    del doc["endpoints"]  # the top-level sharedInbox alone is enough (R101)
    assert parse_actor(doc).shared_inbox == "https://misskey.io/inbox"


def test_pleroma(shared_fixtures: Path) -> None:
    actor = parse_actor(load(shared_fixtures, "pleroma-person.json"))
    assert actor.shared_inbox == "https://queer.hacktivis.me/inbox"
    assert actor.key_id == "https://queer.hacktivis.me/users/lanodan#main-key"
    assert actor.username == "lanodan"


def test_gotosocial_person_has_a_path_key_id(shared_fixtures: Path) -> None:
    actor = parse_actor(load(shared_fixtures, "gotosocial-person.json"))
    assert actor.key_id == "http://localhost:8080/users/the_mighty_zork/main-key"
    assert actor.domain == "localhost:8080"  # non-default port kept
    assert actor.shared_inbox == "http://localhost:8080/sharedInbox"
    assert actor.icon_url and actor.icon_url.endswith("01F8MH58A357CV5K7R7TJMSH6S.jpg")
    assert actor.summary == "<p>hey yo this is my profile!</p>"


def test_gotosocial_key_stub_is_not_an_actor(shared_fixtures: Path) -> None:
    # What GtS serves at its keyId: an actor stub with no inbox. The resolver fetches the
    # full actor by id instead (R28, R98).
    with pytest.raises(ValueError, match="no inbox"):
        parse_actor(load(shared_fixtures, "gotosocial-key-stub.json"))


def test_friendica(shared_fixtures: Path) -> None:
    actor = parse_actor(load(shared_fixtures, "friendica-person.json"))
    assert actor.key_id == "https://soc.schuerz.at/profile/jakob#main-key"
    assert actor.shared_inbox == "https://soc.schuerz.at/inbox"
    assert actor.icon_url == "https://soc.schuerz.at/photo/profile/jakob.png?ts=1630598950"


def test_lemmy(shared_fixtures: Path) -> None:
    actor = parse_actor(load(shared_fixtures, "lemmy-person.json"))
    assert actor.username == "picard"
    assert actor.name == "Jean-Luc Picard"
    assert actor.key_id == "https://enterprise.lemmy.ml/u/picard#main-key"
    assert actor.shared_inbox == "https://enterprise.lemmy.ml/inbox"


def test_fep_521a_multikey_actor_without_rsa_key(shared_fixtures: Path) -> None:
    actor = parse_actor(load(shared_fixtures, "fep-521a-multikey-actor.json"))
    assert actor.inbox == "https://server.example/users/alice/inbox"
    assert actor.key_id is None and actor.public_key_pem is None  # Multikey is not for HTTP sigs
    assert actor.username is None
    assert actor.handle == actor.id


def test_multikey_next_to_rsa_keeps_the_rsa_public_key(shared_fixtures: Path) -> None:
    doc = load(shared_fixtures, "fep-521a-multikey-actor.json")
    doc["publicKey"] = {"id": doc["id"] + "#main-key", "owner": doc["id"], "publicKeyPem": PEM}
    actor = parse_actor(doc)
    assert actor.key_id == doc["id"] + "#main-key"
    assert actor.public_key_pem == PEM


@pytest.mark.parametrize(
    "name",
    [
        "mastodon-person.json",
        "mastodon-application-instance-actor.json",
        "misskey-person.json",
        "pleroma-person.json",
        "gotosocial-person.json",
        "friendica-person.json",
        "lemmy-person.json",
        "fep-521a-multikey-actor.json",
    ],
)
def test_every_actor_fixture_parses(shared_fixtures: Path, name: str) -> None:
    actor = parse_actor(load(shared_fixtures, name))
    assert isinstance(actor, RemoteActor)
    assert actor.domain == domain_of(actor.id)


def test_public_key_array_choice() -> None:
    a, b = "https://peer.example/users/a#k1", "https://peer.example/users/a#k2"
    doc = minimal(
        publicKey=[
            "https://peer.example/users/a#bare",  # a bare id has no PEM: skipped
            {"id": a, "owner": "https://peer.example/users/a", "publicKeyPem": PEM},
            {"id": b, "owner": "https://peer.example/users/a", "publicKeyPem": PEM + " "},
        ]
    )
    assert parse_actor(doc).key_id == a
    assert parse_actor(doc, key_id=b).key_id == b
    assert parse_actor(doc, key_id="https://elsewhere/k").key_id == a
    assert actor_key_ids(doc) == ["https://peer.example/users/a#bare", a, b]


def test_a_key_owned_by_someone_else_is_ignored() -> None:
    doc = minimal(
        publicKey={
            "id": "https://evil.example/key",
            "owner": "https://evil.example/users/e",
            "publicKeyPem": PEM,
        }
    )
    actor = parse_actor(doc)
    assert actor.key_id is None and actor.public_key_pem is None


def test_a_key_without_owner_or_pem() -> None:
    no_owner = minimal(publicKey={"id": "https://peer.example/users/a#k", "publicKeyPem": PEM})
    assert parse_actor(no_owner).key_id == "https://peer.example/users/a#k"
    no_pem = minimal(publicKey={"id": "https://peer.example/users/a#k", "owner": "x"})
    assert parse_actor(no_pem).key_id is None


@pytest.mark.parametrize(
    ("icon", "expected"),
    [
        ({"type": "Image", "url": "https://cdn.example/a.png"}, "https://cdn.example/a.png"),
        ("https://cdn.example/b.png", "https://cdn.example/b.png"),
        ([{"type": "Image", "url": "https://cdn.example/c.png"}], "https://cdn.example/c.png"),
        (
            {"type": "Image", "url": {"type": "Link", "href": "https://cdn.example/d.png"}},
            "https://cdn.example/d.png",
        ),
        (
            {"type": "Image", "url": [{"href": "https://cdn.example/e.png"}]},
            "https://cdn.example/e.png",
        ),
        ([None, "javascript:alert(1)", "https://cdn.example/f.png"], "https://cdn.example/f.png"),
        ({"type": "Image"}, None),
        (None, None),
    ],
)
def test_icon_shapes(icon: Any, expected: str | None) -> None:
    assert parse_actor(minimal(icon=icon)).icon_url == expected


def test_url_prefers_the_html_link() -> None:
    doc = minimal(
        url=[
            {"type": "Link", "mediaType": "application/activity+json", "href": "https://p/x"},
            {"type": "Link", "mediaType": "text/html", "href": "https://p/@a"},
        ]
    )
    assert parse_actor(doc).url == "https://p/@a"
    assert parse_actor(minimal(url="https://p/@a")).url == "https://p/@a"
    assert parse_actor(minimal(url={"href": "https://p/@b"})).url == "https://p/@b"


def test_types_as_arrays_and_inbox_as_object() -> None:
    doc = minimal(type=["Service", "Bot"], inbox={"id": "https://peer.example/in"})
    actor = parse_actor(doc)
    assert actor.type == "Service"
    assert actor.inbox == "https://peer.example/in"


def test_fep_2c59_webfinger_stands_in_for_preferred_username() -> None:
    doc = minimal(webfinger="alice@peer.example")
    del doc["preferredUsername"]
    assert parse_actor(doc).username == "alice"


def test_empty_strings_are_absent() -> None:
    actor = parse_actor(minimal(name="", summary=""))
    assert actor.name is None and actor.summary is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": None}, "no http"),
        ({"id": "acct:a@peer.example"}, "no http"),
        ({"id": "ftp://peer.example/a"}, "no http"),
        ({"type": "Note"}, "not an actor type"),
        ({"type": None}, "not an actor type"),
        ({"inbox": None}, "no inbox"),
        ({"inbox": ""}, "no inbox"),
        ({"inbox": "mailto:a@peer.example"}, "no inbox"),
    ],
)
def test_unusable_documents_say_why(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_actor(minimal(**change))


def test_not_a_dict() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        parse_actor(["not", "an", "actor"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://Peer.Example/users/a", "peer.example"),
        ("https://peer.example:443/users/a", "peer.example"),
        ("http://peer.example:80/u", "peer.example"),
        ("https://peer.example:8443/u", "peer.example:8443"),
        ("http://127.0.0.1:8123/", "127.0.0.1:8123"),
        ("http://[::1]:8080/u", "[::1]:8080"),
    ],
)
def test_domain_of(url: str, domain: str) -> None:
    assert domain_of(url) == domain
