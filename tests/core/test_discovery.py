"""WebFinger, host-meta and NodeInfo documents: the resource forms Mastodon sends are recognised,
the JRD passes the checks a Mastodon client makes, and NodeInfo validates against both official
schemas (checked with a small JSON-Schema validator written here, shown to reject bad documents)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from fedistream.core.activitypub import MediaRef
from fedistream.core.discovery import (
    host_meta_json,
    host_meta_xml,
    match_webfinger_resource,
    nodeinfo,
    nodeinfo_content_type,
    nodeinfo_links,
    webfinger_document,
)
from fedistream.core.urls import Urls

URLS = Urls("https://blog.example.test")
DOMAIN = "blog.example.test"


def matches(resource: str | None) -> bool:
    return match_webfinger_resource(resource, username="Ada", domain=DOMAIN, urls=URLS)


# --- WebFinger resource --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "resource",
    [
        "acct:Ada@blog.example.test",
        "acct:ada@BLOG.example.TEST",  # username and domain compare case-insensitively
        "ACCT:ada@blog.example.test",
        "ada@blog.example.test",  # no scheme: Mastodon's server takes anything with '@' (R2)
        "@ada@blog.example.test",
        "  acct:ada@blog.example.test  ",
        "https://blog.example.test/",  # the actor id, which is also the profile page
        "https://blog.example.test",
        "HTTPS://Blog.Example.Test/",
    ],
)
def test_our_account_in_every_form(resource: str) -> None:
    assert matches(resource) is True


@pytest.mark.parametrize(
    "resource",
    [
        "acct:bob@blog.example.test",
        "acct:ada@other.example",
        "acct:ada@blog.example.test.evil.example",
        "ada@other.example",
        "acct:blog.example.test@blog.example.test",  # instance-actor form (R8): we have none
        "https://other.example/",
        "https://blog.example.test/p/0123456789abcdef",
        "https://blog.example.test/?x=1",
        "http://blog.example.test/",  # not our scheme, so not our id
    ],
)
def test_well_formed_but_not_ours(resource: str) -> None:
    assert matches(resource) is False


@pytest.mark.parametrize(
    "resource",
    [
        None,
        "",
        "   ",
        "ada",
        "acct:",
        "acct:ada",
        "acct:@blog.example.test",
        "acct:ada@",
        "a@b@c",
        "mailto:ada",
        "https://",
        "acct:a da@blog.example.test",
        "https://[broken/",
    ],
)
def test_garbage_resource_is_an_error(resource: str | None) -> None:
    with pytest.raises(ValueError):
        matches(resource)


# --- WebFinger document --------------------------------------------------------------------------


def test_webfinger_document_has_mastodons_links(shared_fixtures: Path) -> None:
    theirs = json.loads((shared_fixtures / "webfinger/mastodon-docs-gargron.json").read_text())
    ours = webfinger_document(URLS, "Ada", DOMAIN)
    assert set(theirs) == set(ours)
    assert {link["rel"] for link in theirs["links"]} <= {link["rel"] for link in ours["links"]}
    assert ours["subject"] == "acct:Ada@blog.example.test"
    assert ours["aliases"] == [URLS.actor]
    by_rel = {link["rel"]: link for link in ours["links"]}
    assert by_rel["http://webfinger.net/rel/profile-page"] == {
        "rel": "http://webfinger.net/rel/profile-page",
        "type": "text/html",
        "href": URLS.actor,
    }
    assert by_rel["http://ostatus.org/schema/1.0/subscribe"]["template"] == (
        "https://blog.example.test/authorize_interaction?uri={uri}"
    )
    assert "http://webfinger.net/rel/avatar" not in by_rel


def test_webfinger_passes_a_mastodon_clients_checks() -> None:
    """R4/R6: a subject, and one AS2 self link whose href is byte-equal to the actor id."""
    document = json.loads(json.dumps(webfinger_document(URLS, "Ada", DOMAIN)))
    assert document["subject"]
    selves = [link for link in document["links"] if link["rel"] == "self"]
    assert selves == [{"rel": "self", "type": "application/activity+json", "href": URLS.actor}]


def test_webfinger_avatar_link() -> None:
    avatar = MediaRef(URLS.media("a.png"), "image/png")
    links = webfinger_document(URLS, "Ada", DOMAIN, avatar)["links"]
    assert links[-1] == {
        "rel": "http://webfinger.net/rel/avatar",
        "type": "image/png",
        "href": URLS.media("a.png"),
    }


# --- host-meta -----------------------------------------------------------------------------------


def lrdd_templates(xml: str) -> list[str]:
    root = ET.fromstring(xml)
    assert root.tag == "{http://docs.oasis-open.org/ns/xri/xrd-1.0}XRD"
    return [
        link.attrib["template"]
        for link in root.iter("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")
        if link.attrib.get("rel") == "lrdd"
    ]


def test_host_meta_points_at_webfinger_like_mastodons(shared_fixtures: Path) -> None:
    raw = (shared_fixtures / "webfinger/mastodon-spec-host-meta.http.txt").read_text()
    theirs = lrdd_templates(raw.split("\n\n", 1)[1].strip())[0]
    ours = lrdd_templates(host_meta_xml(URLS.base))
    assert ours == ["https://blog.example.test/.well-known/webfinger?resource={uri}"]
    assert ours[0].replace(URLS.base, "") == re.sub(r"^https://[^/]+", "", theirs)
    assert host_meta_json(URLS.base) == {"links": [{"rel": "lrdd", "template": ours[0]}]}


def test_host_meta_escapes_the_base() -> None:
    assert lrdd_templates(host_meta_xml('https://a.example/x?"&<'))[0].startswith(
        'https://a.example/x?"&<'
    )


# --- NodeInfo ------------------------------------------------------------------------------------

_JSON_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
}


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """The JSON-Schema draft-04 keywords the NodeInfo schemas use, and nothing more."""
    errors: list[str] = []
    expected = schema.get("type")
    if expected:
        is_bool = isinstance(value, bool)
        ok = isinstance(value, _JSON_TYPES[expected]) and (expected == "boolean" or not is_bool)
        if not ok:
            return [f"{path}: expected {expected}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: {value} < {schema['minimum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        for index, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{path}[{index}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [
            f"{path}: missing {key}" for key in schema.get("required", []) if key not in value
        ]
        if len(value) < schema.get("minProperties", 0):
            errors.append(f"{path}: too few properties")
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected {key}")
    return errors


def schema(shared_fixtures: Path, version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (shared_fixtures / f"nodeinfo/nodeinfo-{version}-schema.json").read_text()
    )
    return data


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_nodeinfo_is_valid_against_its_schema(shared_fixtures: Path, version: str) -> None:
    document = nodeinfo(
        version,
        software_version="0.1.0",
        local_posts=42,
        metadata={"nodeName": "Ada's stream"},
        repository="https://example.org/fedistream",
        homepage="https://example.org/",
    )
    assert schema_errors(document, schema(shared_fixtures, version)) == []
    assert document["usage"] == {
        "users": {"total": 1, "activeHalfyear": 1, "activeMonth": 1},
        "localPosts": 42,
    }
    assert document["openRegistrations"] is False and document["protocols"] == ["activitypub"]
    assert ("repository" in document["software"]) is (version == "2.1")  # 2.0 forbids it


def test_the_schema_check_can_fail(shared_fixtures: Path) -> None:
    """The validator passes a real peer's document and rejects broken ones."""
    real = json.loads((shared_fixtures / "nodeinfo/mastodon-social-2.0.json").read_text())
    assert schema_errors(real, schema(shared_fixtures, "2.0")) == []
    metadata_array = json.loads(
        (shared_fixtures / "nodeinfo/mastodon-4.0-metadata-array.json").read_text()
    )
    assert schema_errors(metadata_array, schema(shared_fixtures, "2.0"))  # "metadata": [] (R90)
    good = nodeinfo("2.1", software_version="1", local_posts=0)
    broken = [
        {**good, "version": "2.0"},
        {**good, "software": {"name": "FediStream", "version": "1"}},
        {**good, "openRegistrations": "false"},
        {**good, "usage": {"users": {"total": -1}}},
        {**good, "protocols": []},
        {k: v for k, v in good.items() if k != "metadata"},
    ]
    for document in broken:
        assert schema_errors(document, schema(shared_fixtures, "2.1")), document


def test_nodeinfo_links_and_content_type(shared_fixtures: Path) -> None:
    example = json.loads(
        (shared_fixtures / "nodeinfo/well-known-nodeinfo-protocol-example.json").read_text()
    )
    links = nodeinfo_links(URLS.base)["links"]
    assert links == [
        {
            "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
            "href": "https://blog.example.test/nodeinfo/2.1",
        },
        {
            "rel": "http://nodeinfo.diaspora.software/ns/schema/2.0",
            "href": "https://blog.example.test/nodeinfo/2.0",
        },
    ]
    assert links[0]["rel"] == example["links"][0]["rel"]
    assert nodeinfo_content_type("2.1") == (
        'application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.1#"'
    )


def test_nodeinfo_refuses_unknown_versions() -> None:
    with pytest.raises(ValueError):
        nodeinfo("1.0", software_version="1", local_posts=0)
