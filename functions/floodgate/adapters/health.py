"""DynamoDB adapter: how current Floodgate is - the freshest flow-log record stored, the last decision, and
the stream ranges lost.

`floodgate status` reads these to say, in plain words, whether Floodgate is behind and whether its last
decision failed; the detector reads the decision record to measure how long an armed deployment has gone
without completing one (the DecisionAgeS metric).

STATE table (key `pk` / `sk`):
  HEALTH / INGEST     newest_end   the latest record end of any delivery stored (never later than when it
                                   was stored: a record stamped in the future cannot freeze it)
                      stored_at    when the delivery that set it was stored
  HEALTH / DECISION   at           when the last decision ended, completed or failed
                      ok, outcome  whether it completed, and what it did or why it failed, in a line
                      completed_at when the last decision that completed ended
                      notified_at  when a failure was last announced (one notice per FAILURE_NOTICE_EVERY_S)
  HEALTH / REPLAY     lost         how many failed stream ranges could not be read back (kinesis ingest)
                      lost_at      when the last one was found lost
                      last_lost    which one, and why, in a line

Small items, one write each per stored delivery, decision or lost range; no TTL (they are the current state).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from floodgate.adapters import dynamo
from floodgate.adapters.retry import Retrier, default_client
from floodgate.tables import PARTITION_KEY, SORT_KEY

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

HEALTH_KEY = "HEALTH"
INGEST_SK = "INGEST"
DECISION_SK = "DECISION"
REPLAY_SK = "REPLAY"
OUTCOME_LIMIT = 300  # characters of an outcome kept: a line, not a traceback
# A failing decision is retried with every delivery while armed (one per DECISION_PACE_S): on-call hears
# once per this long, not every twenty seconds.
FAILURE_NOTICE_EVERY_S = 600.0


@dataclass(frozen=True, slots=True)
class Health:
    """What the HEALTH items say; None where nothing was recorded yet."""

    newest_end: float | None = None
    stored_at: float | None = None
    decision_at: float | None = None
    decision_ok: bool | None = None
    outcome: str | None = None
    completed_at: float | None = None
    ranges_lost: int = 0  # failed stream ranges found trimmed from the stream, ever
    lost_at: float | None = None
    last_lost: str | None = None


class HealthRecords:
    """Reads and writes the HEALTH items. Takes a low-level DynamoDB client (default: a new one)."""

    def __init__(self, table: str, client: DynamoDBClient | None = None, *, retrier: Retrier | None = None):
        self.table = table
        self._ddb: DynamoDBClient = default_client("dynamodb", client)
        self._retry = retrier or Retrier()

    def stored(self, newest_end: float, *, now: float) -> bool:
        """Record a delivery stored at `now` whose latest record ended at `newest_end`: kept when it is the
        freshest yet. True when it was."""
        end = min(newest_end, now)
        updated = self._retry.call_if(
            "UpdateItem health ingest",
            partial(
                self._ddb.update_item,
                TableName=self.table,
                Key=_key(INGEST_SK),
                UpdateExpression="SET newest_end = :end, stored_at = :now",
                ConditionExpression="attribute_not_exists(newest_end) OR newest_end < :end",
                ExpressionAttributeValues=dynamo.item({":end": end, ":now": now}),
            ),
        )
        return updated is not None

    def decided(self, *, at: float, ok: bool, outcome: str) -> None:
        """Record the end of a decision: completed (`ok`) or failed, with what it did or why it failed."""
        assignments = "SET #at = :at, ok = :ok, outcome = :outcome" + (", completed_at = :at" if ok else "")
        self._retry.call(
            "UpdateItem health decision",
            partial(
                self._ddb.update_item,
                TableName=self.table,
                Key=_key(DECISION_SK),
                UpdateExpression=assignments,
                ExpressionAttributeNames={"#at": "at"},
                ExpressionAttributeValues=dynamo.item(
                    {":at": at, ":ok": ok, ":outcome": outcome[:OUTCOME_LIMIT]}
                ),
            ),
        )

    def range_lost(self, *, at: float, what: str) -> None:
        """Record a failed stream range that could not be read back: counted, and the latest one kept."""
        self._retry.call(
            "UpdateItem health replay",
            partial(
                self._ddb.update_item,
                TableName=self.table,
                Key=_key(REPLAY_SK),
                UpdateExpression="SET lost_at = :at, last_lost = :what ADD lost :one",
                ExpressionAttributeValues=dynamo.item({":at": at, ":what": what[:OUTCOME_LIMIT], ":one": 1}),
            ),
        )

    def claim_failure_notice(self, *, now: float, every_s: float = FAILURE_NOTICE_EVERY_S) -> bool:
        """True for at most one caller per `every_s`: that caller announces the failure."""
        claimed = self._retry.call_if(
            "UpdateItem health notice",
            partial(
                self._ddb.update_item,
                TableName=self.table,
                Key=_key(DECISION_SK),
                UpdateExpression="SET notified_at = :now",
                ConditionExpression="attribute_not_exists(notified_at) OR notified_at <= :due",
                ExpressionAttributeValues=dynamo.item({":now": now, ":due": now - every_s}),
            ),
        )
        return claimed is not None

    def read(self) -> Health:
        """Both items, in one consistent query."""
        params = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": dynamo.item({":pk": HEALTH_KEY}),
            "ConsistentRead": True,
        }
        found = {
            values[SORT_KEY]: values
            for values in map(
                dynamo.plain, dynamo.pages(self._retry, "Query health", self._ddb.query, params)
            )
        }
        ingest, decision = found.get(INGEST_SK, {}), found.get(DECISION_SK, {})
        replay = found.get(REPLAY_SK, {})
        ok = decision.get("ok")
        return Health(
            newest_end=_number(ingest.get("newest_end")),
            stored_at=_number(ingest.get("stored_at")),
            decision_at=_number(decision.get("at")),
            decision_ok=None if ok is None else bool(ok),
            outcome=None if decision.get("outcome") is None else str(decision["outcome"]),
            completed_at=_number(decision.get("completed_at")),
            ranges_lost=int(replay.get("lost", 0)),
            lost_at=_number(replay.get("lost_at")),
            last_lost=None if replay.get("last_lost") is None else str(replay["last_lost"]),
        )


def _key(sort_key: str) -> dict[str, Any]:
    return dynamo.item({PARTITION_KEY: HEALTH_KEY, SORT_KEY: sort_key})


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
