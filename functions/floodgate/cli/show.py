"""`floodgate show CIDR`: the whole story of one address or prefix, from the deny log and the ledger, with
the effect of each deny (`core.effect`): its ACCEPT rate before, its REJECT rate after, whether it stopped."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any

from floodgate.cli.aws import CLI_ACTOR, Deployment, add_deployment_arguments, aws_command
from floodgate.cli.options import cidr_argument
from floodgate.cli.render import rate, table
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
from floodgate.core.effect import DenyEffect, deny_effects
from floodgate.core.networks import parse_network
from floodgate.core.records import DenyRecord, EventKind, LogEvent, OffenceRecord
from floodgate.services.records_json import deny_json, event_json, iso

HISTORY_HEADERS = ("TIME (UTC)", "EVENT", "CIDR", "NACL", "RULE", "BY", "EVIDENCE", "REASON")
EFFECT_HEADERS = (
    "CIDR",
    "DENIED (UTC)",
    "ACCEPT BEFORE",
    "REJECT AFTER (PEAK)",
    "LATEST: REJECT / ACCEPT",
    "SOURCE",
    "DENY ENDED",
)


@dataclass(frozen=True, slots=True)
class Story:
    cidr: str
    now: float
    denied: list[DenyRecord]  # denies in force of this CIDR or of a prefix covering it, in every NACL
    overlapping: list[DenyRecord]  # denies of narrower prefixes inside it
    offence: OffenceRecord | None
    history: list[LogEvent]  # oldest first: this CIDR's events and those of every prefix covering it
    effects: list[DenyEffect]  # each deny of it or of a covering prefix, from the history's samples
    pending: list[DenyRecord]  # denies of it or a covering prefix whose entry is not written yet

    @property
    def actions(self) -> list[LogEvent]:
        """The history without the expirer's EFFECT samples: what was done."""
        return [e for e in self.history if e.kind is not EventKind.EFFECT]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "show",
        help="the whole story of one address or prefix",
        description="Every logged event of one source, and of every prefix covering it, with its evidence; "
        "its offence count; and whether it is denied now, by its own entry or by a covering prefix.",
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
    held = [(d, d.cidr in n.pending) for n in status.nacls for d in n.denies]
    denies = [d for d, waiting in held if not waiting and parse_network(d.cidr).overlaps(network)]
    covering = [d for d in denies if network.subnet_of(parse_network(d.cidr))]  # type: ignore[arg-type]
    pending = [d for d, waiting in held if waiting and network.subnet_of(parse_network(d.cidr))]  # type: ignore[arg-type]
    # Denies of a covering prefix may have ended long ago: ask the log for every prefix the policy could
    # have denied (at most 17 for IPv4, 81 for IPv6 under the default caps), one indexed query each.
    settings = deployment.settings
    widest = settings.max_prefix_v4 if network.version == 4 else settings.max_prefix_v6
    prefixes = [str(network.supernet(new_prefix=length)) for length in range(widest, network.prefixlen)]
    history = [e for cidr in (*prefixes, args.cidr) for e in deployment.ledger.history(cidr, now=now)]
    history.sort(key=lambda e: e.at)
    story = Story(
        cidr=args.cidr,
        now=now,
        denied=sorted(covering, key=lambda d: (d.cidr != args.cidr, d.nacl_id)),
        overlapping=[d for d in denies if d not in covering],
        offence=deployment.ledger.offences([args.cidr]).get(args.cidr),
        history=history,
        effects=deny_effects(history),
        pending=sorted(pending, key=lambda d: (d.cidr != args.cidr, d.nacl_id)),
    )
    print(json.dumps(story_json(story)) if args.json else story_text(story))
    return 0


def story_json(story: Story) -> dict[str, Any]:
    offence = story.offence
    return {
        "cidr": story.cidr,
        "denied": [deny_json(d, story.now) for d in story.denied],
        "overlapping": [deny_json(d, story.now) for d in story.overlapping],
        "pending": [deny_json(d, story.now) for d in story.pending],
        "offences": None
        if offence is None
        else {
            "count": offence.count,
            "ban_started": iso(offence.ban_started),
            "ban_until": iso(offence.ban_until),
            "remember_until": iso(offence.remember_until),
        },
        "events": [event_json(e) for e in story.actions],
        "effects": [effect_json(effect) for effect in story.effects],
    }


