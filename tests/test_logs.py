"""`fedistream serve` logging: one line per record on stderr, logfmt or JSON, same keys."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from fedistream import logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    httpx_level = logging.getLogger("httpx").level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logging.getLogger("httpx").setLevel(httpx_level)


def test_text_format_writes_structured_fields_and_plain_messages(restore_logging: None) -> None:
    out = io.StringIO()
    stop = logs.configure("info", "text", stream=out)
    fields = {"event": "request", "method": "GET", "path": "/", "status": 200}
    logging.getLogger("fedistream.access").info("ignored text", extra={"fields": fields})
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("fedistream.delivery").debug("below the level")
    stop()  # written by a background thread: let it finish
    first, second = out.getvalue().splitlines()
    assert first.startswith("ts=") and first.endswith(
        "level=info logger=fedistream.access event=request method=GET path=/ status=200"
    )
    assert second.endswith('level=info logger=uvicorn.error msg="Started server process [42]"')


def test_json_format_has_the_same_keys(restore_logging: None) -> None:
    out = io.StringIO()
    stop = logs.configure("info", "json", stream=out)
    fields = {"event": "delivery", "activity": "https://a.test/p/1/activity", "status": None}
    logging.getLogger("fedistream.delivery").warning("x", extra={"fields": fields})
    stop()
    record = json.loads(out.getvalue())
    assert record["level"] == "warning" and record["logger"] == "fedistream.delivery"
    assert record["event"] == "delivery" and record["status"] is None
    assert record["ts"].endswith("Z")


def test_a_traceback_stays_on_one_line(restore_logging: None) -> None:
    out = io.StringIO()
    stop = logs.configure("info", "text", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("fedistream.delivery").exception("failed")
    stop()
    (line,) = out.getvalue().splitlines()
    assert 'msg=failed exc="Traceback' in line and "ValueError: boom" in line


def test_httpx_request_lines_are_quiet_unless_debugging(restore_logging: None) -> None:
    logs.configure("info", "text", stream=io.StringIO())()
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    with pytest.raises(ValueError):
        logs.configure("info", "yaml")


def test_lines_logged_from_many_threads_are_all_written_whole(restore_logging: None) -> None:
    """Lines are written in batches by one thread: none is lost, split or interleaved."""
    import threading

    out = io.StringIO()
    stop = logs.configure("info", "text", stream=out)
    log = logging.getLogger("fedistream.delivery")

    def burst(thread: int) -> None:
        for n in range(2000):
            log.info("t%d line %d", thread, n)

    threads = [threading.Thread(target=burst, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop()
    lines = out.getvalue().splitlines()
    assert len(lines) == 8000
    for t in range(4):
        mine = [line for line in lines if f'msg="t{t} line ' in line]
        assert [int(line.rsplit(" ", 1)[1].rstrip('"')) for line in mine] == list(range(2000))


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_a_steady_trickle_of_lines_is_written_in_few_calls(restore_logging: None) -> None:
    """A request a millisecond (a busy inbox) must not wake the writer once per line: each
    wake-up takes the GIL from the event loop. The lines of a burst go out together."""
    import time

    out = _CountingStream()
    stop = logs.configure("info", "text", stream=out)
    log = logging.getLogger("fedistream.access")
    for n in range(100):
        log.info("request %d", n)
        time.sleep(0.001)
    stop()
    assert len(out.getvalue().splitlines()) == 100
    # ≥ 100 ms of lines, gathered GATHER_SECONDS at a time: a few writes, not one per line.
    assert out.writes <= 100 * 0.001 / logs.GATHER_SECONDS + 5


def test_a_single_line_is_written_within_the_gathering_time(restore_logging: None) -> None:
    import time

    out = _CountingStream()
    stop = logs.configure("info", "text", stream=out)
    try:
        logging.getLogger("fedistream.access").info("alone")
        deadline = time.monotonic() + 5
        while "alone" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "alone" in out.getvalue()
    finally:
        stop()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_event_writer_writes_the_line_logging_writes(restore_logging: None, fmt: str) -> None:
    """The access log's cheaper path (`LogOutput.event_writer`) must not change a byte of the
    line, apart from the time stamp."""
    out = io.StringIO()
    output = logs.configure("info", fmt, stream=out)
    fields = {"event": "request", "method": "POST", "path": "/in box", "status": 202, "ms": 1.25}
    logging.getLogger("fedistream.access").info("x", extra={"fields": fields})
    output.event_writer("fedistream.access")(fields)
    output()
    via_logging, via_writer = out.getvalue().splitlines()

    def without_time(line: str) -> object:
        if fmt == "json":
            record = json.loads(line)
            assert record.pop("ts").endswith("Z")
            return record
        assert line.startswith("ts=") and line.split(" ", 1)[0].endswith("Z")
        return line.split(" ", 1)[1]

    assert without_time(via_writer) == without_time(via_logging)


def test_the_event_writer_follows_the_level(restore_logging: None) -> None:
    out = io.StringIO()
    output = logs.configure("warning", "text", stream=out)
    output.event_writer("fedistream.access")({"event": "request"})
    output()
    assert out.getvalue() == ""
