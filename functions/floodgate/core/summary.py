"""Bounded-memory traffic summary: hierarchical heavy hitters over source prefixes.

Each prefix level (IPv4 /32, /24, /16; IPv6 /128, /64, /48, cut at the configured caps) keeps a weighted
Misra–Gries summary of inbound packets with `capacity` counters. Summaries are mergeable (Agarwal et al.,
"Mergeable summaries", PODS 2012): a batch's exact per-source tallies are added, then the summary is
compacted by subtracting the (capacity+1)-th largest count from every counter and dropping those that reach
zero. Guarantee: at any time, for every key, `estimate <= true <= estimate + error`, where the level's
`error` is at most total/(capacity+1). With capacity >= 8/min_share, every source or prefix carrying at
least min_share of the packets is kept, with its count known to within min_share/8 of the total.
Memory is O(levels × capacity), whatever the number of distinct sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from floodgate.core.flowlog import BYTES, PACKETS, REJECT_PACKETS, SourceBatch
from floodgate.core.model import ParseStats

ADDRESS_BITS = {4: 32, 6: 128}
PREFIX_LEVELS = {4: (32, 24, 16), 6: (128, 64, 48)}
ASSUMED_SPAN_S = 60  # the flow-log aggregation interval, when records carry no start/end


@dataclass(slots=True)
class Counter:
    """One summary counter: traffic of a source or prefix, and how many of its members were seen."""

    packets: int
    bytes: int
    reject_packets: int
    members: int  # distinct sources inside, largest seen in one batch (a lower bound)
    hot_members: int  # of those, sources at or above the member rate floor in their batch


@dataclass(slots=True)
class LevelSummary:
    """Weighted Misra–Gries summary of one prefix length of one IP version."""

    version: int
    prefix_len: int
    capacity: int
    counters: dict[int, Counter] = field(default_factory=dict)  # network value >> host bits → counter
    error: int = 0  # upper bound of any packet undercount

    @property
    def host_bits(self) -> int:
        return ADDRESS_BITS[self.version] - self.prefix_len

    def add(self, key: int, packets: int, octets: int, rejected: int, members: int, hot: int) -> None:
        counter = self.counters.get(key)
        if counter is None:
            self.counters[key] = Counter(packets, octets, rejected, members, hot)
            return
        counter.packets += packets
        counter.bytes += octets
        counter.reject_packets += rejected
        counter.members = max(counter.members, members)
        counter.hot_members = max(counter.hot_members, hot)

    def compact(self) -> None:
        if len(self.counters) <= self.capacity:
            return
        values = sorted((c.packets for c in self.counters.values()), reverse=True)
        cut = values[self.capacity]
        kept: dict[int, Counter] = {}
        for key, counter in self.counters.items():
            remaining = counter.packets - cut
            if remaining > 0:
                # Bytes and rejects shrink in proportion, so rates stay consistent with the packet estimate.
                scale = remaining / counter.packets
                counter.bytes = int(counter.bytes * scale)
                counter.reject_packets = int(counter.reject_packets * scale)
                counter.packets = remaining
                kept[key] = counter
        self.counters = kept
        self.error += cut


@dataclass(slots=True)
class TrafficSummary:
    """Everything detection needs to know about a window of inbound traffic, in bounded memory."""

    capacity: int
    member_floor_pps: float
    max_prefix_v4: int = 16
    max_prefix_v6: int = 48
    levels: dict[tuple[int, int], LevelSummary] = field(default_factory=dict)
    total_packets: int = 0
    total_bytes: int = 0
    reject_packets: int = 0
    first_start: int | None = None
    last_end: int | None = None
    stats: ParseStats = field(default_factory=ParseStats)

    @classmethod
    def for_share(
        cls, min_share: float, member_floor_pps: float, max_prefix_v4: int = 16, max_prefix_v6: int = 48
    ) -> TrafficSummary:
        """A summary sized so that every source or prefix above `min_share` is guaranteed to be found."""
        capacity = min(100_000, max(64, math.ceil(8 / min_share)))
        return cls(capacity, member_floor_pps, max_prefix_v4, max_prefix_v6)

    def __post_init__(self) -> None:
        caps = {4: self.max_prefix_v4, 6: self.max_prefix_v6}
        for version, lengths in PREFIX_LEVELS.items():
            for length in lengths:
                if length >= caps[version] or length == ADDRESS_BITS[version]:
                    self.levels[(version, length)] = LevelSummary(version, length, self.capacity)

    def level_lengths(self, version: int) -> list[int]:
        """Prefix lengths kept for `version`, finest first."""
        return sorted((length for v, length in self.levels if v == version), reverse=True)

    @property
    def span_s(self) -> int:
        if self.first_start is None or self.last_end is None:
            return 0
        return self.last_end - self.first_start

    def add(self, batch: SourceBatch) -> None:
        """Fold one batch's exact per-source tallies into every level."""
        self.stats.merge(batch.stats)
        if batch.first_start is not None:
            self.first_start = min(batch.first_start, self.first_start or batch.first_start)
        if batch.last_end is not None:
            self.last_end = max(batch.last_end, self.last_end or batch.last_end)
        hot_packets = self.member_floor_pps * (batch.span_s or ASSUMED_SPAN_S)
        for (version, value), tally in batch.sources.items():
            self.total_packets += tally[PACKETS]
            self.total_bytes += tally[BYTES]
            self.reject_packets += tally[REJECT_PACKETS]
        for (version, length), level in self.levels.items():
            shift = ADDRESS_BITS[version] - length
            grouped: dict[int, list[int]] = {}
            for (source_version, value), tally in batch.sources.items():
                if source_version != version:
                    continue
                key = value >> shift
                hot = 1 if tally[PACKETS] >= hot_packets else 0
                entry = grouped.get(key)
                if entry is None:
                    grouped[key] = [tally[PACKETS], tally[BYTES], tally[REJECT_PACKETS], 1, hot]
                else:
                    entry[0] += tally[PACKETS]
                    entry[1] += tally[BYTES]
                    entry[2] += tally[REJECT_PACKETS]
                    entry[3] += 1
                    entry[4] += hot
            for key, (packets, octets, rejected, members, hot_members) in grouped.items():
                level.add(key, packets, octets, rejected, members, hot_members)
            level.compact()
