"""The delivery retry policy (core.retry): which results are final, and when a retry is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedistream.core.retry import (
    GIVE_UP_AFTER,
    MAX_DELAY,
    MAX_RETRY_AFTER,
    Decision,
    Outcome,
    backoff,
    classify,
    retry_after_delay,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def decide(
    status: int | None,
    error: str | None = None,
    *,
    retry_after: str | None = None,
    attempts: int = 1,
    age: timedelta = timedelta(0),
    rand: float = 0.5,
) -> Decision:
    return classify(
        status,
        error,
        retry_after=retry_after,
        attempts=attempts,
        first_attempt_at=T0,
        now=T0 + age,
        rand=rand,
    )


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [
        (200, None, Outcome.SENT),
        (201, None, Outcome.SENT),
        (202, None, Outcome.SENT),
        (204, None, Outcome.SENT),
        (410, None, Outcome.GIVE_UP),
        (400, None, Outcome.GIVE_UP),
        (403, None, Outcome.GIVE_UP),
        (404, None, Outcome.GIVE_UP),
        (405, None, Outcome.GIVE_UP),
        (413, None, Outcome.GIVE_UP),
        (422, None, Outcome.GIVE_UP),
        (501, None, Outcome.GIVE_UP),  # R73: Mastodon treats 501 as unsalvageable
        (401, None, Outcome.RETRY),  # R73/R35: key not fetched yet, or double-knock pending
        (408, None, Outcome.RETRY),
        (429, None, Outcome.RETRY),
        (500, None, Outcome.RETRY),
        (502, None, Outcome.RETRY),
        (503, None, Outcome.RETRY),
        (504, None, Outcome.RETRY),
        (301, None, Outcome.RETRY),  # we never follow a redirect with a signed POST
        (None, "timeout (ReadTimeout)", Outcome.RETRY),
        (None, "ConnectError: connection refused", Outcome.RETRY),
        (None, None, Outcome.RETRY),
    ],
)
def test_status_table(status: int | None, error: str | None, outcome: Outcome) -> None:
    decision = decide(status, error)
    assert decision.outcome is outcome
    assert (decision.next_attempt_at is not None) == (outcome is Outcome.RETRY)


def test_reasons_explain_the_decision() -> None:
    assert "gone" in decide(410).reason
    assert "403" in decide(403).reason
    assert decide(202).reason == "HTTP 202"
    retry = decide(None, "ConnectError: refused")
    assert retry.reason.startswith("ConnectError: refused; retry in ")


def test_backoff_doubles_from_thirty_seconds_without_jitter() -> None:
    # rand = 0.5 is the middle of the jitter band: exactly the base schedule.
    assert [backoff(n, 0.5).total_seconds() for n in range(1, 6)] == [30, 60, 120, 240, 480]


def test_backoff_is_capped_at_six_hours() -> None:
    assert backoff(10, 0.5) == timedelta(seconds=30 * 2**9)  # 4 h 16 min, the last step
    assert backoff(11, 0.5) == MAX_DELAY
    assert backoff(1000, 0.5) == MAX_DELAY  # no overflow for absurd counts


def test_jitter_spans_plus_minus_a_quarter() -> None:
    assert backoff(1, 0.0) == timedelta(seconds=22.5)
    assert backoff(1, 1.0) == timedelta(seconds=37.5)
    assert backoff(11, 0.0) == MAX_DELAY * 0.75


@given(attempts=st.integers(min_value=0, max_value=200), rand=st.floats(0.0, 1.0))
def test_backoff_always_within_bounds(attempts: int, rand: float) -> None:
    delay = backoff(attempts, rand)
    assert timedelta(seconds=22.5) <= delay <= MAX_DELAY * 1.25


def test_retry_is_scheduled_from_now_by_the_backoff() -> None:
    decision = decide(503, attempts=3, age=timedelta(minutes=5))
    assert decision.next_attempt_at == T0 + timedelta(minutes=5) + timedelta(seconds=120)


def test_retry_after_seconds_is_honoured_when_longer_than_the_backoff() -> None:
    decision = decide(429, retry_after="600")
    assert decision.next_attempt_at == T0 + timedelta(seconds=600)


def test_retry_after_shorter_than_the_backoff_does_not_hurry_us() -> None:
    decision = decide(503, retry_after="1", attempts=4)
    assert decision.next_attempt_at == T0 + timedelta(seconds=240)


def test_retry_after_http_date() -> None:
    decision = decide(503, retry_after="Sun, 01 Mar 2026 13:00:00 GMT")
    assert decision.next_attempt_at == T0 + timedelta(hours=1)


def test_retry_after_is_capped_at_a_day() -> None:
    assert decide(429, retry_after="9999999").next_attempt_at == T0 + MAX_RETRY_AFTER
    far = decide(429, retry_after="Mon, 01 Jan 2035 00:00:00 GMT")
    assert far.next_attempt_at == T0 + MAX_RETRY_AFTER


@pytest.mark.parametrize("value", ["soon", "", "-5", "1.5", "²", "Sun, 99 Foo 2026"])
def test_unparsable_retry_after_falls_back_to_the_backoff(value: str) -> None:
    assert retry_after_delay(value, T0) is None
    assert decide(503, retry_after=value).next_attempt_at == T0 + timedelta(seconds=30)


def test_retry_after_in_the_past_means_no_extra_wait() -> None:
    assert retry_after_delay("Sat, 28 Feb 2026 12:00:00 GMT", T0) == timedelta(0)


def test_gives_up_after_three_days() -> None:
    decision = decide(503, attempts=20, age=GIVE_UP_AFTER)
    assert decision.outcome is Outcome.GIVE_UP
    assert decision.next_attempt_at is None
    assert "503" in decision.reason and "gave up" in decision.reason
    assert decide(None, "timeout", age=GIVE_UP_AFTER + timedelta(hours=1)).outcome is (
        Outcome.GIVE_UP
    )


def test_success_still_counts_after_three_days() -> None:
    assert decide(202, age=timedelta(days=30)).outcome is Outcome.SENT


def test_last_retry_lands_on_the_deadline_not_a_step_beyond() -> None:
    age = GIVE_UP_AFTER - timedelta(minutes=10)
    decision = decide(503, attempts=15, age=age)
    assert decision.outcome is Outcome.RETRY
    assert decision.next_attempt_at == T0 + GIVE_UP_AFTER


def test_a_full_schedule_of_failures_ends_dead_after_about_three_days() -> None:
    now, attempts = T0, 0
    for _ in range(100):  # bounded: the schedule must end long before this
        attempts += 1
        decision = classify(
            500, None, retry_after=None, attempts=attempts, first_attempt_at=T0, now=now, rand=0.9
        )
        if decision.outcome is Outcome.GIVE_UP:
            break
        assert decision.next_attempt_at is not None and decision.next_attempt_at > now
        now = decision.next_attempt_at
    else:
        pytest.fail("never gave up")
    assert now - T0 == GIVE_UP_AFTER
    assert 15 <= attempts <= 30  # a few quick retries, then every ~6 h
