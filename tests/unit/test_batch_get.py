"""`dynamo.batch_get`: keys DynamoDB leaves unprocessed (throttling) are asked again, never dropped.

moto never leaves keys unprocessed, so the replies are scripted here: a client that answers part of each
request, as DynamoDB does under throttling.
"""

from __future__ import annotations

from typing import Any

import pytest

from floodgate.adapters import dynamo
from floodgate.adapters.ledger import Ledger, LedgerError
from floodgate.adapters.retry import Backoff, Retrier

TABLE = "state"


class Throttled:
    """Answers at most `answers` keys per call (those in `items` exist) and leaves the rest unprocessed."""

    def __init__(self, items: dict[str, dict[str, Any]], answers: int) -> None:
        self.items, self.answers = items, answers
        self.calls: list[int] = []  # keys asked per call

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        request = RequestItems[TABLE]
        assert request["ConsistentRead"] is True
        keys = request["Keys"]
        self.calls.append(len(keys))
        answered, left = keys[: self.answers], keys[self.answers :]
        found = [self.items[key["pk"]["S"]] for key in answered if key["pk"]["S"] in self.items]
        reply: dict[str, Any] = {"Responses": {TABLE: found}}
        if left:
            reply["UnprocessedKeys"] = {TABLE: {"Keys": left, "ConsistentRead": True}}
        return reply


def _retrier(attempts: int = 6) -> Retrier:
    return Retrier(Backoff(attempts=attempts, base_s=0.0, cap_s=0.0), sleep=lambda _: None)


def _key(name: str) -> dict[str, Any]:
    return {"pk": {"S": name}, "sk": {"S": "X"}}


def test_unprocessed_keys_are_asked_again_until_every_one_is_answered() -> None:
    items = {f"k{n}": {**_key(f"k{n}"), "n": {"N": str(n)}} for n in range(0, 250, 2)}  # every other exists
    client = Throttled(items, answers=40)
    found = dynamo.batch_get(_retrier(), client, TABLE, [_key(f"k{n}") for n in range(250)])
    assert sorted(int(item["n"]["N"]) for item in found) == list(range(0, 250, 2))
    # 100 keys per call at most; each call of a chunk asks only what the previous one left
    assert client.calls == [100, 60, 20, 100, 60, 20, 50, 10]


def test_keys_still_unprocessed_after_every_retry_are_an_error_not_a_short_answer() -> None:
    client = Throttled({}, answers=0)
    with pytest.raises(dynamo.Unprocessed, match="left 3 keys of state unread"):
        dynamo.batch_get(_retrier(attempts=2), client, TABLE, [_key(f"k{n}") for n in range(3)])
    assert client.calls == [3, 3, 3]  # the first request and two retries


def test_the_ledger_reports_unread_offence_records_as_its_own_error() -> None:
    client: Any = Throttled({}, answers=0)
    ledger = Ledger(TABLE, "log", client, retrier=_retrier(attempts=1))
    with pytest.raises(LedgerError, match="offence records unread"):
        ledger.offences(["203.0.113.7/32"])
