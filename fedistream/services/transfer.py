"""Use cases that move the stream in and out: import a stream file, export, back up the database.

Services layer: parsing and formatting are pure (`core.stream_file`); this module adds the database,
the clock and files. Terminal output (progress, summaries) stays with the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from fedistream.core import stream_file
from fedistream.core.models import Post
from fedistream.core.stream_file import Entry
from fedistream.core.timefmt import to_iso
from fedistream.errors import BadInput, FedistreamError
from fedistream.services.posts import Draft, build_post, new_post_id, validate
from fedistream.store import meta
from fedistream.store import posts as post_store
from fedistream.store.db import BUSY_TIMEOUT_MS, Database

BATCH_SIZE = 200
# Ids encode milliseconds since 1970 and cannot name an earlier time.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ProgressFn = Callable[[int, int], None]  # (thoughts handled, thoughts in the file)


# --- import ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """A chunk that was not imported, named so the owner can find it in the file."""

    number: int
    line: int
    first_line: str
    reason: str


@dataclass(slots=True)
class ImportReport:
    imported: int = 0
    duplicates: int = 0
    empty: int = 0
    failures: list[Failure] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # of the imported thoughts, in file order

    @property
    def ok(self) -> bool:
        return not self.failures


def _source_key(source: str) -> bytes:
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).digest()


def assign_times(entries: tuple[Entry, ...], now: datetime) -> list[datetime | None]:
    """The creation time of each entry: its `date:`, or for undated ones increasing whole seconds
    ending at `now`, in file order, so the stream shows them in the order the file has them."""
    now = now.astimezone(UTC).replace(microsecond=0)
    undated = sum(1 for e in entries if e.created_at is None and e.error is None)
    times: list[datetime | None] = []
    step = 0
    for entry in entries:
        if entry.error is not None:
            times.append(None)
        elif entry.created_at is not None:
            times.append(entry.created_at)
        else:
            times.append(now - timedelta(seconds=undated - 1 - step))
            step += 1
    return times


class _DuplicateGuard:
    """Knows what is already in the stream (and earlier in this file) so a re-import adds nothing.

    Dated thoughts match on (creation time, source) through `find_duplicate`. That query has no
    index to use, so asking it for every thought made a 20k-thought import take minutes; instead
    the stream is read once up front (creation seconds and source hashes), and the store is asked
    only when a thought's time is already taken. Undated thoughts get a fresh time on every import,
    so they can only match on the source.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._seen_dated: set[tuple[str, bytes]] = set()
        self._seen_undated: set[bytes] = set()
        self._times: set[int] = set()
        self._sources: set[bytes] = set()
        self._loaded = False

    async def _load(self) -> None:
        if not self._loaded:
            async for post in post_store.iter_all(self._db):
                self._times.add(int(post.created_at.timestamp()))
                self._sources.add(_source_key(post.source))
            self._loaded = True

    async def is_duplicate(self, source: str, created: datetime, dated: bool) -> bool:
        await self._load()
        key = _source_key(source)
        if dated:
            created_iso = to_iso(created)
            if (created_iso, key) in self._seen_dated:
                return True
            self._seen_dated.add((created_iso, key))
            if int(created.timestamp()) not in self._times:
                return False
            return await post_store.find_duplicate(self._db, created_iso, source) is not None
        if key in self._seen_undated:
            return True
        self._seen_undated.add(key)
        return key in self._sources


async def import_stream(
    db: Database,
    text: str,
    *,
    max_chars: int,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    on_progress: ProgressFn | None = None,
) -> ImportReport:
    """Import every valid, new thought of a stream file; report the rest (nothing raises for a
    bad chunk). Each batch of thoughts commits in one transaction with one stream-version bump."""
    parsed = stream_file.parse_stream(text)
    now = now or datetime.now(UTC)
    report = ImportReport(empty=parsed.empty)
    guard = _DuplicateGuard(db)
    entries = parsed.entries
    times = assign_times(entries, now)
    total = len(entries)

    def fail(entry: Entry, reason: str) -> None:
        report.failures.append(Failure(entry.number, entry.line, entry.first_line, reason))

    for start in range(0, total, batch_size):
        batch: list[Post] = []
        for offset, entry in enumerate(entries[start : start + batch_size]):
            created = times[start + offset]
            if entry.error is not None or created is None:
                fail(entry, entry.error or "no date")
            elif created > now:
                fail(entry, f"the date {to_iso(created)} is in the future")
            elif created < _EPOCH:
                fail(entry, f"the date {to_iso(created)} is before 1970")
            else:
                try:
                    clean = validate(
                        Draft(source=entry.source, title=entry.title, summary=entry.summary),
                        max_chars,
                    )
                except BadInput as exc:
                    fail(entry, exc.public_message)
                else:
                    dated = entry.created_at is not None
                    if await guard.is_duplicate(clean.source, created, dated):
                        report.duplicates += 1
                    else:
                        batch.append(build_post(clean, new_post_id(created), created))
            if on_progress is not None:
                on_progress(start + offset + 1, total)
        if batch:
            # Reads (duplicate checks, rendering) happen before the transaction so it stays short.
            async with db.transaction() as conn:
                for post in batch:
                    await post_store.insert_post(conn, post)
                await meta.bump_stream_version(conn)
            report.imported += len(batch)
            report.ids.extend(post.id for post in batch)
    return report


