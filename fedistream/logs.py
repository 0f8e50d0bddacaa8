"""Log output of `fedistream serve`: one line per event on stderr, as logfmt text or JSON.

Beside `cli.py` (it configures the process, nothing below imports it). Structured events (a
request, a delivery attempt) carry their fields in `record.fields`; any other record (uvicorn's
start-up lines, a traceback) becomes `msg="…"`, escaped so it stays on one line.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from fedistream.core.logfmt import logfmt

FORMATS = ("text", "json")


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_line(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False, default=str)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": _timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
    }
    structured = getattr(record, "fields", None)
    if isinstance(structured, dict):
        fields.update(structured)
    else:
        fields["msg"] = record.getMessage()
    if record.exc_info:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return fields


class LogfmtFormatter(logging.Formatter):
    """`ts=… level=info logger=fedistream.access event=request method=GET …`"""

    def format(self, record: logging.LogRecord) -> str:
        return logfmt(_fields(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, the same keys as the logfmt output."""

    def format(self, record: logging.LogRecord) -> str:
        return _json_line(_fields(record))


_STOP = object()


class _QueuedLines(logging.Handler):
    """Formats a record where it is logged and queues only the finished line (the stdlib's
    QueueHandler copies every record and rewrites its fields: a third of a line's cost)."""

    def __init__(self, lines: queue.SimpleQueue[object]) -> None:
        super().__init__()
        self._lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.put(self.format(record))
        except Exception:
            self.handleError(record)


# How long the writer gathers lines after the first one of a burst before writing them.
GATHER_SECONDS = 0.05
MAX_LINES_PER_WRITE = 1000


class _LineWriter:
    """One thread that writes queued lines to the stream: after the first line of a burst it
    lets GATHER_SECONDS' worth of lines pile up and writes them in one call.

    Waking on every line cost more than the line itself: each wake-up takes the GIL from the
    event loop, ~0.09 ms per inbox POST at 2,500 POSTs/s (bench/README.md, fourth pass). A
    line reaches stderr at most GATHER_SECONDS late; `stop` still writes out everything."""

    def __init__(
        self, lines: queue.SimpleQueue[object], stream: TextIO, gather: float = GATHER_SECONDS
    ) -> None:
        self._lines = lines
        self._stream = stream
        self._gather = gather
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._lines.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        behind = False  # the last write was a full batch: more is queued, no need to gather
        while True:
            batch = [self._lines.get()]
            if batch[0] is not _STOP and not behind:
                time.sleep(self._gather)  # the rest of the burst: one write for all of it
            with contextlib.suppress(queue.Empty):
                while len(batch) < MAX_LINES_PER_WRITE:
                    batch.append(self._lines.get_nowait())
            behind = len(batch) >= MAX_LINES_PER_WRITE
            stopping = _STOP in batch
            text = "".join(f"{line}\n" for line in batch if line is not _STOP)
            try:
                if text:
                    self._stream.write(text)
                    self._stream.flush()
            except (OSError, ValueError):  # stderr closed or gone: nothing better to do
                pass
            if stopping:
                return


class LogOutput:
    """What `configure` set up. Calling it stops the output: what is queued is written out."""

    def __init__(self, lines: queue.SimpleQueue[object], fmt: str, stop: Callable[[], None]):
        self._lines = lines
        self._encode: Callable[[dict[str, Any]], str] = _json_line if fmt == "json" else logfmt
        self._stop = stop

    def __call__(self) -> None:
        self._stop()

    def event_writer(self, logger_name: str) -> Callable[[dict[str, Any]], None]:
        """`write(fields)`: the line `logging.getLogger(logger_name).info(…, extra={"fields":
        fields})` writes (same keys, same format, same queue, same level check), without the
        logging module's record, caller lookup and handler chain: ~5 instead of ~12 µs, which
        matters for the one line per request (an inbox POST costs ~0.25 ms in all)."""
        logger = logging.getLogger(logger_name)
        put, encode = self._lines.put, self._encode

        def write(fields: dict[str, Any]) -> None:
            if logger.isEnabledFor(logging.INFO):
                head = {"ts": _timestamp(time.time()), "level": "info", "logger": logger_name}
                put(encode(head | fields))

        return write


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> LogOutput:
    """Route every logger (ours and uvicorn's) to stderr in the chosen format. Calling what it
    returns writes out what is still queued (also done at exit).

    Lines are formatted where they are logged but written by a background thread: a slow
    reader of stderr (journald under load) must never block the event loop.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, not {fmt!r}")
    lines: queue.SimpleQueue[object] = queue.SimpleQueue()
    handler = _QueuedLines(lines)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    writer = _LineWriter(lines, stream or sys.stderr)
    writer.start()
    stopped = threading.Event()

    def stop() -> None:
        if not stopped.is_set():  # once: called by hand (tests) and again at exit
            stopped.set()
            writer.stop()

    atexit.register(stop)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every outgoing request at info: one per delivery, already logged by the worker.
    if root.level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    # uvicorn's own loggers propagate to ours; its access log is replaced by web.access_log.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)  # follow the root level (uvicorn.run sets it again)
        logger.propagate = True
    return LogOutput(lines, fmt, stop)
