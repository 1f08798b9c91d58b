"""DynamoDB adapter: the shared sliding traffic window, in the STATE table, compacted as it fills.

Deliveries arrive per network interface and in parallel, so no invocation sees all the traffic: each one
stores the bounded summary of its own batch, and a decision merges the summaries of every delivery that
arrived within the window (`core.window` does the packing and merging; only sums are stored, so the merge
does not depend on how the traffic was split nor on the order it came in).

Every minute of arrival (and shard) has a HEAD item that says what the minute holds: its newest merged
version and the deliveries listed since. A writer writes its parts, then lists itself on the head; a merge
(by a writer once COMPACT_AFTER deliveries wait or the minute is over, or by a read) sums the version with
the listed deliveries into the next version and commits it on the head, conditionally on the version it
started from. Nothing a head names is ever changed or deleted (TTL removes it): any head, however stale the
read, names a complete, readable set. So a decision reads by key, never by query: one BatchGetItem of the
window's heads, then one of the parts it has not opened yet - a merged version per minute and the few
deliveries listed after it - whatever the number of deliveries the window holds. A container keeps the
merged versions it opened and their summed counters: a warm decision adds only what is new.

Exactly once. A delivery is listed only after all its parts are written, so whatever a head lists is
complete; the head's `merged` set names every delivery merged into the minute, and a listing is refused
for a delivery already in it, so Lambda's retry of a batch (minutes later, the same delivery id) never
counts it twice. Two mergers that start from the same head merge the same inputs into the same bytes under
the same keys (the version key is a digest of its inputs): one commits, the other finds its commit refused
and wastes nothing but the writes; a merger that dies half-way leaves parts no head names.

Sharding (`shards`, FLOODGATE_WINDOW_SHARDS): each minute is `shards` partitions, WINDOW#<minute> for shard 0
(the only one when shards is 1) and WINDOW#<minute>#<shard> for the others, so that parallel writers (the
Kinesis path's shards) do not all write one partition key. A writer names its shard; a read merges every
shard of every minute.

STATE table (key `pk` / `sk`):
  WINDOW#<minute> / HEAD                                    what the minute holds
    version        N   the newest merged version (absent: none yet)
    version_key    S   its inputs' digest, part of its parts' keys
    version_parts  N   how many parts it has
    pending        SS  deliveries listed since, "<arrived ms>#<delivery-id>#<parts>"
    merged         SS  ids of the deliveries merged into the version
  WINDOW#<minute> / M#<version:013d>#<version key>#<part:03d>  one part of a merged version
  DELIVERY#<delivery-id> / PART#<part:03d>                   one part of one delivery's summary
    filed    S  (part 000) the delivery's minute and arrival: a retry of the batch writes the same keys,
                conditionally, and lists the same entry
    summary  B  the packed part (`core.window`); `expires_at`: the minute's end + window + one minute, for
                TTL (part 000: six hours on, the longest an asynchronous event is retried)

A delivery's parts are a partition of their own, so the bulk of the writes spreads over many partition
keys; a minute's partition takes only its listings and merged versions.
Writes per batch: one per part (at most `core.window.max_parts`, fixed by configuration, whatever the number
of distinct sources in the batch) and one listing on the head.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Callable, Iterable
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
COMPACT_AFTER = 4  # deliveries listed on a minute's head before a writer merges them into a new version
MARKER_TTL_S = 6 * 3600
HEAD = "HEAD"
_EXPIRY_SLACK_S = 60
_PARALLEL_MERGES = 4
_OPENED_KEPT = 64  # merged versions kept opened per container, one per minute's shard: the window's, and more
_PART, _MERGED = "PART#", "M#"
_HEAD_FIELDS = "pk, version, version_key, version_parts, pending"


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


@dataclass(frozen=True, slots=True, order=True)
class _Listed:
    """A delivery listed on a head: complete, all its parts written."""

    arrived_ms: int
    delivery_id: str
    parts: int

    @classmethod
    def parse(cls, entry: str) -> _Listed:
        arrived, _, rest = entry.partition("#")
        delivery_id, _, parts = rest.rpartition("#")  # a delivery id may hold "#" (the stream's do)
        return cls(int(arrived), delivery_id, int(parts))

    @property
    def entry(self) -> str:
        return f"{self.arrived_ms}#{self.delivery_id}#{self.parts}"

    @property
    def pk(self) -> str:
        return f"{DELIVERY_PREFIX}{self.delivery_id}"

    def part_key(self, index: int) -> str:
        return f"{_PART}{index:03d}"


@dataclass(frozen=True, slots=True)
class _Head:
    """One minute's shard as its head says: its newest merged version and the deliveries listed since."""

    minute: int
    shard: int
    pk: str
    version: int = 0  # 0: nothing merged yet
    version_key: str = ""
    version_parts: int = 0
    listed: tuple[_Listed, ...] = ()

    @property
    def opened_key(self) -> tuple[int, int, int, str]:
        return (self.minute, self.shard, self.version, self.version_key)

    def version_sort_key(self, index: int) -> str:
        return f"{_MERGED}{self.version:013d}#{self.version_key}#{index:03d}"