# --- export ---------------------------------------------------------------------------------


async def export_markdown(db: Database, out: TextIO) -> int:
    """Write the whole stream, oldest first, as one stream file; returns the number of thoughts."""
    count = 0
    async for post in post_store.iter_all(db):
        if count:
            out.write(f"\n{stream_file.SEPARATOR_LINE}\n\n")
        out.write(stream_file.format_post(post))
        count += 1
    return count


def split_file_name(post: Post) -> str:
    return f"{post.created_at.astimezone(UTC):%Y-%m-%d}-{post.id}.md"


async def export_markdown_split(db: Database, directory: Path) -> int:
    """One `YYYY-MM-DD-<id>.md` stream file per thought in `directory` (created if missing).

    Files of thoughts already exported are rewritten in place, so exporting again into the same
    folder refreshes it instead of piling up copies.
    """
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    count = 0
    async for post in post_store.iter_all(db):
        text = stream_file.format_post(post)
        await asyncio.to_thread(_write_atomically, directory / split_file_name(post), text)
        count += 1
    return count


async def export_jsonl(db: Database, out: TextIO, url_for: Callable[[str], str]) -> int:
    """One JSON object per line per thought, oldest first; `url_for("/p/ID")` gives its URL."""
    count = 0
    async for post in post_store.iter_all(db):
        record = stream_file.json_record(post, url_for(f"/p/{post.id}"))
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# --- backup ---------------------------------------------------------------------------------


class BackupFailed(FedistreamError):
    """The copy could not be made or did not pass the integrity check."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    size: int  # bytes
    posts: int  # live thoughts in the copy


def backup_target(dest: Path, now: datetime) -> Path:
    """An existing directory gets a time-stamped file inside it; any other path is the file."""
    if dest.is_dir():
        return dest / f"fedistream-{now.astimezone(UTC):%Y%m%d-%H%M%S}.sqlite3"
    return dest


def _copy_database(source: Path, target: Path) -> int:
    """Online backup of `source` into the new file `target`, checked; returns live thoughts.

    `backup()` with the default pages=-1 copies every page inside one read transaction, so the
    copy is one committed state even while the server keeps writing (WAL lets that writer go on);
    copying in steps instead would restart on every concurrent write.
    """
    src = sqlite3.connect(source, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            # The copy should be one self-contained file, not a WAL database wanting a -wal file.
            dst.execute("PRAGMA journal_mode = DELETE")
            problems = [row[0] for row in dst.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                detail = "; ".join(problems[:5])
                raise BackupFailed(f"The copy failed the integrity check: {detail}")
            # A plain count on the copy (not through the store, which wants an async Database).
            row = dst.execute("SELECT count(*) FROM posts WHERE deleted_at IS NULL").fetchone()
            return int(row[0])
        finally:
            dst.close()
    finally:
        src.close()


def _backup_sync(db_path: Path, dest: Path, force: bool, now: datetime) -> BackupResult:
    """All of `backup`, blocking (it runs in a worker thread)."""
    if not db_path.is_file():
        raise BadInput(f"There is no database at {db_path}; check --data-dir.")
    target = backup_target(dest, now)
    if target.resolve() == db_path.resolve():
        raise BadInput("The backup cannot be written over the live database.")
    if target.exists() and not force:
        raise BadInput(f"{target} already exists; use --force to overwrite it.")
    if not target.parent.is_dir():
        raise BadInput(f"The folder {target.parent} does not exist.")
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        posts = _copy_database(db_path, tmp)
        os.replace(tmp, target)
    except sqlite3.Error as exc:
        raise BackupFailed(f"The backup failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return BackupResult(path=target, size=target.stat().st_size, posts=posts)


async def backup(
    db_path: Path, dest: Path, *, force: bool = False, now: datetime | None = None
) -> BackupResult:
    """Copy the live database to `dest` (a file, or a directory to put a dated file in).

    The copy is written beside the target under a temporary name and renamed only once it passed
    `PRAGMA integrity_check`, so a failed backup never leaves a half-written file under the name.
    The work runs in a thread: the server's event loop (or the CLI's) is never blocked by it.
    """
    return await asyncio.to_thread(_backup_sync, db_path, dest, force, now or datetime.now(UTC))
