"""The bounded summary keeps its stated guarantee; the vectorised scanner agrees with the reference parser."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.traffic import VPC_CIDR, Source, background, flow_lines, garbage_lines, public_addresses
from floodgate.core.detect import DetectionConfig
from floodgate.core.flowlog import (
    DEFAULT_FORMAT,
    STACK_FORMAT,
    FlowLogFormat,
    FlowLogParser,
    SourceBatch,
    TimeBounds,
)
from floodgate.core.model import ParseStats
from floodgate.core.networks import DenyPolicy
from floodgate.core.scanning import ReferenceScanner
from floodgate.core.summary import TrafficSummary

# Every test runs with the compiled block scanner and with numpy only (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("scan_engine")

V2 = FlowLogFormat.parse(DEFAULT_FORMAT)


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.lists(st.integers(1, 5000), min_size=1, max_size=300), min_size=1, max_size=6),
    capacity=st.integers(4, 40),
)
def test_misra_gries_bounds_hold_across_batches(weights: list[list[int]], capacity: int) -> None:
    summary = TrafficSummary(capacity=capacity)
    truth: dict[int, int] = {}
    for batch_weights in weights:
        batch = SourceBatch()
        for i, packets in enumerate(batch_weights):
            key = (4, 0x2D000000 + (i * 7919) % 1000)  # keys repeat across batches
            tally = batch.sources.setdefault(key, [0, 0, 0, 0, 0])
            tally[0] += packets
            tally[1] += 40 * packets
            truth[key[1]] = truth.get(key[1], 0) + packets
        summary.add(batch)
    level = summary.levels[(4, 32)]
    total = sum(truth.values())
    assert len(level.counters) <= capacity
    assert level.error <= total / (capacity + 1)
    for value, true in truth.items():
        counter = level.counters.get(value)
        estimate = counter.packets if counter else 0
        assert estimate <= true <= estimate + level.error
        if true > total / (capacity + 1):
            assert counter is not None, "a heavy hitter was dropped"


def _lines(seed: int) -> list[str]:
    rng = random.Random(seed)
    sources = [*background(rng, 300, 10), Source(public_addresses(rng, 1, 6)[0], 900, flows=3)]
    sources += [Source(a, 5000, flows=6, action="REJECT") for a in public_addresses(rng, 2)]
    lines = list(flow_lines(sources, intervals=2, seed=seed))
    for junk in garbage_lines(rng, len(lines) // 20):
        lines.insert(rng.randrange(len(lines)), junk)
    return lines


@pytest.mark.parametrize("seed", range(6))
def test_fast_scanner_matches_the_reference_parser(seed: int) -> None:
    fastscan = pytest.importorskip("floodgate.core.fastscan")
    data = ("\n".join(_lines(seed)) + "\n").encode()
    reference = FlowLogParser(V2, [VPC_CIDR]).parse(data.decode().split("\n")[:-1])
    fast = fastscan.FastScanner(FlowLogParser(V2, [VPC_CIDR])).scan(data)
    assert fast.sources == reference.sources
    assert fast.stats == reference.stats
    assert (fast.first_start, fast.last_end) == (reference.first_start, reference.last_end)


_field = st.one_of(
    st.sampled_from(["-", "OK", "ACCEPT", "REJECT", "NODATA", "ingress", "egress", "IPv4", "10.0.1.10", "0"]),
    st.from_regex(r"[0-9]{1,16}", fullmatch=True),
    st.from_regex(r"[0-9.]{1,17}", fullmatch=True),
    st.from_regex(r"[ -~]{0,6}", fullmatch=True),
)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.lists(_field, min_size=13, max_size=15), max_size=25), custom=st.booleans())
def test_fast_scanner_agrees_on_arbitrary_field_soup(rows: list[list[str]], custom: bool) -> None:
    fastscan = pytest.importorskip("floodgate.core.fastscan")
    fmt = (
        FlowLogFormat.parse(
            "${version} ${srcaddr} ${dstaddr} ${pkt-srcaddr} ${packets} ${bytes} ${start} ${end} ${action} "
            "${log-status} ${flow-direction} ${type} ${tcp-flags} ${account-id}"
        )
        if custom
        else V2
    )
    text = "\n".join(" ".join(row) for row in rows) + "\n"
    reference = FlowLogParser(fmt, [VPC_CIDR]).parse(text.split("\n")[:-1])
    fast = fastscan.FastScanner(FlowLogParser(fmt, [VPC_CIDR])).scan(text.encode())
    assert fast.sources == reference.sources
    assert fast.stats == reference.stats
    assert (fast.first_start, fast.last_end) == (reference.first_start, reference.last_end)


@pytest.mark.parametrize("flush", [50, 1_000_000])
def test_analyze_plans_identically_with_and_without_numpy(
    flush: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("floodgate.core.fastscan")
    from floodgate.cli import analyze, inputs  # noqa: PLC0415 - patched per case

    rng = random.Random(flush)
    sources = background(rng, 400, 10) + [Source(a, 6000, flows=5) for a in public_addresses(rng, 4)]
    sources += [Source(f"203.0.113.{i}", 200, flows=2) for i in range(1, 120)]
    sources += [Source(public_addresses(rng, 1, 6)[0], 9000, flows=3), Source("10.0.7.7", 9000, flows=3)]
    lines = list(flow_lines(sources, intervals=3))
    for junk in garbage_lines(rng, len(lines) // 30):
        lines.insert(rng.randrange(len(lines)), junk)
    capture = tmp_path / "capture.log"
    capture.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(analyze, "FLUSH_SOURCES", flush)
    monkeypatch.setattr(inputs, "BLOCK_BYTES", 64 << 10)
    config = DetectionConfig(policy=DenyPolicy.build(vpc_cidrs=[VPC_CIDR]), min_share=0.005)
    fmt = FlowLogFormat.parse(DEFAULT_FORMAT)
    fast = analyze.analyze_paths([str(capture)], fmt, config, [VPC_CIDR])
    monkeypatch.setattr(analyze, "block_scanner", ReferenceScanner)
    reference = analyze.analyze_paths([str(capture)], fmt, config, [VPC_CIDR])
    assert fast == reference
    assert {d.cidr for d in fast.denies} >= {"203.0.113.0/24"}


def test_a_trailing_comma_does_not_pass_for_the_address_before_it() -> None:
    """ "," once read as padding: "198.51.100.7," was summed as 198.51.100.7; inet_pton refuses it."""
    fastscan = pytest.importorskip("floodgate.core.fastscan")
    line = f"2 123456789012 eni-0abc {{}} 10.0.1.10 1 443 6 10 4000 {1_764_000_000} {1_764_000_060} ACCEPT OK"
    text = "\n".join(line.format(src) for src in ("198.51.100.7", "198.51.100.7,", "198.51.1,0.7")) + "\n"
    fast = fastscan.FastScanner(FlowLogParser(V2, [VPC_CIDR])).scan(text.encode())
    assert fast.sources == {(4, 0xC6336407): [10, 4000, 0, 1, 0]}
    assert fast.stats.skipped == {"bad_address": 2}


def _summaries(lines: list[str]) -> tuple[tuple[bytes, ...], tuple[bytes, ...], ParseStats, ParseStats]:
    """One delivery's packed summary and statistics, through the vectorised and the reference scanner."""
    scanning = pytest.importorskip("floodgate.core.scanning")
    window = pytest.importorskip("floodgate.core.window")
    packed, stats = [], []
    for scanner in (
        scanning.block_scanner(FlowLogParser(V2, [VPC_CIDR])),
        scanning.ReferenceScanner(FlowLogParser(V2, [VPC_CIDR])),
    ):
        summary = TrafficSummary(capacity=40)
        stats.append(scanning.summarise_lines(scanner, lines, summary).stats)
        packed.append(window.pack_summary(summary))
    return packed[0], packed[1], stats[0], stats[1]


