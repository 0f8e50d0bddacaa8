"""Conversations on real SQLite: every interaction fixture (Mastodon, Misskey, Pleroma, Pixelfed,
GoToSocial, Friendica) pushed through the real inbox processor changes the right state; threads
nest; the owner replies, hides and removes; likes and boosts go out.

Layer: services (store underneath is real; no HTTP). Fixture object ids are rewritten to point
at one of our thoughts, as a real peer's would. Actors live on 127.0.0.1:9, where nothing listens.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fedistream.core import activitypub
from fedistream.core.remote_actor import RemoteActor
from fedistream.core.timefmt import to_iso
from fedistream.core.urls import Urls
from fedistream.services import conversations, remote_actions
from fedistream.services import inbox as inbox_service
from fedistream.services import posts as post_service
from fedistream.services.inbox import InboxPolicy, InboxProcessor
from fedistream.store import actors as actor_store
from fedistream.store import interactions
from fedistream.store import posts as post_store
from fedistream.store.db import Database
from tests.conftest import SHARED_FIXTURES

BASE = "https://blog.example.test"
URLS = Urls(BASE)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PEER = "http://127.0.0.1:9"
ALICE = PEER + "/users/alice"
BOB = PEER + "/users/bob"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


# --- helpers shared with tests/web/test_conversations.py ----------------------------------------


def load(name: str) -> dict[str, Any]:
    path = SHARED_FIXTURES / "activities" / name
    if not path.is_file():
        pytest.skip(f"shared fixture {name} not found")
    return json.loads(path.read_text("utf-8"))  # type: ignore[no-any-return]


def _as_create(note: dict[str, Any]) -> dict[str, Any]:
    """GoToSocial and Misskey fixtures are bare Notes: wrap them as their server delivers them."""
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": note["id"] + "/activity",
        "type": "Create",
        "actor": note["attributedTo"],
        "to": note.get("to", []),
        "cc": note.get("cc", []),
        "object": note,
    }


def interaction_fixture(name: str, note_id: str) -> dict[str, Any]:
    """A real peer's activity, rewritten to be about our Note `note_id` (or to mention us)."""
    activity = copy.deepcopy(load(name))
    obj = activity.get("object")
    if name in ("gotosocial-note-mention.json", "misskey-note-quote.json"):
        activity = _as_create(activity)
        obj = activity["object"]
    if name == "gotosocial-note-mention.json":
        obj["tag"] = {"type": "Mention", "href": URLS.actor, "name": "@owner@blog.example.test"}
    elif name == "misskey-note-quote.json":
        obj["_misskey_quote"] = obj["quoteUrl"] = note_id
    elif name == "mastodon-undo-like.json":
        obj["object"] = note_id
    elif isinstance(obj, dict):  # a reply (Create{Note})
        obj["inReplyTo"] = note_id
    else:  # Like, EmojiReact, Announce
        activity["object"] = note_id
    return activity


# What each fixture does to one of our thoughts: (interaction kind or "reply"/"mention"/"quote",
# the reaction's content).
FIXTURE_EFFECTS: dict[str, tuple[str, str | None]] = {
    "mastodon-like.json": ("like", None),
    "misskey-like-custom-emoji-reaction.json": ("reaction", ":hanapog:"),
    "pleroma-emoji-react.json": ("reaction", "👌"),
    "mastodon-announce.json": ("announce", None),
    "pixelfed-announce.json": ("announce", None),
    "mastodon-create-note-reply-mention.json": ("reply", None),
    "pixelfed-create-reply-single-tag-object.json": ("reply", None),
    "friendica-create-note.json": ("reply", None),
    "pleroma-create-note.json": ("reply", None),
    "misskey-create-note-mention.json": ("reply", None),
    "gotosocial-note-mention.json": ("mention", None),
    "misskey-note-quote.json": ("quote", None),
}


def actor_of(activity: dict[str, Any]) -> str:
    actor = activity["actor"]
    return actor if isinstance(actor, str) else actor["id"]


