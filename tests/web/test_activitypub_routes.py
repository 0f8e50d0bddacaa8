"""The ActivityPub and discovery routes over HTTP: negotiation, documents, collections, errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from starlette.testclient import TestClient

from tests.conftest import publish

AS2 = {"Accept": "application/activity+json"}
LD = {"Accept": 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'}
BASE = "https://blog.example.test"


@pytest.mark.parametrize("headers", [AS2, LD])
def test_actor_is_served_at_the_root_for_servers(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.get("/", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/activity+json")
    assert "Accept" in response.headers["vary"]
    assert response.headers["access-control-allow-origin"] == "*"
    actor = response.json()
    assert actor["id"] == BASE + "/" and actor["type"] == "Person"
    assert actor["preferredUsername"] == "owner"
    assert actor["inbox"] == BASE + "/inbox"
    assert actor["endpoints"]["sharedInbox"] == BASE + "/inbox"
    assert actor["publicKey"]["id"] == BASE + "/#main-key"
    assert actor["publicKey"]["owner"] == BASE + "/"
    assert actor["publicKey"]["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    for key in ("outbox", "followers", "following", "featured", "featuredTags", "published"):
        assert key in actor


def test_browsers_get_html_at_the_same_url(client: TestClient) -> None:
    response = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert response.headers["content-type"].startswith("text/html")
    assert "Accept" in response.headers["vary"]
    assert '<link rel="alternate" type="application/activity+json"' in response.text


def test_the_key_stays_the_same_across_requests(client: TestClient) -> None:
    first = client.get("/", headers=AS2).json()["publicKey"]["publicKeyPem"]
    assert client.get("/", headers=AS2).json()["publicKey"]["publicKeyPem"] == first


def test_note_create_and_tombstone(owner_client: TestClient) -> None:
    post_id = publish(owner_client, "A #tagged note", title="Titled")
    note = owner_client.get(f"/p/{post_id}", headers=AS2).json()
    assert note["id"] == f"{BASE}/p/{post_id}" and note["type"] == "Note"
    assert note["attributedTo"] == BASE + "/"
    assert "https://www.w3.org/ns/activitystreams#Public" in note["to"]
    assert {"type": "Hashtag", "href": f"{BASE}/tags/tagged", "name": "#tagged"} in note["tag"]
    assert note["content"].startswith("<p><strong>Titled</strong></p>")
    create = owner_client.get(f"/p/{post_id}/activity").json()
    assert create["type"] == "Create" and create["object"]["id"] == note["id"]
    replies = owner_client.get(f"/p/{post_id}/replies").json()
    assert replies["id"] == note["replies"]["id"] and replies["first"]["items"] == []
    owner_client.post(f"/admin/posts/{post_id}/delete", data={"csrf": owner_client.csrf})  # type: ignore[attr-defined]
    gone = owner_client.get(f"/p/{post_id}", headers=AS2)
    assert gone.status_code == 410
    assert gone.json()["type"] == "Tombstone" and gone.json()["id"] == note["id"]
    assert owner_client.get(f"/p/{post_id}").status_code == 410  # the HTML side agrees


def test_unknown_note_is_a_json_404_for_servers(client: TestClient) -> None:
    response = client.get("/p/0000000000000000", headers=AS2)
    assert response.status_code == 404
    assert "error" in response.json()


def test_outbox_pages_walk_every_thought(owner_client: TestClient) -> None:
    ids = [publish(owner_client, f"n{i}") for i in range(23)]
    root = owner_client.get("/outbox").json()
    assert root["type"] == "OrderedCollection" and root["totalItems"] == 23
    page = owner_client.get(root["first"].removeprefix(BASE)).json()
    seen = [item["object"]["id"] for item in page["orderedItems"]]
    assert len(seen) == 20 and page["partOf"] == BASE + "/outbox"
    page = owner_client.get(page["next"].removeprefix(BASE)).json()
    seen += [item["object"]["id"] for item in page["orderedItems"]]
    assert "next" not in page or page["next"] is None
    assert seen == [f"{BASE}/p/{i}" for i in reversed(ids)]
    assert owner_client.get("/outbox?page=true&max_id=bogus").status_code == 400


def test_followers_following_featured_collections(client: TestClient) -> None:
    followers = client.get("/followers").json()
    assert followers["type"] == "OrderedCollection" and followers["totalItems"] == 0
    assert client.get("/followers?page=1").json()["orderedItems"] == []
    assert client.get("/following").json()["totalItems"] == 0
    featured = client.get("/featured").json()
    assert featured["type"] == "OrderedCollection" and featured["orderedItems"] == []
    assert client.get("/featured/tags").json()["totalItems"] == 0


@pytest.mark.parametrize(
    "resource",
    [
        "acct:owner@blog.example.test",
        "owner@blog.example.test",
        "acct:OWNER@BLOG.EXAMPLE.TEST",
        BASE + "/",
    ],
)
def test_webfinger_resource_forms(client: TestClient, resource: str) -> None:
    response = client.get("/.well-known/webfinger", params={"resource": resource})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jrd+json")
    assert response.headers["access-control-allow-origin"] == "*"
    document = response.json()
    assert document["subject"] == "acct:owner@blog.example.test"
    selves = [link for link in document["links"] if link["rel"] == "self"]
    assert selves[0]["type"] == "application/activity+json" and selves[0]["href"] == BASE + "/"


def test_webfinger_errors(client: TestClient) -> None:
    assert client.get("/.well-known/webfinger").status_code == 400
    assert client.get("/.well-known/webfinger", params={"resource": "acct:"}).status_code == 400
    missing = client.get(
        "/.well-known/webfinger", params={"resource": "acct:bob@blog.example.test"}
    )
    assert missing.status_code == 404 and "error" in missing.json()
    elsewhere = client.get("/.well-known/webfinger", params={"resource": "acct:owner@other.test"})
    assert elsewhere.status_code == 404


def test_host_meta_xml_and_json(client: TestClient) -> None:
    response = client.get("/.well-known/host-meta")
    assert response.headers["content-type"].startswith("application/xrd+xml")
    link = ET.fromstring(response.text).find("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")
    assert link is not None and link.get("rel") == "lrdd"
    assert link.get("template") == BASE + "/.well-known/webfinger?resource={uri}"
    as_json = client.get("/.well-known/host-meta", headers={"Accept": "application/json"}).json()
    assert as_json["links"][0]["template"] == link.get("template")


def test_nodeinfo(owner_client: TestClient) -> None:
    publish(owner_client, "counted")
    links = owner_client.get("/.well-known/nodeinfo").json()["links"]
    hrefs = {link["rel"].rsplit("/", 1)[-1]: link["href"] for link in links}
    assert set(hrefs) == {"2.0", "2.1"}
    document = owner_client.get(hrefs["2.1"].removeprefix(BASE))
    assert (
        'profile="http://nodeinfo.diaspora.software/ns/schema/2.1#"'
        in document.headers["content-type"]
    )
    body = document.json()
    assert body["software"]["name"] == "fedistream" and body["protocols"] == ["activitypub"]
    assert body["openRegistrations"] is False and body["usage"]["localPosts"] == 1
    assert owner_client.get("/nodeinfo/9.9").status_code == 404
