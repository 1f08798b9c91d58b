"""`floodgate log`: the deny log, newest first, filtered, read page by page."""

from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import Any

from floodgate.cli.aws import Deployment, add_deployment_arguments, aws_command
from floodgate.cli.options import add_window_arguments, cidr_argument, window
from floodgate.cli.render import table
from floodgate.cli.times import clock
from floodgate.cli.views import EVENT_HEADERS, event_row
from floodgate.core.records import EventKind
from floodgate.services.records_json import event_json
from floodgate.settings import NACL_ID

DEFAULT_LIMIT = 50
# EFFECT events are the expirer's measurements, one per denied source per window: `show` and `report` read
# them; the log lists what was done, unless they are asked for by name.
ACTIONS = tuple(kind for kind in EventKind if kind is not EventKind.EFFECT)


def _event_kinds(text: str) -> tuple[EventKind, ...]:
    names = [name.strip().upper() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in EventKind.__members__]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown event {', '.join(unknown) or text!r} (choose from {', '.join(EventKind)})"
        )
    return tuple(EventKind(name) for name in dict.fromkeys(names))


def _nacl_id(text: str) -> str:
    if not NACL_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a NACL id: {text!r} (acl-…)")
    return text


def _limit(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (0 for no limit)")
    return int(text)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "log",
        help="the deny log, newest first",
        description="What Floodgate did and why, newest first. Filters combine; the log is read page by "
        "page, never whole. With --json, one JSON object per line.",
    )
    add_window_arguments(parser, since="24h")
    parser.add_argument(
        "--cidr", type=cidr_argument, metavar="CIDR", help="only this source (exact CIDR; 1.2.3.4 means /32)"
    )
    parser.add_argument(
        "--event",
        type=_event_kinds,
        default=(),
        metavar="KINDS",
        help=f"only these, comma-separated: {', '.join(EventKind)} (default: all but EFFECT)",
    )
    parser.add_argument("--nacl", type=_nacl_id, metavar="ACL_ID", help="only this NACL")
    parser.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"newest N events (default {DEFAULT_LIMIT}; 0: all)",
    )
    add_deployment_arguments(parser)
    parser.set_defaults(run=aws_command(run_log))


def run_log(args: argparse.Namespace) -> int:
    now = time.time()
    since, until = window(args, now)
    limit = args.limit or None
    events = Deployment.from_args(args).ledger.events(
        since=since,
        until=until,
        cidr=args.cidr,
        kinds=args.event or ACTIONS,
        nacl_id=args.nacl,
        limit=None if limit is None else limit + 1,  # one more than shown tells whether there are more
        now=now,
    )
    shown = itertools.islice(events, limit)
    if args.json:
        for event in shown:
            print(json.dumps(event_json(event)))
        return 0
    rows = [event_row(event) for event in shown]
    if not rows:
        print(f"no events from {clock(since)} to {clock(until)}{_filters_text(args)}")
        return 0
    print(table(EVENT_HEADERS, rows, right=(4, 5)))
    if next(events, None) is not None:
        print(f"\nnewest {limit} shown; --limit N for more (0: all), or narrow --since")
    return 0


def _filters_text(args: argparse.Namespace) -> str:
    filters = [
        f"{name} {value}"
        for name, value in (("cidr", args.cidr), ("event", ",".join(args.event)), ("nacl", args.nacl))
        if value
    ]
    return f" matching {', '.join(filters)}" if filters else ""
