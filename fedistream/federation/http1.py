"""One HTTP/1.1 connection, client side: a POST's bytes out, its answer parsed in by httptools.

Layer: federation (network edge). Used by delivery_client.py, which decides where to connect
(the SSRF guard), how long to wait, and which connections to keep; this module only speaks the
protocol on a connection it is given. httptools is llhttp, the parser uvicorn serves us with.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import httptools

# Answer bytes read beyond the body cap, at most: the header section, interim answers, chunk
# framing. A peer streaming endless headers cannot make us hold more.
MAX_HEAD_BYTES = 64 * 1024

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a token (RFC 9110 5.1)
_UNSAFE_VALUE = re.compile(r"[\r\n\0]")
_UNSENDABLE = re.compile(r"[^\x21-\x7e]")  # a space, control or non-ASCII character
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True, slots=True)
class Answer:
    """An inbox's answer: status, headers (lower-case names) and the start of its body."""

    status: int
    headers: Mapping[str, str]
    body: bytes  # at most the `max_response_bytes` asked for, as sent (not decompressed)


def post_request(
    path: str,
    host: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    user_agent: str,
    keep_alive: bool,
) -> bytes:
    """A POST's bytes: Host first (the caller's, else `host`), the caller's headers, then
    User-Agent and `Accept-Encoding: identity` unless given, Content-Length, `Connection: close`
    unless `keep_alive`, and the body. The caller's framing headers (Content-Length,
    Transfer-Encoding, Connection) are not sent: they are ours to say. Raises ValueError for
    a `path` or `host` not in sendable form, and for header injection.
    """
    if _UNSENDABLE.search(path) or _UNSENDABLE.search(host):
        raise ValueError(f"Refusing to send POST {path!r} to {host!r}: not in sendable form")
    lines = [f"POST {path} HTTP/1.1\r\n", f"Host: {host}\r\n"]
    given = set()
    for name, value in headers.items():
        check_header(name, value)
        key = name.lower()
        given.add(key)
        if key == "host":
            lines[1] = f"Host: {value}\r\n"  # the signed one
        elif key not in _FRAMING:
            lines.append(f"{name}: {value}\r\n")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {user_agent}\r\n")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: identity\r\n")  # the body is only kept for the log
    lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n" if keep_alive else "Connection: close\r\n\r\n")
    return "".join(lines).encode("latin-1") + body


def check_header(name: str, value: str) -> None:
    """No header may end the head early or add another one (header injection)."""
    if not _HEADER_NAME.fullmatch(name) or _UNSAFE_VALUE.search(value):
        raise ValueError(
            f"Refusing to send the header {name!r}: {value!r} (not a token, or CR/LF/NUL)"
        )


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: writes a request, reads its answer with httptools' parser.

    `on_close` is called once, when it closes for whatever reason. `heard`: a byte of the
    current answer arrived; `reusable`: the answer was complete and allows another request.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_close: Callable[[Connection], None]):
        self._loop = loop
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[Answer] | None = None
        self._limit = 0
        self._received = 0  # bytes of the current answer, as sent
        self._status = 0  # of the message being parsed, once its headers are complete
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._keep_alive = False
        self._until_eof = False  # no Content-Length, not chunked: the body ends with the connection
        self.closed = False
        self.reusable = False

    @property
    def heard(self) -> bool:
        return self._received > 0

    @property
    def usable(self) -> bool:
        return not self.closed and self._transport is not None and not self._transport.is_closing()

    def exchange(self, request: bytes, limit: int) -> asyncio.Future[Answer]:
        """Send `request`; the future is its answer, with at most `limit` bytes of body."""
        self._answer = answer = self._loop.create_future()
        self._limit, self._received, self._status, self.reusable = limit, 0, 0, False
        if self.usable:
            assert self._transport is not None
            self._transport.write(request)
        else:
            answer.set_exception(ConnectionError("the connection closed before sending"))
        return answer

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._gone()

    def abort(self) -> None:
        self._fail(ConnectionAbortedError("the delivery client closed the connection"))

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if self.closed:  # aborted while connecting (the client was closed)
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None or answer.done():
            self.close()  # nothing was asked: a confused peer; do not trust this connection
            return
        self._received += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            return
        if answer.done():
            return
        over = self._received > self._limit + MAX_HEAD_BYTES
        if self._status >= 200 and (over or len(self._body) >= self._limit):
            self._finish(reusable=False)  # enough read; the rest is not, so no reuse
        elif over:
            self._fail(httptools.HttpParserError(f"no answer in the first {self._received} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        answer = self._answer
        if answer is not None and not answer.done():
            if self._status >= 200 and self._until_eof:
                self._finish(reusable=False)  # the body ends where the connection does
            else:
                when = "before answering" if not self.heard else "in the middle of its answer"
                answer.set_exception(
                    exc or ConnectionError(f"the peer closed the connection {when}")
                )
        self._gone()

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self._answer is not None and self._answer.done():
            self.close()  # a second answer to one request: do not trust this connection
        self._status, self._headers, self._body = 0, {}, bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._status:
            return  # a trailer, after the body: not part of the answer's headers
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        known = self._headers.get(key)
        self._headers[key] = text if known is None else f"{known}, {text}"  # RFC 9110 5.3

    def on_headers_complete(self) -> None:
        parser, headers = self._parser, self._headers
        self._status = parser.get_status_code()
        self._keep_alive = parser.should_keep_alive() and parser.get_http_version() == "1.1"
        chunked = headers.get("transfer-encoding", "").lower().endswith("chunked")
        self._until_eof = "content-length" not in headers and not chunked

    def on_body(self, body: bytes) -> None:
        room = self._limit - len(self._body)
        if room > 0:
            self._body += body if len(body) <= room else body[:room]

    def on_message_complete(self) -> None:
        if self._status >= 200:  # 1xx (100 Continue, 103 Early Hints): the answer follows
            self._finish(reusable=self._keep_alive)

    # --

    def _finish(self, *, reusable: bool) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result(Answer(self._status, self._headers, bytes(self._body)))
        self.reusable = reusable and not self.closed
        if not reusable:
            self.close()

    def _fail(self, exc: Exception) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()
        self._gone()

    def _gone(self) -> None:
        self.reusable = False
        if not self.closed:
            self.closed = True
            self._on_close(self)