@dataclass(slots=True)
class _Read:
    """What one read fetched: items by sort key, within each partition."""

    items: dict[tuple[str, str], bytes] = field(default_factory=dict)
    count: int = 0
    size: int = 0  # summary bytes
    lock: threading.Lock = field(default_factory=threading.Lock)  # merges of one read run in threads

    def parts(self, pk: str, sort_keys: Iterable[str]) -> list[bytes] | None:
        """The parts under these keys, in order; None when one is missing."""
        found = [self.items.get((pk, key)) for key in sort_keys]
        return None if any(part is None for part in found) else [part for part in found if part is not None]


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
        self._opened: dict[tuple[int, int, int, str], BatchDigest | None] = {}
        self._opened_lock = threading.Lock()
        # The deliveries listed (not merged yet) that the last read opened, by (partition, entry): the next
        # read downloads only those listed since.
        self._listed_opened: dict[tuple[str, str], BatchDigest | None] = {}
        # The level sums of the merged versions the last read used, kept across warm invocations: the next
        # read adds the versions written since and takes away the ones it no longer reads.
        self._sums = LevelSums()
        self._summed: dict[tuple[int, int, int, str], BatchDigest] = {}

    # -- writes ------------------------------------------------------------------------------------------

    def add(self, delivery_id: str, summary: TrafficSummary, *, now: float, shard: int = 0) -> WindowWrite:
        """Store one batch's summary in `shard` (0 .. shards-1; a redelivery must name the same one).
        Idempotent: a redelivery of the batch writes only what is missing and counts once."""
        if not 0 <= shard < self.shards:
            raise ValueError(f"window shard {shard} is outside 0..{self.shards - 1}")
        parts = pack_summary(summary)
        minute, arrived_ms, written = self._file(delivery_id, parts[0], now)
        pk = window_key(minute, shard, self.scope)
        listed = _Listed(arrived_ms, delivery_id, len(parts))
        expires = self._expires(minute)
        for index, part in enumerate(parts[1:], start=1):
            item = {
                PARTITION_KEY: {"S": listed.pk},
                SORT_KEY: {"S": listed.part_key(index)},
                "summary": {"B": part},
                TTL_ATTRIBUTE: {"N": expires},
            }
            # Not written when an earlier attempt at this same delivery wrote this part.
            if dynamo.put_new(self._retry, "PutItem window", self._ddb.put_item, self.table, item):
                written += 1
        # Listed only now that every part is there; refused when the delivery is merged already (a retry).
        self._retry.call_if(
            "UpdateItem window list",
            partial(
                self._ddb.update_item,
                TableName=self.table,
                Key=_key(pk, HEAD),
                UpdateExpression="ADD pending :entry SET expires_at = :expires",
                ConditionExpression="attribute_not_exists(merged) OR NOT contains(merged, :id)",
                ExpressionAttributeValues={
                    ":entry": {"SS": [listed.entry]},
                    ":id": {"S": delivery_id},
                    ":expires": {"N": expires},
                },
            ),
        )
        return WindowWrite(parts=len(parts), written=written)

    def compact(self, *, now: float, shard: int = 0) -> int:
        """Merge the deliveries listed on the current and the previous minute's heads into new versions
        when enough have gathered (COMPACT_AFTER), or the minute is over: so that a decision, whenever it
        comes, reads few items. Returns the merged parts written."""
        current = _bucket(now)
        written = 0
        for minute in (current - BUCKET_S, current):
            head = self._head(minute, shard)
            if _due(head, now):
                written += self._merge(head, _Read()).merged_written
        return written

    def _file(self, delivery_id: str, first_part: bytes, now: float) -> tuple[int, int, int]:
        """Write the delivery's first part, which says where the delivery is filed: its minute and arrival
        (ms), chosen now or by an earlier attempt at the same delivery (then the same keys are written again
        and the listing is the same). Also returns the parts written (0 or 1)."""
        filed = f"{_bucket(now)}#{math.floor(now * 1000):013d}"
        key = _key(f"{DELIVERY_PREFIX}{delivery_id}", f"{_PART}000")
        # Kept as long as Lambda may retry the batch, not just for the window.
        first = {
            **key,
            "summary": {"B": first_part},
            "filed": {"S": filed},
            TTL_ATTRIBUTE: {"N": str(math.ceil(now + MARKER_TTL_S))},
        }
        written = dynamo.put_new(self._retry, "PutItem window", self._ddb.put_item, self.table, first)
        if not written:
            known = self._retry.call(
                "GetItem window delivery",
                partial(
                    self._ddb.get_item,
                    TableName=self.table,
                    Key=key,
                    ProjectionExpression="filed",
                    ConsistentRead=True,
                ),
            )
            filed = str(known.get("Item", {}).get("filed", {}).get("S", filed))
        minute, _, arrived = filed.partition("#")
        return int(minute), int(arrived), int(written)

    def _expires(self, minute: int) -> str:
        return str(math.ceil(minute + BUCKET_S + self.window_s + _EXPIRY_SLACK_S))

    def _head(self, minute: int, shard: int) -> _Head:
        pk = window_key(minute, shard, self.scope)
        reply = self._retry.call(
            "GetItem window head",
            partial(
                self._ddb.get_item,
                TableName=self.table,
                Key=_key(pk, HEAD),
                ProjectionExpression=_HEAD_FIELDS,
                ConsistentRead=True,
            ),
        )
        return _head_from(minute, shard, pk, reply.get("Item"))

    def _merge(self, head: _Head, fetched: _Read) -> _Merge:
        """Sum the head's version and its listed deliveries into the next version and commit it on the head
        (unless the head moved on meanwhile: then another merger did the same work)."""
        self._fetch(fetched, self._missing([head], fetched))
        contents = self._contents(head, fetched)
        if not contents.complete:
            return _Merge(head, 0)  # a part the head names is not there: never merge a window short
        summary = self.new_summary()
        merge_batches(summary, [*([contents.version] if contents.version else []), *contents.digests()])
        parts = pack_summary(summary)
        entries = sorted(item.entry for item in head.listed)
        key_hash = hashlib.blake2b("\n".join([head.version_key, *entries]).encode(), digest_size=8)
        following = _Head(
            head.minute, head.shard, head.pk, head.version + 1, key_hash.hexdigest(), len(parts)
        )
        expires = self._expires(head.minute)
        written = 0
        for index, part in enumerate(parts):
            item = {
                PARTITION_KEY: {"S": head.pk},
                SORT_KEY: {"S": following.version_sort_key(index)},
                "summary": {"B": part},
                TTL_ATTRIBUTE: {"N": expires},
            }
            # Already there when a merger that started from the same head wrote it (same inputs, same bytes).
            if dynamo.put_new(self._retry, "PutItem window merged", self._ddb.put_item, self.table, item):
                written += 1
        values: dict[str, Any] = {
            ":version": {"N": str(following.version)},
            ":key": {"S": following.version_key},
            ":parts": {"N": str(len(parts))},
            ":merged": {"SS": sorted({item.delivery_id for item in head.listed})},
            ":listed": {"SS": entries},
        }
        if head.version:
            condition = "version = :from"
            values[":from"] = {"N": str(head.version)}
        else:
            condition = "attribute_not_exists(version)"
        committed = self._retry.call_if(
            "UpdateItem window merged",
            partial(
                self._ddb.update_item,
                TableName=self.table,
                Key=_key(head.pk, HEAD),
                UpdateExpression=(
                    "SET version = :version, version_key = :key, version_parts = :parts "
                    "ADD merged :merged DELETE pending :listed"
                ),
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            ),
        )
        if committed is None:
            return _Merge(head, written)
        self._keep_opened(following.opened_key, open_parts(list(parts), f"merged {head.pk}"))
        return _Merge(following, written)

    # -- reads -------------------------------------------------------------------------------------------

    def read(self, *, now: float) -> TrafficSummary:
        """The merged summary of every delivery listed in the minutes of the last `window_s` seconds (the
        window's edge is rounded out to the minute), in every shard. Minutes whose listed deliveries are due
        a merge (as `compact` would) are merged on the way (`last_read` says what it cost).

        Strongly consistent reads: a delivery listed before the read began is counted.
        """
        first = _bucket(now - self.window_s)
        buckets = [
            (minute, shard)
            for minute in range(first, _bucket(now) + BUCKET_S, BUCKET_S)
            for shard in range(self.shards)
        ]
        fetched = _Read()
        heads = self._heads(buckets, fetched)
        self._fetch(fetched, self._missing(heads, fetched))
        due = [head for head in heads if _due(head, now)]
        merged_written = 0
        if due:
            with ThreadPoolExecutor(max_workers=min(_PARALLEL_MERGES, len(due))) as pool:
                merges = list(pool.map(partial(self._merge, fetched=fetched), due))
            moved = {merge.head.pk: merge.head for merge in merges}
            heads = [moved.get(head.pk, head) for head in heads]
            merged_written = sum(merge.merged_written for merge in merges)
        versions: dict[tuple[int, int, int, str], BatchDigest] = {}
        recent: list[BatchDigest] = []
        listed_opened: dict[tuple[str, str], BatchDigest | None] = {}
        for head in heads:
            contents = self._contents(head, fetched)
            if contents.version is not None:
                versions[head.opened_key] = contents.version
            recent.extend(contents.digests())
            listed_opened.update(((head.pk, entry), digest) for entry, digest in contents.listed.items())
        with self._opened_lock:
            self._listed_opened = listed_opened
        sums = self._merged_sums(versions)
        for digest in recent:
            sums.add(digest)
        window = self.new_summary()
        merge_batches(window, [*versions.values(), *recent], sums)
        self.last_read = ReadCost(items=fetched.count, bytes=fetched.size, merged_written=merged_written)
        return window

    def _heads(self, buckets: list[tuple[int, int]], fetched: _Read) -> list[_Head]:
        keys = {window_key(minute, shard, self.scope): (minute, shard) for minute, shard in buckets}
        items = dynamo.batch_get(
            self._retry,
            self._ddb,
            self.table,
            [_key(pk, HEAD) for pk in keys],
            projection=_HEAD_FIELDS,
        )
        fetched.count += len(items)
        return [_head_from(*keys[item[PARTITION_KEY]["S"]], item[PARTITION_KEY]["S"], item) for item in items]

    def _missing(self, heads: list[_Head], fetched: _Read) -> list[tuple[str, str]]:
        """The keys of the parts these heads name that are neither opened in this container nor fetched."""
        with self._opened_lock:
            opened, listed_opened = set(self._opened), set(self._listed_opened)
        wanted: list[tuple[str, str]] = []
        for head in heads:
            if head.version and head.opened_key not in opened:
                wanted.extend((head.pk, head.version_sort_key(i)) for i in range(head.version_parts))
            for listed in head.listed:
                if (head.pk, listed.entry) not in listed_opened:
                    wanted.extend((listed.pk, listed.part_key(i)) for i in range(listed.parts))
        return [key for key in wanted if key not in fetched.items]

    def _fetch(self, fetched: _Read, keys: list[tuple[str, str]]) -> None:
        if not keys:
            return
        wanted = [_key(pk, sk) for pk, sk in keys]
        items = dynamo.batch_get(self._retry, self._ddb, self.table, wanted, projection="pk, sk, summary")
        with fetched.lock:
            for item in items:
                part = item["summary"]["B"]
                fetched.items[(item[PARTITION_KEY]["S"], item[SORT_KEY]["S"])] = part
                fetched.size += len(part)
            fetched.count += len(items)

    def _parts(self, fetched: _Read, pk: str, sort_keys: list[str]) -> list[bytes] | None:
        """The parts under these keys, in order, fetched now if an earlier fetch left them out (the version
        was opened in this container then, and has been let go since); None when one does not exist."""
        self._fetch(fetched, [(pk, key) for key in sort_keys if (pk, key) not in fetched.items])
        return fetched.parts(pk, sort_keys)

    def _contents(self, head: _Head, fetched: _Read) -> _Contents:
        """The head's merged version and listed deliveries, opened from this container's cache or from the
        parts fetched. A part that cannot be read leaves out what it belongs to (logged): the rest of the
        window still counts."""
        contents = _Contents()
        if head.version:
            with self._opened_lock:
                known = head.opened_key in self._opened
                contents.version = self._opened.get(head.opened_key)
            if not known:
                parts = self._parts(
                    fetched, head.pk, [head.version_sort_key(i) for i in range(head.version_parts)]
                )
                contents.complete = parts is not None
                contents.version = open_parts(parts, f"merged {head.pk} v{head.version}")
                if contents.complete:
                    self._keep_opened(head.opened_key, contents.version)
        for item in head.listed:
            with self._opened_lock:
                known = (head.pk, item.entry) in self._listed_opened
                digest = self._listed_opened.get((head.pk, item.entry))
            if not known:
                parts = self._parts(fetched, item.pk, [item.part_key(i) for i in range(item.parts)])
                if parts is None:
                    contents.complete = False
                    _log.warning("window delivery %s skipped: a part is missing", item.delivery_id)
                    continue
                digest = open_parts(parts, f"delivery {item.delivery_id}")
            contents.listed[item.entry] = digest
        return contents

    def _merged_sums(self, merged: dict[tuple[int, int, int, str], BatchDigest]) -> LevelSums:
        """The level sums of these merged versions (a copy: the caller adds to it), from the ones kept."""
        with self._opened_lock:
            for version in [v for v in self._summed if v not in merged]:
                self._sums.remove(self._summed.pop(version))
            for version, digest in merged.items():
                if version not in self._summed:
                    self._sums.add(digest)
                    self._summed[version] = digest
            return self._sums.copy()

    def _keep_opened(self, version: tuple[int, int, int, str], opened: BatchDigest | None) -> None:
        """Keep a version opened: the newest of its minute's shard (heads only move forward, so an older
        one is never read again), and of the newest minutes."""
        minute, shard, number, _ = version
        with self._opened_lock:
            for kept in [k for k in self._opened if k[:2] == (minute, shard)]:
                if kept[2] > number:
                    return
                del self._opened[kept]
            if len(self._opened) >= _OPENED_KEPT:
                self._opened.pop(min(self._opened))
            self._opened[version] = opened


