"""The delivery retry policy: what one POST's result means for its queue row. Layer: core (pure).

`classify` turns a status code (or a network error) into SENT, RETRY at a given time, or GIVE_UP.
Which statuses are worth retrying follows Mastodon's own delivery worker (INTEROP R73); the
schedule is a jittered exponential back-off that stops after about three days, as Takahē's
Stator does (R74 describes Mastodon's similar 2–3 day schedule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=6)
JITTER = 0.25  # ±25 %: spreads a fan-out's retries so a recovering host is not hit all at once
MAX_RETRY_AFTER = timedelta(hours=24)  # a peer may slow us down, not park a row for a week
GIVE_UP_AFTER = timedelta(days=3)

# R73: Mastodon retries 401 (the peer may not have fetched our key yet, or wants RFC 9421 via
# double-knocking, R35), 408 and 429; every other 4xx cannot improve by waiting.
_RETRYABLE_4XX = frozenset({401, 408, 429})
# R73: 501 Not Implemented is as final as a 4xx.
_FINAL_5XX = frozenset({501})


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with the row: `next_attempt_at` is set only for RETRY."""

    outcome: Outcome
    next_attempt_at: datetime | None
    reason: str


def classify(
    status: int | None,
    error: str | None,
    *,
    retry_after: str | None,
    attempts: int,
    first_attempt_at: datetime,
    now: datetime,
    rand: float,
) -> Decision:
    """Decide the fate of one delivery attempt.

    `status` is the HTTP status, or None when no response came (then `error` says why).
    `attempts` counts the attempts made so far *including this one* (1 after the first try).
    `first_attempt_at` is when the row was enqueued; `rand` is a number in [0, 1) for jitter.
    """
    if status is not None and 200 <= status < 300:
        return Decision(Outcome.SENT, None, f"HTTP {status}")
    if status == 410:
        return Decision(Outcome.GIVE_UP, None, "gone (HTTP 410): the inbox no longer exists")
    if status is not None and (
        (400 <= status < 500 and status not in _RETRYABLE_4XX) or status in _FINAL_5XX
    ):
        return Decision(Outcome.GIVE_UP, None, f"refused (HTTP {status}); not retried")

    # Everything else may pass: 401/408/429, 5xx, 3xx (we never follow a redirect with a
    # signed POST; Mastodon also retries those), timeouts and connection errors.
    what = f"HTTP {status}" if status is not None else (error or "no response")
    deadline = first_attempt_at + GIVE_UP_AFTER
    if now >= deadline:
        return Decision(Outcome.GIVE_UP, None, f"{what}; gave up after {_span(GIVE_UP_AFTER)}")

    at = now + backoff(attempts, rand)
    # The back-off never schedules past the deadline, so a row gets one last try at ~3 days
    # and then dies, instead of waiting out a whole 6-hour step beyond it.
    at = min(at, deadline)
    asked = retry_after_delay(retry_after, now)
    if asked is not None:
        at = max(at, now + asked)  # never sooner than the peer asked
    return Decision(Outcome.RETRY, at, f"{what}; retry in {_span(at - now)}")


def backoff(attempts: int, rand: float) -> timedelta:
    """30 s × 2^(attempts−1), capped at 6 h, then jittered by ±25 % using `rand` in [0, 1)."""
    exponent = min(max(attempts, 1) - 1, 20)  # 2^20 × 30 s is far past the cap; avoid huge ints
    delay = min(BASE_DELAY * (1 << exponent), MAX_DELAY)
    factor = 1 + JITTER * (2 * min(max(rand, 0.0), 1.0) - 1)
    return delay * factor


def retry_after_delay(value: str | None, now: datetime) -> timedelta | None:
    """A `Retry-After` header (delay-seconds or HTTP-date) as a delay from `now`, capped at 24 h.

    None when absent or unparsable (the back-off alone then applies); a past date means 0.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        delay = timedelta(seconds=int(text[:12]))  # 12 digits: far beyond the cap, no overflow
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 7231 dates are GMT; "-0000" parses as naive
            when = when.replace(tzinfo=UTC)
        delay = when - now
    return max(timedelta(0), min(delay, MAX_RETRY_AFTER))


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