def remote_actor(actor_id: str, username: str = "someone", name: str | None = None) -> RemoteActor:
    """A cached actor whose inbox is on 127.0.0.1:9 (whatever its id says): nothing real is hit."""
    return RemoteActor(
        id=actor_id, type="Person", inbox=PEER + "/inbox/" + username, shared_inbox=None,
        key_id=actor_id + "#main-key", public_key_pem=None, username=username,
        domain="127.0.0.1:9", name=name or username.title(), url=actor_id,
        icon_url=PEER + f"/avatars/{username}.png", summary=None,
    )  # fmt: skip


class Peer:
    """Delivers activities through the real inbox processor (persist, then apply)."""

    def __init__(self, db: Database, *, manual: bool = False) -> None:
        self.db = db
        self.processor = InboxProcessor(db, InboxPolicy(URLS, manual), now=lambda: NOW)

    async def know(self, actor_id: str, username: str = "someone", name: str | None = None) -> None:
        await actor_store.upsert(self.db, remote_actor(actor_id, username, name), {}, NOW)

    async def deliver(self, activity: dict[str, Any]) -> str:
        """Returns the inbox row's resulting state (done / ignored / failed)."""
        actor = actor_of(activity)
        await inbox_service.receive(self.db, activity, actor, NOW)
        await self.processor.run_once()
        row = await self.db.fetchone(
            "SELECT state, error FROM inbox WHERE id = ?", (inbox_service.activity_key(activity),)
        )
        assert row is not None
        return str(row["state"])


def reply(
    note_id: str, in_reply_to: str, actor: str, text: str, *, public: bool = True,
    when: datetime = NOW, mentions: tuple[str, ...] = (),
) -> dict[str, Any]:  # fmt: skip
    note = {
        "id": note_id,
        "type": "Note",
        "attributedTo": actor,
        "inReplyTo": in_reply_to,
        "content": f"<p>{text}</p>",
        "published": to_iso(when),
        "to": [PUBLIC] if public else [URLS.actor],
        "cc": [actor + "/followers"] if public else [],
        "tag": [{"type": "Mention", "href": m} for m in mentions],
    }
    return {"id": note_id + "/activity", "type": "Create", "actor": actor, "object": note}


async def rows(db: Database, sql: str, *params: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetchall(sql, params)]


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(tmp_path / "conversations.sqlite3")
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def thought(database: Database) -> str:
    post = await post_service.publish(
        database, post_service.Draft("A thought worth answering #garden"), max_chars=5000, now=NOW
    )
    return post.id


@pytest.fixture
async def peer(database: Database) -> Peer:
    return Peer(database)


async def conversation(
    db: Database, post_id: str, *, owner: bool = False
) -> conversations.Conversation:
    post = await post_service.get_live(db, post_id)
    return await conversations.conversation_for(
        db, URLS, post, owner_view=owner, author_name="Owner", author_handle="@owner@blog",
        author_avatar=None,
    )  # fmt: skip


def flatten(nodes: list[conversations.ThreadNode], depth: int = 0) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in nodes:
        out.append((depth, node.key))
        out += flatten(node.children, depth + 1)
    return out


# --- every fixture ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FIXTURE_EFFECTS))
async def test_fixture_changes_the_right_state(
    database: Database, peer: Peer, thought: str, name: str
) -> None:
    kind, content = FIXTURE_EFFECTS[name]
    note_id = URLS.post(thought)
    activity = interaction_fixture(name, note_id)
    actor = actor_of(activity)
    await peer.know(actor, "fixture", "Fixture Person")
    assert await peer.deliver(activity) == "done"

    [notification] = await rows(database, "SELECT * FROM notifications")
    assert notification["actor_id"] == actor
    assert notification["kind"] == kind
    counts = (await interactions.counts_for(database, [thought])).get(thought)
    thread = await conversation(database, thought)
    if kind in ("like", "announce", "reaction"):
        [row] = await rows(database, "SELECT * FROM interactions")
        assert (row["kind"], row["post_id"], row["content"]) == (kind, thought, content)
        assert notification["post_id"] == thought and notification["content"] == content
        assert counts is not None
        if kind == "like":
            assert (counts.likes, counts.boosts, counts.reactions) == (1, 0, ())
        elif kind == "announce":
            assert (counts.likes, counts.boosts) == (0, 1)
        else:
            assert [(r.content, r.count) for r in counts.reactions] == [(content, 1)]
        assert thread.thread == []
        return
    note = activity["object"]
    [stored] = await rows(database, "SELECT * FROM remote_posts")
    assert stored["id"] == note["id"] and notification["object_id"] == note["id"]
    if kind == "mention":
        assert stored["thread_post_id"] is None  # a mention elsewhere is not our thread
        assert notification["post_id"] is None
        assert thread.thread == []
        return
    assert stored["thread_post_id"] == thought
    assert notification["post_id"] == thought
    [node] = thread.thread
    assert node.key == note["id"] and node.author_name == "Fixture Person"
    assert node.author_handle == "@fixture@127.0.0.1:9"
    assert node.quote is (kind == "quote")
    assert "<script" not in node.content_html  # stored sanitised
    if kind == "reply":
        assert counts is not None and counts.replies == 1