@dataclass(slots=True)
class _Contents:
    """A head's merged version and listed deliveries, opened (None: unreadable, left out)."""

    version: BatchDigest | None = None
    listed: dict[str, BatchDigest | None] = field(default_factory=dict)  # by listing entry
    complete: bool = True  # every part the head names was there

    def digests(self) -> list[BatchDigest]:
        return [digest for digest in self.listed.values() if digest is not None]


@dataclass(frozen=True, slots=True)
class _Merge:
    head: _Head  # the head as it now stands: the committed version, or the one we started from
    merged_written: int


def open_parts(parts: list[bytes] | None, what: str) -> BatchDigest | None:
    """The digest of a stored summary's parts; None (logged) when one is missing or unreadable."""
    if parts is None:
        _log.warning("window %s skipped: a part is missing", what)
        return None
    try:
        return open_batch(parts)
    except CorruptPart as exc:
        _log.warning("window %s skipped: %s", what, exc)
        return None


def window_key(minute: int, shard: int = 0, scope: str = "") -> str:
    """The partition key of one minute's shard: shard 0 keeps the unsharded key, so that a window written
    before sharding was configured (or with one shard) reads the same. A scoped window (a member account's,
    in the security account) puts its scope first: WINDOW#<scope>#<minute>[#<shard>]."""
    prefix = f"{WINDOW_PREFIX}{scope}#" if scope else WINDOW_PREFIX
    return f"{prefix}{minute}" if shard == 0 else f"{prefix}{minute}#{shard}"


def _due(head: _Head, now: float) -> bool:
    """A merge is due when COMPACT_AFTER deliveries wait, or the minute is over and any does."""
    return len(head.listed) >= COMPACT_AFTER or (bool(head.listed) and head.minute + BUCKET_S <= now)


def _head_from(minute: int, shard: int, pk: str, item: dict[str, Any] | None) -> _Head:
    if not item:
        return _Head(minute, shard, pk)
    return _Head(
        minute,
        shard,
        pk,
        version=int(item.get("version", {}).get("N", 0)),
        version_key=item.get("version_key", {}).get("S", ""),
        version_parts=int(item.get("version_parts", {}).get("N", 0)),
        listed=tuple(sorted(_Listed.parse(entry) for entry in item.get("pending", {}).get("SS", []))),
    )


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": sk}}


def _bucket(epoch_s: float) -> int:
    return int(epoch_s // BUCKET_S * BUCKET_S)
