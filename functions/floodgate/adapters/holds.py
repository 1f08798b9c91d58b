"""DynamoDB adapter: the capacity holds in force, one item per Auto Scaling group in the STATE table.

  HOLD / <group name>   held_at, until (held_at + the maximum), owner (the alarm that armed), reason,
                        changed (whether Floodgate suspended the process: only then does it resume it),
                        desired (the capacity it was held at)

The item is written *before* the group is touched and deleted only after it is released, so a run that dies
in between leaves a record the expirer finds and releases. Claims and drops are conditional: one run places
a group's hold, one run releases it, and each is logged once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from floodgate.adapters import dynamo
from floodgate.adapters.retry import Retrier, default_client
from floodgate.tables import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

HOLD_KEY = "HOLD"
_RECORD_GRACE_S = 86400  # TTL far past the maximum: the expirer, not TTL, ends holds


@dataclass(frozen=True, slots=True)
class HoldRecord:
    group: str
    held_at: float
    until: float
    owner: str
    reason: str
    changed: bool
    desired: int


class HoldRecords:
    """Takes a low-level DynamoDB client (default: a new one)."""

    def __init__(self, table: str, client: Any = None, *, retrier: Retrier | None = None) -> None:
        self.table = table
        self._ddb = default_client("dynamodb", client)
        self._retry = retrier or Retrier()

    def claim(self, record: HoldRecord) -> bool:
        """Record a hold about to be placed; False when the group is already held."""
        item = {
            PARTITION_KEY: {"S": HOLD_KEY},
            SORT_KEY: {"S": record.group},
            "held_at": {"N": repr(record.held_at)},
            "until": {"N": repr(record.until)},
            "owner": {"S": record.owner},
            "reason": {"S": record.reason or "-"},
            "changed": {"BOOL": record.changed},
            "desired": {"N": str(record.desired)},
            TTL_ATTRIBUTE: {"N": str(math.ceil(record.until) + _RECORD_GRACE_S)},
        }
        return dynamo.put_new(self._retry, "PutItem hold", self._ddb.put_item, self.table, item)

    def in_force(self) -> list[HoldRecord]:
        reply = self._retry.call(
            "Query holds",
            partial(
                self._ddb.query,
                TableName=self.table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": HOLD_KEY}},
                ConsistentRead=True,
            ),
        )
        return [_record(item) for item in reply.get("Items", [])]

    def drop(self, group: str) -> HoldRecord | None:
        """Forget a released hold; None when another run released it first."""
        reply = self._retry.call_if(
            "DeleteItem hold",
            partial(
                self._ddb.delete_item,
                TableName=self.table,
                Key={PARTITION_KEY: {"S": HOLD_KEY}, SORT_KEY: {"S": group}},
                ConditionExpression="attribute_exists(pk)",
                ReturnValues="ALL_OLD",
            ),
        )
        if reply is None or "Attributes" not in reply:
            return None
        return _record(reply["Attributes"])


def _record(item: Mapping[str, Any]) -> HoldRecord:
    return HoldRecord(
        group=item[SORT_KEY]["S"],
        held_at=float(item["held_at"]["N"]),
        until=float(item["until"]["N"]),
        owner=item["owner"]["S"],
        reason=item["reason"]["S"],
        changed=bool(item["changed"]["BOOL"]),
        desired=int(item["desired"]["N"]),
    )
