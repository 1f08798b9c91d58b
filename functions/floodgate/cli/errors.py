"""How the CLI fails: one clear line on stderr and a documented exit code, never a traceback."""

from __future__ import annotations

USAGE = 2  # bad arguments, unreadable input, refused requests
AWS = 1  # the AWS side failed: credentials, endpoint, throttling, missing resources


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
