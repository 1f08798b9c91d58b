"""Levels held in arrays across drains (`drain_into(..., hold=True)`, what `floodgate analyze` does between
flushes) end as the same summary as the reference parser's batch-by-batch merges, compaction included."""

from __future__ import annotations

import copy
import socket
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from emulator.traffic import VPC_CIDR
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser, PendingBatch, SourceBatch
from floodgate.core.scanning import ReferenceScanner
from floodgate.core.summary import Counter, TrafficSummary

np = pytest.importorskip("numpy")
fastscan = pytest.importorskip("floodgate.core.fastscan")

# Every test runs with the compiled block scanner and with numpy only (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("scan_engine")

V2 = FlowLogFormat.parse(DEFAULT_FORMAT)
RECORD = (
    "2 123456789012 eni-0abc {src} 10.0.1.10 40000 443 {proto} {packets} {octets} "
    "1764000000 1764000060 {act} OK"
)

# Sources in a few /16s and /24s, so that every level sees keys repeat, collide and get compacted away.
_source = st.builds(
    "{}.{}.{}.{}".format,
    st.sampled_from([45, 198, 203]),
    st.sampled_from([0, 51, 113]),
    st.integers(0, 3),
    st.integers(0, 40),
)
_record = st.builds(
    lambda src, packets, proto, act, odd: RECORD.format(
        src=src, proto=proto, packets=packets, octets=packets * 60, act=act
    ).replace(" 443 ", "\t443 " if odd else " 443 "),
    _source,
    st.integers(1, 5000),
    st.sampled_from(["6", "17"]),
    st.sampled_from(["ACCEPT", "REJECT"]),
    st.booleans(),  # a tab: the reference parser takes the line, its source joins the arrays' at the drain
)

_repeated = st.builds(  # from a handful of sources, so that blocks mostly repeat known ones
    lambda last, packets: RECORD.format(
        src=f"45.0.0.{last}", proto=6, packets=packets, octets=packets * 60, act="ACCEPT"
    ),
    st.integers(0, 5),
    st.integers(1, 5000),
)


def _summarise(scanner: Any, drains: list[list[str]], summary: TrafficSummary) -> TrafficSummary:
    """Each drain's lines scanned in one block and drained, holding until the last drain. `scanner` is
    either kind (Any: numpy, and so the vectorised scanner's module, is optional)."""
    for index, lines in enumerate(drains):
        pending = PendingBatch()
        scanner.scan_into(("\n".join(lines) + "\n").encode(), pending)
        scanner.drain_into(pending, summary, hold=index < len(drains) - 1)
    return summary


def _both(drains: list[list[str]], summary: TrafficSummary) -> tuple[TrafficSummary, TrafficSummary]:
    fast = _summarise(fastscan.FastScanner(FlowLogParser(V2, [VPC_CIDR])), drains, copy.deepcopy(summary))
    reference = _summarise(ReferenceScanner(FlowLogParser(V2, [VPC_CIDR])), drains, copy.deepcopy(summary))
    return fast, reference


@settings(max_examples=80, deadline=None)
@given(
    drains=st.lists(st.lists(_record, min_size=1, max_size=60), min_size=1, max_size=6),
    capacity=st.integers(2, 30),
)
def test_held_levels_end_as_the_reference_merges_them(drains: list[list[str]], capacity: int) -> None:
    fast, reference = _both(drains, TrafficSummary(capacity=capacity, max_prefix_v4=16))
    assert fast == reference
    assert fast.stats.parsed == sum(map(len, drains))


@settings(max_examples=40, deadline=None)
@given(
    drains=st.lists(st.lists(_record, min_size=1, max_size=40), min_size=1, max_size=4),
    before=st.dictionaries(st.integers(0x2D000000, 0x2D0000FF), st.integers(1, 9000), max_size=12),
)
def test_held_levels_start_from_counters_the_summary_already_has(
    drains: list[list[str]], before: dict[int, int]
) -> None:
    summary = TrafficSummary(capacity=8)
    batch = SourceBatch()
    batch.sources = {(4, value): [packets, packets * 80, 0, 1, packets] for value, packets in before.items()}
    summary.add(batch)
    fast, reference = _both(drains, summary)
    assert fast == reference


def test_counters_beyond_exact_integer_range_fold_through_the_levels_alike() -> None:
    """A summary holding a counter of 2**64 bytes (beyond int64): the scanner folds as the levels do."""
    summary = TrafficSummary(capacity=4)
    summary.levels[(4, 32)].counters[0x2D000001] = Counter(10, 2**64, 0, 0)
    drains = [
        [
            RECORD.format(src=f"45.0.0.{i}", proto=6, packets=i, octets=i * 60, act="ACCEPT")
            for i in range(1, 9)
        ]
    ]
    fast, reference = _both(drains * 2, summary)
    assert fast == reference
    assert fast.levels[(4, 32)].error > 0  # compaction happened on that path too


