"""`floodgate analyze`: which sources would Floodgate deny in these flow-log captures, and why."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from floodgate.cli.errors import CliError
from floodgate.cli.inputs import read_blocks
from floodgate.cli.render import rate, table
from floodgate.core.detect import DetectionConfig, plan_denies
from floodgate.core.durations import parse_duration
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser, PendingBatch
from floodgate.core.model import DenyPlan, Verdict
from floodgate.core.networks import DenyPolicy, InvalidCidr, parse_network
from floodgate.core.scanning import block_scanner
from floodgate.core.summary import TrafficSummary

FLUSH_SOURCES = 65536  # distinct sources gathered before they are validated and summarised

VERDICT_TEXT = {
    Verdict.CONCENTRATED: "concentrated: a few sources carry the flood; the entries above deny them",
    Verdict.DISTRIBUTED: (
        "distributed: traffic is high but spread across many sources; a NACL cannot help here — "
        "use AWS WAF rate-based rules or AWS Shield"
    ),
    Verdict.QUIET: "quiet: inbound traffic is below the absolute thresholds",
}


def _share(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share: {text!r} (use 0.01 or 1%)") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"share must be in (0, 1], got {text!r}")
    return value


def _cidr(text: str) -> str:
    try:
        return str(parse_network(text))
    except InvalidCidr as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bounded_int(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within {low}..{high}, got {value}")
        return value

    return parse


def add_detection_arguments(parser: argparse.ArgumentParser) -> None:
    """The detection knobs, shared by every command that decides."""
    knobs = parser.add_argument_group("detection")
    knobs.add_argument("--window", type=_duration, help="analysis window (default: the records' own span)")
    knobs.add_argument("--min-pps", type=_non_negative, default=5000.0, help="absolute rate floor (5000)")
    knobs.add_argument("--min-bps", type=_non_negative, default=0.0, help="absolute bit-rate floor (off)")
    knobs.add_argument("--min-share", type=_share, default=0.01, help="share of inbound packets (1%%)")
    knobs.add_argument("--budget", type=_bounded_int(0, 38), default=10, help="deny entries at most (10)")
    knobs.add_argument("--allow", type=_cidr, action="append", default=[], help="never deny (repeatable)")
    knobs.add_argument(
        "--vpc-cidr", type=_cidr, action="append", default=[], help="the protected network (repeatable)"
    )
    knobs.add_argument("--max-prefix-v4", type=_bounded_int(8, 32), default=16, help="widest IPv4 entry")
    knobs.add_argument("--max-prefix-v6", type=_bounded_int(16, 128), default=48, help="widest IPv6 entry")
    knobs.add_argument(
        "--member-floor-pps",
        type=_non_negative,
        default=50.0,
        help="a prefix is denied only when most of its sources send at least this rate (50)",
    )


def detection_config(args: argparse.Namespace) -> DetectionConfig:
    policy = DenyPolicy.build(
        vpc_cidrs=args.vpc_cidr,
        allow=args.allow,
        max_prefix_v4=args.max_prefix_v4,
        max_prefix_v6=args.max_prefix_v6,
    )
    return DetectionConfig(
        policy=policy,
        min_pps=args.min_pps,
        min_bps=args.min_bps,
        min_share=args.min_share,
        budget=args.budget,
        member_floor_pps=args.member_floor_pps,
        window_s=args.window,
    )


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "analyze",
        help="decide which sources to deny in flow-log captures",
        description="Read VPC Flow Log captures (plain, .gz or - for stdin) and show the deny plan.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="flow-log files, .gz files, or - for stdin")
    parser.add_argument("--format", default=DEFAULT_FORMAT, help="custom ${field} format (default: v2)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    add_detection_arguments(parser)
    parser.set_defaults(run=run)


def analyze_paths(
    paths: list[str], fmt: FlowLogFormat, config: DetectionConfig, vpc_cidrs: list[str]
) -> DenyPlan:
    parser = FlowLogParser(fmt, vpc_cidrs)
    policy = config.policy
    summary = TrafficSummary.for_share(config.min_share, policy.max_prefix_v4, policy.max_prefix_v6)
    scanner = block_scanner(parser)
    pending = PendingBatch()
    for path in paths:
        for block in read_blocks(path):
            scanner.scan_into(block, pending)
            # Sources are validated and folded into the summary once per batch of blocks: far fewer
            # repeats than per block, and memory stays bounded by the flush size, not by the input.
            if scanner.pending_sources + len(pending.by_text) >= FLUSH_SOURCES:
                scanner.drain_into(pending, summary, hold=True)
                pending = PendingBatch()
    scanner.drain_into(pending, summary)
    return plan_denies(summary, config)


def plan_as_json(plan: DenyPlan) -> dict[str, Any]:
    return {
        "verdict": plan.verdict.value,
        "window_s": plan.window_s,
        "total_pps": round(plan.total_pps, 3),
        "total_bps": round(plan.total_bps, 3),
        "denies": [
            {
                "cidr": d.cidr,
                "pps": round(d.pps, 3),
                "bps": round(d.bps, 3),
                "share": round(d.share, 6),
                "members": d.members,
                "reason": d.reason,
            }
            for d in plan.denies
        ],
        "records": {"parsed": plan.records.parsed, "skipped": dict(sorted(plan.records.skipped.items()))},
    }


def plan_as_text(plan: DenyPlan) -> str:
    out = []
    if plan.denies:
        rows = [
            (d.cidr, rate(d.pps, "pps"), rate(d.bps, "bps"), f"{d.share:.1%}", d.members, d.reason)
            for d in plan.denies
        ]
        out.append(
            table(("CIDR", "RATE", "BANDWIDTH", "SHARE", "SOURCES", "REASON"), rows, right=(1, 2, 3, 4))
        )
        out.append("")
    out.append(f"verdict: {VERDICT_TEXT[plan.verdict]}")
    window = f"{plan.window_s:.0f} s"
    traffic = f"{rate(plan.total_pps, 'pps')}, {rate(plan.total_bps, 'bps')}"
    out.append(f"inbound: {traffic} over a {window} window")
    skipped = ", ".join(f"{reason} {n:,}" for reason, n in sorted(plan.records.skipped.items())) or "none"
    out.append(f"records: {plan.records.parsed:,} used; skipped: {skipped}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    try:
        fmt = FlowLogFormat.parse(args.format)
    except ValueError as exc:
        raise CliError(f"--format: {exc}") from None
    try:
        config = detection_config(args)
    except (ValueError, InvalidCidr) as exc:
        raise CliError(str(exc)) from None
    plan = analyze_paths(args.paths, fmt, config, args.vpc_cidr)
    print(json.dumps(plan_as_json(plan), indent=None) if args.json else plan_as_text(plan))
    if plan.records.parsed == 0:
        # A verdict on no records is no verdict: "quiet" would read as an all-clear.
        skipped = ", ".join(f"{n:,} {why}" for why, n in sorted(plan.records.skipped.items())) or "no records"
        raise CliError(
            f"no usable flow-log records in the input ({skipped}); is it a flow-log capture, and does "
            "--format match it?"
        )
    return 0
