"""Retries stop when the caller says there is no time left (a NACL write must not start past its lease's
margin), and the adapters' clients time out within that margin."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from floodgate.adapters.retry import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, Backoff, Retrier, client_config
from floodgate.engine.leases import _LEASE_MARGIN_S


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
    ("allowed_retries", "throttles", "calls_made", "succeeds"),
    [
        (0, 3, 1, False),  # no time left after the first failure: no retry at all
        (1, 3, 2, False),  # one retry allowed, still throttled: gives up after two calls
        (5, 3, 4, True),  # time enough: three throttles, the fourth call goes through
        (5, 9, 6, False),  # time enough, but the backoff's six attempts run out first
    ],
)
def test_retries_stop_when_there_is_no_time_left(
    allowed_retries: int, throttles: int, calls_made: int, succeeds: bool
) -> None:
    calls, operation = throttled(throttles)
    asked: list[int] = []

    def keep_going() -> bool:
        asked.append(1)
        return len(asked) <= allowed_retries

    if succeeds:
        assert retrier().call("op", operation, keep_going=keep_going) == "done"
    else:
        with pytest.raises(ClientError, match="RequestLimitExceeded"):
            retrier().call("op", operation, keep_going=keep_going)
    assert len(calls) == calls_made


def test_one_call_started_within_the_lease_margin_ends_before_the_lease() -> None:
    config = client_config()
    assert (config.connect_timeout, config.read_timeout) == (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
    assert CONNECT_TIMEOUT_S + READ_TIMEOUT_S <= _LEASE_MARGIN_S
