"""The deployed detector's per-record cost (issue 13): decode (base64, gunzip, JSON, checks), parse and
summarise, pack, of 10,000-record subscription deliveries, in-process, no AWS, CPU time. The detector scans
with numpy from its layer, without the C extension (built for this machine, never for the Lambda's arm64):
`this`; `--reference` adds this tree's reference parser (a detector without its layer).

Two deliveries: `inbound`, 10,000 records of ~4,000 clients and 3 floods into the VPC (bench_handlers'
batch), and `mixed`, what one interface really logs: each connection both ways (half the records egress
answers), with a few NODATA records and malformed lines.

Each variant runs in its own processes, pinned to one core, in turns within each round: this tree's code, and
any `--also NAME=FUNCTIONS_DIR` (a `git archive` of an earlier commit's `functions`, say), through its
reference parser: what its Lambda ran. Prints one JSON line
per variant and delivery: medians over the rounds of each process's median per stage, the spread of the
totals, and the ratio of its total to the first `--also` (measured in the same rounds).

    .venv/bin/python bench/bench_delivery.py --before 2b52671 --rounds 5

`make bench` compares with 2b52671, main before issue 13's work began (the issue's "today").
"""

from __future__ import annotations

import argparse
import compileall
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".bench"
PIN = ["taskset", "-c", "1"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
RECORDS = 10_000
STAGES = ("decode", "parse_summarise", "pack")


def emit(**figure: object) -> None:
    print(json.dumps(figure), flush=True)


def inbound_lines() -> list[str]:
    from emulator.traffic import Source, background, flow_lines, public_addresses  # noqa: PLC0415

    rng = random.Random(7)
    sources = background(rng, 4000, pps=8.0) + [Source(a, 12_000, flows=16) for a in public_addresses(rng, 3)]
    return list(flow_lines(sources, intervals=2, seed=1))[:RECORDS]


def mixed_lines() -> list[str]:
    """Each inbound record and the server's answer (addresses and ports swapped, egress), one NODATA record
    per 500 and one malformed line per 1,000."""
    from emulator.traffic import ACCOUNT, START, garbage_lines  # noqa: PLC0415

    rng = random.Random(8)
    lines: list[str] = []
    for n, line in enumerate(inbound_lines()[: RECORDS // 2]):
        version, account, eni, src, dst, sport, dport, proto, packets, octets, *rest = line.split()
        lines.append(line)
        lines.append(" ".join([version, account, eni, dst, src, dport, sport, proto, packets, octets, *rest]))
        if n % 250 == 0:
            lines[-1] = f"2 {ACCOUNT} {eni} - - - - - - - {START} {START + 60} - NODATA"
        if n % 500 == 0:
            lines[-2] = rng.choice(garbage_lines(rng, 12))
    return lines[:RECORDS]


def write_events(rounds: int) -> Path:
    """The deliveries, encoded as CloudWatch Logs hands them to the function, for the children to read."""
    from emulator.lambda_runtime import encode_awslogs, subscription_document  # noqa: PLC0415

    WORK.mkdir(exist_ok=True)
    path = WORK / "deliveries.json"
    events = {
        mix: [
            encode_awslogs(
                subscription_document(
                    lines,
                    log_group="g",
                    log_stream="eni-0-all",
                    filter_name="f",
                    timestamp_ms=0,
                    batch=str(n),
                )
            )
            for n in range(rounds)
        ]
        for mix, lines in (("inbound", inbound_lines()), ("mixed", mixed_lines()))
    }
    path.write_text(json.dumps(events))
    return path


def child(functions: Path, events_path: Path, mix: str, numpy: bool) -> None:
    """One process of one variant: every delivery of `mix` through decode, parse + summarise, pack."""
    sys.path.insert(0, str(functions))
    from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser, TimeBounds  # noqa: PLC0415
    from floodgate.core.summary import TrafficSummary  # noqa: PLC0415
    from floodgate.core.window import pack_summary  # noqa: PLC0415
    from floodgate.services.events import FlowLogDelivery, parse_detector_event  # noqa: PLC0415

    events = json.loads(events_path.read_text())[mix]
    parser = FlowLogParser(FlowLogFormat.parse(DEFAULT_FORMAT), ["10.0.0.0/16"])
    bounds = TimeBounds(oldest_end=0, newest_start=2**40)  # every record inside, checked as the detector does
    summarise = _summariser(parser, bounds, numpy=numpy)
    if "gc.freeze()" in (functions / "floodgate" / "handlers" / "runtime.py").read_text():
        gc.freeze()  # as that version's handler does once initialised
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for event in events:
        began = time.process_time()
        delivery = parse_detector_event(event)
        decoded = time.process_time()
        assert isinstance(delivery, FlowLogDelivery)
        summary = TrafficSummary.for_share(0.01)
        summarise(delivery.messages, summary)
        summarised = time.process_time()
        pack_summary(summary)
        packed = time.process_time()
        elapsed = (decoded - began, summarised - decoded, packed - summarised)
        for stage, seconds in zip(STAGES, elapsed, strict=True):
            stages[stage].append(seconds * 1000)
    totals = [sum(values) for values in zip(*stages.values(), strict=True)]
    medians = {stage: statistics.median(values) for stage, values in stages.items()}
    print(json.dumps({**medians, "total": statistics.median(totals)}))


def _summariser(parser: Any, bounds: Any, *, numpy: bool) -> Callable[[Sequence[str], Any], object]:
    """Lines into a summary as the variant's detector does: numpy's scanner as the Lambda's layer runs it,
    or the reference parser (a Lambda without numpy; before the scanners, the parser then the summary)."""
    try:
        from floodgate.core.scanning import ReferenceScanner, summarise_lines  # noqa: PLC0415
    except ImportError:
        return lambda lines, summary: summary.add(parser.parse(lines, bounds))
    if numpy:
        from floodgate.core.fastscan import FastScanner  # noqa: PLC0415

        # Without the C extension: the Lambda asset never carries it (built for this machine, not arm64).
        scanner: ReferenceScanner | FastScanner = FastScanner(parser, compiled=False)
    else:
        scanner = ReferenceScanner(parser)
    return lambda lines, summary: summarise_lines(scanner, lines, summary, bounds)


def archived_functions(commit: str) -> Path:
    """`functions/` as it was at `commit`, extracted under .bench and byte-compiled (as this tree's is)."""
    target = WORK / f"functions-{commit}"
    if not (target / "functions").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit, "functions"], cwd=ROOT, check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
        compileall.compile_dir(str(target / "functions"), quiet=1)
    return target / "functions"


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--also", action="append", default=[], metavar="NAME=FUNCTIONS_DIR")
    options.add_argument("--before", metavar="COMMIT", help="also that commit's functions (git archive)")
    options.add_argument("--rounds", type=int, default=5)
    options.add_argument("--deliveries", type=int, default=20, help="per process")
    options.add_argument("--reference", action="store_true", help="also this tree's reference parser")
    options.add_argument(
        "--child", nargs=4, metavar=("FUNCTIONS", "EVENTS", "MIX", "SCAN"), help=argparse.SUPPRESS
    )
    args = options.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.child[2], args.child[3] == "numpy")
        return
    sys.path.insert(0, str(ROOT))
    if args.before:
        args.also.insert(0, f"before={archived_functions(args.before)}")
    events = write_events(args.deliveries)
    variants = [
        (name, Path(path), "reference") for name, _, path in (also.partition("=") for also in args.also)
    ]
    variants.insert(0, ("this", ROOT / "functions", "numpy"))
    if args.reference:
        variants.insert(1, ("this-reference", ROOT / "functions", "reference"))
    for mix in ("inbound", "mixed"):
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
        for _ in range(args.rounds):
            for name, functions, scan in variants:
                argv = [*PIN, sys.executable, __file__, "--child", str(functions), str(events), mix, scan]
                runs[name].append(json.loads(subprocess.check_output(argv, cwd=ROOT)))
        reference = variants[-len(args.also)][0] if args.also else None
        baseline = statistics.median(run["total"] for run in runs[reference]) if reference else None
        for name, _, _ in variants:
            totals = [run["total"] for run in runs[name]]
            figure: dict[str, Any] = {
                f"{stage}_ms": round(statistics.median(run[stage] for run in runs[name]), 2)
                for stage in STAGES
            }
            emit(
                bench="delivery_cost",
                delivery=mix,
                variant=name,
                records=RECORDS,
                rounds=args.rounds,
                **figure,
                total_ms=round(statistics.median(totals), 2),
                total_ms_range=[round(min(totals), 2), round(max(totals), 2)],
                us_per_record=round(statistics.median(totals) * 1000 / RECORDS, 2),
                **(
                    {f"ratio_to_{reference}": round(statistics.median(totals) / baseline, 3)}
                    if baseline
                    else {}
                ),
            )


if __name__ == "__main__":
    main()