def effect_json(effect: DenyEffect) -> dict[str, Any]:
    def when(at: float | None) -> str | None:
        return None if at is None else iso(at)

    return {
        "cidr": effect.cidr,
        "denied_at": iso(effect.denied_at),
        "ended_at": when(effect.ended_at),
        "accept_pps_before": effect.accept_pps_before,
        "samples": effect.samples,
        "reject_pps_peak": effect.reject_pps_peak,
        "reject_pps_latest": effect.reject_pps_latest,
        "accept_pps_latest": effect.accept_pps_latest,
        "last_seen": when(effect.last_seen),
        "gone_by": when(effect.gone_by),
        "still_sending": effect.still_sending,
    }


def story_text(story: Story) -> str:
    out = [_headline(story)]
    if story.denied:
        rows = [(d.nacl_id, *deny_row(d, story.now)) for d in story.denied]
        out += ["", table(("NACL", *DENY_HEADERS), rows, right=(2, 4))]
    if story.overlapping:
        rows = [(d.nacl_id, *deny_row(d, story.now)) for d in story.overlapping]
        out += ["", "narrower denies inside it:", table(("NACL", *DENY_HEADERS), rows, right=(2, 4))]
    if story.effects:
        out += [
            "",
            "effect of each deny (sampled by the expirer once per window; flow logs arrive minutes late):",
            table(EFFECT_HEADERS, [_effect_row(e) for e in story.effects], right=(2, 3, 4)),
        ]
    if story.actions:
        out += [
            "",
            "history (with covering prefixes), oldest first:",
            table(HISTORY_HEADERS, [_history_row(e) for e in story.actions]),
        ]
    return "\n".join(out)


def source_text(effect: DenyEffect) -> str:
    """What the samples say of the source: still sending, stopped, or not known yet."""
    if effect.still_sending:
        return f"still sending (last seen {_hm(effect.last_seen)})"
    if effect.gone_by is not None:
        return f"stopped: last seen {_hm(effect.last_seen)}, gone by {_hm(effect.gone_by)}"
    if effect.samples:
        return "not seen since the deny"
    return "no sample yet"


def _effect_row(effect: DenyEffect) -> tuple[str, ...]:
    latest = (
        f"{rate(effect.reject_pps_latest or 0.0, 'pps')} / {rate(effect.accept_pps_latest or 0.0, 'pps')}"
        if effect.samples
        else ""
    )
    return (
        effect.cidr,
        clock(effect.denied_at),
        rate(effect.accept_pps_before, "pps"),
        "" if effect.reject_pps_peak is None else rate(effect.reject_pps_peak, "pps"),
        latest,
        source_text(effect),
        "in force" if effect.ended_at is None else clock(effect.ended_at),
    )


def _hm(at: float | None) -> str:
    return "" if at is None else clock(at)[11:16]


def _headline(story: Story) -> str:
    nacls = len({d.nacl_id for d in story.denied})
    by = sorted({d.cidr for d in story.denied} - {story.cidr})
    if not nacls:
        state = "not denied now"
    elif by:
        state = f"denied now by {', '.join(by)} in {counted(nacls, 'NACL')}"
    else:
        state = f"denied now in {counted(nacls, 'NACL')}"
    if story.pending:
        waiting = ", ".join(sorted({d.nacl_id for d in story.pending}))
        state += f"; pending in {waiting} (entry not written yet; the next run writes it)"
    if story.offence is not None and story.offence.remember_until > story.now:
        state += f"; offence {story.offence.count}, remembered until {clock(story.offence.remember_until)}"
    if not story.actions:
        state += "; nothing in the deny log"
    return f"{story.cidr}: {state}"


def _history_row(event: LogEvent) -> tuple[str, ...]:
    return (
        clock(event.at),
        event_name(event),
        event.cidr,
        event.nacl_id or "",
        rule_text(event.rule, event.direction),
        short_actor(event.actor),
        evidence_text(event.evidence),
        event.reason,
    )