async def test_undo_like_fixture_removes_the_like_and_its_notification(
    database: Database, peer: Peer, thought: str
) -> None:
    note_id = URLS.post(thought)
    like = interaction_fixture("mastodon-like.json", note_id)
    await peer.know(actor_of(like))
    assert await peer.deliver(like) == "done"
    assert await peer.deliver(interaction_fixture("mastodon-undo-like.json", note_id)) == "done"
    assert await rows(database, "SELECT * FROM interactions") == []
    assert await rows(database, "SELECT * FROM notifications") == []
    assert await interactions.counts_for(database, [thought]) == {}


async def test_undo_by_reference_and_by_actor_and_object(
    database: Database, peer: Peer, thought: str
) -> None:
    note_id = URLS.post(thought)
    await peer.know(ALICE, "alice")
    boost = {"id": ALICE + "/boosts/1", "type": "Announce", "actor": ALICE, "object": note_id}
    like = {"id": ALICE + "#likes/9", "type": "Like", "actor": ALICE, "object": note_id}
    assert await peer.deliver(boost) == "done"
    assert await peer.deliver(like) == "done"
    # R50: an Undo naming only the Announce's id.
    undo_ref = {"id": ALICE + "/u/1", "type": "Undo", "actor": ALICE, "object": boost["id"]}
    assert await peer.deliver(undo_ref) == "done"
    # An embedded Like whose id we never saw: matched by actor and object, as Mastodon does.
    undo_like = {
        "id": ALICE + "/u/2", "type": "Undo", "actor": ALICE,
        "object": {"id": ALICE + "#likes/other", "type": "Like", "actor": ALICE, "object": note_id},
    }  # fmt: skip
    assert await peer.deliver(undo_like) == "done"
    assert await rows(database, "SELECT * FROM interactions") == []
    # Undoing again finds nothing: recorded as ignored, with the reason.
    again = {**undo_like, "id": ALICE + "/u/3"}
    assert await peer.deliver(again) == "ignored"


async def test_interactions_with_what_is_not_ours_are_ignored(
    database: Database, peer: Peer, thought: str
) -> None:
    await peer.know(ALICE, "alice")
    for activity in (
        {"id": ALICE + "#l1", "type": "Like", "actor": ALICE, "object": PEER + "/notes/1"},
        {
            "id": ALICE + "#l2",
            "type": "Like",
            "actor": ALICE,
            "object": BASE + "/p/0000000000000000",
        },
        {"id": ALICE + "#b1", "type": "Announce", "actor": ALICE, "object": BASE + "/tags/x"},
    ):
        assert await peer.deliver(activity) == "ignored"
    assert await rows(database, "SELECT * FROM interactions") == []
    assert await rows(database, "SELECT * FROM notifications") == []


async def test_a_like_repeated_under_a_new_id_counts_once(
    database: Database, peer: Peer, thought: str
) -> None:
    note_id = URLS.post(thought)
    await peer.know(ALICE, "alice")
    for n in range(3):
        like = {"id": f"{ALICE}#likes/{n}", "type": "Like", "actor": ALICE, "object": note_id}
        assert await peer.deliver(like) == "done"
    counts = (await interactions.counts_for(database, [thought]))[thought]
    assert counts.likes == 1
    assert len(await rows(database, "SELECT * FROM notifications")) == 1


