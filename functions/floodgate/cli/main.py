"""Entry point of the `floodgate` command (also `python -m floodgate`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from floodgate import __version__
from floodgate.cli import act, analyze, log, report, show, status
from floodgate.cli.errors import USAGE, CliError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message}", USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="floodgate", description="Floodgate: deny concentrated floods in VPC Network ACLs.")
    parser.add_argument("--version", action="version", version=f"floodgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    analyze.register(commands)
    status.register(commands)
    log.register(commands)
    show.register(commands)
    act.register(commands)
    report.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code: int = args.run(args)
        return code
    except CliError as exc:
        print(f"floodgate: {exc}" if not str(exc).startswith("floodgate") else str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("floodgate: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
