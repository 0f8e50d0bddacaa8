"""/admin/federation over HTTP: delivery health per instance and "Retry now" (session + CSRF)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

import fedistream.app as app_module
from fedistream.app import build_app
from fedistream.core.retry import Outcome
from fedistream.settings import Settings
from fedistream.store import activities, blocks, deliveries
from fedistream.store.db import Database
from fedistream.web.admin_ops import relative
from tests.conftest import log_in


@pytest.fixture
def woken(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The app's delivery worker replaced by one that only records wake() calls, so the rows
    these tests look at are not delivered (and changed) behind their back."""
    calls: list[str] = []

    class IdleWorker:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def wake(self) -> None:
            calls.append("wake")

        async def run(self) -> None:
            await asyncio.Event().wait()

        async def stop(self) -> None:
            return None

    monkeypatch.setattr(app_module, "DeliveryWorker", IdleWorker)
    return calls


@pytest.fixture
def ops_client(settings: Settings, woken: list[str]) -> Iterator[TestClient]:
    with TestClient(build_app(settings), base_url=settings.base_url) as test_client:
        asyncio.run(_seed(settings))
        yield test_client


async def _seed(settings: Settings) -> None:
    """flaky.test backs off on 503s; gone.test was given up (410) a day ago."""
    now = datetime.now(UTC).replace(microsecond=0)  # at seeding: the page counts from here
    db = await Database.open(settings.db_path)
    try:
        start = now - timedelta(days=1)
        activity_id = "https://blog.example.test/p/0001/activity"
        async with db.transaction() as conn:
            await activities.insert(conn, activity_id, "Create", None, "{}", start)
            await deliveries.enqueue(
                conn,
                activity_id,
                [("https://flaky.test/inbox", None), ("https://gone.test/u/inbox", None)],
                start,
            )
        for row in await deliveries.claim_due(db, start, 60, 10):
            if row.host == "flaky.test":
                await deliveries.record(
                    db, row.id, Outcome.RETRY, 503, "HTTP 503: <b>busy</b>",
                    now + timedelta(hours=2), now - timedelta(minutes=5),
                )  # fmt: skip
            else:
                await deliveries.record(db, row.id, Outcome.GIVE_UP, 410, "gone", None, start)
    finally:
        await db.close()


def rows(settings: Settings) -> dict[str, dict[str, Any]]:
    async def read() -> dict[str, dict[str, Any]]:
        db = await Database.open(settings.db_path)
        try:
            found = await db.fetchall("SELECT * FROM deliveries")
            return {r["host"]: dict(r) for r in found}
        finally:
            await db.close()

    return asyncio.run(read())


