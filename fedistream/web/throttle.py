"""Login rate limiting: a few failures per client per window, then 429 with Retry-After.

State lives on the application object (no module globals). Time is passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60
MAX_TRACKED_CLIENTS = 10_000


@dataclass(slots=True)
class LoginThrottle:
    max_failures: int = MAX_FAILURES
    window: float = WINDOW_SECONDS
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
        return times

    def retry_after(self, client: str, now: float) -> int:
        """Seconds the client must wait before trying again (0: it may try now)."""
        times = self._recent(client, now)
        if len(times) < self.max_failures:
            return 0
        return max(1, int(times[0] + self.window - now) + 1)

    def record_failure(self, client: str, now: float) -> None:
        if len(self._failures) >= MAX_TRACKED_CLIENTS and client not in self._failures:
            # Forget the client whose latest failure is oldest rather than grow without bound.
            oldest = min(self._failures, key=lambda c: self._failures[c][-1])
            del self._failures[oldest]
        self._failures.setdefault(client, deque()).append(now)

    def reset(self, client: str) -> None:
        self._failures.pop(client, None)
