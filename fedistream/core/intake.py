"""When to apply stored inbox activities while more keep arriving. Layer: core (pure).

Accepting an activity (checks, signature, store, 202) and applying it (threads, notifications,
reactions…) run in one Python process and share its one interpreter lock: applying one costs
about as much as accepting one (bench/README.md, "Inbox: intake first"). In a burst — a thought
going viral, a relay flushing its queue — peers wait on our 202 and retry when it is slow, so
accepting comes first: while activities arrive faster than `burst_rate`, applying waits, but
never lets the oldest waiting activity wait longer than `max_lag`. On an ordinary day (far below
the rate) an activity is applied as soon as it is stored. A burst longer than `max_lag` is
applied as it goes, as before: then the peers' own retries are the back-pressure.

Time is a monotonic clock in seconds, given by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BURST_RATE = 100.0  # arrivals/s: below this, applying costs a few % of one core
MAX_LAG = 10.0  # seconds an activity may wait to be applied while a burst lasts
WINDOW = 0.25  # arrivals are counted per window of this many seconds
RECHECK = 0.05  # how long to wait before looking again


@dataclass(slots=True)
class IntakeFirst:
    """Counts arrivals and says how long applying should wait (0: apply now)."""

    burst_rate: float = BURST_RATE
    max_lag: float = MAX_LAG
    window: float = WINDOW
    _window_start: float = field(default=float("-inf"), init=False)
    _in_window: int = field(default=0, init=False)
    _in_previous: int = field(default=0, init=False)

    def arrived(self, now: float) -> None:
        """One activity stored at `now`."""
        self._roll(now)
        self._in_window += 1

    def busy(self, now: float) -> bool:
        """Arrivals at `burst_rate` or more in the current or the last whole window."""
        self._roll(now)
        return max(self._in_window, self._in_previous) >= self.burst_rate * self.window

    def wait_before_applying(self, now: float, oldest_waited: float) -> float:
        """Seconds to wait before applying, given how long the oldest stored activity has waited."""
        if oldest_waited >= self.max_lag or not self.busy(now):
            return 0.0
        return min(RECHECK, self.max_lag - oldest_waited)

    def _roll(self, now: float) -> None:
        elapsed = now - self._window_start
        if elapsed < self.window:
            return
        # The window that just ended counts only if it was the one right before this one.
        self._in_previous = self._in_window if elapsed < 2 * self.window else 0
        self._in_window = 0
        self._window_start = now
