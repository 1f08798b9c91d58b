"""`floodgate status --all`: every member account of the estate, read from the security account.

For each member account (`--accounts`, else the security stack's MemberAccounts output) the CLI assumes the
member's read-only role (`--role-name`, the member stack's estateReaderRole), finds the member stack (the
StackSet's instance, StackSet-<stack>-member-<id>, or a stack named like the security stack), and reads
what `floodgate status` reads there: the denies in force per NACL of the tagged VPC. Then one deny log,
merged across the accounts, newest first. An account it cannot read (no role, no stack, access denied, no
tagged VPC) is named with the reason, and the others are shown all the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import heapq
import itertools
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import boto3

from floodgate.adapters.estate import NoProtectedVpc, tagged_vpc
from floodgate.adapters.retry import client_config
from floodgate.cli.aws import CLI_ACTOR, Deployment, aws_failures
from floodgate.cli.errors import AWS, CliError
from floodgate.cli.render import table
from floodgate.cli.times import clock
from floodgate.cli.views import DENY_HEADERS, EVENT_HEADERS, counted, deny_row, event_row
from floodgate.core.decision import EnforcementConfig
from floodgate.core.records import EventKind, LogEvent
from floodgate.engine.results import Status
from floodgate.observability import MEMBER_ACCOUNTS_OUTPUT, MEMBER_STACK_SET
from floodgate.services.records_json import deny_json, event_json, iso

DEFAULT_ROLE = "FloodgateEstateReader"
LOG_WINDOW_S = 24 * 3600
LOG_LIMIT = 50
# As `floodgate log`: what was done, not the expirer's measurements.
ACTIONS = tuple(kind for kind in EventKind if kind is not EventKind.EFFECT)


def add_estate_arguments(parser: argparse.ArgumentParser) -> None:
    estate = parser.add_argument_group("estate (run from the security account)")
    estate.add_argument(
        "--all", action="store_true", help="every member account of the estate, and one merged deny log"
    )
    estate.add_argument(
        "--accounts",
        metavar="IDS",
        type=_accounts,
        help=f"member account ids, comma-separated (default: the security stack's {MEMBER_ACCOUNTS_OUTPUT})",
    )
    estate.add_argument(
        "--role-name", metavar="NAME", default=DEFAULT_ROLE, help=f"the members' reader role ({DEFAULT_ROLE})"
    )


def _accounts(text: str) -> tuple[str, ...]:
    accounts = tuple(dict.fromkeys(a.strip() for a in text.split(",") if a.strip()))
    bad = [a for a in accounts if not (a.isdigit() and len(a) == 12)]
    if bad or not accounts:
        raise argparse.ArgumentTypeError(f"not 12-digit account ids: {', '.join(bad) or text!r}")
    return accounts


class MemberDeployment(Deployment):
    """A member account's deployment: its target is the VPC carrying the member tag, found in EC2."""

    @functools.cached_property
    def config(self) -> EnforcementConfig:
        vpc_id = tagged_vpc(self.settings.member_vpc_tag, client=self.client("ec2", client_config()))
        settings = dataclasses.replace(self.settings, vpc_id=vpc_id, nacl_ids=())
        return EnforcementConfig.from_settings(settings)


@dataclass(frozen=True, slots=True)
class MemberView:
    account: str
    stack: str
    status: Status
    events: tuple[LogEvent, ...]  # the account's deny log over the window, newest first


@dataclass(frozen=True, slots=True)
class EstateView:
    stack: str
    at: float
    members: tuple[MemberView, ...]
    unreadable: dict[str, str]  # account -> why it could not be read

    def merged_log(self, limit: int) -> list[tuple[str, LogEvent]]:
        """Every account's events, newest first, at most `limit`."""
        streams = [[(m.account, e) for e in m.events] for m in self.members]
        merged = heapq.merge(*streams, key=lambda pair: pair[1].at, reverse=True)
        return list(itertools.islice(merged, limit))


def run_estate_status(args: argparse.Namespace) -> int:
    security = Deployment.from_args(args)
    with aws_failures():
        accounts = args.accounts or _listed(security)
    view = read_estate(security, accounts, role_name=args.role_name, now=time.time())
    print(json.dumps(estate_json(view)) if args.json else estate_text(view))
    if not view.members:
        raise CliError(f"no member account could be read ({', '.join(view.unreadable)})", AWS)
    return 0


def _listed(security: Deployment) -> tuple[str, ...]:
    listed = tuple(a for a in security.output(MEMBER_ACCOUNTS_OUTPUT).split(",") if a)
    if not listed:
        raise CliError(f"stack {security.stack} lists no member accounts: pass --accounts", AWS)
    return listed


