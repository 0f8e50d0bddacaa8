"""Accept negotiation: the headers real servers and browsers send get AS2 or HTML as they expect;
inbox Content-Types are accepted the way GoToSocial and Mastodon accept them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedistream.core.negotiation import (
    AS2_CONTENT_TYPE,
    AS2_LD_CONTENT_TYPE,
    is_acceptable_inbox_content_type,
    wants_activity_json,
)

FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
    "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)


@pytest.mark.parametrize(
    "accept",
    [
        "application/activity+json, application/ld+json",  # Mastodon's fetches (R92)
        'application/activity+json, application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
        'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
        "application/ld+json",
        AS2_CONTENT_TYPE,
        "APPLICATION/Activity+JSON",
        "application/json",  # Mastodon answers plain JSON with the AS2 document too
        "application/activity+json, */*",
        "application/activity+json;q=0.9, text/html;q=0.8",
        "text/html;q=0.5, application/ld+json",
        "application/jrd+json, application/activity+json",
    ],
)
def test_servers_get_activity_json(accept: str) -> None:
    assert wants_activity_json(accept) is True


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        FIREFOX,
        CHROME,
        "*/*",
        "text/*",
        "text/html",
        "image/png",
        "text/html, application/activity+json;q=0.5",
        "application/activity+json;q=0",
        "application/activity+json;q=nonsense",
        "application/activity+json;q=2",
        "*/*, application/json;q=0.1",
        ",,;;",
    ],
)
def test_browsers_and_others_get_html(accept: str | None) -> None:
    assert wants_activity_json(accept) is False


@given(st.text())
def test_any_accept_header_gives_an_answer(accept: str) -> None:
    assert wants_activity_json(accept) in (True, False)


@pytest.mark.parametrize(
    "content_type",
    [
        AS2_CONTENT_TYPE,
        "application/activity+json; charset=utf-8",
        AS2_LD_CONTENT_TYPE,
        "application/ld+json",
        'Application/LD+JSON; profile="https://www.w3.org/ns/activitystreams"; charset=utf-8',
        "application/json",  # Mastodon's inbox reads the body whatever the type
    ],
)
def test_inbox_accepts_activity_streams_bodies(content_type: str) -> None:
    assert is_acceptable_inbox_content_type(content_type) is True


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "text/html",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/activity+jsonx",
    ],
)
def test_inbox_refuses_other_bodies(content_type: str | None) -> None:
    assert is_acceptable_inbox_content_type(content_type) is False
