"""Item 2 of issue 5, the federation side: arbitrary JSON and ActivityStreams shapes at the inbox
(over HTTP, signed) and at the inbox processor (stored rows applied directly).

The shapes start from every real-world activity fixture and from hand-written activities, then
get spoiled the ways peers and attackers spoil them: a single value where an array belongs and
the reverse, nulls, wrong types, huge strings, deep nesting, huge and non-finite numbers and
Unicode edge cases. Wherever it lands: never a 500, never an unhandled error, and a refused
document leaves the database exactly as it was (whole-database snapshot). The processor must
apply a row completely or not at all: a fault injected after its first write rolls back.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from fedistream.core import inbound
from fedistream.core.as2 import AS_CONTEXT
from fedistream.core.urls import Urls
from fedistream.federation.media_fetch import MediaFetcher
from fedistream.services import conversations
from fedistream.services import inbox as inbox_service
from fedistream.store import inbox as inbox_store
from fedistream.store.db import Database
from tests.hostile.harness import diff, snapshot
from tests.web.test_inbox import (
    ACTIVITIES,
    ACTIVITY_FIXTURES,
    ALICE,
    BASE,
    FIXTURE_NAMES,
    JSON_VALUES,
    OUR_ACTOR,
    Inbox,
    _open,
    follow,
    load_fixture,
    remote_actor,
    signed,
)

# --- hostile values ------------------------------------------------------------------------------

UNICODE_EDGES = [
    "\ud800",  # lone surrogates: valid JSON escapes, invalid Unicode
    "\udfff tail",
    "nul\x00byte",
    "\u202eevil.exe",  # right-to-left override
    "\ufeffbom",
    "\uffff\ufffe",  # noncharacters
    "\u2028\u2029",  # JS line terminators
    "e" + "\u0301" * 500,  # a huge grapheme cluster
    "\U0001f469\u200d\U0001f469\u200d\U0001f467" * 50,  # ZWJ emoji
    "𝕳𝖊𝖑𝖑𝖔 İstanbul ß ﬃ",
    "<script>alert(1)</script>",
    "' OR 1=1; --",
    "../../../../etc/passwd",
    "%00%ff%c0%af",
    "http://127.0.0.1:9/users/alice",
    "https://blog.example.test/",
    "",
    " ",
]
SILLY_NUMBERS = [0, -1, 2**63, -(2**63) - 1, 10**40, 1e308, -0.0, float("inf"), float("nan")]


DEEP = "__nested_this_deep__:"  # a marker `_body` turns into that many raw brackets


def _nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"object": value}
    return value


HOSTILE_VALUES = st.one_of(
    JSON_VALUES,
    st.sampled_from(UNICODE_EDGES),
    st.sampled_from(SILLY_NUMBERS),
    st.text(max_size=40),
    st.integers(10_000, 200_000).map(lambda n: "x" * n),  # huge, yet under the 1 MiB cap
    st.integers(20, 300).map(_nested),
    st.integers(2_000, 50_000).map(lambda n: f"{DEEP}{n}"),  # deeper than a recursive reader
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a document (key paths), shallow ones first."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


def _replace(document: Any, path: tuple[Any, ...], new: Any, *, drop: bool = False) -> Any:
    """A copy of `document` with the value at `path` replaced (or dropped)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        copy = dict(document)
        if drop and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _replace(document[head], rest, new, drop=drop)
        return copy
    copy_list = list(document)
    if drop and not rest:
        del copy_list[head]
    else:
        copy_list[head] = _replace(document[head], rest, new, drop=drop)
    return copy_list


@st.composite
def spoiled(draw: st.DrawFn, document: Any) -> Any:
    """`document` with one to three places spoiled in the ways peers and attackers spoil them."""
    for _ in range(draw(st.integers(1, 3))):
        places = list(_paths(document))
        if not places:
            return draw(HOSTILE_VALUES)
        path = draw(st.sampled_from(places))
        old = _get(document, path)
        how = draw(
            st.sampled_from(["null", "wrap", "unwrap", "hostile", "drop", "as-object", "type"])
        )
        if how == "null":
            new: Any = None
        elif how == "wrap":
            new = [old]  # a single value where an array belongs
        elif how == "unwrap":
            new = old[0] if isinstance(old, list) and old else old  # and the reverse
        elif how == "as-object":
            new = {"id": old, "type": draw(st.sampled_from(["Link", "Note", "Person", ""]))}
        elif how == "type":
            new = draw(st.sampled_from([1, True, 1.5, {}, [], "", {"type": {}}]))
        elif how == "drop":
            document = _replace(document, path, None, drop=True)
            continue
        else:
            new = draw(HOSTILE_VALUES)
        document = _replace(document, path, new)
    return document