@settings(max_examples=60, deadline=None)
@given(
    blocks=st.lists(st.lists(st.one_of(_record, _repeated), min_size=1, max_size=50), min_size=2, max_size=8),
    merge_rows=st.integers(1, 20),
)
def test_per_source_sums_agree_whether_sources_repeat_or_not(
    blocks: list[list[str]], merge_rows: int
) -> None:
    """Blocks looked up in the merged table both ways (rows of known sources summed in by position, or
    the block's own sums first), as a small merge size makes the table fill early: the reference's sums."""
    scanner = fastscan.FastScanner(FlowLogParser(V2, [VPC_CIDR]))
    scanner._sums.MERGE_ROWS = merge_rows
    pending = PendingBatch()
    for lines in blocks:
        scanner.scan_into(("\n".join(lines) + "\n").encode(), pending)
    scanner.drain(pending)
    fast = scanner.parser.finish(pending)
    reference = FlowLogParser(V2, [VPC_CIDR]).parse([line for lines in blocks for line in lines])
    assert fast.sources == reference.sources
    assert fast.stats == reference.stats


def _inet_pton(text: str) -> int | None:
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        return None


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text("0123456789.", min_size=1, max_size=15),
            st.builds("{}.{}.{}.{}".format, *[st.integers(0, 300)] * 4).filter(lambda t: len(t) <= 15),
        ),
        min_size=1,
        max_size=40,
    )
)
@example(["1234.5.6.7", "1.2.3.4", "01.2.3.4", "1..2.3", "256.1.1.1", "1.2.3.4.", ".1.2.3", "10.0.0.0"])
def test_dotted_quads_read_addresses_as_inet_pton_does(texts: list[str]) -> None:
    """The nibble keys of digit-and-dot texts (as `_Block.ipv4` builds them: byte - 44 per character,
    first character lowest, padding 0) are read as inet_pton reads the texts."""
    keys = np.array(
        [sum(((byte - 44) & 15) << 4 * i for i, byte in enumerate(text.encode())) for text in texts],
        dtype=np.uint64,
    )
    values, ok = fastscan._dotted_quads(keys)
    expected = [_inet_pton(text) for text in texts]
    assert [int(v) if good else None for v, good in zip(values, ok, strict=True)] == expected


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**13),  # packets: every width to past the 12 digits allowed
            st.integers(0, 10**16),  # bytes: to past 15
            st.integers(0, 99_999_999),  # start within eight digits, so that whole blocks take one word
            st.integers(0, 10**11),  # end: ten digits and more
        ),
        min_size=1,
        max_size=30,
    ),
    st.booleans(),
)
def test_numbers_of_every_width_read_as_the_reference_reads_them(
    rows: list[tuple[int, int, int, int]], short: bool
) -> None:
    """Counters and times of one to seventeen digits, in blocks whose fields all fit one word (`short`:
    numbers cut to eight digits) or not: the same sums, times and skip reasons as the reference parser."""
    lines = []
    for packets, octets, start, end in rows:
        numbers = [packets, octets, start, end]
        if short:
            numbers = [n % 10**8 for n in numbers]
        lines.append(
            "2 123456789012 eni-0abc 45.0.0.1 10.0.1.10 40000 443 6 {} {} {} {} ACCEPT OK".format(*numbers)
        )
    fast = fastscan.FastScanner(FlowLogParser(V2, [VPC_CIDR])).scan(("\n".join(lines) + "\n").encode())
    reference = FlowLogParser(V2, [VPC_CIDR]).parse(lines)
    assert fast.sources == reference.sources
    assert fast.stats == reference.stats
    assert (fast.first_start, fast.last_end) == (reference.first_start, reference.last_end)


def test_levels_held_until_the_bound_of_exact_arithmetic_continue_through_the_levels_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A drain that would take the held counters past exact int64/float64 range (lowered here to 10**6
    bytes) hands the levels back and folds as the levels do: the same summary as the reference's."""
    monkeypatch.setattr(fastscan, "_EXACT_BYTES", 10**6)
    drains = [
        [
            RECORD.format(src=f"45.0.{d}.{i}", proto=6, packets=i, octets=9000 * i, act="ACCEPT")
            for i in range(1, 12)
        ]
        for d in range(4)
    ]
    fast, reference = _both(drains, TrafficSummary(capacity=4))
    assert fast == reference
    assert fast.total_bytes > 10**6 and fast.levels[(4, 32)].error > 0
