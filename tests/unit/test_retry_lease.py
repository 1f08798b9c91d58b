"""No attempt starts, first or retry, once the caller says there is no time left; the engine says so when its
lease has less left than one EC2 call may take (the client's connect + read timeouts, plus clock slack)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from floodgate.adapters.ledger import Lease, LeaseLost, Ledger
from floodgate.adapters.retry import (
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    Backoff,
    NoTimeLeft,
    Retrier,
    call_budget_s,
    client_config,
)
from floodgate.engine.leases import Leases


def throttled(times: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def operation() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise ClientError(
                {"Error": {"Code": "RequestLimitExceeded"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
                "CreateNetworkAclEntry",
            )
        return "done"

    return calls, operation


def retrier() -> Retrier:
    return Retrier(Backoff(attempts=6, base_s=0.0, cap_s=0.0), sleep=lambda _: None)


@pytest.mark.parametrize(
    ("starts_allowed", "throttles", "calls_made", "outcome"),
    [
        (0, 3, 0, NoTimeLeft),  # no time left at all: not even a first call
        (1, 3, 1, NoTimeLeft),  # no time left after the first failure: no retry at all
        (2, 3, 2, NoTimeLeft),  # one retry allowed, still throttled: gives up after two calls
        (6, 3, 4, None),  # time enough: three throttles, the fourth call goes through
        (6, 9, 6, ClientError),  # time enough, but the backoff's six attempts run out first
    ],
)
def test_no_attempt_starts_when_there_is_no_time_left(
    starts_allowed: int, throttles: int, calls_made: int, outcome: type[Exception] | None
) -> None:
    calls, operation = throttled(throttles)
    asked: list[int] = []

    def keep_going() -> bool:
        asked.append(1)
        return len(asked) <= starts_allowed

    if outcome is None:
        assert retrier().call("op", operation, keep_going=keep_going) == "done"
    else:
        with pytest.raises(outcome):
            retrier().call("op", operation, keep_going=keep_going)
    assert len(calls) == calls_made


def test_the_adapters_clients_take_the_short_timeouts() -> None:
    config = client_config()
    assert (config.connect_timeout, config.read_timeout) == (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)


def test_a_calls_budget_is_its_clients_connect_and_read_timeouts() -> None:
    client = boto3.client("ec2", region_name="us-east-1", config=Config(connect_timeout=2, read_timeout=7))
    assert call_budget_s(client) == 9.0


def leases(call_budget_s: float, lease_s: float, clock: list[float]) -> Leases:
    # check() and margin_left() read only the lease and the clock: no ledger is needed.
    return Leases(
        cast("Ledger", None),
        actor="t",
        lease_s=lease_s,
        wait_s=1,
        now=lambda: clock[0],
        call_budget_s=call_budget_s,
    )


@pytest.mark.parametrize(
    ("call_budget_s", "left_s", "may_start"),
    [(5, 6.0, True), (5, 5.9, False), (20, 20.5, False), (20, 21.0, True)],
)
def test_a_nacl_call_starts_only_while_the_lease_outlasts_the_call_budget(
    call_budget_s: float, left_s: float, may_start: bool
) -> None:
    clock = [1000.0]
    held = leases(call_budget_s, 60, clock)
    lease = Lease("acl-1", "holder", "t", until=clock[0] + left_s)
    assert held.margin_left(lease)() is may_start
    if may_start:
        held.check(lease)
    else:
        with pytest.raises(LeaseLost):
            held.check(lease)


def test_a_client_whose_timeouts_could_outlast_the_lease_is_refused() -> None:
    with pytest.raises(ValueError, match="too long for a lease of 60s"):
        leases(120, 60, [0.0])  # botocore's default timeouts, 60 s + 60 s
    leases(28, 60, [0.0])  # half the lease, with the clock slack: still fine
