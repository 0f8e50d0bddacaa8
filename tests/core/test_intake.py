"""Applying stored activities waits while a burst arrives, never longer than the lag budget."""

from __future__ import annotations

from fedistream.core.intake import RECHECK, IntakeFirst


def arrivals(gate: IntakeFirst, start: float, per_second: float, seconds: float) -> float:
    """Feed arrivals at a steady rate; returns the time of the last one."""
    step = 1 / per_second
    now = start
    for _ in range(int(per_second * seconds)):
        gate.arrived(now)
        now += step
    return now - step


def test_an_ordinary_day_applies_at_once() -> None:
    gate = IntakeFirst()
    last = arrivals(gate, 0.0, per_second=20, seconds=3)
    assert not gate.busy(last)
    assert gate.wait_before_applying(last, oldest_waited=0.0) == 0.0


def test_a_burst_makes_applying_wait() -> None:
    gate = IntakeFirst()
    last = arrivals(gate, 0.0, per_second=2000, seconds=1)
    assert gate.busy(last)
    assert gate.wait_before_applying(last, oldest_waited=1.0) == RECHECK


def test_the_oldest_activity_never_waits_past_the_lag_budget() -> None:
    gate = IntakeFirst(max_lag=10.0)
    last = arrivals(gate, 0.0, per_second=2000, seconds=1)
    assert gate.wait_before_applying(last, oldest_waited=10.0) == 0.0
    # Close to the budget, the wait is cut to what is left of it.
    assert 0 < gate.wait_before_applying(last, oldest_waited=9.99) <= 0.011


def test_applying_resumes_soon_after_the_burst_ends() -> None:
    gate = IntakeFirst(window=0.25)
    last = arrivals(gate, 0.0, per_second=2000, seconds=1)
    assert gate.busy(last + 0.1)  # still within the window that saw the burst
    assert not gate.busy(last + 0.6)  # two quiet windows later
    assert gate.wait_before_applying(last + 0.6, oldest_waited=1.0) == 0.0


def test_the_rate_threshold_is_the_line() -> None:
    below = IntakeFirst(burst_rate=100)
    assert not below.busy(arrivals(below, 0.0, per_second=80, seconds=2))
    above = IntakeFirst(burst_rate=100)
    assert above.busy(arrivals(above, 0.0, per_second=120, seconds=2))
