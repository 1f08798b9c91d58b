"""`floodgate status`: whether an alarm arms enforcement, and per NACL the owned rules against budget and
quota, and the denies in force."""

from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import dataclass
from typing import Any

from floodgate.adapters.arming import Armed
from floodgate.cli.aws import CLI_ACTOR, Deployment, add_deployment_arguments, aws_command
from floodgate.cli.render import rate, table
from floodgate.cli.times import clock
from floodgate.cli.views import (
    DENY_HEADERS,
    DRIFT_HEADERS,
    counted,
    deny_row,
    drift_row,
    short_actor,
)
from floodgate.engine.results import NaclStatus, Status
from floodgate.services.records_json import deny_json, drift_json, iso


@dataclass(frozen=True, slots=True)
class Overview:
    """The deployment as a whole: which stack, whether an alarm arms it, and each NACL's status."""

    stack: str
    armed: Armed | None
    always_pps: float | None  # enforcing without an alarm, above this rate
    status: Status


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "status",
        help="what Floodgate holds in each NACL now",
        description="Whether an alarm arms enforcement; per NACL: owned rule numbers, slots used against the "
        "budget and the NACL quota, and the denies in force with their expiry, offences and origin.",
    )
    add_deployment_arguments(parser)
    parser.set_defaults(run=aws_command(run_status))


def run_status(args: argparse.Namespace) -> int:
    deployment = Deployment.from_args(args)
    status = deployment.enforcer(CLI_ACTOR).status()
    armed = deployment.arming.current(now=status.at)
    overview = Overview(deployment.stack, armed, deployment.settings.always_pps, status)
    print(json.dumps(status_json(overview)) if args.json else status_text(overview))
    return 0


def status_json(overview: Overview) -> dict[str, Any]:
    status, armed = overview.status, overview.armed
    return {
        "stack": overview.stack,
        "at": iso(status.at),
        "dry_run": status.dry_run,
        "armed": None
        if armed is None
        else {
            "alarm": armed.alarm_name,
            "armed_at": iso(armed.armed_at),
            "armed_until": iso(armed.armed_until),
            "reason": armed.reason,
        },
        "always_pps": overview.always_pps,
        "nacls": [_nacl_json(nacl, status.at) for nacl in status.nacls],
    }


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
        "lease": None if nacl.lease is None else {"actor": nacl.lease.actor, "until": iso(nacl.lease.until)},
    }


def status_text(overview: Overview) -> str:
    status = overview.status
    denies = sum(len(n.denies) for n in status.nacls)
    mode = "DRY RUN, nothing is enforced" if status.dry_run else "enforcing"
    out = [
        f"stack {overview.stack} at {clock(status.at)}: {mode}; "
        f"{counted(len(status.nacls), 'NACL')}, {counted(denies, 'deny', 'denies')}",
        _arming_text(overview),
    ]
    for nacl in status.nacls:
        out += ["", *_nacl_text(nacl, status.at)]
    return "\n".join(out)


def _arming_text(overview: Overview) -> str:
    armed = overview.armed
    if armed is not None:
        return f"armed by alarm {armed.alarm_name} until {clock(armed.armed_until)}: {armed.reason}"
    if overview.always_pps is not None:
        return f"not armed by an alarm: denies only sources above {rate(overview.always_pps, 'pps')}"
    return "not armed: no automatic denies until an alarm fires"


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
        out += ["", "  drift between ledger and NACL (floodgate reconcile repairs it):"]
        out.append(_indent(table(DRIFT_HEADERS, [drift_row(d) for d in nacl.drift])))
    out += [f"  problem: {problem}" for problem in nacl.problems]
    return out


def _indent(text: str) -> str:
    return textwrap.indent(text, "  ")
