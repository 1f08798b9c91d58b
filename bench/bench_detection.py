"""Detection figures: `floodgate analyze` throughput and memory, and one subscription batch's latency.

Prints JSON lines. Each process runs pinned to one core (taskset -c 1) when taskset exists.
"""

from __future__ import annotations

import compileall
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.traffic import (  # noqa: E402
    VPC_CIDR,
    Source,
    background,
    flow_lines,
    prefix_hosts,
    public_addresses,
)
from floodgate.core.detect import DetectionConfig, plan_denies  # noqa: E402
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser  # noqa: E402
from floodgate.core.networks import DenyPolicy  # noqa: E402
from floodgate.core.summary import TrafficSummary  # noqa: E402

WORK = ROOT / ".bench"
PIN = ["taskset", "-c", "1"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def compile_sources(functions_dir: Path = ROOT / "functions") -> None:
    """Byte-compile a source tree, as installing a package does: a checkout run with PYTHONDONTWRITEBYTECODE
    set would otherwise compile every module at every start and time that instead."""
    compileall.compile_dir(str(functions_dir), quiet=1)


def emit(**figure: object) -> None:
    print(json.dumps(figure), flush=True)


def attack_capture(path: Path, records: int = 1_000_000) -> Path:
    """Ten minutes of an attack: 50,000 ordinary clients, 20 floods and a /24 of bots (~1M records)."""
    if path.exists():
        return path
    rng = random.Random(11)
    sources = (
        background(rng, 45_000, pps=5.0)
        + [Source(a, 20_000, flows=500) for a in public_addresses(rng, 20)]
        + [Source(a, 300, flows=20) for a in prefix_hosts("203.0.113.0/24", 250)]
    )
    with path.open("w") as out:
        for count, line in enumerate(flow_lines(sources, intervals=10)):
            if count == records:
                break
            out.write(line + "\n")
    return path


def distinct_capture(path: Path, sources: int) -> Path:
    """One record per source: the spoofed-flood worst case for memory."""
    if path.exists():
        return path
    rng = random.Random(13)
    with path.open("w") as out:
        for n in range(sources):
            address = f"{rng.randint(11, 99)}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            packets = rng.randint(1, 20)
            out.write(
                f"2 123456789012 eni-0abc {address} 10.0.1.{n % 200 + 10} {1024 + n % 60000} 443 6 "
                f"{packets} {packets * 60} 1764000000 1764000060 ACCEPT OK\n"
            )
    return path


def run_measured(argv: list[str]) -> tuple[float, int]:
    """(CPU seconds, user + system, and peak RSS in MB) of one pinned child process. CPU time, not wall: on
    a machine shared with other work, wall time measures the neighbours as much as the program."""
    child = subprocess.Popen([*PIN, *argv], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark command failed: {argv}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024


def best_of(runs: int, argv: list[str]) -> tuple[float, int]:
    results = [run_measured(argv) for _ in range(runs)]
    return min(r[0] for r in results), max(r[1] for r in results)


def bench_throughput() -> None:
    capture = attack_capture(WORK / "attack-1000000.log")
    records = sum(1 for _ in capture.open("rb"))
    floodgate = str(ROOT / ".venv" / "bin" / "floodgate")
    analyze_s, _ = best_of(3, [floodgate, "analyze", str(capture), "--vpc-cidr", VPC_CIDR, "--json"])
    naive_s, _ = best_of(3, [sys.executable, str(ROOT / "bench" / "naive_baseline.py"), str(capture)])
    emit(
        bench="analyze_throughput",
        records=records,
        cpu_seconds=round(analyze_s, 3),
        records_per_s=round(records / analyze_s),
        goal_records_per_s=1_000_000,
        naive_cpu_seconds=round(naive_s, 3),
        speedup_vs_naive=round(naive_s / analyze_s, 2),
        goal_speedup=2.5,
        pinned=bool(PIN),
    )


def bench_memory() -> None:
    floodgate = str(ROOT / ".venv" / "bin" / "floodgate")
    small = distinct_capture(WORK / "distinct-100.log", 100)
    large = distinct_capture(WORK / "distinct-1000000.log", 1_000_000)
    _, small_mb = best_of(1, [floodgate, "analyze", str(small), "--json"])
    seconds, large_mb = best_of(1, [floodgate, "analyze", str(large), "--json"])
    emit(
        bench="analyze_peak_rss",
        distinct_sources=1_000_000,
        peak_rss_mb=large_mb,
        baseline_rss_mb=small_mb,
        above_baseline_mb=large_mb - small_mb,
        goal_above_baseline_mb=64,
        cpu_seconds=round(seconds, 3),
    )


def bench_batch() -> None:
    """One subscription delivery of 10,000 records, as the detector Lambda sees it (reference parser)."""
    rng = random.Random(17)
    sources = background(rng, 4_000, pps=5.0) + [
        Source(a, 20_000, flows=400) for a in public_addresses(rng, 5)
    ]
    lines = list(flow_lines(sources, intervals=1))[:10_000]
    assert len(lines) == 10_000
    parser = FlowLogParser(FlowLogFormat.parse(DEFAULT_FORMAT), [VPC_CIDR])
    config = DetectionConfig(policy=DenyPolicy.build(vpc_cidrs=[VPC_CIDR]))
    parse_ms, plan_ms = [], []
    for _ in range(30):
        began = time.process_time()
        batch = parser.parse(lines)
        parsed = time.process_time()
        summary = TrafficSummary.for_share(config.min_share)
        summary.add(batch)
        plan = plan_denies(summary, config)
        done = time.process_time()
        parse_ms.append((parsed - began) * 1000)
        plan_ms.append((done - parsed) * 1000)
    assert len(plan.denies) == 5
    emit(
        bench="batch_10k",
        records=len(lines),
        plan_ms_p50=round(statistics.median(plan_ms), 2),
        plan_ms_max=round(max(plan_ms), 2),
        goal_plan_ms=10,
        parse_ms_p50=round(statistics.median(parse_ms), 2),
        parse_and_plan_ms_p50=round(
            statistics.median(p + q for p, q in zip(parse_ms, plan_ms, strict=True)), 2
        ),
    )


if __name__ == "__main__":
    WORK.mkdir(exist_ok=True)
    compile_sources()
    bench_throughput()
    bench_memory()
    bench_batch()
