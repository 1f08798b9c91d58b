"""The shared traffic window's pure half: a batch's bounded summary as bytes, merged back, and read for rates.

Each flow-log delivery contributes its own `TrafficSummary` (at most `capacity` counters per prefix level,
whatever the number of distinct sources), packed into a few self-contained parts. Reading the window merges
the parts of every delivery in it into one summary. Only sums are stored, so while no level overflows its
capacity the merged window is exactly the summary of all its records taken together, however they were
split over deliveries and interfaces and in whatever order they came (`core.summary` states the guarantee).
Beyond that, Misra-Gries summaries are mergeable: the merged error is at most the sum of the batches'
errors plus what the merge itself compacts away, and every source or prefix above `min_share` of the
window's packets is still found.

Opened, a counter is one integer (its four sums packed 64 bits apart, with a count of the digests that
added it): digests add - and a reader that keeps the sums of the merged versions across decisions takes one
away again - with one integer operation per key, and Counter objects are made once, for the merged window.

Part layout (zlib-compressed): a 4-byte header length, a JSON header, then fixed-size counter records.
The first part's header carries the totals, time span, per-level errors and parse statistics; every part
carries counters. Encoding is deterministic, so a redelivered batch packs into identical parts.
"""

from __future__ import annotations

import ipaddress
import json
import math
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from floodgate.core.model import ParseStats
from floodgate.core.summary import ADDRESS_BITS, ASSUMED_SPAN_S, Counter, TrafficSummary, key_network

FORMAT_VERSION = 2
# version, prefix length, key (16 bytes: IPv6 fits), packets, bytes, reject packets, spoofable packets
COUNTER = struct.Struct(">BB16sQQQQ")
_HEADER_LENGTH = struct.Struct(">I")
# 6,000 records are 300 KB before compression: one part stays under DynamoDB's 400 KB item limit even when
# the counters do not compress at all.
COUNTERS_PER_PART = 6000


class CorruptPart(ValueError):
    """A stored part that this code cannot read (another format version, or damaged)."""


def max_parts(summary: TrafficSummary, counters_per_part: int = COUNTERS_PER_PART) -> int:
    """The most parts one batch can pack into: fixed by configuration (levels x capacity), never by the
    number of distinct sources in the batch."""
    return max(1, math.ceil(len(summary.levels) * summary.capacity / counters_per_part))


def pack_summary(summary: TrafficSummary, counters_per_part: int = COUNTERS_PER_PART) -> tuple[bytes, ...]:
    """The summary as parts of at most `counters_per_part` counters each (at least one part)."""
    records = [
        COUNTER.pack(
            version,
            length,
            key.to_bytes(16, "big"),
            counter.packets,
            counter.bytes,
            counter.reject_packets,
            counter.spoofable,
        )
        for (version, length), level in sorted(summary.levels.items())
        for key, counter in sorted(level.counters.items())
    ]
    header = {
        "v": FORMAT_VERSION,
        "packets": summary.total_packets,
        "bytes": summary.total_bytes,
        "rejects": summary.reject_packets,
        "first_start": summary.first_start,
        "last_end": summary.last_end,
        "errors": [[v, length, level.error] for (v, length), level in sorted(summary.levels.items())],
        "parsed": summary.stats.parsed,
        "skipped": dict(sorted(summary.stats.skipped.items())),
    }
    chunks = [records[i : i + counters_per_part] for i in range(0, len(records), counters_per_part)] or [[]]
    return tuple(
        _seal({"v": FORMAT_VERSION} if index else header, chunk) for index, chunk in enumerate(chunks)
    )


# An opened counter is one integer: its four sums packed 64 bits apart (packets highest, as the record stores
# them) with the number of digests that added it above them. Sums of digests then add - and take a digest
# away again - with one integer operation per key, and a key whose sum returns to 0 was added by none.
_FIELD_BITS = 64
_FIELD_MASK = (1 << _FIELD_BITS) - 1
_ONE_DIGEST = 1 << (4 * _FIELD_BITS)
# The counter record read as its level, key and packed sums: the same bytes as COUNTER.
_PACKED_COUNTER = struct.Struct(">BB16s32s")

