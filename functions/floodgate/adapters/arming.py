"""DynamoDB adapter: which alarms arm enforcement, and the pace of decisions triggered by flow-log batches.

STATE table (key `pk` / `sk`):
  ARMED     / <alarm name>   the alarm went to ALARM: enforcement is armed until `armed_until`
  DECISION  / PACE           when the last batch-triggered decision started

Both kinds expire via `expires_at` and every read checks the time itself (TTL deletes late, or never in
the emulator). Items are small: a read is one consistent query.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from floodgate.adapters.retry import Retrier, default_client, error_code
from floodgate.tables import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

ARMED_KEY = "ARMED"
PACE_KEY = ("DECISION", "PACE")
_RECORD_GRACE_S = 3600  # an armed record outlives its arming by an hour, for `status`


@dataclass(frozen=True, slots=True)
class Armed:
    """Enforcement armed by an alarm."""

    alarm_name: str
    armed_at: float
    armed_until: float
    reason: str


class Arming:
    """Arms and disarms enforcement per alarm, and paces batch-triggered decisions across invocations.
    Takes a low-level DynamoDB client (default: a new one)."""

    def __init__(self, table: str, client: Any = None, *, retrier: Retrier | None = None) -> None:
        self.table = table
        self._ddb = default_client("dynamodb", client)
        self._retry = retrier or Retrier()

    def arm(self, alarm_name: str, *, now: float, until: float, reason: str) -> Armed:
        """Arm (or re-arm, refreshing the deadline) on behalf of `alarm_name`."""
        armed = Armed(alarm_name, now, until, reason)
        item = {
            PARTITION_KEY: {"S": ARMED_KEY},
            SORT_KEY: {"S": alarm_name},
            "armed_at": {"N": repr(now)},
            "armed_until": {"N": repr(until)},
            "reason": {"S": reason or "-"},
            TTL_ATTRIBUTE: {"N": str(math.ceil(until) + _RECORD_GRACE_S)},
        }
        self._retry.call("PutItem armed", partial(self._ddb.put_item, TableName=self.table, Item=item))
        return armed

    def disarm(self, alarm_name: str) -> bool:
        """Withdraw `alarm_name`'s arming. False when it had none."""
        reply = self._retry.call(
            "DeleteItem armed",
            partial(
                self._ddb.delete_item,
                TableName=self.table,
                Key={PARTITION_KEY: {"S": ARMED_KEY}, SORT_KEY: {"S": alarm_name}},
                ReturnValues="ALL_OLD",
            ),
        )
        return bool(reply.get("Attributes"))

    def current(self, *, now: float) -> Armed | None:
        """The most recent arming still in force, if any (several alarms may arm at once)."""
        reply = self._retry.call(
            "Query armed",
            partial(
                self._ddb.query,
                TableName=self.table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": ARMED_KEY}},
                ConsistentRead=True,
            ),
        )
        active = [a for a in map(_armed, reply.get("Items", [])) if a.armed_until > now]
        return max(active, key=lambda a: a.armed_at, default=None)

    def claim_decision(self, *, now: float, interval_s: float) -> bool:
        """True for at most one caller per `interval_s`: that caller decides, the others leave it to them."""
        try:
            self._retry.call(
                "UpdateItem pace",
                partial(
                    self._ddb.update_item,
                    TableName=self.table,
                    Key={PARTITION_KEY: {"S": PACE_KEY[0]}, SORT_KEY: {"S": PACE_KEY[1]}},
                    UpdateExpression="SET decided_at = :now, expires_at = :expires",
                    ConditionExpression="attribute_not_exists(decided_at) OR decided_at <= :due",
                    ExpressionAttributeValues={
                        ":now": {"N": repr(now)},
                        ":due": {"N": repr(now - interval_s)},
                        ":expires": {"N": str(math.ceil(now + interval_s) + _RECORD_GRACE_S)},
                    },
                ),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _armed(item: Mapping[str, Any]) -> Armed:
    return Armed(
        alarm_name=item[SORT_KEY]["S"],
        armed_at=float(item["armed_at"]["N"]),
        armed_until=float(item["armed_until"]["N"]),
        reason=item["reason"]["S"],
    )
