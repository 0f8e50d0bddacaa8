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
)
