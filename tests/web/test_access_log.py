"""One logfmt line per request (web.access_log): method, path, status, duration, client."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from fedistream.web.access_log import AccessLogMiddleware


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "fedistream.access"]


def test_the_real_app_logs_each_request(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fedistream.access")
    client.get("/search?q=secret-query")
    client.get("/p/0000000000000000")
    client.post("/inbox", content=b"{}", headers={"content-type": "application/activity+json"})
    first, missing, refused = lines(caplog)
    assert first.getMessage().startswith(
        "event=request method=GET path=/search status=200 duration_ms="
    )
    assert first.getMessage().endswith(" client=testclient")
    assert "secret-query" not in first.getMessage()  # queries stay out of the log
    assert "method=GET path=/p/0000000000000000 status=404" in missing.getMessage()
    assert "method=POST path=/inbox status=401" in refused.getMessage()
    fields = first.fields  # type: ignore[attr-defined]
    assert fields["status"] == 200 and isinstance(fields["duration_ms"], float)


def _app() -> Starlette:
    async def ok(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def broken(request: Request) -> Response:
        raise RuntimeError("bug")

    return Starlette(
        routes=[Route("/ok", ok), Route("/broken", broken)],
        middleware=[Middleware(AccessLogMiddleware)],
    )


def test_an_unhandled_error_is_logged_as_500(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fedistream.access")
    with TestClient(_app(), raise_server_exceptions=False) as test_client:
        assert test_client.get("/broken").status_code == 500
    (line,) = lines(caplog)
    assert "method=GET path=/broken status=500" in line.getMessage()


def test_nothing_is_logged_when_info_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fedistream.access")
    with TestClient(_app()) as test_client:
        assert test_client.get("/ok").text == "ok"
    assert lines(caplog) == []
