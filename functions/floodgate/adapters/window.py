"""DynamoDB adapter: the shared sliding traffic window, in the STATE table, compacted as it fills.

Deliveries arrive per network interface and in parallel, so no invocation sees all the traffic: each one
stores the bounded summary of its own batch, and a decision merges the summaries of every delivery that
arrived within the window (`core.window` does the packing and merging; only sums are stored, so the merge
does not depend on how the traffic was split nor on the order it came in).

Compaction. Deliveries are filed by arrival minute, in arrival order. Writers (after COMPACT_AFTER settled
deliveries, or once a minute is over) and reads merge, per minute, the deliveries that settled (arrived
more than `SETTLE_S` ago, every part written) with the minute's newest merged version into a new merged
version, written back; later reads take the newest merged version and only the deliveries filed after its
mark. So a decision reads about two items per minute of window plus a few recent deliveries, whatever the
number of deliveries the window holds. A container keeps the merged versions it opened and their summed
counters: a warm decision opens and adds only the versions written since the last one and the deliveries
after their marks. A writer whose parts landed after a merge ran past its arrival (a
put delayed beyond SETTLE_S) files them again.

Sharding (`shards`, FLOODGATE_WINDOW_SHARDS): each minute is `shards` partitions, WINDOW#<minute> for shard 0
(the only one when shards is 1) and WINDOW#<minute>#<shard> for the others, so that parallel writers (the
Kinesis path's shards) do not all write one partition key. A writer names its shard; a read merges every
shard of every minute; compaction is per shard (each partition has its own merged versions).

STATE table (key `pk` / `sk`):
  WINDOW#<minute> / R#<arrived ms>#<delivery-id>#<part:03d>   one part of one delivery's summary
  WINDOW#<minute> / M#<mark ms>#<part:03d>                    one part of the merged summary of every
                                                              delivery of the minute filed up to `mark`
    deliveries  SS (part 000) the ids of the deliveries merged in
    parts       N  how many parts the delivery (or merged version) has: it counts only when all are there
    summary     B  the packed part (`core.window`)
    expires_at  N  the minute's end + window + one minute: TTL removes it eventually
  DELIVERY#<delivery-id> / WINDOW                            where a delivery was filed
    filed       S  its minute and arrival: Lambda's retry of the batch (minutes later, same delivery id)
                   rewrites the same keys, conditionally, instead of counting the batch twice
    expires_at  N  six hours on: the longest an asynchronous event is retried

Writes per batch: one marker, then one per part, at most `core.window.max_parts` - fixed by configuration
(prefix levels x summary capacity), whatever the number of distinct sources in the batch.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from floodgate.adapters import dynamo
from floodgate.adapters.retry import Retrier, default_client
from floodgate.core.summary import TrafficSummary
from floodgate.core.window import (
    BatchDigest,
    CorruptPart,
    LevelSums,
    merge_batches,
    open_batch,
    pack_summary,
)
from floodgate.tables import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

_log = logging.getLogger(__name__)

WINDOW_PREFIX = "WINDOW#"
DELIVERY_PREFIX = "DELIVERY#"
BUCKET_S = 60
# A log event's timestamp is its record's *start*: with the 600 s aggregation interval and delivery to
# CloudWatch Logs "typically around 5 minutes" later, a record can be ~15 minutes old on arrival. Records
# older than the window plus this are history, not the traffic a decision is about (`DetectionService`).
LATE_DELIVERY_S = 1200
# A delivery stamped this long ago has all its parts written, or its writer failed (it then counts once
# Lambda's retry completes it, and merging stops before it until then).
SETTLE_S = 3
COMPACT_AFTER = 4  # settled deliveries of one minute left out of its merge before a writer merges them
MARKER_TTL_S = 6 * 3600
_EXPIRY_SLACK_S = 60
_PARALLEL_QUERIES = 8
_OPENED_KEPT = 64  # merged versions kept opened per container: a window's minutes, a few times over
_RAW, _MERGED = "R#", "M#"


@dataclass(frozen=True, slots=True)
class WindowWrite:
    """What storing one batch did."""

    parts: int  # parts the batch packed into
    written: int  # parts written now (fewer on a redelivery: earlier attempts wrote the others)


@dataclass(frozen=True, slots=True)
class ReadCost:
    """What one read of the window cost in DynamoDB terms (the benchmark reports it)."""

    items: int = 0
    bytes: int = 0
    merged_written: int = 0  # merged parts written back by this read


@dataclass(slots=True)
class _Bucket:
    """One minute of the window as read: its newest complete merged version and the deliveries after it."""

    minute: int
    shard: int = 0
    mark_ms: int = -1
    merged: BatchDigest | None = None
    merged_ids: set[str] = field(default_factory=set)  # the deliveries the merged version holds
    stale_versions: list[str] = field(default_factory=list)  # sort keys of the merged parts read
    deliveries: dict[str, dict[int, bytes]] = field(default_factory=dict)  # "<arrived ms>#<id>" -> parts
    expected: dict[str, int] = field(default_factory=dict)
    items: int = 0  # items and summary bytes the queries returned
    bytes: int = 0
    merged_written: int = 0


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
        shards: int = 1,
        scope: str = "",
    ) -> None:
        self.table = table
        # A window of its own in the same table (the security account keeps one per member account).
        self.scope = scope
        self.window_s = window_s
        self.shards = shards
        self.new_summary = new_summary
        self._ddb = default_client("dynamodb", client)
        self._retry = retrier or Retrier()
        self.last_read = ReadCost()
        self._opened: dict[tuple[int, int, int], tuple[BatchDigest | None, set[str]]] = {}
        self._opened_lock = threading.Lock()
        # The level sums of the merged versions the last read used, kept across warm invocations: the next
        # read adds the versions written since and takes away the ones it no longer reads.
        self._sums = LevelSums()
        self._summed: dict[tuple[int, int, int], BatchDigest] = {}

    def add(self, delivery_id: str, summary: TrafficSummary, *, now: float, shard: int = 0) -> WindowWrite:
        """Store one batch's summary in `shard` (0 .. shards-1; a redelivery must name the same one).
        Idempotent: a redelivery of the batch writes only what is missing."""
        if not 0 <= shard < self.shards:
            raise ValueError(f"window shard {shard} is outside 0..{self.shards - 1}")
        parts = pack_summary(summary)
        filed = self._file(delivery_id, now)
        written = self._write_parts(delivery_id, filed, parts, shard)
        minute, _, arrived = filed.partition("#")
        mark = self._newest_mark(int(minute), shard) if written else -1
        if mark >= int(arrived) and delivery_id not in self._merged_ids(int(minute), shard, mark):
            # A merge ran past our arrival before our parts landed (a put delayed beyond SETTLE_S): those
            # parts would never be read. File the delivery again, after that mark, where reads find it.
            filed = self._file(delivery_id, max(now, (mark + 1) / 1000), again=True)
            written += self._write_parts(delivery_id, filed, parts, shard)
        return WindowWrite(parts=len(parts), written=written)

    def compact(self, *, now: float, shard: int = 0) -> int:
        """Merge the settled deliveries of the current and the previous minute into new merged versions when
        enough have gathered (COMPACT_AFTER), or the minute is over: so that a decision, whenever it comes,
        reads few items. Returns the merged parts written."""
        written = 0
        current = _bucket(now)
        for minute in (current - BUCKET_S, current):
            over = minute + BUCKET_S + SETTLE_S <= now
            waiting = self._settled_unmerged(minute, shard, now=now)
            if waiting >= COMPACT_AFTER or (over and waiting):
                bucket = self._read_bucket((minute, shard))
                self._settle(bucket, now=now)
                written += bucket.merged_written
        return written

    def _file(self, delivery_id: str, now: float, *, again: bool = False) -> str:
        """Where the delivery's parts go, "<minute>#<arrived ms>": chosen now, or by an earlier attempt."""
        filed = f"{_bucket(now)}#{math.floor(now * 1000):013d}"
        key = {PARTITION_KEY: {"S": f"{DELIVERY_PREFIX}{delivery_id}"}, SORT_KEY: {"S": "WINDOW"}}
        marker = {**key, "filed": {"S": filed}, TTL_ATTRIBUTE: {"N": str(math.ceil(now + MARKER_TTL_S))}}
        put = partial(self._ddb.put_item, TableName=self.table, Item=marker)
        if again:
            self._retry.call("PutItem window delivery", put)
            return filed
        if dynamo.put_new(self._retry, "PutItem window delivery", self._ddb.put_item, self.table, marker):
            return filed
        known = self._retry.call(
            "GetItem window delivery",
            partial(self._ddb.get_item, TableName=self.table, Key=key, ConsistentRead=True),
        )
        return str(known.get("Item", {}).get("filed", {}).get("S", filed))  # a redelivery: the same keys

    def _write_parts(self, delivery_id: str, filed: str, parts: tuple[bytes, ...], shard: int) -> int:
        minute, _, arrived = filed.partition("#")
        expires = str(math.ceil(int(minute) + BUCKET_S + self.window_s + _EXPIRY_SLACK_S))
        written = 0
        for index, part in enumerate(parts):
            item = {
                PARTITION_KEY: {"S": window_key(int(minute), shard, self.scope)},
                SORT_KEY: {"S": f"{_RAW}{arrived}#{delivery_id}#{index:03d}"},
                "parts": {"N": str(len(parts))},
                "summary": {"B": part},
                TTL_ATTRIBUTE: {"N": expires},
            }
            # Not written when an earlier attempt at this same delivery wrote this part.
            if dynamo.put_new(self._retry, "PutItem window", self._ddb.put_item, self.table, item):
                written += 1
        return written

    def _newest_mark(self, minute: int, shard: int) -> int:
        """The mark of the minute's newest merged version (-1: none), from its keys only."""
        marks = [
            int(item[SORT_KEY]["S"][len(_MERGED) :].partition("#")[0])
            for item in self._keys(minute, shard, "begins_with(sk, :after)", _MERGED)
        ]
        return max(marks, default=-1)

    def _merged_ids(self, minute: int, shard: int, mark: int) -> set[str]:
        """The deliveries the merged version `mark` of the minute holds."""
        page = self._retry.call(
            "GetItem window merged",
            partial(
                self._ddb.get_item,
                TableName=self.table,
                Key={
                    PARTITION_KEY: {"S": window_key(minute, shard, self.scope)},
                    SORT_KEY: {"S": f"{_MERGED}{mark:013d}#000"},
                },
                ProjectionExpression="deliveries",
                ConsistentRead=True,
            ),
        )
        return set(page.get("Item", {}).get("deliveries", {}).get("SS", []))

    def _settled_unmerged(self, minute: int, shard: int, *, now: float) -> int:
        """How many deliveries of the minute, stamped SETTLE_S ago or more, the newest merge left out."""
        mark = self._newest_mark(minute, shard)
        after = f"{_RAW}{mark:013d}#~" if mark >= 0 else _RAW
        limit = math.floor((now - SETTLE_S) * 1000)
        deliveries = {
            item[SORT_KEY]["S"].rpartition("#")[0] for item in self._keys(minute, shard, "sk > :after", after)
        }
        return sum(1 for delivery in deliveries if _arrived(delivery[len(_RAW) :]) <= limit)

    def _keys(self, minute: int, shard: int, condition: str, after: str) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": f"pk = :pk AND {condition}",
            "ProjectionExpression": "sk",
            "ExpressionAttributeValues": dynamo.item(
                {":pk": window_key(minute, shard, self.scope), ":after": after}
            ),
        }
        return list(dynamo.pages(self._retry, "Query window keys", self._ddb.query, params))

    def read(self, *, now: float) -> TrafficSummary:
        """The merged summary of every complete delivery that arrived in the minutes of the last `window_s`
        seconds (the window's edge is rounded out to the minute), in every shard. Merges settled deliveries
        of each minute into a new merged version as it goes (`last_read` says what it cost).

        Eventually consistent reads: a delivery stored less than a second ago may be missed, and is counted
        by the next decision; the window itself spans minutes.
        """
        first = _bucket(now - self.window_s)
        buckets = [
            (minute, shard)
            for minute in range(first, _bucket(now) + BUCKET_S, BUCKET_S)
            for shard in range(self.shards)
        ]
        with ThreadPoolExecutor(max_workers=min(_PARALLEL_QUERIES, len(buckets))) as pool:
            read = list(pool.map(self._read_bucket, buckets))
            recent = [
                digest for digests in pool.map(partial(self._settle, now=now), read) for digest in digests
            ]
        merged = {(b.minute, b.shard, b.mark_ms): b.merged for b in read if b.merged is not None}
        sums = self._merged_sums(merged)
        for digest in recent:
            sums.add(digest)
        window = self.new_summary()
        merge_batches(window, [*merged.values(), *recent], sums)
        self.last_read = ReadCost(
            items=sum(b.items for b in read),
            bytes=sum(b.bytes for b in read),
            merged_written=sum(b.merged_written for b in read),
        )
        return window

    def _merged_sums(self, merged: dict[tuple[int, int, int], BatchDigest]) -> LevelSums:
        """The level sums of these merged versions (a copy: the caller adds to it), from the ones kept."""
        with self._opened_lock:
            for version in [v for v in self._summed if v not in merged]:
                self._sums.remove(self._summed.pop(version))
            for version, digest in merged.items():
                if version not in self._summed:
                    self._sums.add(digest)
                    self._summed[version] = digest
            return self._sums.copy()

    def _read_bucket(self, minute_shard: tuple[int, int]) -> _Bucket:
        minute, shard = minute_shard
        bucket = _Bucket(minute, shard)
        pk = {"S": window_key(minute, shard, self.scope)}
        # Merged versions are immutable: their keys first, the parts only of a version not opened before.
        version_parts: dict[int, int] = {}
        version_keys: dict[int, list[str]] = {}
        for item in self._query(
            bucket, "begins_with(sk, :m)", {":pk": pk, ":m": {"S": _MERGED}}, projection="sk, parts"
        ):
            mark = int(item[SORT_KEY]["S"][len(_MERGED) :].partition("#")[0])
            version_parts[mark] = int(item["parts"]["N"])
            version_keys.setdefault(mark, []).append(item[SORT_KEY]["S"])
        complete = [mark for mark, keys in version_keys.items() if len(keys) == version_parts[mark]]
        if complete:
            bucket.mark_ms = max(complete)
            bucket.merged, bucket.merged_ids = self._merged_version(bucket, bucket.mark_ms)
            # Every version read gives way to the one a merge writes from here (deleted after it is written).
            bucket.stale_versions = [key for keys in version_keys.values() for key in keys]
        after = f"{_RAW}{bucket.mark_ms:013d}#~" if bucket.mark_ms >= 0 else _RAW
        for item in self._query(bucket, "sk > :after", {":pk": pk, ":after": {"S": after}}):
            delivery, _, index = item[SORT_KEY]["S"][len(_RAW) :].rpartition("#")
            bucket.deliveries.setdefault(delivery, {})[int(index)] = item["summary"]["B"]
            bucket.expected[delivery] = int(item["parts"]["N"])
        return bucket

    def _merged_version(self, bucket: _Bucket, mark: int) -> tuple[BatchDigest | None, set[str]]:
        """The opened merged version `mark` of the bucket's minute and the deliveries it holds (kept opened
        in this container: a decision reads anew only the versions written since the last one)."""
        with self._opened_lock:
            cached = self._opened.get((bucket.minute, bucket.shard, mark))
        if cached is not None:
            return cached
        prefix = f"{_MERGED}{mark:013d}#"
        values = {":pk": {"S": window_key(bucket.minute, bucket.shard, self.scope)}, ":m": {"S": prefix}}
        parts: dict[int, bytes] = {}
        ids: set[str] = set()
        for item in self._query(bucket, "begins_with(sk, :m)", values):
            parts[int(item[SORT_KEY]["S"][len(prefix) :])] = item["summary"]["B"]
            ids |= set(item.get("deliveries", {}).get("SS", []))
        opened = self._open([parts[index] for index in sorted(parts)], f"merged {bucket.minute}"), ids
        self._keep_opened((bucket.minute, bucket.shard, mark), opened)
        return opened

    def _keep_opened(
        self, version: tuple[int, int, int], opened: tuple[BatchDigest | None, set[str]]
    ) -> None:
        with self._opened_lock:
            if len(self._opened) >= _OPENED_KEPT:
                self._opened.pop(min(self._opened))
            self._opened[version] = opened

    def _settle(self, bucket: _Bucket, *, now: float) -> list[BatchDigest]:
        """The digests of the bucket's complete deliveries after its merged version. Deliveries that
        settled - complete, stamped SETTLE_S ago, and none before them still waiting - are merged with the
        newest merged version into a new one, written back."""
        merged = bucket.merged
        digests: list[BatchDigest] = []
        waiting = [
            _arrived(delivery)
            for delivery, parts in bucket.deliveries.items()
            if len(parts) != bucket.expected[delivery]
        ]
        limit_ms = min([math.floor((now - SETTLE_S) * 1000), *(arrived - 1 for arrived in waiting)])
        settled: list[BatchDigest] = []
        settled_ids: set[str] = set()
        mark_ms = bucket.mark_ms
        for delivery in sorted(bucket.deliveries):
            parts = bucket.deliveries[delivery]
            if len(parts) != bucket.expected[delivery]:
                continue  # still being written, or its writer failed and Lambda's retry will finish it
            digest = self._open([parts[index] for index in sorted(parts)], delivery)
            if digest is None:
                continue
            digests.append(digest)
            if _arrived(delivery) <= limit_ms:
                settled.append(digest)
                settled_ids.add(delivery.partition("#")[2])
                mark_ms = max(mark_ms, _arrived(delivery))
        if settled:
            digests_in = [*([merged] if merged is not None else []), *settled]
            self._write_merged(bucket, digests_in, mark_ms, bucket.merged_ids | settled_ids)
        return digests

    def _write_merged(self, bucket: _Bucket, digests: list[BatchDigest], mark_ms: int, ids: set[str]) -> None:
        summary = self.new_summary()
        merge_batches(summary, digests)
        parts = pack_summary(summary)
        expires = str(math.ceil(bucket.minute + BUCKET_S + self.window_s + _EXPIRY_SLACK_S))
        pk = {"S": window_key(bucket.minute, bucket.shard, self.scope)}
        for index, part in enumerate(parts):
            item = {
                PARTITION_KEY: pk,
                SORT_KEY: {"S": f"{_MERGED}{mark_ms:013d}#{index:03d}"},
                "parts": {"N": str(len(parts))},
                "summary": {"B": part},
                TTL_ATTRIBUTE: {"N": expires},
            }
            if index == 0:
                item["deliveries"] = {"SS": sorted(ids)}  # what a late writer checks itself against
            if not dynamo.put_new(self._retry, "PutItem window merged", self._ddb.put_item, self.table, item):
                return  # a concurrent reader merged up to the same mark and writes this version
            bucket.merged_written += 1
        self._keep_opened((bucket.minute, bucket.shard, mark_ms), (self._open(list(parts), "merged"), ids))
        for sort_key in bucket.stale_versions:
            if int(sort_key[len(_MERGED) :].partition("#")[0]) >= mark_ms:
                continue  # a newer version, perhaps still being written by someone else
            self._retry.call(
                "DeleteItem window merged",
                partial(
                    self._ddb.delete_item,
                    TableName=self.table,
                    Key={PARTITION_KEY: pk, SORT_KEY: {"S": sort_key}},
                ),
            )

    def _open(self, parts: list[bytes], what: str) -> BatchDigest | None:
        if not parts:
            return None
        try:
            return open_batch(parts)
        except CorruptPart as exc:
            _log.warning("window %s skipped: %s", what, exc)
            return None

    def _query(
        self,
        bucket: _Bucket,
        condition: str,
        values: dict[str, Any],
        *,
        projection: str = "sk, parts, summary, deliveries",
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": f"pk = :pk AND {condition}",
            "ProjectionExpression": projection,
            "ExpressionAttributeValues": values,
        }
        items = list(dynamo.pages(self._retry, "Query window", self._ddb.query, params))
        bucket.items += len(items)
        bucket.bytes += sum(len(item["summary"]["B"]) for item in items if "summary" in item)
        return items


def window_key(minute: int, shard: int = 0, scope: str = "") -> str:
    """The partition key of one minute's shard: shard 0 keeps the unsharded key, so that a window written
    before sharding was configured (or with one shard) reads the same. A scoped window (a member account's,
    in the security account) puts its scope first: WINDOW#<scope>#<minute>[#<shard>]."""
    prefix = f"{WINDOW_PREFIX}{scope}#" if scope else WINDOW_PREFIX
    return f"{prefix}{minute}" if shard == 0 else f"{prefix}{minute}#{shard}"


def _arrived(delivery: str) -> int:
    """The arrival (epoch ms) of a delivery keyed "<arrived ms>#<delivery id>"."""
    return int(delivery.partition("#")[0])


def _bucket(epoch_s: float) -> int:
    return int(epoch_s // BUCKET_S * BUCKET_S)
