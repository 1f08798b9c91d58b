"""`make bench`: every benchmark script, each printing its figures as JSON lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = (
    ("bench_detection.py",),
    ("bench_compare.py",),
    ("bench_compare.py", "--scaling"),
    ("bench_enforcement.py",),
    (
        "bench_delivery.py",
        "--before",
        "2b52671",
        "--reference",
    ),  # issue 13: the detector's per-record cost, then and now
    ("bench_handlers.py",),
    ("bench_window.py",),
    ("bench_chaos.py",),
    ("cost_model.py",),
    ("bench_scale.py", "--scale", "1"),  # the full 100k records/s for 5 minutes: about 30 minutes here
)

if __name__ == "__main__":
    failed = []
    for name, *arguments in SCRIPTS:
        if subprocess.run([sys.executable, str(BENCH / name), *arguments], check=False).returncode != 0:
            failed.append(" ".join((name, *arguments)))
    if failed:
        raise SystemExit(f"benchmarks failed: {', '.join(failed)}")
