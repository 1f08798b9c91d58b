"""Entry point of the `floodgate` command (also `python -m floodgate`)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from floodgate import __version__
from floodgate.cli.errors import USAGE, CliError

# Each command and the module that defines it. Only the module of the command being run is imported: the
# offline `analyze` must not pay ~0.2 s for boto3 and the engine that the AWS-facing commands load.
COMMAND_MODULES = {
    "analyze": "floodgate.cli.analyze",
    "status": "floodgate.cli.status",
    "log": "floodgate.cli.log",
    "show": "floodgate.cli.show",
    "block": "floodgate.cli.act",
    "unblock": "floodgate.cli.act",
    "reconcile": "floodgate.cli.act",
    "replay": "floodgate.cli.replay",
    "report": "floodgate.cli.report",
    "timeline": "floodgate.cli.scaling_race",
}


# glibc's mallopt parameters (malloc.h), and the values a command runs with: freed memory stays in the heap.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES, HEAP_ALLOCATION_BYTES = 256 << 20, 64 << 20


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse instead of handing it back to the system at once.

    `analyze`'s numpy temporaries are block-sized (100 KB to a few MB): by default glibc maps each one afresh
    and unmaps it when freed (or trims the heap), so every block pays its page faults again. On the
    spoofed-flood benchmark that was ~45,000 faults and 0.11-0.17 s of system time in ~0.8 s; kept, ~12,700
    faults and 0.05-0.08 s, for +3 MB of peak RSS. Where there is no glibc (no mallopt) nothing changes.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
    mallopt(M_MMAP_THRESHOLD, HEAP_ALLOCATION_BYTES)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message}", USAGE)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for `command` alone when it is known, else for every command (for --help and errors)."""
    parser = _Parser(prog="floodgate", description="Floodgate: deny concentrated floods in VPC Network ACLs.")
    parser.add_argument("--version", action="version", version=f"floodgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    wanted = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else COMMAND_MODULES.values()
    for module in dict.fromkeys(wanted):
        importlib.import_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in arguments if not a.startswith("-")), None)
    try:
        args = build_parser(command).parse_args(arguments)
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


def entry() -> NoReturn:
    """The `floodgate` command and `python -m floodgate`: `main`, then out at once.

    A command is one short process: the cyclic collector stays off (its passes over numpy's and boto3's
    module objects cost ~5% of an analyze of a million records), and the process leaves without tearing the
    interpreter down module by module (another ~10%); the system reclaims everything either way. For the
    same reason freed memory stays with the process (`keep_freed_memory`).
    """
    gc.disable()
    keep_freed_memory()
    code = main()
    for stream in (sys.stdout, sys.stderr):
        # A reader that went away, or a stream already closed: nothing left to say.
        with contextlib.suppress(BrokenPipeError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
