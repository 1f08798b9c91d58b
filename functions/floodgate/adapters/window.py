"""DynamoDB adapter: the shared sliding traffic window, in the STATE table.

Deliveries arrive per network interface and in parallel, so no invocation sees all the traffic: each one
stores the bounded summary of its own batch, and a decision merges the summaries of every delivery that
arrived within the window (`core.window` does the packing and merging).

STATE table (key `pk` / `sk`):
  WINDOW#<minute>  /  <delivery-id>#<part:03d>     one part of one delivery's bounded summary
    arrived     N  epoch seconds of the first write; a redelivery does not move it
    parts       N  how many parts the delivery has (it counts only when all of them are there)
    summary     B  the packed part (`core.window`)
    expires_at  N  arrived + window + one minute: TTL removes it eventually, reads skip it from then on

`<minute>` is the minute of the delivery's newest log event, not of its arrival: Lambda's retry of a failed
invocation comes minutes later with the same batch, and must find the same keys (each part is a conditional
put) instead of counting the batch twice. A read therefore looks at the minutes of the window plus the
late-delivery allowance, and keeps the deliveries that *arrived* within the window.

Writes per batch: one per part, at most `core.window.max_parts` - fixed by configuration (prefix levels x
summary capacity), whatever the number of distinct sources in the batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from floodgate.adapters import dynamo
from floodgate.adapters.retry import Retrier, default_client
from floodgate.core.summary import TrafficSummary
from floodgate.core.window import BatchDigest, CorruptPart, merge_batches, open_batch, pack_summary
from floodgate.tables import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

_log = logging.getLogger(__name__)

WINDOW_PREFIX = "WINDOW#"
BUCKET_S = 60
# A log event's timestamp is its record's *start*: with the 600 s aggregation interval and delivery to
# CloudWatch Logs "typically around 5 minutes" later, the newest timestamp of a batch can be ~15 minutes
# old on arrival. A batch older than the window plus this is history, not the traffic a decision is about.
LATE_DELIVERY_S = 1200
_EXPIRY_SLACK_S = 60
_PARALLEL_QUERIES = 8


@dataclass(frozen=True, slots=True)
class WindowWrite:
    """What storing one batch did."""

    parts: int  # parts the batch packed into
    written: int  # parts written now (fewer on a redelivery: earlier attempts wrote the others)
    stale: bool = False  # too old to matter: nothing written


class TrafficWindow:
    """Stores batch summaries and merges those of the last `window_s` seconds back into one summary.

    `new_summary` makes an empty summary of the configured capacity and prefix caps; the batches and the
    merged window use the same one. Takes a low-level DynamoDB client (default: a new one).
    """

    def __init__(
        self,
        table: str,
        *,
        window_s: int,
        new_summary: Callable[[], TrafficSummary],
        client: Any = None,
        retrier: Retrier | None = None,
    ) -> None:
        self.table = table
        self.window_s = window_s
        self.new_summary = new_summary
        self._ddb = default_client("dynamodb", client)
        self._retry = retrier or Retrier()

    def add(
        self, delivery_id: str, newest_event_ms: int, summary: TrafficSummary, *, now: float
    ) -> WindowWrite:
        """Store one batch's summary. Idempotent: a redelivery of the batch writes only what is missing."""
        # A batch stamped ahead of our clock goes to the current minute, where reads look.
        newest_s = min(newest_event_ms / 1000, now)
        if newest_s < now - self.window_s - LATE_DELIVERY_S:
            return WindowWrite(parts=0, written=0, stale=True)
        parts = pack_summary(summary)
        bucket = _bucket(newest_s)
        written = 0
        for index, part in enumerate(parts):
            item = dynamo.item(
                {
                    PARTITION_KEY: f"{WINDOW_PREFIX}{bucket}",
                    SORT_KEY: f"{delivery_id}#{index:03d}",
                    "arrived": round(now, 3),
                    "parts": len(parts),
                    "summary": part,
                    TTL_ATTRIBUTE: math.ceil(now + self.window_s + _EXPIRY_SLACK_S),
                }
            )
            stored = self._retry.call_if(
                "PutItem window",
                partial(
                    self._ddb.put_item,
                    TableName=self.table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk)",
                ),
            )
            if stored is not None:  # else an earlier attempt at this same delivery wrote this part
                written += 1
        return WindowWrite(parts=len(parts), written=written)

    def read(self, *, now: float) -> TrafficSummary:
        """The merged summary of every complete delivery that arrived in the last `window_s` seconds.

        Eventually consistent reads: a delivery stored less than a second ago may be missed, and is counted
        by the next decision; the window itself spans minutes.
        """
        since = now - self.window_s
        # A batch is filed under its newest timestamp, which may be up to window + LATE_DELIVERY_S older than
        # its arrival; it counts for a window after arrival, so the oldest bucket to look at is that far back.
        first = _bucket(since - self.window_s - LATE_DELIVERY_S)
        buckets = range(first, _bucket(now) + BUCKET_S, BUCKET_S)
        query = partial(self._bucket_items, since=since, now=now)
        with ThreadPoolExecutor(max_workers=min(_PARALLEL_QUERIES, len(buckets))) as pool:
            pages = list(pool.map(query, buckets))
        deliveries: dict[str, dict[int, bytes]] = {}
        expected: dict[str, int] = {}
        for items in pages:
            for item in items:
                delivery_id, _, index = item[SORT_KEY]["S"].rpartition("#")
                deliveries.setdefault(delivery_id, {})[int(index)] = item["summary"]["B"]
                expected[delivery_id] = int(item["parts"]["N"])
        digests: list[BatchDigest] = []
        for delivery_id, parts in sorted(deliveries.items()):
            if len(parts) != expected[delivery_id]:
                continue  # still being written, or its writer failed and Lambda's retry will finish it
            try:
                digests.append(open_batch([parts[index] for index in sorted(parts)]))
            except CorruptPart as exc:
                _log.warning("window delivery %s skipped: %s", delivery_id, exc)
        window = self.new_summary()
        merge_batches(window, digests)
        return window

    def _bucket_items(self, bucket: int, *, since: float, now: float) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "FilterExpression": "arrived >= :since AND expires_at > :now",
            "ProjectionExpression": "sk, parts, summary",
            "ExpressionAttributeValues": dynamo.item(
                {":pk": f"{WINDOW_PREFIX}{bucket}", ":since": round(since, 3), ":now": math.floor(now)}
            ),
        }
        return list(dynamo.pages(self._retry, "Query window", self._ddb.query, params))


def _bucket(epoch_s: float) -> int:
    return int(epoch_s // BUCKET_S * BUCKET_S)
