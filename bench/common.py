"""Shared pieces of the benchmarks: a measured metric, the results table, the machine, RSS.

Benchmarks return `Metric`s; `run.py` prints them as one table and writes them as JSON.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Metric:
    """One row of the table. The ratio is value ÷ baseline; a target applies to `target_on`
    ("ratio" or "value") with `at_least` saying which side is good. No target: informative."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: float | None = None
    target_on: str = "ratio"
    at_least: bool = True
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        measured = self.ratio if self.target_on == "ratio" else self.value
        if measured is None:
            return False
        return measured >= self.target if self.at_least else measured <= self.target

    def target_text(self) -> str:
        if self.target is None:
            return "(info)"
        side = "≥" if self.at_least else "≤"
        what = "ratio" if self.target_on == "ratio" else self.unit
        text = f"{side} {_num(self.target)}" + (" (ratio)" if what == "ratio" else f" {what}")
        return text + ("  ok" if self.met else "  MISSED")

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(metrics: list[Metric]) -> str:
    """A Markdown table (it reads fine in a terminal and pastes into the README as is)."""
    header = ["metric", "value", "baseline", "ratio", "target"]
    rows = [
        [
            m.name,
            f"{_num(m.value)} {m.unit}",
            f"{_num(m.baseline)} ({m.baseline_name})" if m.baseline is not None else "–",
            f"{m.ratio:.2f}" if m.ratio is not None else "–",
            m.target_text(),
        ]
        for m in metrics
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = match.group(1).strip() if match else model
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        # Other work on the machine moves every number here; the ratios (baseline measured in
        # the same run) move less. Read /proc/loadavg's 1-minute figure beside the results.
        "load_1min": os.getloadavg()[0],
    }


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process now, in MiB (None once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else None


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, every thread) a process has used so far, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15)


class RssSampler:
    """Samples a process's RSS in a thread every `interval` seconds; `peak` is the largest seen.
    (VmHWM would give the peak since the process started, not during one window.)"""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self._pid = pid
        self._interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = rss_mb(self._pid)
            if now is not None:
                self.peak = max(self.peak, now)
            time.sleep(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def event_loop_runner() -> asyncio.Runner:
    """`fedistream serve` runs on uvloop (uvicorn's "auto" loop): in-process work here does too."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)