Level = tuple[int, int]  # IP version, prefix length


@dataclass(frozen=True, slots=True)
class BatchDigest:
    """One stored batch summary, opened: what it adds to the window."""

    rows: dict[Level, dict[int, int]]  # level -> key -> packed sums (see _ONE_DIGEST)
    errors: dict[Level, int]
    totals: tuple[int, int, int]  # packets, bytes, reject packets
    first_start: int | None
    last_end: int | None
    stats: ParseStats


def open_batch(parts: Sequence[bytes]) -> BatchDigest:
    """The digest of one batch from all its parts. Raises CorruptPart on a part this code cannot read."""
    opened = [_open(part) for part in parts]
    header = opened[0][0] if opened else {}
    rows: dict[Level, dict[int, int]] = {}
    from_bytes = int.from_bytes
    for _, body in opened:
        level: Level | None = None
        keyed: dict[int, int] = {}
        for version, length, key, sums in _PACKED_COUNTER.iter_unpack(body):
            if level != (version, length):
                level = (version, length)
                keyed = rows.setdefault(level, {})
            value = from_bytes(key, "big")
            # A key twice in one part (never written so, but read safely): its sums add up.
            keyed[value] = keyed.get(value, 0) + from_bytes(sums, "big") + _ONE_DIGEST
    try:
        return BatchDigest(
            rows=rows,
            errors={(int(v), int(length)): int(error) for v, length, error in header["errors"]},
            totals=(int(header["packets"]), int(header["bytes"]), int(header["rejects"])),
            first_start=_optional_int(header["first_start"]),
            last_end=_optional_int(header["last_end"]),
            stats=ParseStats(
                int(header["parsed"]), {str(reason): int(n) for reason, n in header["skipped"].items()}
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptPart(f"unreadable header: {exc!r}") from None


class LevelSums:
    """The exact per-key sums of a set of digests, per level, before any compaction: a digest is added or
    taken away again key by key, so a reader that keeps the sums of the window's merged versions across
    decisions only adds the versions written since and takes away those it no longer reads."""

    def __init__(self, levels: dict[Level, dict[int, int]] | None = None) -> None:
        self.levels: dict[Level, dict[int, int]] = levels if levels is not None else {}

    def copy(self) -> LevelSums:
        return LevelSums({level: dict(keyed) for level, keyed in self.levels.items()})

    def add(self, digest: BatchDigest) -> None:
        for level, rows in digest.rows.items():
            keyed = self.levels.get(level)
            if not keyed:
                self.levels[level] = dict(rows)
                continue
            get = keyed.get
            for key, value in rows.items():
                keyed[key] = get(key, 0) + value

    def remove(self, digest: BatchDigest) -> None:
        """Take away a digest added before."""
        for level, rows in digest.rows.items():
            keyed = self.levels[level]
            for key, value in rows.items():
                left = keyed[key] - value
                if left:
                    keyed[key] = left
                else:
                    del keyed[key]  # no digest added it any more


def merge_batches(
    window: TrafficSummary, batches: Iterable[BatchDigest], sums: LevelSums | None = None
) -> None:
    """Merge the batches into `window` all at once: their counters are added up per level, then each level
    compacts once (only when it holds more than its capacity). Sums only: the result does not depend on how
    the traffic was split into batches nor on their order. Levels the window does not keep (its prefix caps
    are narrower than the writer's) are left out. `sums`: the batches' level sums when the caller keeps
    them already added up (then only the batches' totals, errors and statistics are read here)."""
    batches = list(batches)
    if sums is None:
        sums = LevelSums()
        for batch in batches:
            sums.add(batch)
    for batch in batches:
        window.stats.merge(batch.stats)
        window.total_packets += batch.totals[0]
        window.total_bytes += batch.totals[1]
        window.reject_packets += batch.totals[2]
        if batch.first_start is not None:
            window.first_start = min(batch.first_start, window.first_start or batch.first_start)
        if batch.last_end is not None:
            window.last_end = max(batch.last_end, window.last_end or batch.last_end)
        for level_key, error in batch.errors.items():
            if level_key in window.levels:
                window.levels[level_key].error += error
    mask, bits = _FIELD_MASK, _FIELD_BITS
    for level_key, keyed in sums.levels.items():
        level = window.levels.get(level_key)
        if level is None or not keyed:
            continue
        if not level.counters and len(keyed) <= level.capacity:
            # Nothing to compact: the counters straight from the sums.
            level.counters = {
                key: Counter(
                    (value >> 3 * bits) & mask,
                    (value >> 2 * bits) & mask,
                    (value >> bits) & mask,
                    value & mask,
                )
                for key, value in keyed.items()
            }
            continue
        level.merge(
            {
                key: [
                    (value >> 3 * bits) & mask,
                    (value >> 2 * bits) & mask,
                    (value >> bits) & mask,
                    value & mask,
                ]
                for key, value in keyed.items()
            }
        )


def rate_window_s(summary: TrafficSummary, window_s: float) -> float:
    """Seconds to divide the window's traffic by, for rates.

    The records' own time span, at least one aggregation interval, and at most the window plus one interval:
    a delivery that arrives late carries old records, and letting them stretch the span would divide a
    flood's packets by minutes in which it was not measured.
    """
    return float(min(max(summary.span_s, ASSUMED_SPAN_S), window_s + ASSUMED_SPAN_S))


def reject_rates(summary: TrafficSummary, window_s: float) -> dict[str, float]:
    """REJECT packets per second of every source and prefix the summary keeps with any REJECT traffic.

    A denied source keeps sending and is logged as REJECT: this is the evidence that a deny still works.
    """
    rates: dict[str, float] = {}
    for (version, length), level in summary.levels.items():
        for key, counter in level.counters.items():
            if counter.reject_packets:
                rates[str(key_network(version, length, key))] = counter.reject_packets / window_s
    return rates


def reject_rate_of(summary: TrafficSummary, cidr: str, window_s: float) -> float:
    """REJECT packets per second from inside `cidr`, as far as the summary knows.

    Uses the level of exactly that prefix length when the summary keeps one; otherwise the counters of the
    coarsest finer level inside it (a lower bound: lighter members may have been compacted away).
    """
    network = ipaddress.ip_network(cidr)
    finer = [length for v, length in summary.levels if v == network.version and length >= network.prefixlen]
    if not finer:
        return 0.0
    length = min(finer)
    shift = length - network.prefixlen
    wanted = int(network.network_address) >> (ADDRESS_BITS[network.version] - network.prefixlen)
    level = summary.levels[(network.version, length)]
    packets = sum(c.reject_packets for key, c in level.counters.items() if key >> shift == wanted)
    return packets / window_s


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


# zlib level 3: a 10,000-record delivery's parts (~600 KB of counters) compress in 6 ms instead of level 6's
# 15 ms, for ~9% more bytes (119 KB vs 109 KB); parts stay far below DynamoDB's item limit either way.
SEAL_LEVEL = 3


def _seal(header: dict[str, Any], records: Iterable[bytes]) -> bytes:
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    return zlib.compress(_HEADER_LENGTH.pack(len(text)) + text + b"".join(records), SEAL_LEVEL)


def _open(part: bytes) -> tuple[dict[str, Any], bytes]:
    try:
        raw = zlib.decompress(part)
        (length,) = _HEADER_LENGTH.unpack_from(raw)
        header = json.loads(raw[_HEADER_LENGTH.size : _HEADER_LENGTH.size + length])
    except (zlib.error, struct.error, ValueError) as exc:
        raise CorruptPart(f"cannot open part: {exc}") from None
    if not isinstance(header, dict) or header.get("v") != FORMAT_VERSION:
        version = header.get("v") if isinstance(header, dict) else None
        raise CorruptPart(f"part format {version!r}, this code reads {FORMAT_VERSION}")
    body = raw[_HEADER_LENGTH.size + length :]
    if len(body) % COUNTER.size:
        raise CorruptPart(f"counter records of {len(body)} bytes are not whole")
    return header, body
