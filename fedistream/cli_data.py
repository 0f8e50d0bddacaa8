"""CLI commands that move data in and out: `import FILE`, `export`, `backup PATH`.

The command edge: argument parsing, reading and writing files and the terminal (progress bar,
summaries, exit codes). The work itself is in `services.transfer`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TextIO

from fedistream.errors import FedistreamError
from fedistream.settings import Settings
from fedistream.store.db import Database

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# --- progress -------------------------------------------------------------------------------


class ProgressBar:
    """Progress on stderr: one line redrawn with '\\r' on a terminal; otherwise (a log, a pipe)
    a plain line at every tenth of the way, so logs stay short and readable."""

    def __init__(self, stream: TextIO, label: str, width: int = 30) -> None:
        self._stream = stream
        self._label = label
        self._width = width
        self._tty = stream.isatty()
        self._last: int | None = None  # last percentage (tty) or tenth (log) shown
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        percent = done * 100 // total
        if self._tty:
            if percent == self._last and done != total:
                return
            filled = self._width * done // total
            bar = "#" * filled + "-" * (self._width - filled)
            self._stream.write(f"\r{self._label} [{bar}] {percent:3d}% {done}/{total}")
            self._drawn = True
        else:
            tenth = percent // 10
            if tenth == self._last or tenth == 0:
                return
            self._stream.write(f"{self._label}: {tenth * 10}% ({done}/{total})\n")
        self._last = percent if self._tty else tenth
        self._stream.flush()

    def close(self) -> None:
        """End the redrawn line so what follows starts on a fresh one."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False


# --- import ---------------------------------------------------------------------------------


def _read_input(name: str) -> str:
    data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    # A BOM is kept here and dropped by the parser, which also accepts text from elsewhere.
    return data.decode("utf-8")


async def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from fedistream.services.owner import ensure_owner
    from fedistream.services.transfer import import_stream

    try:
        text = _read_input(args.file)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except UnicodeDecodeError as exc:
        print(f"error: {args.file} is not UTF-8 text (byte {exc.start})", file=sys.stderr)
        return EXIT_USAGE
    db = await Database.open(settings.db_path)
    progress = ProgressBar(sys.stderr, "import")
    try:
        generated = await ensure_owner(db, settings)
        if generated:
            print(
                f"Owner account created for {settings.handle}; password (shown once): {generated}"
            )
        report = await import_stream(
            db, text, max_chars=settings.max_post_chars, on_progress=progress
        )
    finally:
        progress.close()
        await db.close()
    print(
        f"imported {report.imported}, skipped as duplicates {report.duplicates}, "
        f"empty {report.empty}, failed {len(report.failures)}"
    )
    for failure in report.failures:
        print(
            f'  thought {failure.number} (line {failure.line}, "{failure.first_line}"): '
            f"{failure.reason}"
        )
    return EXIT_OK if report.ok else EXIT_FAILED


# --- export ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    """Standard output, or a file that appears under its name only once completely written."""
    if path is None:
        # The export is UTF-8 whatever the locale says (a C locale would choke on '…' or 'é').
        reconfigure = getattr(sys.stdout, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(encoding="utf-8")
        yield sys.stdout
        sys.stdout.flush()
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _export_problem(args: argparse.Namespace, settings: Settings) -> str | None:
    if not settings.db_path.is_file():
        return f"there is no database at {settings.db_path}; check --data-dir"
    if args.split and args.format != "md":
        return "--split writes Markdown files; it cannot be used with --format jsonl"
    if args.split and args.output is None:
        return "--split needs --output DIR (the folder for the files)"
    if args.output is not None and not args.split:
        if args.output.is_dir():
            return f"{args.output} is a folder; give a file name, or add --split"
        if not args.output.parent.is_dir():
            return f"the folder {args.output.parent} does not exist"
    return None


async def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from fedistream.services import transfer

    problem = _export_problem(args, settings)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    db = await Database.open(settings.db_path)
    try:
        if args.split:
            count = await transfer.export_markdown_split(db, args.output)
        else:
            with _output(args.output) as out:
                if args.format == "jsonl":
                    count = await transfer.export_jsonl(db, out, settings.url)
                else:
                    count = await transfer.export_markdown(db, out)
    finally:
        await db.close()
    where = str(args.output) if args.output is not None else "standard output"
    print(f"exported {count} thought{'' if count == 1 else 's'} to {where}", file=sys.stderr)
    return EXIT_OK


# --- backup ---------------------------------------------------------------------------------


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


async def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from fedistream.services.transfer import backup

    try:
        result = await backup(settings.db_path, args.path, force=args.force)
    except FedistreamError as exc:
        print(f"error: {exc.public_message}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"Backed up to {result.path}: {human_size(result.size)}, "
        f"{result.posts} thought{'' if result.posts == 1 else 's'}; integrity check ok"
    )
    return EXIT_OK


# --- registration ---------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]] = {
    "import": cmd_import,
    "export": cmd_export,
    "backup": cmd_backup,
}


def add_parsers(sub: Any) -> None:
    """Register the data commands on the main parser's subcommands."""
    imp = sub.add_parser(
        "import",
        help="import thoughts from a Markdown/text stream file",
        description="Thoughts are separated by lines of '---'. At the top of a thought, optional "
        "'date: 2024-05-01T10:00Z', 'cw: …' and '# Title' lines keep its date, content warning "
        "and title. Thoughts already in the stream are skipped, so importing twice is safe.",
    )
    imp.add_argument("file", help="the file to import ('-' for standard input)")

    exp = sub.add_parser("export", help="write the whole stream as Markdown or JSON Lines")
    exp.add_argument(
        "--format",
        choices=["md", "jsonl"],
        default="md",
        help="md: the import format (default); jsonl: one JSON object a line",
    )
    exp.add_argument(
        "--output",
        "-o",
        type=Path,
        metavar="PATH",
        help="file (or folder with --split) to write; default standard output",
    )
    exp.add_argument(
        "--split",
        action="store_true",
        help="one YYYY-MM-DD-<id>.md file per thought in the --output folder",
    )

    bak = sub.add_parser("backup", help="copy the database safely, even while the server runs")
    bak.add_argument(
        "path", type=Path, help="the backup file, or a folder to put a dated backup file in"
    )
    bak.add_argument("--force", action="store_true", help="overwrite an existing backup file")
