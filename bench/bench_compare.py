"""`floodgate analyze` against polars, DuckDB and a naive loop, on captures this script generates.

Two files of 1,000,000 records: `bench_detection`'s attack (45,000 ordinary clients, 20 floods, a /24 of
bots) and one record from each of 1,000,000 distinct spoofed sources. Every tool runs as a whole process,
start-up included, pinned to one core (taskset -c 1 when it exists), one thread; the tools take turns within
each round so that the machine's noise falls on all of them alike. Prints one JSON line per file and tool
(median and spread of wall time and of CPU time, peak RSS) and one per file with floodgate's ratios.

polars and DuckDB come from the `bench` extra (`make bench` installs it); without them only the naive loop is
compared. Options: --runs N (7), --records N (1,000,000), --scaling (instead: 100k/1M/4M records, .gz),
--also NAME=DIR (another floodgate source tree, e.g. a checkout of an older commit, measured alongside).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_detection import (  # noqa: E402
    PIN,
    WORK,
    attack_capture,
    compile_sources,
    distinct_capture,
    emit,
)

from emulator.traffic import VPC_CIDR  # noqa: E402

VPC_PREFIX = "10.0."  # VPC_CIDR is 10.0.0.0/16: the rivals test the destination's text


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one pinned child process."""
    began = time.perf_counter()
    child = subprocess.Popen([*PIN, *argv], stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark command failed: {argv}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024


def tools(also: list[str]) -> dict[str, tuple[list[str], dict[str, str] | None]]:
    """Each tool's command line (the capture's path is appended) and environment."""
    python = sys.executable
    floodgate = [python, "-m", "floodgate", "analyze", "--vpc-cidr", VPC_CIDR, "--json"]
    found: dict[str, tuple[list[str], dict[str, str] | None]] = {"floodgate": (floodgate, None)}
    for item in also:
        name, _, source = item.partition("=")
        found[name] = (floodgate, {**os.environ, "PYTHONPATH": str(Path(source).resolve())})
    found["naive"] = ([python, str(BENCH / "naive_baseline.py")], None)
    for rival in ("polars", "duckdb"):
        if importlib.util.find_spec(rival) is not None:
            found[rival] = ([python, str(BENCH / "rivals.py"), rival], None)
    return found


def argv_for(tool: str, command: list[str], capture: Path) -> list[str]:
    return [*command, str(capture), VPC_PREFIX] if tool in ("polars", "duckdb") else [*command, str(capture)]


def bench_scaling(runs: int) -> None:
    """floodgate's whole-process time on the first 100,000 records of the attack file, the file itself and
    the file four times over (4,000,000 records), and on the attack file gzipped: rounds interleaved."""
    attack = attack_capture(WORK / "attack-1000000.log")
    sizes = {100_000: WORK / "attack-100000.log", 1_000_000: attack, 4_000_000: WORK / "attack-4x1000000.log"}
    if not sizes[100_000].exists():
        with attack.open("rb") as source, sizes[100_000].open("wb") as target:
            target.writelines(line for _, line in zip(range(100_000), source, strict=False))
    if not sizes[4_000_000].exists():
        with sizes[4_000_000].open("wb") as target:
            for _ in range(4):
                with attack.open("rb") as source:
                    shutil.copyfileobj(source, target)
    packed = WORK / "attack-1000000.log.gz"
    if not packed.exists():
        with attack.open("rb") as source, gzip.open(packed, "wb", compresslevel=6) as target:
            shutil.copyfileobj(source, target)
    command, _ = tools([])["floodgate"]
    cases = {**{str(records): path for records, path in sizes.items()}, "1000000.gz": packed}
    samples: dict[str, list[tuple[float, float, int]]] = {label: [] for label in cases}
    for _ in range(runs):
        for label, path in cases.items():
            samples[label].append(measure([*command, str(path)]))
    cpu = {label: statistics.median(run[1] for run in runs_) for label, runs_ in samples.items()}
    wall = {label: statistics.median(run[0] for run in runs_) for label, runs_ in samples.items()}
    for label, runs_ in samples.items():
        records = int(label.removesuffix(".gz"))
        emit(
            bench="analyze_scaling",
            records=records,
            gzip=label.endswith(".gz"),
            wall_s_median=round(wall[label], 3),
            cpu_s_median=round(cpu[label], 3),
            cpu_us_per_record=round(cpu[label] / records * 1e6, 3),
            peak_rss_mb=max(run[2] for run in runs_),
        )
    emit(
        bench="analyze_scaling_ratios",
        cpu_4m_over_1m=round(cpu["4000000"] / cpu["1000000"], 2),
        cpu_1m_over_100k=round(cpu["1000000"] / cpu["100000"], 2),
        linear_would_be=4.0,
        # Start-up is paid once: the cost of each further record is what must stay flat.
        marginal_cpu_us_per_record_100k_to_1m=round((cpu["1000000"] - cpu["100000"]) / 0.9, 3),
        marginal_cpu_us_per_record_1m_to_4m=round((cpu["4000000"] - cpu["1000000"]) / 3.0, 3),
        gz_over_plain_cpu=round(cpu["1000000.gz"] / cpu["1000000"], 2),
        gz_over_plain_wall=round(wall["1000000.gz"] / wall["1000000"], 2),
        goal_gz_over_plain=1.3,
    )


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--runs", type=int, default=7)
    options.add_argument("--records", type=int, default=1_000_000)
    options.add_argument("--scaling", action="store_true", help="only the 100k/1M/4M and .gz figures")
    options.add_argument("--also", action="append", default=[], metavar="NAME=DIR")
    args = options.parse_args()
    WORK.mkdir(exist_ok=True)
    compile_sources()
    for item in args.also:
        compile_sources(Path(item.partition("=")[2]))
    if args.scaling:
        bench_scaling(args.runs)
        return
    captures = {
        "attack": attack_capture(WORK / f"attack-{args.records}.log", args.records),
        "spoofed": distinct_capture(WORK / f"distinct-{args.records}.log", args.records),
    }
    commands = tools(args.also)
    samples: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for _ in range(args.runs):
        for label, capture in captures.items():
            for tool, (command, env) in commands.items():
                sample = measure(argv_for(tool, command, capture), env)
                samples.setdefault((label, tool), []).append(sample)
    medians: dict[tuple[str, str], tuple[float, float]] = {}
    for (label, tool), runs in samples.items():
        walls, cpus, rss = ([run[i] for run in runs] for i in range(3))
        medians[(label, tool)] = statistics.median(walls), statistics.median(cpus)
        emit(
            bench="analyze_compare",
            file=label,
            tool=tool,
            runs=len(runs),
            wall_s_median=round(statistics.median(walls), 3),
            wall_s_spread=[round(min(walls), 3), round(max(walls), 3)],
            cpu_s_median=round(statistics.median(cpus), 3),
            cpu_s_spread=[round(min(cpus), 3), round(max(cpus), 3)],
            peak_rss_mb=max(rss),
            pinned=bool(PIN),
        )
    for label in captures:
        if (label, "floodgate") not in medians:
            continue
        wall, cpu = medians[(label, "floodgate")]
        ratios = {
            tool: {
                "wall": round(medians[(label, tool)][0] / wall, 2),
                "cpu": round(medians[(label, tool)][1] / cpu, 2),
            }
            for (other, tool) in medians
            if other == label and tool != "floodgate"
        }
        emit(bench="analyze_ratios", file=label, how_many_times_faster_floodgate_is=ratios)


if __name__ == "__main__":
    main()
