"""DynamoDB adapter: which alarms arm enforcement, and the pace of decisions triggered by flow-log batches.

STATE table (key `pk` / `sk`):
  ARMED     / <alarm name>   the alarm's last state change (`changed_at`): after ALARM, enforcement is armed
                             until `armed_until`; after OK the item stays, disarmed (armed_until 0), so that
                             an older ALARM delivered late (a Lambda retry, EventBridge's unordered
                             delivery) cannot re-arm
  DECISION  / PACE           when the last batch-triggered decision started

In the security account of an estate each member's alarms arm that member alone: its armings are kept
under `ARMED#<member account>` (`Arming(scope=account)`), the same items otherwise.

Both kinds expire via `expires_at` and every read checks the time itself (TTL deletes late, or never in
the emulator). Items are small: a read is one consistent query.

A recorded `changed_at` later than now + the clock skew (`clockSkew`) came from a wrong clock (the detector
refuses such events; an item written before it did may remain): any state change may replace it, so that
one event stamped 2099 cannot refuse every genuine one as stale for as long as the item lives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from floodgate.adapters import dynamo
from floodgate.adapters.retry import Retrier, default_client
from floodgate.core.durations import parse_duration
from floodgate.settings_table import BY_KEY
from floodgate.tables import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


ARMED_KEY = "ARMED"
PACE_KEY = ("DECISION", "PACE")
_RECORD_GRACE_S = 3600  # an armed record outlives its arming by an hour, for `status`
DEFAULT_CLOCK_SKEW_S = parse_duration(str(BY_KEY["clockSkew"].default))


@dataclass(frozen=True, slots=True)
class Armed:
    """Enforcement armed by an alarm."""

    alarm_name: str
    armed_at: float
    armed_until: float
    reason: str


class Arming:
    """Arms and disarms enforcement per alarm, and paces batch-triggered decisions across invocations.
    Takes a low-level DynamoDB client (default: a new one). `scope`: whose armings these are (a member
    account in the security account; empty: this deployment's own)."""

    def __init__(
        self,
        table: str,
        client: DynamoDBClient | None = None,
        *,
        retrier: Retrier | None = None,
        clock_skew_s: float = DEFAULT_CLOCK_SKEW_S,
        scope: str = "",
    ) -> None:
        self.table = table
        self.partition = f"{ARMED_KEY}#{scope}" if scope else ARMED_KEY
        self.clock_skew_s = clock_skew_s  # a state change stamped later than now + this is from a wrong clock
        self._ddb: DynamoDBClient = default_client("dynamodb", client)
        self._retry = retrier or Retrier()

    def arm(
        self, alarm_name: str, *, now: float, until: float, reason: str, changed_at: float | None = None
    ) -> Armed | None:
        """Arm (or re-arm, refreshing the deadline) on behalf of `alarm_name`. None when the alarm's state
        has changed since `changed_at` (default: now): this event is stale and changes nothing."""
        armed = Armed(alarm_name, now, until, reason)
        item = self._state_item(alarm_name, now=now, until=until, reason=reason, changed_at=changed_at)
        return armed if self._put_if_newer(item, now=now) is not None else None

    def disarm(self, alarm_name: str, *, now: float, changed_at: float | None = None) -> bool:
        """Withdraw `alarm_name`'s arming. False when it had none in force, or when this OK is stale."""
        item = self._state_item(alarm_name, now=now, until=0.0, reason="OK", changed_at=changed_at)
        previous = self._put_if_newer(item, now=now)
        return previous is not None and float(dynamo.plain(previous).get("armed_until", 0)) > now

    def _state_item(
        self, alarm_name: str, *, now: float, until: float, reason: str, changed_at: float | None
    ) -> dict[str, Any]:
        return dynamo.item(
            {
                PARTITION_KEY: self.partition,
                SORT_KEY: alarm_name,
                "armed_at": now,
                "armed_until": until,
                "changed_at": now if changed_at is None else changed_at,
                "reason": reason or "-",
                TTL_ATTRIBUTE: math.ceil(max(now, until)) + _RECORD_GRACE_S,
            }
        )

    def _put_if_newer(self, item: dict[str, Any], *, now: float) -> dict[str, Any] | None:
        """Write the alarm's state unless a later change is already recorded (one from the future does not
        count). The previous item ({} when there was none), or None when this one is stale."""
        reply = self._retry.call_if(
            "PutItem armed",
            partial(
                self._ddb.put_item,
                TableName=self.table,
                Item=item,
                ConditionExpression=(
                    "attribute_not_exists(changed_at) OR changed_at <= :changed OR changed_at > :future"
                ),
                ExpressionAttributeValues={
                    ":changed": item["changed_at"],
                    **dynamo.item({":future": now + self.clock_skew_s}),
                },
                ReturnValues="ALL_OLD",
            ),
        )
        if reply is None:
            return None
        previous: dict[str, Any] = reply.get("Attributes", {})
        return previous

    def current(self, *, now: float) -> Armed | None:
        """The most recent arming still in force, if any (several alarms may arm at once)."""
        return next(iter(self.in_force(now=now)), None)

    def in_force(self, *, now: float) -> tuple[Armed, ...]:
        """Every arming still in force, the most recent first."""
        params = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": dynamo.item({":pk": self.partition}),
            "ConsistentRead": True,
        }
        items = dynamo.pages(self._retry, "Query armed", self._ddb.query, params)
        active = [a for a in map(_armed, items) if a.armed_until > now]
        return tuple(sorted(active, key=lambda a: a.armed_at, reverse=True))

    def claim_decision(self, *, now: float, interval_s: float) -> bool:
        """True for at most one caller per `interval_s`: that caller decides, the others leave it to them."""
        claimed = self._retry.call_if(
            "UpdateItem pace",
            partial(
                self._ddb.update_item,
                TableName=self.table,
                Key=dynamo.item({PARTITION_KEY: PACE_KEY[0], SORT_KEY: PACE_KEY[1]}),
                UpdateExpression="SET decided_at = :now, expires_at = :expires",
                ConditionExpression="attribute_not_exists(decided_at) OR decided_at <= :due",
                ExpressionAttributeValues=dynamo.item(
                    {
                        ":now": now,
                        ":due": now - interval_s,
                        ":expires": math.ceil(now + interval_s) + _RECORD_GRACE_S,
                    }
                ),
            ),
        )
        return claimed is not None


def _armed(item: Mapping[str, Any]) -> Armed:
    values = dynamo.plain(item)
    return Armed(
        alarm_name=values[SORT_KEY],
        armed_at=float(values["armed_at"]),
        armed_until=float(values["armed_until"]),
        reason=values["reason"],
    )
