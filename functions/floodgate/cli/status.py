"""`floodgate status`: whether an alarm arms enforcement, whether Floodgate keeps up (how far behind the flow
logs it is, its last decision, failed deliveries waiting for `replay`), and per NACL the owned rules against
budget and quota, and the denies in force."""

from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import dataclass, field
from typing import Any

from floodgate.adapters.arming import Armed
from floodgate.adapters.failure_queue import Backlog
from floodgate.adapters.health import Health
from floodgate.cli.aws import CLI_ACTOR, Deployment, add_deployment_arguments, aws_command
from floodgate.cli.estate import add_estate_arguments, run_estate_status
from floodgate.cli.render import table
from floodgate.cli.times import clock
from floodgate.cli.views import (
    DENY_HEADERS,
    DRIFT_HEADERS,
    counted,
    deny_row,
    drift_row,
    short_actor,
)
from floodgate.core.durations import format_duration
from floodgate.core.text import printable
from floodgate.engine.results import NaclStatus, Status
from floodgate.observability import DECISION_AGE_ALARM_S, INGEST_LAG_ALARM_S
from floodgate.services.records_json import deny_json, drift_json, iso
from floodgate.services.reports import automatic_denies


@dataclass(frozen=True, slots=True)
class Overview:
    """The deployment as a whole: which stack, whether an alarm arms it, and each NACL's status."""

    stack: str
    armings: tuple[Armed, ...]  # every arming in force, the most recent first
    always_pps: float | None  # enforcing without an alarm, above this rate
    status: Status
    health: Health = field(default_factory=Health)
    backlog: Backlog | None = None  # None: the stack names no failure queue


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "status",
        help="what Floodgate holds in each NACL now",
        description="Whether an alarm arms enforcement; per NACL: owned rule numbers, slots used against the "
        "budget and the NACL quota, and the denies in force with their expiry, offences and origin.",
    )
    add_deployment_arguments(parser)
    add_estate_arguments(parser)
    parser.set_defaults(run=aws_command(run_status))


def run_status(args: argparse.Namespace) -> int:
    if args.all:
        return run_estate_status(args)
    deployment = Deployment.from_args(args)
    status = deployment.enforcer(CLI_ACTOR).status()
    watched = deployment.settings.alarm_names
    armings = tuple(a for a in deployment.arming.in_force(now=status.at) if a.alarm_name in watched)
    queue = deployment.failure_queue
    overview = Overview(
        deployment.stack,
        armings,
        deployment.settings.always_pps,
        status,
        health=deployment.health.read(),
        backlog=None if queue is None else queue.backlog(),
    )
    print(json.dumps(status_json(overview)) if args.json else status_text(overview))
    return 0


def status_json(overview: Overview) -> dict[str, Any]:
    status = overview.status
    armed = [
        {
            "alarm": a.alarm_name,
            "armed_at": iso(a.armed_at),
            "armed_until": iso(a.armed_until),
            "reason": a.reason,
        }
        for a in overview.armings
    ]
    return {
        "stack": overview.stack,
        "at": iso(status.at),
        "dry_run": status.dry_run,
        "automatic_denies": _automatic(overview),
        "armed": armed[0] if armed else None,
        "armed_by": armed,
        "always_pps": overview.always_pps,
        "keeping_up": keeping_up_json(overview),
        "nacls": [_nacl_json(nacl, status.at) for nacl in status.nacls],
    }


def keeping_up_json(overview: Overview) -> dict[str, Any]:
    health, now, backlog = overview.health, overview.status.at, overview.backlog
    lag = None if health.newest_end is None else max(0.0, now - health.newest_end)
    return {
        "ingest_lag_s": None if lag is None else round(lag, 1),
        "newest_record_end": None if health.newest_end is None else iso(health.newest_end),
        "behind": lag is not None and lag > INGEST_LAG_ALARM_S,
        "last_decision": None
        if health.decision_at is None
        else {"at": iso(health.decision_at), "ok": health.decision_ok, "outcome": health.outcome},
        "last_completed_decision": None if health.completed_at is None else iso(health.completed_at),
        "decisions_overdue": _decisions_overdue(overview),
        "failed_deliveries": None
        if backlog is None
        else {
            "waiting": backlog.waiting,
            "in_flight": backlog.in_flight,
            "oldest_seen": None if backlog.oldest_seen is None else iso(backlog.oldest_seen),
        },
        "stream_ranges_lost": {
            "count": health.ranges_lost,
            "last_at": None if health.lost_at is None else iso(health.lost_at),
            "last": health.last_lost,
        },
    }


def _decisions_overdue(overview: Overview) -> bool:
    """Armed, and no decision completed for DECISION_AGE_ALARM_S since the arming."""
    if not overview.armings:
        return False
    since = max(overview.armings[-1].armed_at, overview.health.completed_at or 0.0)
    return overview.status.at - since > DECISION_AGE_ALARM_S


