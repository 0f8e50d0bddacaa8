"""Optional profiling of the server during a fan-out with py-spy (`pip install py-spy`).

`Profile(pid, path)` samples a running process (on-CPU samples only, every thread) while its
block runs; `summary(path)` reads the raw stacks back and names where the time went: per thread
(the event loop vs the signing pool), the hottest frames by own time, and the share of
time spent under a few functions we care about.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

# Inclusive shares worth knowing for the delivery path (substring of a py-spy frame name).
WATCHED = {
    "sign (signing)": "sign_request (fedistream/core/cavage.py",
    "request + answer (delivery client)": "DeliveryClient._send (fedistream/federation/",
    "new connections (delivery client)": "DeliveryClient._connect (fedistream/federation/",
    "answer parsing (delivery client)": "Connection.data_received (fedistream/federation/",
    "claim_due (loop side)": "claim_due (fedistream/store/deliveries.py",
    "record_many (loop side)": "record_many (fedistream/store/deliveries.py",
    "DeliveryClient.post (whole request)": "DeliveryClient.post (fedistream/federation/",
    "the inbox/admin web app": "starlette/",
}


def available() -> bool:
    return shutil.which("py-spy") is not None


class Profile:
    """Record `pid` into `path` (py-spy's raw, collapsed-stack format) while the block runs."""

    def __init__(self, pid: int, path: Path, rate: int = 250) -> None:
        self._cmd = [
            "py-spy", "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
            "--threads", "--nonblocking", "--output", str(path),
        ]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profile:
        self._process = subprocess.Popen(
            self._cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def summary(path: Path, top: int = 12) -> str:
    """A short text report of one recording."""
    if not path.exists():
        return f"(no profile at {path})"
    own: Counter[str] = Counter()
    watched: Counter[str] = Counter()  # samples with a watched function anywhere on the stack
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        threads[_thread_name(frames[0])] += samples
        own[frames[-1]] += samples
        for label, needle in WATCHED.items():
            if needle in stack:
                watched[label] += samples
    if not total:
        return "(no samples)"
    lines = [f"{total} on-CPU samples", "by thread:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in threads.most_common()]
    lines.append("watched (inclusive; SQL runs in aiosqlite's thread, so count that too):")
    lines += [f"  {watched[label] / total:6.1%}  {label}" for label in WATCHED]
    lines.append("hottest frames (own time):")
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def _thread_name(frame: str) -> str:
    # py-spy --threads puts `thread (TID): NAME` first (or just `thread (TID)` before a thread
    # has a name); the signing pool's threads are sign_0, sign_1.
    return frame.split(": ", 1)[1] if ": " in frame else frame