@pytest.mark.parametrize("seed", range(4))
def test_a_delivery_summarises_identically_through_either_scanner(seed: int) -> None:
    pytest.importorskip("floodgate.core.fastscan")
    rng = random.Random(seed)
    lines = _lines(seed)
    # More distinct sources than the capacity, so that compaction happens; odd lines the reference takes
    # (a tab, a non-ASCII byte) from sources the arrays also hold, so that both halves meet in one merge.
    record = "2 123456789012 eni-0abc {} 10.0.1.10 1 443 6 {} 9000 1764000000 1764000060 ACCEPT OK"
    lines += [record.format(a, rng.randint(1, 90)) for a in public_addresses(rng, 120)]
    odd = lines[-1].replace(" 443 ", "\t443 ")
    lines += [odd, odd.replace("eni-0abc", "eni-0abcé")]
    fast, reference, fast_stats, reference_stats = _summaries(lines)
    assert fast == reference
    assert fast_stats == reference_stats
    assert reference_stats.parsed > 0


_message = st.one_of(
    st.sampled_from(_lines(99)[:40]),
    st.lists(_field, min_size=13, max_size=15).map(" ".join),
    st.text(max_size=30),  # newlines, surrogates, any whitespace
)


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(_message, min_size=1, max_size=30))
def test_any_delivery_summarises_identically_through_either_scanner(lines: list[str]) -> None:
    pytest.importorskip("floodgate.core.fastscan")
    fast, reference, fast_stats, reference_stats = _summaries(lines)
    assert fast == reference
    assert fast_stats == reference_stats


