"""Run every benchmark, print one table, write bench/results/latest.json.

    python bench/run.py                    # the full run (a few minutes, bounded)
    python bench/run.py --followers 300    # a quick smoke run
    python bench/run.py --profile          # also sample the server with py-spy during fan-outs
    python bench/run.py --what-if          # also time the worker in-process with other settings
    python bench/run.py --only pages       # one group: fanout, pages, inbox or startup
    python bench/run.py --only pages --sizes 1000,100000   # pages at fewer sizes (quicker)

Everything runs on 127.0.0.1 in child processes this script starts and stops; the work
directory is a fresh temporary one, removed at the end unless --keep is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/run.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(REPO_ROOT))

from bench import fanout, pages, pyspy, startup, whatif  # noqa: E402
from bench import inbox as inbox_bench  # noqa: E402
from bench.common import Metric, machine, table  # noqa: E402

GROUPS = ("fanout", "pages", "inbox", "startup")

RESULTS = REPO_ROOT / "bench" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, default=2000, help="inboxes per fan-out")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds allowed for each fan-out/baseline"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the server's fan-outs")
    parser.add_argument(
        "--what-if", action="store_true", help="also time the worker in-process with other settings"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--server-python",
        help="interpreter for the start-up benchmark's server, e.g. a venv with only "
        "`pip install .` (what an operator runs); default: this one",
    )
    parser.add_argument("--only", choices=GROUPS, help="run one group of benchmarks")
    parser.add_argument(
        "--sizes", default="1000,100000,1000000", help="thoughts stored, for the pages growth run"
    )
    args = parser.parse_args(argv)
    sizes = tuple(int(n) for n in args.sizes.split(","))
    if len(sizes) < 2 or 100_000 not in sizes:
        parser.error("--sizes needs at least two sizes, one of them 100000 (the / throughput run)")
    if not 1 <= args.followers <= 5000:
        parser.error("--followers must be between 1 and 5000 (one sink port per inbox)")
    if args.profile and not pyspy.available():
        parser.error("--profile needs py-spy on PATH (pip install py-spy)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fedistream-bench-"))
    profile_dir = RESULTS / "profiles" if args.profile else None
    if profile_dir:
        profile_dir.mkdir(exist_ok=True)
    started = time.monotonic()
    host = machine()  # before the run: its load average is what else the machine was doing
    report = fanout.Report(metrics=[], details={}, profiles={})
    wanted = [args.only] if args.only else list(GROUPS)
    try:
        if "fanout" in wanted:
            report = fanout.run(
                work, followers=args.followers, timeout=args.timeout, profile_dir=profile_dir
            )
            if args.what_if:
                report.metrics += whatif.run(work, followers=args.followers, timeout=args.timeout)
        others: dict[str, Callable[[], tuple[list[Metric], dict[str, Any]]]] = {
            "pages": lambda: pages.run(work, sizes=sizes),
            "inbox": lambda: inbox_bench.run(work, profile_dir=profile_dir),
            "startup": lambda: startup.run(work, python=args.server_python),
        }
        for name, bench in others.items():
            if name in wanted:
                print(f"running {name} …", flush=True)
                metrics, details = bench()
                report.metrics += metrics
                report.details[name] = details
                if "profile" in details:
                    report.profiles[name] = details["profile"]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started

    host["load_1min_after"] = os.getloadavg()[0]
    command = "python " + " ".join(shlex.quote(a) for a in ["bench/run.py", *sys.argv[1:]])
    print(
        f"\nfedistream benchmarks — {host['date']}, {host['nproc']} CPUs ({host['cpu']}), "
        f"Python {host['python']}, {elapsed:.0f} s, load average "
        f"{host['load_1min']:.1f} before / {host['load_1min_after']:.1f} after\n"
    )
    print(table(report.metrics))
    notes = [f"- {m.name.strip()}: {m.note}" for m in report.metrics if m.note]
    if notes:
        print("\n" + "\n".join(notes))
    for label, text in report.profiles.items():
        print(f"\n--- py-spy: server during {label} ---\n{text}")
    (RESULTS / "latest.json").write_text(
        json.dumps(
            {
                "machine": host,
                "command": command,
                "seconds": elapsed,
                "metrics": [m.as_json() for m in report.metrics],
                "details": report.details,
                "profiles": report.profiles,
            },
            indent=2,
        )
    )
    print(f"\nwrote {RESULTS / 'latest.json'}" + (f" (work dir kept: {work})" if args.keep else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