async def test_reactions_group_by_emoji_and_custom_emoji_keep_their_image(
    database: Database, peer: Peer, thought: str
) -> None:
    note_id = URLS.post(thought)
    await peer.know(ALICE, "alice")
    await peer.know(BOB, "bob")
    misskey = interaction_fixture("misskey-like-custom-emoji-reaction.json", note_id)
    await peer.know(actor_of(misskey), "misskey")
    await peer.deliver(misskey)
    for actor, n in ((ALICE, 1), (BOB, 2)):
        react = {"id": f"{actor}#r{n}", "type": "EmojiReact", "actor": actor,
                 "object": note_id, "content": "🎉"}  # fmt: skip
        await peer.deliver(react)
    counts = (await interactions.counts_for(database, [thought]))[thought]
    assert [(r.content, r.count) for r in counts.reactions] == [("🎉", 2), (":hanapog:", 1)]
    custom = counts.reactions[1]
    assert custom.emoji_url == misskey["tag"][0]["icon"]["url"]


async def test_replies_nest_by_in_reply_to_and_join_the_thread(
    database: Database, peer: Peer, thought: str
) -> None:
    note_id = URLS.post(thought)
    await peer.know(ALICE, "alice")
    await peer.know(BOB, "bob")
    first = reply(PEER + "/notes/1", note_id, ALICE, "First!")
    # Bob answers Alice, not us, and the owner follows neither: it still belongs to the thread.
    nested = reply(PEER + "/notes/2", first["object"]["id"], BOB, "Replying to Alice",
                   when=NOW + timedelta(minutes=1))  # fmt: skip
    deeper = reply(PEER + "/notes/3", nested["object"]["id"], ALICE, "And back",
                   when=NOW + timedelta(minutes=2))  # fmt: skip
    second = reply(PEER + "/notes/4", note_id, BOB, "Second", when=NOW + timedelta(minutes=3))
    for activity in (first, nested, deeper, second):
        assert await peer.deliver(activity) == "done"
    thread = await conversation(database, thought)
    assert flatten(thread.thread) == [
        (0, PEER + "/notes/1"), (1, PEER + "/notes/2"), (2, PEER + "/notes/3"),
        (0, PEER + "/notes/4"),
    ]  # fmt: skip
    assert thread.reply_count == 4
    kinds = await rows(database, "SELECT kind, post_id FROM notifications ORDER BY id")
    assert kinds == [{"kind": "reply", "post_id": thought}] * 4


async def test_a_direct_reply_is_notified_but_never_shown_publicly(
    database: Database, peer: Peer, thought: str
) -> None:
    await peer.know(ALICE, "alice")
    secret = reply(PEER + "/notes/dm", URLS.post(thought), ALICE, "Just between us", public=False)
    assert await peer.deliver(secret) == "done"
    assert (await conversation(database, thought, owner=True)).thread == []
    [note] = await rows(database, "SELECT kind FROM notifications")
    assert note["kind"] == "reply"


async def test_update_and_delete_of_a_reply(database: Database, peer: Peer, thought: str) -> None:
    await peer.know(ALICE, "alice")
    created = reply(PEER + "/notes/1", URLS.post(thought), ALICE, "Frist")
    await peer.deliver(created)
    update = copy.deepcopy(created)
    update.update(id=PEER + "/notes/1#u1", type="Update")
    update["object"].update(content="<p>First, spelled right</p>", updated=to_iso(NOW))
    assert await peer.deliver(update) == "done"
    [node] = (await conversation(database, thought)).thread
    assert "spelled right" in node.content_html and node.updated is not None
    assert len(await rows(database, "SELECT * FROM notifications")) == 1  # no second one

    delete = {"id": PEER + "/notes/1#delete", "type": "Delete", "actor": ALICE,
              "object": {"id": PEER + "/notes/1", "type": "Tombstone"}}  # fmt: skip
    assert await peer.deliver(delete) == "done"
    assert (await conversation(database, thought)).thread == []
    assert await rows(database, "SELECT * FROM notifications") == []


