"""`make bench`: every benchmark, one after the other, each against a fresh simulator + server pair.

Prints each target line (MET/MISSED with its figure) as it goes, then all of them again at the end.
`python -m bench.run watchers get_completed` runs only the named ones.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import platform
import sys
import time
from datetime import UTC, datetime

from bench import common

BENCHMARKS = (
    "watchers",
    "get_completed",
    "get_running",
    "stream_content",
    "archive_content",
    "slow_readers",
    "generate_latency",
    "replicas",
)


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    print(
        f"videogen benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.python_implementation()} "
        f"{platform.python_version()}; {cpu}; {len(__import__('os').sched_getaffinity(0))} CPUs",
        flush=True,
    )
    started = time.monotonic()
    failed = []
    for name in names:
        print(f"\n== {name}", flush=True)
        t0 = time.monotonic()
        module = importlib.import_module(f"bench.{name}")
        try:
            asyncio.run(module.main())
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed.append(name)
            common.report(name, f"did not complete: {type(exc).__name__}: {exc}", "runs", False)
        print(f"   ({time.monotonic() - t0:.0f}s)", flush=True)
    print(f"\n== summary ({time.monotonic() - started:.0f}s in all; load average now {_load()})")
    for line in common.RESULTS:
        print(line)
    missed = sum(1 for line in common.RESULTS if line.endswith("| MISSED"))
    skipped = sum(1 for line in common.RESULTS if line.endswith("| SKIPPED"))
    met = len([r for r in common.RESULTS if r.startswith("BENCH")]) - missed - skipped
    print(f"\n{met} met, {missed} missed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