OUR_POST = "0000000000000001"  # a thought the processor's database holds (replies land on it)


def _note_activity(kind: str) -> dict[str, Any]:
    note_id = ALICE + f"/notes/{kind.lower()}"
    return {
        "@context": AS_CONTEXT,
        "id": note_id + "/activity",
        "type": kind,
        "actor": ALICE,
        "to": ["https://www.w3.org/ns/activitystreams#Public"],
        "object": {
            "id": note_id,
            "type": "Note",
            "attributedTo": ALICE,
            "inReplyTo": BASE + "/p/" + OUR_POST,
            "content": "<p>hello <a href='http://127.0.0.1:9/tags/x'>#x</a></p>",
            "summary": "cw",
            "published": "2024-01-01T00:00:00Z",
            "tag": [{"type": "Hashtag", "name": "#x"}, {"type": "Mention", "href": OUR_ACTOR}],
            "attachment": [
                {
                    "type": "Document",
                    "mediaType": "image/png",
                    "url": "http://127.0.0.1:9/a.png",
                    "name": "alt",
                    "width": 10,
                    "height": 10,
                }
            ],
        },
    }


def _bases() -> list[tuple[dict[str, Any], str]]:
    """(activity, its actor): the hand-written ones and every real fixture moved to loopback."""
    found = [(follow(), ALICE)]
    found += [(_note_activity(kind), ALICE) for kind in ("Create", "Update")]
    if ACTIVITY_FIXTURES.is_dir():
        found += [load_fixture(name) for name in FIXTURE_NAMES]
    return found


BASES = _bases()
DOCUMENTS = st.one_of(
    st.sampled_from(BASES).flatmap(lambda b: spoiled(b[0]).map(lambda d: (d, b[1]))),
    st.tuples(st.one_of(JSON_VALUES, ACTIVITIES), st.just(ALICE)),
)
MAX_EXAMPLES = 250


def _body(document: Any) -> bytes:
    """The JSON text. Python writes NaN/Infinity (a peer's buggy serialiser might too); lone
    surrogates become \\ud800 escapes (valid JSON, invalid Unicode); DEEP markers become arrays
    nested deeper than any JSON writer would go (so they are spliced in as text)."""
    text = json.dumps(document)
    for depth in {int(m) for m in re.findall(rf'"{re.escape(DEEP)}(\d+)"', text)}:
        text = text.replace(f'"{DEEP}{depth}"', "[" * depth + "]" * depth)
    return text.encode()


def _is_crash(error: str) -> bool:
    """A row set aside because a handler raised (TypeError, KeyError…), not because the
    document is malformed (BadActivity's reason) or cannot be read at all."""
    return "Error:" in error and not error.startswith(("ValueError:", "RecursionError:"))


def _storable(document: Any) -> bool:
    """Whether `receive` could have stored it: SQLite holds UTF-8, and a lone surrogate has none
    (the web edge refuses such bodies with 400, tested above)."""
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- the inbox over HTTP -----------------------------------------------------------------------