def test_the_page_and_the_action_need_a_session(ops_client: TestClient, settings: Settings) -> None:
    page = ops_client.get("/admin/federation", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/admin/login")
    before = rows(settings)
    retry = ops_client.post(
        "/admin/federation/retry", data={"host": "flaky.test"}, follow_redirects=False
    )
    assert retry.status_code == 303 and "/admin/login" in retry.headers["location"]
    assert rows(settings) == before


def test_retry_without_csrf_is_refused(
    ops_client: TestClient, settings: Settings, woken: list[str]
) -> None:
    log_in(ops_client)
    before = rows(settings)
    for token in (None, "wrong-token"):
        data = {"host": "flaky.test", **({"csrf": token} if token else {})}
        response = ops_client.post("/admin/federation/retry", data=data, follow_redirects=False)
        assert response.status_code == 403 and "security token" in response.text
    assert rows(settings) == before and woken == []


def test_the_page_shows_health_per_instance(ops_client: TestClient) -> None:
    log_in(ops_client)
    page = ops_client.get("/admin/federation")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert '<a href="/admin/federation">Federation</a>' in html  # in the owner's navigation
    sections = html.split('<th scope="row">')[1:]  # one per instance, its error row included
    flaky, gone = sections
    assert flaky.startswith("flaky.test<br>") and gone.startswith("gone.test<br>")
    assert "retrying, attempt 2" in flaky
    assert "never" in flaky  # no success yet
    assert ">5 min ago</time>" in flaky and "1 queued, next" in flaky and ">in 2 h</time>" in flaky
    assert "HTTP 503: &lt;b&gt;busy&lt;/b&gt;" in flaky  # the peer's words, escaped
    assert "Retry now" in flaky and 'name="revive"' not in flaky
    assert "failing" in gone and ">gone</td>" in gone and "1 given up" in gone
    assert 'name="revive"' in gone and "given-up too" in gone
    assert html.index("flaky.test") < html.index("gone.test")  # troubled first
    assert "0 delivered, 1 queued, 1 given up" in html


def test_retry_now_makes_rows_due_and_wakes_the_worker(
    ops_client: TestClient, settings: Settings, woken: list[str]
) -> None:
    csrf = log_in(ops_client)
    response = ops_client.post(
        "/admin/federation/retry",
        data={"csrf": csrf, "host": "flaky.test"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/admin/federation?done=retried&host=flaky.test&rescheduled=1&revived=0"
    )
    after = rows(settings)
    due = datetime.fromisoformat(after["flaky.test"]["next_attempt_at"].replace("Z", "+00:00"))
    assert due <= datetime.now(UTC) and after["flaky.test"]["attempts"] == 1
    assert after["gone.test"]["state"] == "dead"  # another host, untouched
    assert woken == ["wake"]
    notice = ops_client.get(response.headers["location"]).text
    assert "flaky.test: 1 queued deliveries due now, 0 given-up ones revived." in notice


def test_retry_can_revive_given_up_rows(
    ops_client: TestClient, settings: Settings, woken: list[str]
) -> None:
    csrf = log_in(ops_client)
    response = ops_client.post(
        "/admin/federation/retry",
        data={"csrf": csrf, "host": "gone.test", "revive": "1"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and "revived=1" in response.headers["location"]
    gone = rows(settings)["gone.test"]
    assert gone["state"] == "pending" and gone["lease_until"] is None
    assert woken == ["wake"]


def test_a_blocked_domain_is_not_revived(
    ops_client: TestClient, settings: Settings, woken: list[str]
) -> None:
    async def block() -> None:
        db = await Database.open(settings.db_path)
        try:
            async with db.transaction() as conn:
                await blocks.add(conn, "gone.test", blocks.DOMAIN, "2026-01-01T00:00:00Z")
        finally:
            await db.close()

    asyncio.run(block())
    csrf = log_in(ops_client)
    response = ops_client.post(
        "/admin/federation/retry",
        data={"csrf": csrf, "host": "gone.test", "revive": "1"},
        follow_redirects=False,
    )
    assert response.status_code == 400 and "is blocked" in response.text
    assert rows(settings)["gone.test"]["state"] == "dead" and woken == []


def test_the_page_is_accessible(ops_client: TestClient) -> None:
    from tests.web.test_accessibility import _audit

    log_in(ops_client)
    audit = _audit(ops_client.get("/admin/federation").text)
    assert audit.lang == "en" and {"main", "header", "footer", "nav"} <= audit.landmarks
    assert audit.inputs == [("checkbox", "revive-2")]  # gone.test, second row
    assert {id_ for _, id_ in audit.inputs} <= audit.label_targets


def test_relative_times() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    cases = {
        None: "never",
        now + timedelta(seconds=30): "now",
        now - timedelta(seconds=30): "just now",
        now - timedelta(seconds=50): "1 min ago",
        now - timedelta(minutes=5): "5 min ago",
        now + timedelta(hours=2): "in 2 h",
        now - timedelta(days=3): "3 d ago",
    }
    for when, expected in cases.items():
        assert relative(when, now) == expected, when


def test_an_empty_queue_says_so(client: TestClient) -> None:
    log_in(client)
    page = client.get("/admin/federation")
    assert page.status_code == 200 and "Nothing has been sent to another server yet" in page.text


def test_a_thought_older_than_the_records_says_they_were_cleared(
    owner_client: TestClient, settings: Settings
) -> None:
    """Housekeeping clears delivery records after RECORDS_KEPT: an old thought's empty page
    must not claim nothing was ever sent."""
    import sqlite3

    from fedistream.services.housekeeping import RECORDS_KEPT
    from tests.conftest import publish

    post_id = publish(owner_client, "A thought nobody followed yet.")
    page = owner_client.get(f"/admin/posts/{post_id}/deliveries").text
    assert "nobody followed you when it was published" in page
    conn = sqlite3.connect(settings.db_path)
    with conn:
        old = datetime.now(UTC) - RECORDS_KEPT - timedelta(days=1)
        conn.execute(
            "UPDATE posts SET created_at = ? WHERE id = ?",
            (old.strftime("%Y-%m-%dT%H:%M:%SZ"), post_id),
        )
    conn.close()
    page = owner_client.get(f"/admin/posts/{post_id}/deliveries").text
    assert f"kept for {RECORDS_KEPT.days} days" in page
    assert "nobody followed you" not in page
