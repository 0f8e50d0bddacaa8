"""Body digests (RFC 3230 Digest, RFC 9530 Content-Digest) and the RFC 8941 parser under them."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedistream.core.digest import (
    DigestError,
    MalformedDigest,
    StructuredFieldError,
    Token,
    content_digest_header,
    digest_header,
    parse_dictionary,
    serialize_inner_list,
    sha256_b64,
    verify_content_digest,
    verify_digest_header,
)

HELLO = b'{"hello": "world"}'
HELLO_SHA256 = "X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="  # cavage-12 C, also in the fixtures


def load(shared_fixtures: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared_fixtures / "httpsig" / name).read_text("utf-8"))
    return data


@pytest.fixture
def rfc9530(shared_fixtures: Path) -> dict[str, Any]:
    return load(shared_fixtures, "rfc9530-content-digest-examples.json")


# --- RFC 9530 fixture ---


def test_computed_digests_match_the_fixture(rfc9530: dict[str, Any]) -> None:
    computed = rfc9530["computed"]
    for variant in ("without_LF", "with_LF"):
        body = computed[f"body_{variant}"].encode()
        sha256 = computed[f"sha-256_of_body_{variant}"]
        sha512 = computed[f"sha-512_of_body_{variant}"]
        assert sha256_b64(body) == sha256
        assert content_digest_header(body) == f"sha-256=:{sha256}:"
        assert content_digest_header(body, ("sha-512",)) == f"sha-512=:{sha512}:"


def test_both_header_forms_as_mastodon_sends_them(rfc9530: dict[str, Any]) -> None:
    forms = rfc9530["format_comparison"]
    body = rfc9530["computed"]["body_without_LF"].encode()
    assert f"Digest: {digest_header(body)}" == forms["RFC3230_Digest_as_Mastodon_sends"]
    expected = forms["RFC9530_Content-Digest_as_Mastodon_main_sends"]
    assert f"Content-Digest: {content_digest_header(body)}" == expected


def test_section_2_sha512_example_verifies_over_the_body_with_lf(rfc9530: dict[str, Any]) -> None:
    body = rfc9530["computed"]["body_with_LF"].encode()
    value = rfc9530["section_2_examples"][0].removeprefix("Content-Digest: ")
    assert verify_content_digest(value, body, required=None) == "sha-512"
    # Mastodon insists on sha-256, and this header offers only sha-512.
    with pytest.raises(DigestError, match="Offered algorithms: sha-512"):
        verify_content_digest(value, body)


def test_section_2_two_digest_example_is_refused(rfc9530: dict[str, Any]) -> None:
    # The fixture notes: its sha-256 value d435Qo… is not a digest of this body. Every offered
    # algorithm we know is checked, so the bad one is caught even though sha-512 matches.
    body = rfc9530["computed"]["body_with_LF"].encode()
    value = rfc9530["section_2_examples"][1].removeprefix("Content-Digest: ")
    with pytest.raises(DigestError) as caught:
        verify_content_digest(value, body, required=None)
    assert "given: d435Qo+nKZ+gLcUHn7GQtQ72hiBVAgqoLsZnZPiTGPk=" in caught.value.reason
    assert sha256_b64(body) in caught.value.reason


def test_appendix_b1_response_digests_match_its_body(rfc9530: dict[str, Any]) -> None:
    response = rfc9530["appendix_B1_request_and_response"][1]
    head, _, body = response.partition("\n\n")
    fields = dict(line.split(": ", 1) for line in head.split("\n")[1:])
    # The response text ends without the LF that Content-Length: 19 counts.
    content = body.encode() + b"\n"
    assert len(content) == int(fields["Content-Length"])
    assert verify_content_digest(fields["Content-Digest"], content) == "sha-256"
    assert verify_content_digest(fields["Repr-Digest"], content) == "sha-256"


# --- RFC 3230 Digest, with Mastodon's error texts ---


def test_digest_header_accepts_any_case_and_extra_algorithms() -> None:
    assert digest_header(HELLO) == f"SHA-256={HELLO_SHA256}"
    verify_digest_header(f"sha-256={HELLO_SHA256}", HELLO)
    verify_digest_header(f"SHA-512=abc, SHA-256={HELLO_SHA256}", HELLO)


def test_digest_mismatch_names_both_values() -> None:
    with pytest.raises(DigestError) as caught:
        verify_digest_header(f"SHA-256={HELLO_SHA256}", HELLO + b" ")
    assert caught.value.reason == (
        f"Invalid Digest value. Computed SHA-256 digest: {sha256_b64(HELLO + b' ')}; "
        f"given: {HELLO_SHA256}"
    )
    assert caught.value.status == 401


def test_digest_without_sha256_lists_what_was_offered() -> None:
    with pytest.raises(DigestError, match="Offered algorithms: sha-512, md5"):
        verify_digest_header("SHA-512=abc,MD5=def", HELLO)


def test_digest_that_is_not_base64_or_not_32_bytes() -> None:
    with pytest.raises(DigestError, match="not a valid base64 string. Given digest: %%%"):
        verify_digest_header("SHA-256=%%%", HELLO)
    with pytest.raises(DigestError, match="not a SHA-256 digest. Given digest: AAAA"):
        verify_digest_header("SHA-256=AAAA", HELLO)


# --- RFC 9530 Content-Digest ---


def test_content_digest_round_trip_both_algorithms() -> None:
    value = content_digest_header(HELLO, ("sha-256", "sha-512"))
    assert value.startswith(f"sha-256=:{HELLO_SHA256}:, sha-512=:")
    assert verify_content_digest(value, HELLO) == "sha-256"


def test_content_digest_mismatch_uses_mastodon_wording() -> None:
    with pytest.raises(DigestError) as caught:
        verify_content_digest(content_digest_header(HELLO), b"tampered")
    assert caught.value.reason.startswith("Invalid Digest value. Computed SHA-256 digest: ")
    assert caught.value.reason.endswith(f"; given: {HELLO_SHA256}")


def test_uppercase_content_digest_key_is_malformed_400() -> None:
    # Mastodon answers 400: RFC 8941 keys are lower-case, so `SHA-256=` is no dictionary.
    with pytest.raises(MalformedDigest) as caught:
        verify_content_digest(f"SHA-256=:{HELLO_SHA256}:", HELLO)
    assert caught.value.status == 400
    assert caught.value.reason == (
        "Content-Digest could not be parsed. It does not contain a valid RFC8941 dictionary."
    )


def test_content_digest_value_must_be_a_byte_sequence() -> None:
    with pytest.raises(MalformedDigest):
        verify_content_digest(f'sha-256="{HELLO_SHA256}"', HELLO)


def test_unknown_content_digest_algorithm_alone_is_refused() -> None:
    with pytest.raises(DigestError, match="Offered algorithms: md5"):
        verify_content_digest("md5=:AAAA:", HELLO, required=None)
    with pytest.raises(ValueError, match="unsupported digest algorithm"):
        content_digest_header(HELLO, ("md5",))


# --- RFC 8941 structured fields ---


def test_dictionary_with_every_item_type() -> None:
    parsed = parse_dictionary(
        'a=1, b=-2.5, c="q\\"d", d=tok/en:x, e=:AQID:, f=?0, g;p=1, h=(1 "x");q'
    )
    assert parsed == {
        "a": (1, {}),
        "b": (Decimal("-2.5"), {}),
        "c": ('q"d', {}),
        "d": (Token("tok/en:x"), {}),
        "e": (b"\x01\x02\x03", {}),
        "f": (False, {}),
        "g": (True, {"p": 1}),
        "h": ([(1, {}), ("x", {})], {"q": True}),
    }
    assert isinstance(parsed["d"][0], Token)


def test_signature_input_round_trips_to_its_canonical_text() -> None:
    text = '("@method" "@query-param";name="Pet" "content-digest");created=1618884473;keyid="k"'
    items, params = parse_dictionary(f"sig1={text}")["sig1"]
    assert isinstance(items, list)
    assert serialize_inner_list(items, params) == text


@pytest.mark.parametrize(
    "text",
    [
        "a=1,",  # trailing comma
        "A=1",  # keys are lower-case
        'a="unterminated',
        'a="bad \\escape"',
        "a=(1 2",
        "a=:not base64!:",
        "a=?2",
        "a=1234567890123456",  # more than 15 digits
        "a=1.2345",
        "a=1 b=2",
        "a=@",
    ],
)
def test_malformed_structured_fields_are_refused(text: str) -> None:
    with pytest.raises(StructuredFieldError):
        parse_dictionary(text)


@given(st.text())
def test_parser_raises_only_its_own_error(text: str) -> None:
    try:
        result = parse_dictionary(text)
    except StructuredFieldError:
        return
    assert isinstance(result, dict)


_sf_strings = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
_sf_items = st.one_of(
    st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1),
    _sf_strings,
    st.binary(max_size=16),
    st.booleans(),
    st.from_regex(r"[a-z*][a-z0-9:/*.-]{0,8}", fullmatch=True).map(Token),
)
_sf_keys = st.from_regex(r"[a-z*][a-z0-9_.*-]{0,6}", fullmatch=True)


@given(
    st.lists(st.tuples(_sf_items, st.dictionaries(_sf_keys, _sf_items, max_size=2)), max_size=4),
    st.dictionaries(_sf_keys, _sf_items, max_size=3),
)
def test_inner_lists_survive_serialise_then_parse(items: list[Any], params: dict[str, Any]) -> None:
    text = serialize_inner_list(items, params)
    assert parse_dictionary(f"sig={text}")["sig"] == (items, params)