def read_estate(security: Deployment, accounts: Sequence[str], *, role_name: str, now: float) -> EstateView:
    members: list[MemberView] = []
    unreadable: dict[str, str] = {}
    for account in accounts:
        try:
            with aws_failures():
                members.append(_read_member(security, account, role_name=role_name, now=now))
        except CliError as exc:
            unreadable[account] = str(exc)
        except NoProtectedVpc as exc:
            unreadable[account] = str(exc)
    return EstateView(security.stack, now, tuple(members), unreadable)


def _read_member(security: Deployment, account: str, *, role_name: str, now: float) -> MemberView:
    sts = security.client("sts")
    partition = str(sts.get_caller_identity()["Arn"]).split(":")[1]
    credentials = sts.assume_role(
        RoleArn=f"arn:{partition}:iam::{account}:role/{role_name}", RoleSessionName="floodgate-status-all"
    )["Credentials"]
    session = boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=sts.meta.region_name,
    )
    cloudformation = session.client("cloudformation", endpoint_url=security.endpoint_url)
    stack = _member_stack(cloudformation, security.stack, account)
    member = MemberDeployment(
        stack=stack, region=None, profile=None, endpoint_url=security.endpoint_url, session=session
    )
    status = member.enforcer(CLI_ACTOR).status()
    events = member.ledger.events(
        since=now - LOG_WINDOW_S, until=now, kinds=ACTIONS, limit=LOG_LIMIT, now=now
    )
    return MemberView(account, stack, status, tuple(events))


def _member_stack(cloudformation: Any, stack: str, account: str) -> str:
    """The member stack in this account: the StackSet's instance, or one deployed by hand under `stack`."""
    prefix = f"StackSet-{MEMBER_STACK_SET.format(stack)}-"
    for name in _stack_names(cloudformation):
        if name == stack or name.startswith(prefix):
            return name
    raise CliError(f"no Floodgate member stack in account {account} (looked for {prefix}… and {stack})", AWS)


def _stack_names(cloudformation: Any) -> Iterator[str]:
    for page in cloudformation.get_paginator("describe_stacks").paginate():
        for found in page.get("Stacks", []):
            if found.get("StackStatus") != "DELETE_COMPLETE":
                yield str(found["StackName"])


def estate_json(view: EstateView) -> dict[str, Any]:
    return {
        "stack": view.stack,
        "at": iso(view.at),
        "members": [
            {
                "account": m.account,
                "stack": m.stack,
                "dry_run": m.status.dry_run,
                "nacls": [
                    {
                        "nacl_id": n.nacl_id,
                        "vpc_id": n.vpc_id,
                        "denies": [deny_json(d, m.status.at) for d in n.denies],
                        "problems": list(n.problems),
                    }
                    for n in m.status.nacls
                ],
            }
            for m in view.members
        ],
        "unreadable": dict(view.unreadable),
        "log": [{"account": account, **event_json(e)} for account, e in view.merged_log(LOG_LIMIT)],
    }


def estate_text(view: EstateView) -> str:
    total = len(view.members) + len(view.unreadable)
    out = [f"estate of stack {view.stack} at {clock(view.at)}: {counted(total, 'member account')}"]
    for member in view.members:
        status = member.status
        denies = sum(len(n.denies) for n in status.nacls)
        mode = ", DRY RUN" if status.dry_run else ""
        out += [
            "",
            f"account {member.account} ({member.stack}{mode}): {counted(len(status.nacls), 'NACL')}, "
            f"{counted(denies, 'deny', 'denies')} in force",
        ]
        for nacl in status.nacls:
            out.append(f"  {nacl.nacl_id} ({nacl.vpc_id})")
            if nacl.denies:
                rows = [deny_row(d, status.at) for d in nacl.denies]
                out.append(_indent(table(DENY_HEADERS, rows, right=(1, 3)), "    "))
            out += [f"    problem: {problem}" for problem in nacl.problems]
    for account, why in view.unreadable.items():
        out += ["", f"account {account}: CANNOT READ: {why}"]
    log = view.merged_log(LOG_LIMIT)
    out += [
        "",
        f"deny log, every account, newest first (last {LOG_WINDOW_S // 3600} h, at most {LOG_LIMIT}):",
    ]
    if log:
        rows = [(account, *event_row(event)) for account, event in log]
        out.append(table(("ACCOUNT", *EVENT_HEADERS), rows, right=(5, 6)))
    else:
        out.append("  no events")
    return "\n".join(out)


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())
