"""Numbered schema migrations, applied in order at start-up; `PRAGMA user_version` records progress.

Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the stream, owner state, sessions, media.
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    CREATE TABLE posts (
        seq INTEGER PRIMARY KEY,            -- stable rowid for the FTS index
        id TEXT NOT NULL UNIQUE,            -- time-sortable public id (/p/{id})
        source TEXT NOT NULL,
        html TEXT NOT NULL,
        text TEXT NOT NULL,
        title TEXT,
        summary TEXT,
        visibility TEXT NOT NULL DEFAULT 'public',
        in_reply_to TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        deleted_at TEXT
    );
    -- Keyset pages of live thoughts walk this index and stop after one page.
    CREATE INDEX posts_live_id ON posts(id) WHERE deleted_at IS NULL;

    CREATE TABLE post_tags (
        tag TEXT NOT NULL,
        post_id TEXT NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
        PRIMARY KEY (tag, post_id)
    ) WITHOUT ROWID;
    CREATE INDEX post_tags_post ON post_tags(post_id);

    CREATE VIRTUAL TABLE posts_fts USING fts5(
        title, summary, text,
        content='posts', content_rowid='seq',
        tokenize='porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER posts_fts_insert AFTER INSERT ON posts WHEN new.deleted_at IS NULL BEGIN
        INSERT INTO posts_fts(rowid, title, summary, text)
        VALUES (new.seq, coalesce(new.title, ''), coalesce(new.summary, ''), new.text);
    END;
    CREATE TRIGGER posts_fts_update AFTER UPDATE ON posts BEGIN
        INSERT INTO posts_fts(posts_fts, rowid, title, summary, text)
        SELECT 'delete', old.seq, coalesce(old.title, ''), coalesce(old.summary, ''), old.text
        WHERE old.deleted_at IS NULL;
        INSERT INTO posts_fts(rowid, title, summary, text)
        SELECT new.seq, coalesce(new.title, ''), coalesce(new.summary, ''), new.text
        WHERE new.deleted_at IS NULL;
    END;
    CREATE TRIGGER posts_fts_delete AFTER DELETE ON posts WHEN old.deleted_at IS NULL BEGIN
        INSERT INTO posts_fts(posts_fts, rowid, title, summary, text)
        VALUES ('delete', old.seq, coalesce(old.title, ''), coalesce(old.summary, ''), old.text);
    END;

    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,        -- sha256 of the cookie value (never the cookie)
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );

    CREATE TABLE media (
        name TEXT PRIMARY KEY,              -- file name under <data_dir>/media
        kind TEXT NOT NULL,                 -- avatar | header | attachment
        mime_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        alt TEXT NOT NULL DEFAULT '',
        post_id TEXT REFERENCES posts(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL
    );
    """,
    # 2: federation — remote actors, followers/following, our activities, the delivery queue,
    # accepted inbound activities, and notes received from accounts the owner follows.
    """
    CREATE TABLE actors (
        id TEXT PRIMARY KEY,                -- actor URI
        type TEXT NOT NULL,
        inbox TEXT NOT NULL,
        shared_inbox TEXT,
        key_id TEXT,
        public_key_pem TEXT,
        username TEXT,                      -- preferredUsername
        domain TEXT NOT NULL,               -- host of the actor id
        name TEXT,
        url TEXT,
        icon_url TEXT,
        summary TEXT,
        json TEXT NOT NULL,                 -- the document as fetched
        fetched_at TEXT NOT NULL
    );
    CREATE INDEX actors_key_id ON actors(key_id);

    CREATE TABLE followers (
        actor_id TEXT PRIMARY KEY,
        follow_id TEXT NOT NULL,            -- their Follow activity id, stored verbatim (R45)
        state TEXT NOT NULL,                -- pending | accepted
        created_at TEXT NOT NULL
    );

    CREATE TABLE following (
        actor_id TEXT PRIMARY KEY,
        follow_id TEXT NOT NULL,            -- our Follow activity id
        state TEXT NOT NULL,                -- pending | accepted | rejected
        created_at TEXT NOT NULL
    );

    CREATE TABLE activities (
        id TEXT PRIMARY KEY,                -- activity URI (dereferenceable or a fragment id)
        type TEXT NOT NULL,
        post_id TEXT,                       -- the local thought it is about, if any
        json TEXT NOT NULL,                 -- exactly what was delivered
        created_at TEXT NOT NULL
    );
    CREATE INDEX activities_post ON activities(post_id);

    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        activity_id TEXT NOT NULL REFERENCES activities(id),
        inbox TEXT NOT NULL,
        host TEXT NOT NULL,
        recipient TEXT,                     -- actor id when this is one actor's personal inbox
        state TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | dead
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        lease_until TEXT,
        last_status INTEGER,
        last_error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (activity_id, inbox)
    );
    CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE state = 'pending';
    CREATE INDEX deliveries_activity ON deliveries(activity_id);

    CREATE TABLE inbox (
        id TEXT PRIMARY KEY,                -- activity id: a replay is a no-op
        actor_id TEXT NOT NULL,
        type TEXT NOT NULL,
        json TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',   -- pending | done | ignored | failed
        error TEXT,
        received_at TEXT NOT NULL,
        processed_at TEXT
    );
    CREATE INDEX inbox_pending ON inbox(received_at) WHERE state = 'pending';

    CREATE TABLE remote_posts (
        id TEXT PRIMARY KEY,                -- object URI
        actor_id TEXT NOT NULL,
        url TEXT,
        in_reply_to TEXT,
        content_html TEXT NOT NULL,         -- sanitised before storage
        summary TEXT,
        sensitive INTEGER NOT NULL DEFAULT 0,
        published TEXT NOT NULL,
        updated TEXT,
        json TEXT NOT NULL,
        received_at TEXT NOT NULL
    );
    CREATE INDEX remote_posts_actor ON remote_posts(actor_id, published);
    CREATE INDEX remote_posts_published ON remote_posts(published);

    -- Accounts a thought mentions (@user@domain), resolved when it was written.
    CREATE TABLE post_mentions (
        post_id TEXT NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
        handle TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        url TEXT NOT NULL,
        PRIMARY KEY (post_id, actor_id)
    ) WITHOUT ROWID;

    -- Imports look thoughts up by creation time (re-import guard).
    CREATE INDEX posts_created_at ON posts(created_at);
    """,
    # 3: conversations and media — interactions with our thoughts, threads of remote replies,
    # notifications, blocks, pins, attachment details and the cache of remote media.
    """
    CREATE TABLE interactions (
        id TEXT PRIMARY KEY,                -- the Like / Announce / EmojiReact activity id
        kind TEXT NOT NULL,                 -- like | announce | reaction
        actor_id TEXT NOT NULL,
        post_id TEXT NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
        content TEXT,                       -- the emoji of a reaction
        emoji_url TEXT,                     -- a custom emoji's image (remote URL)
        created_at TEXT NOT NULL
    );
    CREATE INDEX interactions_post ON interactions(post_id, kind);
    CREATE INDEX interactions_actor ON interactions(actor_id);

    -- thread_post_id: the thought of ours this conversation hangs under
    ALTER TABLE remote_posts ADD COLUMN thread_post_id TEXT;
    ALTER TABLE remote_posts ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE remote_posts ADD COLUMN quote_of TEXT;
    ALTER TABLE remote_posts ADD COLUMN attachments TEXT;     -- JSON list of attachment details
    CREATE INDEX remote_posts_thread ON remote_posts(thread_post_id, published);
    CREATE INDEX remote_posts_reply ON remote_posts(in_reply_to);

    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        -- follow | follow_request | like | announce | reaction | reply | mention | quote
        kind TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        post_id TEXT,                       -- our thought it is about, if any
        object_id TEXT NOT NULL DEFAULT '', -- the remote note or activity
        content TEXT,                       -- a reaction's emoji
        created_at TEXT NOT NULL,
        read_at TEXT,
        UNIQUE (kind, actor_id, object_id)
    );
    CREATE INDEX notifications_unread ON notifications(id) WHERE read_at IS NULL;

    CREATE TABLE blocks (
        target TEXT PRIMARY KEY,            -- an actor id, or a domain (host[:port], lower-case)
        kind TEXT NOT NULL,                 -- actor | domain
        created_at TEXT NOT NULL
    );

    CREATE TABLE pins (
        post_id TEXT PRIMARY KEY REFERENCES posts(id) ON DELETE CASCADE,
        pinned_at TEXT NOT NULL
    );

    ALTER TABLE media ADD COLUMN blurhash TEXT;
    ALTER TABLE media ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX media_post ON media(post_id, position);

    CREATE TABLE remote_media (
        url TEXT PRIMARY KEY,               -- the remote URL as peers sent it
        name TEXT,                          -- file under <data_dir>/media/remote once fetched
        mime_type TEXT,
        size INTEGER,
        state TEXT NOT NULL DEFAULT 'pending',  -- pending | ok | failed
        error TEXT,
        fetched_at TEXT
    );
    """,
    # 4: conversations — the owner's replies are found by the note they answer; what the owner
    # liked or boosted on other servers (so the UI can show it and send the Undo).
    """
    CREATE INDEX posts_in_reply_to ON posts(in_reply_to) WHERE in_reply_to IS NOT NULL;

    CREATE TABLE own_interactions (
        object_id TEXT NOT NULL,            -- the remote note
        kind TEXT NOT NULL,                 -- like | announce
        activity_id TEXT NOT NULL,          -- our Like / Announce (kept in `activities`)
        created_at TEXT NOT NULL,
        PRIMARY KEY (object_id, kind)
    ) WITHOUT ROWID;
    """,
    # 5: delivery health per instance (/admin/federation) — one walk of this index in host
    # order answers every column of the grouped query, without touching the table.
    """
    CREATE INDEX deliveries_host ON deliveries(host, state, updated_at, attempts, next_attempt_at);
    """,
    # 6: housekeeping — finished deliveries and processed inbox rows are kept for a while, then
    # cleared (services/housekeeping.py); these find the oldest without scanning the tables.
    """
    CREATE INDEX deliveries_finished ON deliveries(updated_at) WHERE state != 'pending';
    CREATE INDEX inbox_processed ON inbox(processed_at) WHERE state != 'pending';
    """,
)
