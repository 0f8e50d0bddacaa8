"""One log line per HTTP request (method, path, status, duration, client). Layer: web.

A pure ASGI middleware, outermost, so the line carries the status the client really got and the
whole time spent, body included. The query string is left out on purpose: it holds search terms
and WebFinger resources, which an operator's log does not need to keep. The line is logfmt text
on the `fedistream.access` logger; the same fields ride along as `record.fields` for the JSON
output of `fedistream serve --log-format json`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fedistream.core.logfmt import LogfmtLine

log = logging.getLogger("fedistream.access")


def _log_event(fields: dict[str, Any]) -> None:
    log.info(LogfmtLine(fields), extra={"fields": fields})


class AccessLogMiddleware:
    """`write` gets each request's fields; by default they go through `logging` (the
    `fedistream.access` logger). `fedistream serve` passes the log output's cheaper writer of
    the same line (fedistream/logs.py `LogOutput.event_writer`)."""

    def __init__(self, app: ASGIApp, write: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.app = app
        self._write = write or _log_event

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            client = scope.get("client")
            fields = {
                "event": "request",
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                # With proxy headers trusted, uvicorn has already put the real client here.
                "client": client[0] if client else None,
            }
            self._write(fields)