async def test_delete_of_an_actor_removes_everything_of_theirs(
    database: Database, peer: Peer, thought: str
) -> None:
    note_id = URLS.post(thought)
    await peer.know(ALICE, "alice")
    await peer.know(BOB, "bob")
    await peer.deliver({"id": ALICE + "#l", "type": "Like", "actor": ALICE, "object": note_id})
    await peer.deliver({"id": ALICE + "#b", "type": "Announce", "actor": ALICE, "object": note_id})
    await peer.deliver(reply(PEER + "/notes/a", note_id, ALICE, "Alice says"))
    await peer.deliver(reply(PEER + "/notes/b", note_id, BOB, "Bob says"))
    await peer.deliver({"id": ALICE + "#delete", "type": "Delete", "actor": ALICE, "object": ALICE})
    assert await rows(database, "SELECT * FROM interactions") == []
    assert [r["actor_id"] for r in await rows(database, "SELECT * FROM notifications")] == [BOB]
    assert [n.key for n in (await conversation(database, thought)).thread] == [PEER + "/notes/b"]


async def test_follows_are_notified_once(database: Database) -> None:
    peer = Peer(database)
    await peer.know(ALICE, "alice")
    follow = {"id": ALICE + "#f1", "type": "Follow", "actor": ALICE, "object": URLS.actor}
    assert await peer.deliver(follow) == "done"
    assert await peer.deliver({**follow, "id": ALICE + "#f2"}) == "done"  # a re-Follow (R48)
    assert [r["kind"] for r in await rows(database, "SELECT kind FROM notifications")] == ["follow"]

    manual = Peer(database, manual=True)
    await manual.know(BOB, "bob")
    await manual.deliver({"id": BOB + "#f", "type": "Follow", "actor": BOB, "object": URLS.actor})
    kinds = [r["kind"] for r in await rows(database, "SELECT kind FROM notifications ORDER BY id")]
    assert kinds == ["follow", "follow_request"]


# --- the owner ----------------------------------------------------------------------------------


async def test_owner_reply_is_delivered_threaded_and_kept_off_the_stream(
    database: Database, peer: Peer, thought: str
) -> None:
    note_id = URLS.post(thought)
    await peer.know(ALICE, "alice")
    await peer.deliver(reply(PEER + "/notes/1", note_id, ALICE, "Nice one"))
    target = await conversations.reply_target(database, URLS, PEER + "/notes/1")
    assert target.prefill == "@alice@127.0.0.1:9 "
    assert target.root_id == thought

    answer, root = await conversations.publish_reply(
        database, URLS, post_service.Draft("Thank you, Alice"), PEER + "/notes/1",
        max_chars=5000, directory=None, now=NOW + timedelta(minutes=5),
    )  # fmt: skip
    assert root == thought and answer.in_reply_to == PEER + "/notes/1"
    # The Create carries inReplyTo and goes to Alice's inbox even though she is not a follower.
    [create] = await rows(
        database, "SELECT json FROM activities WHERE type = 'Create' AND post_id = ?", answer.id
    )
    assert json.loads(create["json"])["object"]["inReplyTo"] == PEER + "/notes/1"
    inboxes = await rows(
        database,
        "SELECT inbox FROM deliveries WHERE activity_id = ?",
        URLS.create_activity(answer.id),
    )
    assert inboxes == [{"inbox": PEER + "/inbox/alice"}]

    # Alice answers the owner's reply: still the same thread, nested three deep.
    await peer.deliver(reply(PEER + "/notes/2", URLS.post(answer.id), ALICE, "You're welcome",
                             when=NOW + timedelta(minutes=9)))  # fmt: skip
    thread = await conversation(database, thought)
    assert flatten(thread.thread) == [
        (0, PEER + "/notes/1"), (1, URLS.post(answer.id)), (2, PEER + "/notes/2"),
    ]  # fmt: skip
    own = thread.thread[0].children[0]
    assert own.own and own.author_name == "Owner"
    notification = await rows(database, "SELECT post_id FROM notifications WHERE object_id = ?",
                              PEER + "/notes/2")  # fmt: skip
    assert notification == [{"post_id": answer.id}]

    # Not a top-level thought: absent from the stream and tag pages, present in the outbox.
    stream = await post_store.latest_page(database, None, 20, with_replies=False)
    assert [p.id for p in stream.posts] == [thought]
    everything = await post_store.latest_page(database, None, 20)
    assert answer.id in [p.id for p in everything.posts]
    # The reply's own page points at the thought it hangs under.
    own_page = await conversation(database, answer.id)
    assert own_page.root_id == thought and own_page.parent_url == PEER + "/notes/1"
    # Editing keeps what it answers (the Update's Note too).
    edited = await post_service.edit(database, answer.id, post_service.Draft("Thanks, Alice!"),
                                     max_chars=5000, urls=URLS)  # fmt: skip
    assert edited.in_reply_to == PEER + "/notes/1"


