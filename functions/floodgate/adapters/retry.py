"""Capped exponential backoff with full jitter for AWS calls, and which failures are worth another try.

The adapters build their boto3 clients with botocore's own retries turned down to a single attempt and retry
here instead: one place decides, with knowledge of the operation, whether a failure is transient. (The
emulator answers a delete of a missing NACL entry with HTTP 500, which botocore would retry blindly.)
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError  # connect timeouts, no endpoint
from botocore.parsers import ResponseParserError

_log = logging.getLogger(__name__)
T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        "RequestLimitExceeded",  # EC2
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",  # DynamoDB
        "TransactionInProgressException",  # DynamoDB: same client token still running
    }
)
SERVER_ERROR_CODES = frozenset(
    {"InternalError", "InternalFailure", "InternalServerError", "ServiceUnavailable", "Unavailable"}
)


CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 3  # with the connect timeout, how long one attempt may take: the engine's lease margin


class NoTimeLeft(Exception):
    """The caller's time ran out (`keep_going` said no) before an attempt could start; carries the last
    failure, if there was one."""


def client_config() -> Config:
    """botocore config for the adapters' default clients: standard retry mode, one attempt (see above), and
    short timeouts: the engine starts a NACL call only while its lease has at least their sum left."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
    )


def default_client(service: str, client: Any = None) -> Any:
    """`client`, or the production client of `service` with the adapters' config. boto3 loads here, on first
    use: what imports an adapter without making a client (the CLI's offline commands) does not pay for it."""
    if client is not None:
        return client
    import boto3  # noqa: PLC0415 - lazy on purpose

    return boto3.client(service, config=client_config())


def call_budget_s(client: Any) -> float:
    """The longest one attempt of `client` may take: its connect timeout plus its read timeout."""
    config = client.meta.config
    return float(config.connect_timeout) + float(config.read_timeout)


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def is_server_error(exc: BaseException) -> bool:
    """HTTP 5xx, including an error page the parser could not read."""
    if isinstance(exc, ResponseParserError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return int(status) >= 500 or error_code(exc) in SERVER_ERROR_CODES
    return False


def is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx and connection failures: the same request may well succeed in a moment."""
    return (
        isinstance(exc, HTTPClientError | BotocoreConnectionError)
        or error_code(exc) in THROTTLING_CODES
        or is_server_error(exc)
    )


@dataclass(frozen=True, slots=True)
class Backoff:
    """Attempt n (from 0) waits uniformly between 0 and min(cap, base * 2^n) before the next one."""

    attempts: int = 6
    base_s: float = 0.05
    cap_s: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2.0**attempt))


class Retrier:
    """Runs a call, retrying transient failures with `backoff`; anything else is raised at once."""

    def __init__(
        self,
        backoff: Backoff | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._rng = rng or random.Random()

    def call(
        self,
        what: str,
        operation: Callable[[], T],
        *,
        transient: Callable[[BaseException], bool] = is_transient,
        keep_going: Callable[[], bool] | None = None,
    ) -> T:
        """`keep_going`, when given, is asked before each attempt (a retry's after its pause): when it says
        no, NoTimeLeft is raised from the last failure (a NACL write must not start past its lease's margin).
        """
        if keep_going is not None and not keep_going():
            raise NoTimeLeft(f"{what}: no time left to start")
        for attempt in range(self.backoff.attempts - 1):
            try:
                return operation()
            except Exception as exc:
                if not transient(exc):
                    raise
                self.pause(attempt, f"{what} failed ({_summary(exc)})")
                if keep_going is not None and not keep_going():
                    _log.warning("%s: no time left for another try", what)
                    raise NoTimeLeft(f"{what}: {_summary(exc)}, no time left for another try") from exc
        return operation()

    def call_if(self, what: str, operation: Callable[[], T]) -> T | None:
        """`call` for a conditional write: None when DynamoDB says its condition does not hold."""
        try:
            return self.call(what, operation)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise

    def pause(self, attempt: int, why: str) -> None:
        """Wait before retry number `attempt` + 1."""
        delay = self.backoff.delay(attempt, self._rng)
        _log.warning("%s: retry %d in %.3fs", why, attempt + 1, delay)
        self._sleep(delay)


def _summary(exc: BaseException) -> str:
    return error_code(exc) or type(exc).__name__
