"""`floodgate show CIDR`: the whole story of one address or prefix, from the deny log and the ledger."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any

from floodgate.cli.aws import CLI_ACTOR, Deployment, add_deployment_arguments, aws_command
from floodgate.cli.options import cidr_argument
from floodgate.cli.render import table
from floodgate.cli.times import clock
from floodgate.cli.views import (
    DENY_HEADERS,
    counted,
    deny_row,
    event_name,
    evidence_text,
    rule_text,
    short_actor,
)
from floodgate.core.networks import parse_network
from floodgate.core.records import DenyRecord, LogEvent, OffenceRecord
from floodgate.services.records_json import deny_json, event_json, iso

HISTORY_HEADERS = ("TIME (UTC)", "EVENT", "NACL", "RULE", "BY", "EVIDENCE", "REASON")


@dataclass(frozen=True, slots=True)
class Story:
    cidr: str
    now: float
    denied: list[DenyRecord]  # denies of exactly this CIDR, in every NACL
    overlapping: list[DenyRecord]  # denies of wider or narrower prefixes that overlap it
    offence: OffenceRecord | None
    history: list[LogEvent]  # oldest first


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "show",
        help="the whole story of one address or prefix",
        description="Every logged event of one source with its evidence, its offence count, and whether it "
        "(or a prefix overlapping it) is denied now.",
    )
    parser.add_argument(
        "cidr", type=cidr_argument, metavar="CIDR", help="address or prefix, e.g. 203.0.113.7"
    )
    add_deployment_arguments(parser)
    parser.set_defaults(run=aws_command(run_show))


def run_show(args: argparse.Namespace) -> int:
    deployment = Deployment.from_args(args)
    now = time.time()
    network = parse_network(args.cidr)
    status = deployment.enforcer(CLI_ACTOR).status()
    denies = [d for n in status.nacls for d in n.denies if parse_network(d.cidr).overlaps(network)]
    story = Story(
        cidr=args.cidr,
        now=now,
        denied=[d for d in denies if d.cidr == args.cidr],
        overlapping=[d for d in denies if d.cidr != args.cidr],
        offence=deployment.ledger.offences([args.cidr]).get(args.cidr),
        history=deployment.ledger.history(args.cidr, now=now),
    )
    print(json.dumps(story_json(story)) if args.json else story_text(story))
    return 0


def story_json(story: Story) -> dict[str, Any]:
    offence = story.offence
    return {
        "cidr": story.cidr,
        "denied": [deny_json(d, story.now) for d in story.denied],
        "overlapping": [deny_json(d, story.now) for d in story.overlapping],
        "offences": None
        if offence is None
        else {
            "count": offence.count,
            "ban_started": iso(offence.ban_started),
            "ban_until": iso(offence.ban_until),
            "remember_until": iso(offence.remember_until),
        },
        "events": [event_json(e) for e in story.history],
    }


def story_text(story: Story) -> str:
    out = [_headline(story)]
    if story.denied:
        rows = [(d.nacl_id, *deny_row(d, story.now)[1:]) for d in story.denied]  # the CIDR is the headline's
        out += ["", table(("NACL", *DENY_HEADERS[1:]), rows, right=(1, 3))]
    if story.overlapping:
        rows = [(d.nacl_id, *deny_row(d, story.now)) for d in story.overlapping]
        out += ["", "overlapping denies:", table(("NACL", *DENY_HEADERS), rows, right=(2, 4))]
    if story.history:
        out += [
            "",
            "history, oldest first:",
            table(HISTORY_HEADERS, [_history_row(e) for e in story.history]),
        ]
    return "\n".join(out)


def _headline(story: Story) -> str:
    nacls = len({d.nacl_id for d in story.denied})
    state = f"denied now in {counted(nacls, 'NACL')}" if nacls else "not denied now"
    if story.offence is not None and story.offence.remember_until > story.now:
        state += f"; offence {story.offence.count}, remembered until {clock(story.offence.remember_until)}"
    if not story.history:
        state += "; nothing in the deny log"
    return f"{story.cidr}: {state}"


def _history_row(event: LogEvent) -> tuple[str, ...]:
    return (
        clock(event.at),
        event_name(event),
        event.nacl_id or "",
        rule_text(event.rule, event.direction),
        short_actor(event.actor),
        evidence_text(event.evidence),
        event.reason,
    )