async def test_hide_unhide_and_remove_a_reply(database: Database, peer: Peer, thought: str) -> None:
    await peer.know(ALICE, "alice")
    created = reply(PEER + "/notes/1", URLS.post(thought), ALICE, "Spam spam spam")
    await peer.deliver(created)
    assert await conversations.set_hidden(database, PEER + "/notes/1", True) == thought
    assert (await conversation(database, thought)).thread == []
    [hidden] = (await conversation(database, thought, owner=True)).thread
    assert hidden.hidden
    assert (await interactions.counts_for(database, [thought])) == {}
    await conversations.set_hidden(database, PEER + "/notes/1", False)
    assert len((await conversation(database, thought)).thread) == 1

    assert await conversations.remove_reply(database, PEER + "/notes/1") == thought
    assert (await conversation(database, thought, owner=True)).thread == []
    assert await rows(database, "SELECT * FROM notifications") == []
    # The author edits it: it stays removed.
    update = copy.deepcopy(created)
    update.update(id=PEER + "/notes/1#u", type="Update")
    update["object"]["updated"] = to_iso(NOW + timedelta(hours=1))
    await peer.deliver(update)
    assert (await conversation(database, thought, owner=True)).thread == []
    assert await rows(database, "SELECT * FROM notifications") == []  # no second notification
    [stored] = await rows(database, "SELECT content_html, hidden FROM remote_posts")
    assert stored == {"content_html": "", "hidden": interactions.REMOVED}


async def test_owner_likes_boosts_and_takes_them_back(database: Database, peer: Peer) -> None:
    await peer.know(ALICE, "alice")
    await peer.know(BOB, "bob")
    async with database.transaction() as conn:  # Bob follows the owner: boosts reach him
        await conn.execute(
            "INSERT INTO followers (actor_id, follow_id, state, created_at) VALUES (?,?,?,?)",
            (BOB, BOB + "#f", "accepted", to_iso(NOW)),
        )
    async with database.transaction() as conn:  # a post from Alice in the owner's timeline
        await conn.execute(
            "INSERT INTO remote_posts (id, actor_id, content_html, published, json, received_at) "
            "VALUES (?, ?, '<p>hi</p>', ?, '{}', ?)",
            (PEER + "/notes/x", ALICE, to_iso(NOW), to_iso(NOW)),
        )
    note = PEER + "/notes/x"
    assert await remote_actions.react(database, URLS, note, "like", NOW)
    assert not await remote_actions.react(database, URLS, note, "like", NOW)  # already liked
    assert await remote_actions.react(database, URLS, note, "announce", NOW)
    assert await interactions.own_for(database, [note]) == {(note, "like"), (note, "announce")}
    sent = await rows(
        database,
        "SELECT a.type, a.json, d.inbox FROM activities a JOIN deliveries d "
        "ON d.activity_id = a.id ORDER BY a.type, d.inbox",
    )
    assert [(r["type"], r["inbox"]) for r in sent] == [
        ("Announce", PEER + "/inbox/alice"), ("Announce", PEER + "/inbox/bob"),
        ("Like", PEER + "/inbox/alice"),
    ]  # fmt: skip
    like = json.loads(sent[2]["json"])
    assert (like["actor"], like["object"]) == (URLS.actor, note)

    assert await remote_actions.undo(database, URLS, note, "like", NOW)
    assert not await remote_actions.undo(database, URLS, note, "like", NOW)
    [undo] = await rows(database, "SELECT json FROM activities WHERE type = 'Undo'")
    undone = json.loads(undo["json"])["object"]
    assert undone == {"id": like["id"], "type": "Like", "actor": URLS.actor, "object": note}
    assert await interactions.own_for(database, [note]) == {(note, "announce")}


# --- the pieces ---------------------------------------------------------------------------------


def _node(key: str, parent: str | None, minute: int) -> conversations.ThreadNode:
    return conversations.ThreadNode(
        key=key, parent=parent, own=False, post_id=None, anchor=key, url=key, author_name="a",
        author_handle="", author_url=key, avatar=None, content_html="", summary=None,
        published=NOW + timedelta(minutes=minute), updated=None,
    )  # fmt: skip


