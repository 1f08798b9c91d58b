"""The window's pure half: batch summaries packed into bounded parts and merged back without losing a
heavy hitter."""

from __future__ import annotations

import copy
import ipaddress
import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.traffic import VPC_CIDR, Source, background, flow_lines, public_addresses
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser, SourceBatch
from floodgate.core.summary import Counter, TrafficSummary
from floodgate.core.window import (
    COUNTER,
    CorruptPart,
    LevelSums,
    max_parts,
    merge_batches,
    open_batch,
    pack_summary,
    rate_window_s,
    reject_rate_of,
    reject_rates,
)

V2 = FlowLogFormat.parse(DEFAULT_FORMAT)


def summary_of(batch: SourceBatch, capacity: int = 800) -> TrafficSummary:
    summary = TrafficSummary(capacity=capacity)
    summary.add(batch)
    return summary


def batch_of(sources: list[Source], seed: int, intervals: int = 1) -> SourceBatch:
    return FlowLogParser(V2, [VPC_CIDR]).parse(flow_lines(sources, intervals=intervals, seed=seed))


def _values(counter: Counter) -> tuple[int, ...]:
    c = counter
    return (c.packets, c.bytes, c.reject_packets, c.spoofable)


def counters(summary: TrafficSummary) -> dict[tuple[int, int], dict[int, tuple[int, ...]]]:
    return {
        key: {k: (c.packets, c.bytes, c.reject_packets, c.spoofable) for k, c in level.counters.items()}
        for key, level in summary.levels.items()
    }


def test_merging_packed_batches_gives_what_adding_the_batches_gives_while_under_capacity() -> None:
    rng = random.Random(3)
    first = batch_of([*background(rng, 40), Source("203.0.113.9", 9000, flows=8)], seed=1)
    second = batch_of([*background(rng, 40), Source("203.0.113.9", 7000, flows=8, action="REJECT")], seed=2)
    direct = TrafficSummary(capacity=800)
    direct.add(first)
    direct.add(second)
    window = TrafficSummary(capacity=800)
    merge_batches(window, [open_batch(pack_summary(summary_of(batch))) for batch in (first, second)])
    assert counters(window) == counters(direct)
    assert (window.total_packets, window.total_bytes, window.reject_packets) == (
        direct.total_packets,
        direct.total_bytes,
        direct.reject_packets,
    )
    assert (window.first_start, window.last_end) == (direct.first_start, direct.last_end)
    assert window.stats == direct.stats
    assert all(level.error == 0 for level in window.levels.values())


