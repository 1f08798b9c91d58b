"""Arguments several live commands share: a CIDR, and a --since/--until window."""

from __future__ import annotations

import argparse

from floodgate.cli.errors import CliError
from floodgate.cli.times import WHEN_HELP, clock, parse_when
from floodgate.core.networks import InvalidCidr, canonical


def cidr_argument(text: str) -> str:
    """An argparse type: the canonical CIDR ("203.0.113.7" becomes "203.0.113.7/32")."""
    try:
        return canonical(text)
    except InvalidCidr as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_window_arguments(parser: argparse.ArgumentParser, *, since: str) -> None:
    parser.add_argument(
        "--since", metavar="WHEN", default=since, help=f"from this time (default: {since}); {WHEN_HELP}"
    )
    parser.add_argument(
        "--until", metavar="WHEN", default="now", help="up to this time (default: now); same forms"
    )


def window(args: argparse.Namespace, now: float) -> tuple[float, float]:
    """The --since/--until window in epoch seconds; a bad value is a usage error naming its option."""
    bounds = []
    for option, text in (("--since", args.since), ("--until", args.until)):
        try:
            bounds.append(parse_when(text, now))
        except ValueError as exc:
            raise CliError(f"{option}: {exc}") from None
    since, until = bounds
    if since >= until:
        raise CliError(f"--since ({clock(since)}) must be before --until ({clock(until)})")
    return since, until
