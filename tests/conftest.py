"""Shared test fixtures: paths to the shared interop fixtures and per-test settings."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from fedistream.app import build_app
from fedistream.settings import Settings, load_settings
from fedistream.store.db import Database

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture
def shared_fixtures() -> Path:
    """The real-world payloads in ../shared/fixtures (skip when that folder is absent)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"shared interop fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES


# --- app fixtures ------------------------------------------------------------------------------

OWNER_PASSWORD = "correct horse battery staple"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        env={},
        data_dir=tmp_path / "data",
        owner_password=OWNER_PASSWORD,
        base_url="https://blog.example.test",
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "store.sqlite3")
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A TestClient around the real app (lifespan run: database open, owner created)."""
    with TestClient(build_app(settings), base_url=settings.base_url) as test_client:
        yield test_client


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def log_in(client: TestClient, password: str = OWNER_PASSWORD) -> str:
    """Log the client in through the real form; returns the session's CSRF token."""
    page = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={"csrf": csrf_from(page.text), "password": password, "next": "/admin"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_from(client.get("/admin").text)


@pytest.fixture
def owner_client(client: TestClient) -> TestClient:
    client.csrf = log_in(client)  # type: ignore[attr-defined]
    return client


def publish(client: TestClient, source: str, title: str = "", summary: str = "") -> str:
    """Publish through the owner UI; returns the new thought's id."""
    response = client.post(
        "/admin/posts",
        data={
            "csrf": client.csrf,
            "source": source,
            "title": title,  # type: ignore[attr-defined]
            "summary": summary,
            "action": "publish",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[-1]


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """scrypt at production cost takes ~0.15 s per hash; tests hash hundreds of times.
    The hash string records its parameters, so verification is unaffected."""
    monkeypatch.setattr("fedistream.core.passwords._N", 2**10)