def test_assemble_orphans_and_cycles_go_to_the_top() -> None:
    root = URLS.post("0000000000000000")
    nodes = [
        _node("a", root, 0),
        _node("b", "a", 1),
        _node("orphan", "https://gone.example/1", 2),
        # A peer rewrote its note to answer a later one: no cycle, it lands at the top.
        _node("c", "d", 3),
        _node("d", "c", 4),
    ]
    assert flatten(conversations.assemble(root, nodes)) == [
        (0, "a"), (1, "b"), (0, "orphan"), (0, "c"), (1, "d"),
    ]  # fmt: skip


def test_our_post_id_accepts_only_our_note_ids() -> None:
    assert conversations.our_post_id(URLS, BASE + "/p/0123456789abcdef") == "0123456789abcdef"
    for other in (BASE + "/p/x", BASE + "/tags/a", "https://evil.test/p/0123456789abcdef", None):
        assert conversations.our_post_id(URLS, other) is None


async def test_counts_for_a_page_take_one_query(database: Database, peer: Peer) -> None:
    ids = []
    for n in range(5):
        post = await post_service.publish(
            database, post_service.Draft(f"Thought {n}"), max_chars=99
        )
        ids.append(post.id)
    await peer.know(ALICE, "alice")
    for post_id in ids[:3]:
        await peer.deliver({"id": ALICE + "#l" + post_id, "type": "Like", "actor": ALICE,
                            "object": URLS.post(post_id)})  # fmt: skip
    calls = 0
    original = database.fetchall

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await original(*args, **kwargs)

    database.fetchall = counting  # type: ignore[method-assign]
    found = await interactions.counts_for(database, ids)
    assert calls == 1
    assert {k: v.likes for k, v in found.items()} == {i: 1 for i in ids[:3]}


async def test_stream_without_replies_keeps_its_keyset_index(database: Database) -> None:
    for sql, params in (
        ("SELECT id FROM posts WHERE deleted_at IS NULL AND in_reply_to IS NULL "
         "ORDER BY id DESC LIMIT ?", (21,)),
        ("SELECT id FROM posts WHERE deleted_at IS NULL AND in_reply_to IS NULL AND id < ? "
         "ORDER BY id DESC LIMIT ?", ("z", 21)),
    ):  # fmt: skip
        plan = " ".join(
            str(tuple(r)) for r in await database.fetchall("EXPLAIN QUERY PLAN " + sql, params)
        )
        assert "posts_live_id" in plan and "TEMP B-TREE" not in plan, plan
    plan = " ".join(
        str(tuple(r))
        for r in await database.fetchall(
            "EXPLAIN QUERY PLAN SELECT id FROM posts WHERE in_reply_to IN (?, ?)", ("a", "b")
        )
    )
    assert "posts_in_reply_to" in plan, plan


def test_note_carries_likes_and_shares_totals() -> None:
    from fedistream.core.models import Post

    post = Post(id="0123456789abcdef", source="x", html="<p>x</p>", text="x", title=None,
                summary=None, created_at=NOW)  # fmt: skip
    note = activitypub.note_object(URLS, post, counts=activitypub.NoteCounts(likes=3, shares=2))
    assert note["likes"] == {"id": URLS.post(post.id) + "/likes", "type": "Collection",
                             "totalItems": 3}  # fmt: skip
    assert note["shares"]["totalItems"] == 2
    assert "likes" not in activitypub.note_object(URLS, post)


def test_assemble_nests_an_answer_written_in_the_same_second() -> None:
    """Second-precision clocks: the answer can sort before the reply it answers."""
    root = URLS.post("0000000000000000")
    nodes = [
        _node("https://b.example/p/2", "https://z.example/p/1", 0),  # sorts first by key
        _node("https://z.example/p/1", root, 0),
        _node("https://y.example/p/3", "https://y.example/p/3", 0),  # answers itself
    ]
    assert flatten(conversations.assemble(root, nodes)) == [
        (0, "https://y.example/p/3"), (0, "https://z.example/p/1"), (1, "https://b.example/p/2"),
    ]  # fmt: skip
