"""`floodgate report`: the post-incident page (timeline of denies per NACL, top sources, the deny log)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from floodgate.cli.aws import CLI_ACTOR, Deployment, add_deployment_arguments, aws_command
from floodgate.cli.errors import CliError
from floodgate.cli.options import add_window_arguments, window
from floodgate.cli.report_html import render
from floodgate.cli.show import effect_json
from floodgate.cli.timeline import Incident, Lane, Report, Source
from floodgate.cli.views import counted
from floodgate.services.records_json import event_json, iso


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="write the post-incident report (self-contained HTML)",
        description="One HTML page for the post-incident review: per incident, inbound traffic over time "
        "with the share the denies covered (REJECTed or not) and when denies and capacity holds began and "
        "ended; a timeline of denies per NACL (when each started, was extended, evicted, expired); the "
        "effect of each deny; the top sources with their rates; and the deny log. "
        "No external assets: it opens offline.",
    )
    add_window_arguments(parser, since="24h")
    parser.add_argument("--html", metavar="FILE", type=Path, help="write the page to FILE")
    add_deployment_arguments(parser)
    parser.set_defaults(run=aws_command(run_report))


def run_report(args: argparse.Namespace) -> int:
    if args.html is None and not args.json:
        raise CliError("report: give --html FILE (or --json for the data)")
    now = time.time()
    since, until = window(args, now)
    deployment = Deployment.from_args(args)
    events = list(deployment.ledger.events(since=since, until=until, now=now))
    events.reverse()  # the page tells the story oldest first
    status = deployment.enforcer(CLI_ACTOR).status()
    active = [deny for nacl in status.nacls for deny in nacl.denies if not deny.expired(now)]
    report = Report.build(
        stack=deployment.stack, events=events, active=active, since=since, until=until, generated=now
    )
    if args.html is not None:
        try:
            args.html.write_text(render(report), encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {args.html}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps(report_json(report)))
    else:
        denies = counted(sum(len(lane.spans) for lane in report.lanes), "deny", "denies")
        nacls = counted(len({lane.nacl_id for lane in report.lanes}), "NACL")
        print(f"wrote {args.html}: {counted(len(report.events), 'event')}; timeline of {denies} in {nacls}")
    return 0


def report_json(report: Report) -> dict[str, Any]:
    return {
        "stack": report.stack,
        "since": iso(report.since),
        "until": iso(report.until),
        "generated": iso(report.generated),
        "in_force": report.in_force,
        "lanes": [_lane_json(lane) for lane in report.lanes],
        "top_sources": [_source_json(source) for source in report.sources],
        "events": [event_json(event) for event in report.events],
        "effects": [effect_json(effect) for effect in report.effects],
        "incidents": [_incident_json(incident) for incident in report.incidents],
    }


def _incident_json(incident: Incident) -> dict[str, Any]:
    return {
        "start": iso(incident.start),
        "end": iso(incident.end),
        "traffic": [
            {
                "at": iso(p.at),
                "inbound_pps": p.inbound_pps,
                "denied_accept_pps": p.covered_accept_pps,
                "denied_reject_pps": p.covered_reject_pps,
                "denied_share": p.covered_share,
            }
            for p in incident.points
        ],
        "denies": [
            {
                "at": iso(m.at),
                "began": list(m.began),
                "ended": list(m.ended),
                "accept_pps_before": m.accept_pps_before,
                "inbound_pps": m.inbound_pps,
            }
            for m in incident.moments
        ],
        "holds": [
            {"group": h.group, "start": iso(h.start), "end": iso(h.end), "open_end": h.open_end}
            for h in incident.holds
        ],
    }


def _lane_json(lane: Lane) -> dict[str, Any]:
    return {
        "nacl_id": lane.nacl_id,
        "direction": str(lane.direction),
        "cidr": lane.cidr,
        "spans": [
            {
                "start": iso(span.start),
                "end": iso(span.end),
                "started_before": span.started_before,
                "open_end": span.open_end,
                "ended_by": str(span.ended_by) if span.ended_by else None,
                "origin": str(span.origin) if span.origin else None,
                "rule": span.rule,
                "reason": span.reason,
                "end_reason": span.end_reason,
                "marks": [{"at": iso(m.at), "event": str(m.kind), "reason": m.reason} for m in span.marks],
            }
            for span in lane.spans
        ],
    }


def _source_json(source: Source) -> dict[str, Any]:
    return {
        "cidr": source.cidr,
        "peak_pps": source.peak_pps,
        "peak_bps": source.peak_bps,
        "peak_share": source.peak_share,
        "members": source.members,
        "offences": source.offences,
        "refusals": source.refusals,
        "nacls": sorted(source.nacls),
        "first_seen": iso(source.first_seen),
        "last_seen": iso(source.last_seen),
    }
