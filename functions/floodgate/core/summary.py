"""Bounded-memory traffic summary: hierarchical heavy hitters over source prefixes, exact while small.

Each prefix level (IPv4 /32, /24, /16; IPv6 /128, /64, /48, cut at the configured caps) keeps a weighted
Misra–Gries summary of inbound packets with `capacity` counters (at least EXACT_KEYS). Summaries are
mergeable (Agarwal et al., "Mergeable summaries", PODS 2012): exact per-key sums are added, then the
summary is compacted by subtracting the (capacity+1)-th largest count from every counter and dropping those
that reach zero.

Guarantees:
- Split invariance. Nothing per batch is kept but sums: packets, bytes, REJECT packets and spoofable packets
  per source and per prefix, the records' earliest start and latest end, the skip counts and the set of
  dependencies. Sums and sets merge exactly, so while no level holds more than `capacity` keys (no
  compaction: `error` is 0 everywhere) the merged summary of any split of a capture — over deliveries,
  interfaces, in any order — is identical to the summary of the whole capture, and so is every plan made
  from it. Prefix member counts (sources seen, sources above the member floor) are derived at decision time
  from the merged per-source sums (`MemberCounts`), never counted per batch.
- Beyond that, at any time, for every key, `estimate <= true <= estimate + error`, where the level's `error`
  is at most total/(capacity+1). With capacity >= 8/min_share, every source or prefix carrying at least
  min_share of the packets is kept, with its count known to within min_share/8 of the total.
Memory is O(levels × capacity), whatever the number of distinct sources.
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from floodgate.core.flowlog import SourceBatch, keep_dependencies
from floodgate.core.model import ParseStats

ADDRESS_BITS = {4: 32, 6: 128}
PREFIX_LEVELS = {4: (32, 24, 16), 6: (128, 64, 48)}
ASSUMED_SPAN_S = 60  # the flow-log aggregation interval, when records carry no start/end
# Keys per level kept exactly, whatever min_share asks: a window of up to this many distinct sources (and
# prefixes) per level merges without any compaction, so it plans exactly as the whole capture would.
EXACT_KEYS = 8192


@dataclass(slots=True)
class Counter:
    """One summary counter: the traffic of a source or prefix."""

    packets: int
    bytes: int
    reject_packets: int
    spoofable: int  # packets of UDP, ICMP or SYN-only records: their claimed source proves nothing


@dataclass(frozen=True, slots=True)
class Members:
    """Sources seen inside a prefix, and how many of them reached the member floor over the window."""

    seen: int
    hot: int


class MemberCounts:
    """Sources seen inside any prefix of one IP version, and those with at least `hot_packets` packets,
    from the merged per-source sums (so the same however the window was split). Sources sorted once by
    address: each prefix asked about is one range of them (a decision asks about a handful).

    When the source level was compacted (its error is positive), sources left out each carried at most
    `error` packets: the prefix's packets not accounted for by kept sources count as that many more members,
    at least one per `error` packets - erring towards more members, i.e. towards not denying.
    """

    def __init__(self, summary: TrafficSummary, version: int, hot_packets: float) -> None:
        self._summary, self._version, self._hot_packets = summary, version, hot_packets
        self._bits = ADDRESS_BITS[version]
        hosts = summary.levels.get((version, self._bits))
        ordered = sorted(hosts.counters.items()) if hosts is not None else []
        self._values = [value for value, _ in ordered]
        self._packets = [counter.packets for _, counter in ordered]
        self._error = hosts.error if hosts is not None else 0

    def of(self, length: int, key: int) -> Members:
        """Members of the prefix `key` of `length` bits (shorter than an address) that the summary holds."""
        level = self._summary.levels.get((self._version, length))
        counter = level.counters.get(key) if level is not None else None
        if counter is None or not self._values:
            return Members(0, 0)
        shift = self._bits - length
        first = bisect.bisect_left(self._values, key << shift)
        last = bisect.bisect_left(self._values, (key + 1) << shift, first)
        inside = self._packets[first:last]
        hot_packets = self._hot_packets
        seen, hot = last - first, sum(1 for packets in inside if packets >= hot_packets)
        if self._error:
            seen += math.ceil(max(0, counter.packets - sum(inside)) / self._error)
        return Members(seen, hot)


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

    def merge(self, exact: dict[int, list[int]], floor: int = 0) -> None:
        """Fold exact [packets, bytes, rejected, spoofable] per key in, then compact.

        A caller that already left out light keys new to the summary passes `floor`: the heaviest of them
        weighed at most that, and at least capacity+1 new keys of `exact` weigh at least that.
        """
        counters = self.counters
        if len(exact) > self.capacity + 1 + len(counters):
            # Keys new to the summary and outside the heaviest capacity+1 of them cannot survive compaction:
            # at least capacity+1 merged counts reach the weight of the lightest kept one, so the cut does
            # too. Leaving them out up front spares the work; `floor` carries that lower bound of the cut.
            new = [item for item in exact.items() if item[0] not in counters]
            heaviest = heapq.nlargest(self.capacity + 1, new, key=_packets_of)
            floor = heaviest[-1][1][0]
            exact = {key: exact[key] for key in exact.keys() & counters.keys()} | dict(heaviest)
        for key, (packets, octets, rejected, spoofable) in exact.items():
            counter = counters.get(key)
            if counter is None:
                counters[key] = Counter(packets, octets, rejected, spoofable)
            else:
                counter.packets += packets
                counter.bytes += octets
                counter.reject_packets += rejected
                counter.spoofable += spoofable
        self.compact(floor)

    def compact(self, floor: int = 0) -> None:
        if len(self.counters) <= self.capacity:
            return  # nothing was left out: merge only leaves keys out when compaction must follow
        values = sorted((c.packets for c in self.counters.values()), reverse=True)
        cut = max(values[self.capacity], floor)
        kept: dict[int, Counter] = {}
        for key, counter in self.counters.items():
            remaining = counter.packets - cut
            if remaining > 0:
                # Bytes and rejects shrink in proportion, so rates stay consistent with the packet estimate.
                scale = remaining / counter.packets
                counter.bytes = int(counter.bytes * scale)
                counter.reject_packets = int(counter.reject_packets * scale)
                counter.spoofable = int(counter.spoofable * scale)
                counter.packets = remaining
                kept[key] = counter
        self.counters = kept
        self.error += cut


def _packets_of(item: tuple[int, list[int]]) -> int:
    return item[1][0]


@dataclass(slots=True)
class TrafficSummary:
    """Everything detection needs to know about a window of inbound traffic, in bounded memory."""

    capacity: int
    max_prefix_v4: int = 16
    max_prefix_v6: int = 48
    levels: dict[tuple[int, int], LevelSummary] = field(default_factory=dict)
    total_packets: int = 0
    total_bytes: int = 0
    reject_packets: int = 0
    first_start: int | None = None
    last_end: int | None = None
    stats: ParseStats = field(default_factory=ParseStats)
    dependencies: set[tuple[int, int]] = field(default_factory=set)  # (version, address) never to deny

    @classmethod
    def for_share(cls, min_share: float, max_prefix_v4: int = 16, max_prefix_v6: int = 48) -> TrafficSummary:
        """A summary sized so that every source or prefix above `min_share` is guaranteed to be found, and
        exact up to EXACT_KEYS keys per level."""
        capacity = min(100_000, max(EXACT_KEYS, math.ceil(8 / min_share)))
        return cls(capacity, max_prefix_v4, max_prefix_v6)

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

    def add_dependencies(self, found: Iterable[tuple[int, int]]) -> None:
        self.dependencies = keep_dependencies((*self.dependencies, *found))

    def add(self, batch: SourceBatch) -> None:
        """Fold one batch's exact per-source tallies into every level."""
        self.stats.merge(batch.stats)
        if batch.dependencies:
            self.add_dependencies(batch.dependencies)
        if batch.first_start is not None:
            self.first_start = min(batch.first_start, self.first_start or batch.first_start)
        if batch.last_end is not None:
            self.last_end = max(batch.last_end, self.last_end or batch.last_end)
        rows: dict[int, list[tuple[int, int, int, int, int]]] = {4: [], 6: []}
        for (version, value), (packets, octets, rejected, _records, spoofable) in batch.sources.items():
            rows[version].append((value, packets, octets, rejected, spoofable))
            self.total_packets += packets
            self.total_bytes += octets
            self.reject_packets += rejected
        for (version, length), level in self.levels.items():
            shift = ADDRESS_BITS[version] - length
            grouped: dict[int, list[int]] = {}
            for value, packets, octets, rejected, spoofable in rows[version]:
                key = value >> shift
                entry = grouped.get(key)
                if entry is None:
                    grouped[key] = [packets, octets, rejected, spoofable]
                else:
                    entry[0] += packets
                    entry[1] += octets
                    entry[2] += rejected
                    entry[3] += spoofable
            if grouped:
                level.merge(grouped)


def key_network(version: int, prefix_len: int, key: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network a level's key stands for: the key is the prefix's leading `prefix_len` bits."""
    value = key << (ADDRESS_BITS[version] - prefix_len)
    if version == 4:
        return ipaddress.IPv4Network((value, prefix_len))
    return ipaddress.IPv6Network((value, prefix_len))