@pytest.fixture
def quiet_media(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image fetcher drains its own queue in the background, at its own pace; it is not under
    test here, and its writes would land between two snapshots."""

    async def idle(self: MediaFetcher) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(MediaFetcher, "run", idle)


def _settle(inbox: Inbox, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while inbox.rows("SELECT 1 FROM inbox WHERE state = 'pending' LIMIT 1"):
        assert time.monotonic() < deadline, "inbox rows still pending: a row keeps failing"
        inbox.call(_wake, inbox)
        time.sleep(0.01)


async def _wake(inbox: Inbox) -> None:
    inbox.ctx.wake_inbox()


def test_hostile_documents_at_the_inbox(tmp_path: Path, quiet_media: None) -> None:
    for inbox in _open(tmp_path, manually_approves_followers=True):
        for _document, actor in BASES:
            inbox.directory.add(remote_actor(actor, "fixture" if actor != ALICE else "alice"))
        # Relevant context, so accepted notes, likes and replies are stored rather than ignored.
        inbox.run_sql(
            "INSERT INTO following (actor_id, follow_id, state, created_at) "
            "SELECT DISTINCT ?, ?, 'accepted', '2024-01-01T00:00:00Z'",
            ALICE,
            OUR_ACTOR + "#follows/1",
        )
        outcomes = _throw_at_inbox(inbox)
        print(f"\n[hostile] inbox: {sum(outcomes.values())} documents, statuses {outcomes}")
        assert outcomes["202"] > 0 and outcomes["400"] > 0, outcomes  # both sides were reached


def _throw_at_inbox(inbox: Inbox) -> dict[str, int]:
    outcomes: dict[str, int] = {}

    @hyp_settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(DOCUMENTS)
    def post_one(case: tuple[Any, str]) -> None:
        document, actor = case
        body = _body(document)
        signer = actor if isinstance(document, dict) and inbound.id_of(
            inbound.first_value(document.get("actor"))
        ) == actor else ALICE  # fmt: skip
        key = "alice" if signer == ALICE else "fixture"
        before = inbox.call(snapshot, inbox.ctx.db)
        response = inbox.post(body, signed(body, key_name=key, actor_id=signer))
        status = response.status_code
        outcomes[str(status)] = outcomes.get(str(status), 0) + 1
        assert status in (202, 400, 401, 403, 413), (status, response.text)
        if status != 202:
            assert response.json()["error"], response.text
            after = inbox.call(snapshot, inbox.ctx.db)
            assert before == after, diff(before, after)
            return
        _settle(inbox)

    post_one()
    # Every accepted row was applied or set aside with a reason; none crashed the processor.
    failed = inbox.rows("SELECT id, error FROM inbox WHERE state = 'failed'")
    assert [row for row in failed if _is_crash(row["error"])] == []
    return outcomes


# --- the processor, row by row -----------------------------------------------------------------

POLICY = inbox_service.InboxPolicy(Urls(BASE), manually_approves_followers=False)


async def _seeded(path: Path) -> Database:
    """A database where every fixture's actor is followed, followed by, and has replies to
    answer: so the processor's handlers have something to act on."""
    db = await Database.open(path)
    stamp = "2024-01-01T00:00:00Z"
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO posts (id, source, html, text, created_at) VALUES (?, 'x', '<p>x</p>', "
            "'x', ?)",
            (OUR_POST, stamp),
        )
        for _document, actor in BASES:
            await conn.execute(
                "INSERT OR IGNORE INTO following (actor_id, follow_id, state, created_at) "
                "VALUES (?, ?, 'accepted', ?)",
                (actor, OUR_ACTOR + "#follows/" + actor, stamp),
            )
            await conn.execute(
                "INSERT OR IGNORE INTO followers (actor_id, follow_id, state, created_at) "
                "VALUES (?, ?, 'accepted', ?)",
                (actor, actor + "/follows/1", stamp),
            )
    return db


async def _apply(db: Database, document: Any, actor: str) -> tuple[str, Any, Any, Any]:
    key = inbox_service.activity_key(document) if isinstance(document, dict) else "urn:x"
    text = _body(document).decode()  # stored as is: rows the web edge would have refused too
    await inbox_store.insert(db, key, actor, "Any", text, "2024-01-01T00:00:00Z")
    row = await db.fetchone("SELECT id, actor_id, type, json FROM inbox WHERE id = ?", (key,))
    before = await snapshot(db, skip=frozenset({"inbox"}))
    [state] = await inbox_service.process_rows(db, [row], POLICY, datetime.now(UTC))
    after = await snapshot(db, skip=frozenset({"inbox"}))
    marked = await db.fetchone("SELECT state, error FROM inbox WHERE id = ?", (key,))
    return state, before, after, marked


def test_the_processor_applies_a_row_completely_or_not_at_all(tmp_path: Path) -> None:
    with asyncio.Runner() as runner:
        db = runner.run(_seeded(tmp_path / "p.sqlite3"))
        states: dict[str, int] = {}

        @hyp_settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.filter_too_much,
            ],
        )
        @given(DOCUMENTS)
        def apply_one(case: tuple[Any, str]) -> None:
            document, actor = case
            assume(_storable(document))
            runner.run(db.execute("DELETE FROM inbox"))
            state, before, after, marked = runner.run(_apply(db, document, actor))
            states[state] = states.get(state, 0) + 1
            assert state in ("done", "ignored", "failed"), state
            assert marked["state"] == state
            if state != "done":
                assert before == after, diff(before, after)  # nothing but the row's outcome
                assert marked["error"], "a row set aside must say why"
            if state == "failed":  # malformed or unreadable, never a crash inside a handler
                assert not _is_crash(marked["error"]), marked["error"]

        try:
            apply_one()
        finally:
            runner.run(db.close())
    print(f"\n[hostile] processor: {sum(states.values())} stored rows, outcomes {states}")
    assert states.get("done", 0) > 0 and states.get("failed", 0) > 0, states


def test_a_fault_after_the_first_write_rolls_the_whole_row_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note is stored, then the thread bookkeeping fails: no trace of the note remains."""

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full, say")

    monkeypatch.setattr(conversations, "note_stored", broken)
    with asyncio.Runner() as runner:
        db = runner.run(_seeded(tmp_path / "p.sqlite3"))
        try:
            state, before, after, marked = runner.run(_apply(db, _note_activity("Create"), ALICE))
        finally:
            runner.run(db.close())
    assert state == "failed" and "disk full" in marked["error"]
    assert before == after, diff(before, after)