_STACK = FlowLogFormat.parse(STACK_FORMAT)
_NOW = 1_764_000_000
# Per field of the stack's v5 format: plausible values, with enough variety to reach every skip reason,
# spoofable protocol/flag mixes, egress records of connections the VPC opened, and times around the bounds.
_stack_values = {
    "srcaddr": ["198.51.100.7", "203.0.113.9", "10.0.1.10", "10.0.2.20", "-", "2001:db8::1", "01.2.3.4"],
    "dstaddr": ["10.0.1.10", "8.8.8.8", "198.51.100.7", "-"],
    "srcport": ["443", "53", "40000", "-", "70000"],
    "dstport": ["443", "53", "51515", "-"],
    "protocol": ["6", "17", "1", "58", "47", "-"],
    "packets": ["1", "10", "5000", "-", "0"],
    "bytes": ["4000", "900000", "20", "-"],
    "start": [str(_NOW - 900), str(_NOW - 60), str(_NOW), str(_NOW + 30), str(_NOW + 900), "x"],
    "end": [str(_NOW - 800), str(_NOW - 30), str(_NOW + 60), str(_NOW + 1000)],
    "action": ["ACCEPT", "REJECT", "-"],
    "log-status": ["OK", "OK", "NODATA"],
    "tcp-flags": ["2", "18", "3", "0", "-", "600", "19"],
    "type": ["IPv4", "IPv6", "-", "EFA"],
    "pkt-srcaddr": ["-", "198.51.100.8", "203.0.113.10", "10.0.1.10"],
    "pkt-dstaddr": ["-", "10.0.1.10", "8.8.4.4"],
    "pkt-src-aws-service": ["-", "-", "S3"],
    "flow-direction": ["ingress", "egress", "-"],
}
_stack_row = st.tuples(
    *(
        st.sampled_from(_stack_values.get(name, ["2", "123456789012", "eni-0abc", "vpc-1"]))
        for name in _STACK.fields
    )
).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(_stack_row, min_size=1, max_size=40), bounded=st.booleans())
def test_fast_scanner_agrees_on_v5_records_with_time_bounds(lines: list[str], bounded: bool) -> None:
    """Protocol and flags (spoofable packets), AWS services, dependencies and the record's own time: the
    vectorised scanner leaves to the reference what it cannot judge, and sums the rest identically."""
    fastscan = pytest.importorskip("floodgate.core.fastscan")
    bounds = TimeBounds(oldest_end=_NOW - 100, newest_start=_NOW + 60) if bounded else None
    reference = FlowLogParser(_STACK, [VPC_CIDR]).parse(lines, bounds)
    fast = fastscan.FastScanner(FlowLogParser(_STACK, [VPC_CIDR])).scan(
        ("\n".join(lines) + "\n").encode(), bounds
    )
    assert fast.sources == reference.sources
    assert fast.stats == reference.stats
    assert fast.dependencies == reference.dependencies
    assert (fast.first_start, fast.last_end) == (reference.first_start, reference.last_end)


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(_stack_row, min_size=1, max_size=40))
def test_a_bounded_v5_delivery_summarises_identically_through_either_scanner(lines: list[str]) -> None:
    scanning = pytest.importorskip("floodgate.core.scanning")
    window = pytest.importorskip("floodgate.core.window")
    pytest.importorskip("floodgate.core.fastscan")
    bounds = TimeBounds(oldest_end=_NOW - 100, newest_start=_NOW + 60)
    results = []
    for scanner in (
        scanning.block_scanner(FlowLogParser(_STACK, [VPC_CIDR])),
        scanning.ReferenceScanner(FlowLogParser(_STACK, [VPC_CIDR])),
    ):
        summary = TrafficSummary(capacity=40)
        batch = scanning.summarise_lines(scanner, lines, summary, bounds)
        results.append((window.pack_summary(summary), batch.stats, batch.dependencies, summary.dependencies))
    assert results[0] == results[1]
