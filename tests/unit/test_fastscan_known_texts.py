"""The vectorised scanner's shortcuts agree with the reference parser: destinations looked up in a cache of
texts seen in earlier blocks (collisions, pauses and texts that differ by one character included), and
words compared through the bytes that end a field (a longer field ending the same way is not the word).
These are the numpy path's own shortcuts: the scanners here never use the compiled one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.traffic import VPC_CIDR
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser, PendingBatch

pytest.importorskip("numpy")
fastscan = pytest.importorskip("floodgate.core.fastscan")

V2 = FlowLogFormat.parse(DEFAULT_FORMAT)
LINE = (
    "2 123456789012 eni-0abc {src} {dst} 40000 443 {proto} {packets} {octets} 1764000000 1764000060 "
    "{act} {st}"
)

# Destinations inside the VPC (10.0.0.0/16) and out, and texts one character away from them that are not
# the same address, or no address: a cached text must never answer for any of them.
_DESTINATIONS = [
    "10.0.1.10",
    "10.0.1.100",
    "10.0.1.1",
    "10.0.11.0",
    "10.0.1.01",
    "010.0.1.10",
    "10.0.1.256",
    "10.0.1.10.",
    "10.1.1.10",
    "9.0.1.10",
    "10.0.255.255",
    "100.0.1.10",
    "1.0.1.10",
    "10.0.1.1a",
    "10.0.1.10000000",
    "-",
]


def _fast_and_reference(
    blocks: list[list[str]], fmt: FlowLogFormat = V2, slot_bits: int | None = None
) -> None:
    """All blocks through one vectorised scanner (its caches kept from block to block, with 2**slot_bits
    slots when given) and all lines through the reference parser: the same sources, statistics and times."""
    scanner = fastscan.FastScanner(FlowLogParser(fmt, [VPC_CIDR]), compiled=False)
    if slot_bits is not None:
        scanner._destinations = type("Smaller", (fastscan._KnownTexts,), {"SLOT_BITS": slot_bits})()
    pending = PendingBatch()
    for lines in blocks:
        scanner.scan_into(("\n".join(lines) + "\n").encode(), pending)
    scanner.drain(pending)
    fast = scanner.parser.finish(pending)
    reference = FlowLogParser(fmt, [VPC_CIDR]).parse([line for lines in blocks for line in lines])
    assert fast.sources == reference.sources
    assert fast.stats == reference.stats
    assert (fast.first_start, fast.last_end) == (reference.first_start, reference.last_end)


_line = st.builds(
    lambda src, dst, packets: LINE.format(
        src=f"45.0.0.{src}", dst=dst, proto=6, packets=packets, octets=packets * 60, act="ACCEPT", st="OK"
    ),
    st.integers(0, 9),
    st.sampled_from(_DESTINATIONS),
    st.integers(1, 5000),
)


@settings(max_examples=150, deadline=None)
@given(
    blocks=st.lists(st.lists(_line, min_size=1, max_size=30), min_size=1, max_size=6),
    slot_bits=st.sampled_from([0, 1, 12]),
)
def test_destinations_through_the_cache_read_as_the_reference_reads_them(
    blocks: list[list[str]], slot_bits: int
) -> None:
    """Blocks of a few destinations, valid and not, scanned one after another: with one slot (every text
    evicts the one before), two, or the real table, the answers are the reference parser's."""
    _fast_and_reference(blocks, slot_bits=slot_bits)


def test_destinations_that_never_repeat_pause_the_lookups_and_those_that_come_back_resume_them() -> None:
    """A spoofed-looking run of distinct destinations (all outside the VPC, so not inbound), then the VPC's
    own interfaces again and again: the cache pauses and comes back, and every record is judged as the
    reference judges it."""
    distinct = [
        [
            LINE.format(
                src="45.0.0.1",
                dst=f"{20 + b}.{i // 250}.{i % 250}.9",
                proto=17,
                packets=3,
                octets=180,
                act="ACCEPT",
                st="OK",
            )
            for i in range(400)
        ]
        for b in range(6)
    ]
    inside = [
        [
            LINE.format(
                src=f"45.0.{b}.{i % 50}",
                dst=f"10.0.1.{10 + i % 3}",
                proto=6,
                packets=9,
                octets=900,
                act="REJECT",
                st="OK",
            )
            for i in range(300)
        ]
        for b in range(6)
    ]
    known = fastscan._KnownTexts()
    scanner = fastscan.FastScanner(FlowLogParser(V2, [VPC_CIDR]), compiled=False)
    scanner._destinations = known
    pending = PendingBatch()
    paused = []
    for lines in [*distinct, *inside]:
        scanner.scan_into(("\n".join(lines) + "\n").encode(), pending)
        paused.append(known._paused)
    assert max(paused[: len(distinct)]) > 0, "distinct destinations never paused the lookups"
    assert paused[-1] == 0 and known._pause == 1, "repeating destinations did not resume them"
    _fast_and_reference([*distinct, *inside])


_word = st.sampled_from(
    ["OK", "NOK", "XOK", "ACCEPT", "REJECT", "XACCEPT", "REJECTX", "CCEPT", "-", "NODATA"]
)
_protocol = st.sampled_from(["1", "6", "17", "58", "11", "16", "117", "158", "06", "-"])


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(_protocol, _word, _word), min_size=1, max_size=30))
def test_words_are_whole_fields_not_their_endings(rows: list[tuple[str, str, str]]) -> None:
    """Protocols, actions and statuses whose endings are a known word ("117", "XACCEPT", "NOK") are not
    that word: spoofable packets, rejects and skip reasons come out as the reference parser's."""
    lines = [
        LINE.format(src="45.0.0.7", dst="10.0.1.10", proto=proto, packets=5, octets=300, act=act, st=status)
        for proto, act, status in rows
    ]
    _fast_and_reference([lines])


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.tuples(_word, _word), min_size=1, max_size=30))
def test_a_word_in_the_first_field_is_compared_whole_as_well(rows: list[tuple[str, str]]) -> None:
    """The first field follows a newline, not a space: a custom format that starts with the log status."""
    fmt = FlowLogFormat.parse("${log-status} ${srcaddr} ${dstaddr} ${packets} ${bytes} ${action}")
    lines = [f"{status} 45.0.0.7 10.0.1.10 5 300 {act}" for status, act in rows]
    _fast_and_reference([lines], fmt)