def keeping_up_text(overview: Overview) -> list[str]:
    """Whether Floodgate keeps up, in plain words: flow logs, the last decision, failed deliveries."""
    health, now, backlog = overview.health, overview.status.at, overview.backlog
    if health.newest_end is None:
        ingest = "flow logs: none stored yet"
    else:
        lag = max(0.0, now - health.newest_end)
        ingest = (
            f"flow logs: behind by {format_duration(lag)} "
            f"(newest record stored ended {clock(health.newest_end)})"
        )
        if lag > INGEST_LAG_ALARM_S:
            ingest += (
                f"; TOO FAR BEHIND: records older than {format_duration(INGEST_LAG_ALARM_S)} are skipped, "
                "decisions do not see this traffic"
            )
    if health.decision_at is None:
        decision = "last decision: none recorded"
    else:
        ago = format_duration(max(0.0, now - health.decision_at))
        verdict = "completed" if health.decision_ok else "FAILED"
        outcome = printable(health.outcome or "")
        decision = f"last decision: {clock(health.decision_at)} ({ago} ago), {verdict}: {outcome}"
    out = [ingest, decision]
    if _decisions_overdue(overview):
        since = health.completed_at or overview.armings[-1].armed_at
        out.append(f"  armed and no decision completed for {format_duration(now - since)}")
    if backlog is None:
        out.append("failed deliveries: unknown (the stack has no failure queue output)")
    elif backlog.waiting or backlog.in_flight:
        oldest = (
            ""
            if backlog.oldest_seen is None
            else f", oldest {format_duration(now - backlog.oldest_seen)} old"
        )
        flight = f" ({backlog.in_flight} being replayed)" if backlog.in_flight else ""
        out.append(
            f"{counted(backlog.waiting, 'failed delivery', 'failed deliveries')} waiting{oldest}{flight}: "
            "run floodgate replay"
        )
    else:
        out.append("failed deliveries: none waiting")
    if health.ranges_lost:  # kinesis ingest: ranges the automatic replay found trimmed from the stream
        ago = (
            ""
            if health.lost_at is None
            else f", the last {format_duration(max(0.0, now - health.lost_at))} ago"
        )
        out.append(
            f"stream: {counted(health.ranges_lost, 'failed range')} LOST (trimmed before replay){ago}: "
            f"{printable(health.last_lost or '')}"
        )
    return out


def _nacl_json(nacl: NaclStatus, now: float) -> dict[str, Any]:
    return {
        "nacl_id": nacl.nacl_id,
        "vpc_id": nacl.vpc_id,
        "pools": [
            {
                "direction": str(p.pool.direction),
                "family": p.pool.family,
                "first_rule": p.pool.first_rule,
                "last_rule": p.pool.last_rule,
                "denies": p.held,
                "entries": p.entries,
                "budget": p.budget,
                "rules_used": p.rules_used,
                "quota": p.quota,
            }
            for p in nacl.pools
        ],
        "denies": [deny_json(d, now) for d in nacl.denies],
        "drift": [drift_json(d) for d in nacl.drift],
        "problems": list(nacl.problems),
        "pending": list(nacl.pending),
        "lease": None if nacl.lease is None else {"actor": nacl.lease.actor, "until": iso(nacl.lease.until)},
    }


def status_text(overview: Overview) -> str:
    status = overview.status
    denies = sum(len(n.denies) - len(n.pending) for n in status.nacls)
    mode = "DRY RUN, nothing is enforced; " if status.dry_run else ""
    out = [
        f"stack {overview.stack} at {clock(status.at)}: {mode}"
        f"{counted(len(status.nacls), 'NACL')}, {counted(denies, 'deny', 'denies')} in force",
        f"automatic denies now: {_automatic(overview)}",
        *_arming_lines(overview),
        *keeping_up_text(overview),
    ]
    for nacl in status.nacls:
        out += ["", *_nacl_text(nacl, status.at)]
    return "\n".join(out)


def _automatic(overview: Overview) -> str:
    return automatic_denies(overview.armings, always_pps=overview.always_pps, dry_run=overview.status.dry_run)


def _arming_lines(overview: Overview) -> list[str]:
    """One line per armed alarm."""
    return [
        f"  armed by alarm {printable(a.alarm_name)} until {clock(a.armed_until)}: {printable(a.reason)}"
        for a in overview.armings
    ]


def _nacl_text(nacl: NaclStatus, now: float) -> list[str]:
    title = f"{nacl.nacl_id} ({nacl.vpc_id})"
    if nacl.lease is not None:
        title += f"  being changed by {short_actor(nacl.lease.actor)} until {clock(nacl.lease.until)}"
    pools = [
        (
            f"{p.pool.direction} IPv{p.pool.family}",
            f"{p.pool.first_rule}-{p.pool.last_rule}",
            f"{p.held}/{p.budget}",
            f"{p.rules_used}/{p.quota}",
        )
        for p in nacl.pools
    ]
    out = [title, _indent(table(("POOL", "OWNED RULES", "DENIES", "NACL RULES"), pools, right=(2, 3)))]
    if nacl.denies:
        out += ["", _indent(table(DENY_HEADERS, [deny_row(d, now) for d in nacl.denies], right=(1, 3)))]
    if nacl.drift:
        out += ["", "  drift between ledger and NACL (floodgate reconcile repairs it; foreign entries stay):"]
        out.append(_indent(table(DRIFT_HEADERS, [drift_row(d) for d in nacl.drift])))
    if nacl.pending:
        out.append(
            f"  pending, not in force yet (entry not written; the next expirer run writes it): "
            f"{', '.join(nacl.pending)}"
        )
    out += [f"  problem: {problem}" for problem in nacl.problems]
    return out


def _indent(text: str) -> str:
    return textwrap.indent(text, "  ")
