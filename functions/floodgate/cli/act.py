"""Acting by hand: `floodgate block`, `floodgate unblock` and `floodgate reconcile`.

Block and unblock take the very path of the console trigger and the SSM runbooks: the manual-action payload,
run in process by `services.manual` with the configuration read back from the deployed detector function,
so the deployed budget, allowlist and prefix caps apply. The actor is the caller identity's ARN.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from floodgate.adapters.dependencies import DependencyGuard
from floodgate.cli.aws import Deployment, add_deployment_arguments, aws_command
from floodgate.cli.errors import CliError
from floodgate.cli.options import cidr_argument
from floodgate.cli.render import table
from floodgate.cli.views import (
    DRIFT_HEADERS,
    EVENT_HEADERS,
    counted,
    drift_row,
    event_row,
    short_actor,
)
from floodgate.core.decision import DriftKind
from floodgate.core.durations import parse_duration
from floodgate.core.records import EventKind
from floodgate.engine.results import EnforcementResult
from floodgate.services.manual import ACTOR_LENGTH, ManualResponse, run_manual
from floodgate.services.records_json import drift_json, event_json

DRIFT_FOUND = 1  # `reconcile --dry-run` found drift: the exit code a monitoring check acts on


def register(commands: Any) -> None:
    block = commands.add_parser(
        "block",
        help="deny a source by hand in every protected NACL",
        description="Deny CIDR in every protected NACL, as the console trigger does: the deployed budget, "
        "allowlist and prefix caps apply, and a refusal says why (exit 2). A manual deny outranks automatic "
        "ones. The deny log records your caller identity.",
    )
    block.add_argument("cidr", type=cidr_argument, metavar="CIDR", help="address or prefix, e.g. 203.0.113.7")
    block.add_argument(
        "--ttl",
        type=_ttl_argument,
        metavar="DURATION",
        help="how long, with its unit: 90s, 30m, 2h, 1d (default: the escalation rules)",
    )
    block.add_argument(
        "--force",
        action="store_true",
        help="deny even an address the VPC depends on (its DNS, APIs, partners)",
    )
    _add_manual_arguments(block)
    block.set_defaults(action="block")

    unblock = commands.add_parser(
        "unblock",
        help="lift a deny by hand in every protected NACL",
        description="Lift the deny of CIDR in every protected NACL, as the console trigger does. The deny "
        "log records your caller identity and reason.",
    )
    unblock.add_argument(
        "cidr", type=cidr_argument, metavar="CIDR", help="the denied CIDR, as status shows it"
    )
    _add_manual_arguments(unblock)
    unblock.set_defaults(action="unblock", ttl=None, force=False)

    reconcile = commands.add_parser(
        "reconcile",
        help="repair drift between the ledger and the NACLs",
        description="Compare each NACL's owned rules with the ledger and put the NACL right: remove the "
        "entries Floodgate wrote whose deny has left the ledger, re-create denies missing from the NACL. "
        "Entries Floodgate did not write (no ledger record, whatever they look like) are reported and "
        "logged once as FOREIGN, never deleted or replaced; their rule numbers are skipped.",
    )
    reconcile.add_argument(
        "--dry-run",
        action="store_true",
        help="only show the drift; change nothing. Exits 1 when there is drift, so it can serve as a check",
    )
    add_deployment_arguments(reconcile)
    reconcile.set_defaults(run=aws_command(run_reconcile))


def _ttl_argument(text: str) -> str:
    """An argparse type: the duration as given, once it is one (a bare number is refused: 5 what?)."""
    try:
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_manual_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason", required=True, metavar="TEXT", help="why, for the deny log (3 to 256 characters)"
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would happen; change nothing")
    add_deployment_arguments(parser)
    parser.set_defaults(run=aws_command(run_manual_action))


def run_manual_action(args: argparse.Namespace) -> int:
    deployment = Deployment.from_args(args)
    actor = _fit_actor(deployment.caller)
    payload: dict[str, Any] = {
        "action": args.action,
        "cidr": args.cidr,
        "reason": args.reason,
        "actor": actor,
    }
    if args.ttl is not None:
        payload["ttl"] = args.ttl
    if args.dry_run:
        payload["dry_run"] = True
    if args.force:
        payload["force"] = True
    response = run_manual(
        payload,
        settings=deployment.settings,
        enforcer=deployment.enforcer(actor),
        notifier=deployment.notifier,
        dependencies=DependencyGuard(deployment.dependencies, time.time),
    )
    if args.json:
        print(json.dumps(response.as_dict()))
    elif response.ok:
        print(manual_text(response))
    if not response.ok:
        raise CliError(str(response.body["error"]))
    return 0


def _fit_actor(arn: str) -> str:
    """The caller's ARN, shortened (account dropped) only if the manual contract's length limit needs it."""
    longest = ACTOR_LENGTH[1]
    return arn if len(arn) <= longest else short_actor(arn)[:longest]


def manual_text(response: ManualResponse) -> str:
    lines = [str(response.body["message"])]
    if response.events:
        lines += ["", table(EVENT_HEADERS, [event_row(e) for e in response.events], right=(4, 5))]
    return "\n".join(lines)


def run_reconcile(args: argparse.Namespace) -> int:
    deployment = Deployment.from_args(args)
    result = deployment.enforcer(deployment.caller).reconcile(dry_run=args.dry_run)
    print(json.dumps(result_json(result)) if args.json else reconcile_text(result))
    return DRIFT_FOUND if (args.dry_run and result.drift) or result.failures else 0


def result_json(result: EnforcementResult) -> dict[str, Any]:
    return {
        "operation": result.operation,
        "dry_run": result.dry_run,
        "nacl_ids": list(result.nacl_ids),
        "events": [event_json(e) for e in result.events],
        "drift": [drift_json(d) for d in result.drift],
        "problems": list(result.problems),
        "failed": dict(result.failures),
    }


def reconcile_text(result: EnforcementResult) -> str:
    nacls = counted(len(result.nacl_ids), "NACL")
    repairable = [d for d in result.drift if d.kind is not DriftKind.FOREIGN]
    foreign = len(result.drift) - len(repairable)
    out = []
    if result.drift:
        out += [table(DRIFT_HEADERS, [drift_row(d) for d in result.drift]), ""]
    if not repairable:
        out.append(f"ledger and NACLs agree ({nacls})")
    elif result.dry_run:
        out.append(f"dry run: {len(repairable)} to repair in {nacls}, nothing changed; run without --dry-run")
    else:
        out.append(
            f"repaired {counted(len(result.of_kind(EventKind.REPAIR)), 'entry', 'entries')} in {nacls}"
        )
    if foreign:
        out.append(
            f"{counted(foreign, 'foreign entry', 'foreign entries')} in the owned rules: never touched; "
            "move them out of the range or set ruleStart / FLOODGATE_RULE_START to a free block"
        )
    out += [f"problem: {problem}" for problem in result.problems]
    out += [f"failed: {nacl_id}: {why}" for nacl_id, why in result.failures]
    return "\n".join(out)