def test_parts_are_bounded_by_configuration_not_by_distinct_sources() -> None:
    one = batch_of([Source("203.0.113.9", 9000)], seed=1)
    many = SourceBatch()
    for n in range(100_000):
        packets = n % 997 + 1  # unequal weights, so the summary keeps its full capacity of counters
        many.sources[(4, int(ipaddress.IPv4Address("11.0.0.0")) + n * 97)] = [packets, 60 * packets, 0, 1, 0]
    small, large = pack_summary(summary_of(one)), pack_summary(summary_of(many))
    assert len(small) == len(large) == max_parts(summary_of(one)) == 1
    assert len(large[0]) < 400_000  # one DynamoDB item
    kept = sum(len(level.counters) for level in summary_of(many).levels.values())
    assert kept > 1500  # 800 sources, 800 /24s and every /16
    tiny = pack_summary(summary_of(many), counters_per_part=500)
    assert len(tiny) == -(-kept // 500) <= max_parts(summary_of(many), counters_per_part=500) == 10


def test_packing_is_deterministic_so_a_redelivery_writes_identical_parts() -> None:
    batch = batch_of(background(random.Random(5), 300), seed=4)
    assert pack_summary(summary_of(batch)) == pack_summary(summary_of(copy.deepcopy(batch)))


def test_merged_window_keeps_every_heavy_hitter_within_its_error_bound() -> None:
    rng = random.Random(11)
    heavy = public_addresses(rng, 3)
    window = TrafficSummary(capacity=64)
    truth: dict[str, int] = {}
    digests = []
    for seed in range(6):
        sources = background(rng, 2000, pps=2.0) + [Source(a, 3000, flows=4) for a in heavy]
        batch = batch_of(sources, seed=seed)
        for (_, value), tally in batch.sources.items():
            address = str(ipaddress.IPv4Address(value))
            truth[address] = truth.get(address, 0) + tally[0]
        digests.append(open_batch(pack_summary(summary_of(batch, capacity=64))))
    merge_batches(window, digests)
    level = window.levels[(4, 32)]
    assert len(level.counters) <= 64
    assert level.error <= window.total_packets / 65 * 2  # batch errors plus the merge's own compaction
    for address in heavy:
        counter = level.counters[int(ipaddress.IPv4Address(address))]
        assert counter.packets <= truth[address] <= counter.packets + level.error


def _digest_of(sources: dict[int, tuple[int, int, int, int]]) -> tuple[bytes, ...]:
    return pack_summary(summary_of(_batch_of_tallies(sources)))


_TALLY = st.tuples(*(st.integers(0, 10**12),) * 4)
_BATCHES = st.lists(
    st.dictionaries(st.integers(0, 2**32 - 1).map(lambda v: v & 0xFF0F00FF), _TALLY, max_size=30),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(batches=_BATCHES, kept=st.lists(st.booleans(), min_size=6, max_size=6))
def test_level_sums_kept_across_reads_equal_the_sums_of_the_batches_read_now(
    batches: list[dict[int, tuple[int, int, int, int]]], kept: list[bool]
) -> None:
    """A reader adds every batch, then takes away some (versions it no longer reads): what is left merges
    into exactly the window of the batches still read, zero-packet sources included (a source seen counts
    as a prefix member even when it sent nothing measurable)."""
    digests = [open_batch(_digest_of(batch)) for batch in batches]
    sums = LevelSums()
    for digest in digests:
        sums.add(digest)
    still = [digest for digest, keep in zip(digests, kept, strict=False) if keep]
    for digest, keep in zip(digests, kept, strict=False):
        if not keep:
            sums.remove(digest)
    expected = TrafficSummary(capacity=800)  # no compaction: every key kept exactly
    for batch, keep in zip(batches, kept, strict=False):
        if keep:
            expected.add(_batch_of_tallies(batch))
    window = TrafficSummary(capacity=800)
    merge_batches(window, still, sums.copy())
    assert counters(window) == counters(expected)
    assert window.total_packets == expected.total_packets


def _batch_of_tallies(sources: dict[int, tuple[int, int, int, int]]) -> SourceBatch:
    batch = SourceBatch(first_start=100, last_end=160)
    for value, (packets, octets, rejected, spoofable) in sources.items():
        batch.sources[(4, value)] = [packets, octets, rejected, 1, spoofable]
    return batch


def test_a_reader_with_narrower_prefix_caps_ignores_the_levels_it_does_not_keep() -> None:
    batch = batch_of([Source("203.0.113.9", 9000)], seed=1)
    window = TrafficSummary(capacity=800, max_prefix_v4=24)
    merge_batches(window, [open_batch(pack_summary(summary_of(batch)))])
    assert set(window.levels) == {(4, 32), (4, 24), (6, 128), (6, 64), (6, 48)}
    assert window.levels[(4, 24)].counters


def test_damaged_or_foreign_parts_are_refused() -> None:
    good = pack_summary(summary_of(batch_of([Source("203.0.113.9", 9000)], seed=1)))[0]
    raw = zlib.decompress(good)
    future = zlib.compress(raw.replace(b'"v":2', b'"v":9'))
    ragged = zlib.compress(raw + b"\x00" * (COUNTER.size - 1))
    for part, message in ((b"junk", "cannot open part"), (future, "part format 9"), (ragged, "not whole")):
        with pytest.raises(CorruptPart, match=message):
            open_batch([part])


def test_the_rate_window_is_the_records_span_within_one_interval_and_the_window_plus_one() -> None:
    summary = TrafficSummary(capacity=64)
    assert rate_window_s(summary, 300) == 60  # no records: one aggregation interval
    summary.first_start, summary.last_end = 1000, 1200
    assert rate_window_s(summary, 300) == 200
    summary.first_start = 1200 - 3600  # a late delivery of hour-old records
    assert rate_window_s(summary, 300) == 360


def test_reject_rates_name_every_source_and_prefix_seen_rejected() -> None:
    sources = [
        Source("203.0.113.9", 1000, flows=2, action="REJECT"),
        Source("203.0.113.10", 500, flows=2, action="REJECT"),
        Source("198.51.100.1", 800, flows=2),
    ]
    summary = summary_of(batch_of(sources, seed=1))
    rates = reject_rates(summary, 60.0)
    assert set(rates) == {"203.0.113.9/32", "203.0.113.10/32", "203.0.113.0/24", "203.0.0.0/16"}
    assert rates["203.0.113.0/24"] == pytest.approx(rates["203.0.113.9/32"] + rates["203.0.113.10/32"])
    assert reject_rate_of(summary, "203.0.113.9/32", 60.0) == rates["203.0.113.9/32"]
    # A prefix length the summary keeps no level for: the /24s inside it add up.
    assert reject_rate_of(summary, "203.0.112.0/20", 60.0) == pytest.approx(rates["203.0.113.0/24"])
    assert reject_rate_of(summary, "198.51.100.1/32", 60.0) == 0.0
    assert reject_rate_of(summary, "2001:db8::/32", 60.0) == 0.0  # wider than any IPv6 level kept
