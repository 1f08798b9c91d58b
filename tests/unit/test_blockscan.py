"""The compiled block scanner (floodgate.core._blockscan): what it keeps, counts and hands back for lines
whose verdict is known by hand, what it refuses as arguments, and hostile blocks (random bytes, overlong
fields, huge numbers, odd whitespace, wrong field counts) through FastScanner against the reference parser."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.traffic import VPC_CIDR
from floodgate.core.flowlog import DEFAULT_FORMAT, STACK_FORMAT, FlowLogFormat, FlowLogParser, TimeBounds

pytest.importorskip("numpy")
fastscan = pytest.importorskip("floodgate.core.fastscan")
blockscan = pytest.importorskip("floodgate.core._blockscan")

V2 = FlowLogFormat.parse(DEFAULT_FORMAT)
STACK = FlowLogFormat.parse(STACK_FORMAT)
# No srcaddr, no dstaddr, no action or status: the source is pkt-srcaddr, the direction only the field's.
BARE = FlowLogFormat.parse("${packets} ${bytes} ${pkt-srcaddr} ${flow-direction} ${start} ${end}")
# No times, no direction: inbound by the destination alone.
UNTIMED = FlowLogFormat.parse("${srcaddr} ${dstaddr} ${packets} ${bytes} ${action} ${protocol}")
ROLES = [
    "srcaddr",
    "pkt-srcaddr",
    "dstaddr",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
    "flow-direction",
    "type",
    "tcp-flags",
    "protocol",
    "pkt-src-aws-service",
    "srcport",
    "dstport",
]
VPC_RANGES = ((0x0A000000, 0x0A00FFFF),)  # 10.0.0.0/16


def positions(fmt: FlowLogFormat) -> tuple[int, ...]:
    return tuple(-1 if fmt.index(role) is None else fmt.index(role) for role in ROLES)  # type: ignore[misc]


def v2(src: str, dst: str, **fields: str) -> str:
    """A default-format line; keyword arguments replace the plain values of the fields they name."""
    values = {"sport": "40000", "dport": "443", "proto": "6", "packets": "10", "octets": "1000"}
    values |= {"start": "100", "end": "160", "action": "ACCEPT", "status": "OK"} | fields
    rest = " ".join(values[name] for name in ("sport", "dport", "proto", "packets", "octets"))
    return f"2 123456789012 eni-0abc {src} {dst} {rest} " + " ".join(
        values[name] for name in ("start", "end", "action", "status")
    )


def scan(
    lines: list[bytes], bounds: tuple[int, int] | None = None, *, newline: bool = True
) -> tuple[Any, ...]:
    data = b"\n".join(lines) + (b"\n" if newline else b"")
    return blockscan.scan(data, len(V2.fields), positions(V2), bounds, VPC_RANGES)  # type: ignore[no-any-return]


def test_a_plain_inbound_record_becomes_one_row_of_its_values() -> None:
    line = v2("1.2.3.4", "10.0.1.10", proto="17", packets="7", octets="1400", action="REJECT").encode()
    src, packets, octets, rejected, spoofable, rows, not_inbound, first, last, leftovers = scan([line])
    assert rows == 1
    assert struct.unpack("=qqq", src[:8] + packets[:8] + octets[:8]) == (0x01020304, 7, 1400)
    assert (rejected[0], spoofable[0]) == (1, 1)
    assert (not_inbound, first, last, leftovers) == (0, 100, 160, [])


def test_rows_keep_the_order_of_the_lines_and_the_time_span_covers_them() -> None:
    lines = [
        v2("255.255.255.255", "10.0.1.10", start="50", end="70").encode(),
        v2("0.0.0.0", "10.0.255.255", proto="6", start="90", end="400").encode(),  # noqa: S104
    ]
    src, _, _, rejected, spoofable, rows, _, first, last, leftovers = scan(lines)
    assert rows == 2
    assert struct.unpack_from("=qq", src) == (0xFFFFFFFF, 0)
    assert (bytes(rejected[:2]), bytes(spoofable[:2])) == (b"\0\0", b"\0\0")
    assert (first, last, leftovers) == (50, 400, [])


@pytest.mark.parametrize(
    "line",
    [
        v2("1.2.3.04", "10.0.1.10"),  # a leading zero: inet_pton refuses it
        v2("01.2.3.4", "10.0.1.10"),
        v2("1.2.3.256", "10.0.1.10"),
        v2("1.2.3", "10.0.1.10"),
        v2("1.2.3.4.5", "10.0.1.10"),
        v2("-", "10.0.1.10"),
        v2("2001:db8::1", "10.0.1.10"),
        v2("1.2.3.4", "10.0.1.010"),
        v2("1.2.3.4", "-"),
        v2("1.2.3.4", "10.0.1.10", status="NODATA"),
        v2("1.2.3.4", "10.0.1.10", status="OKAY"),
        v2("1.2.3.4", "10.0.1.10", action="DROP"),
        v2("1.2.3.4", "10.0.1.10", packets="-"),
        v2("1.2.3.4", "10.0.1.10", packets="-5"),
        v2("1.2.3.4", "10.0.1.10", packets="100000000001", octets="99999999999999"),  # above MAX_PACKETS
        v2("1.2.3.4", "10.0.1.10", packets="1000000000000"),  # 13 digits
        v2("1.2.3.4", "10.0.1.10", octets="100000000000001"),  # above MAX_BYTES
        v2("1.2.3.4", "10.0.1.10", octets="9" * 40),  # far beyond 64 bits
        v2("1.2.3.4", "10.0.1.10", packets="10", octets="199"),  # under 20 bytes a packet
        v2("1.2.3.4", "10.0.1.10", start="161", end="160"),
        v2("1.2.3.4", "10.0.1.10", start="10000000000", end="10000000001"),  # 11 digits
        v2("1.2.3.4", "10.0.1.10", start="1e3"),
        v2("1.2.3.4", "10.0.1.10").replace(" 443 ", "\t443 "),
        v2("1.2.3.4", "10.0.1.10").replace(" 443 ", "  443 "),
        v2("1.2.3.4", "10.0.1.10") + " ",
        " " + v2("1.2.3.4", "10.0.1.10"),
        v2("1.2.3.4", "10.0.1.10") + "\r",
        v2("1.2.3.4", "10.0.1.10") + " extra",
        v2("1.2.3.4", "10.0.1.10").rsplit(" ", 1)[0],
        v2("1.2.3.4", "10.0.1.10").replace("eni-0abc", "eni-0abç"),
        v2("1.2.3.4", "10.0.1.10").replace("eni-0abc", "eni\x000abc"),
        v2("8.8.8.8", "10.0.1.10", packets="٣"),  # a digit to str.isdigit, not to the reference's parse
        "",
    ],
)
def test_lines_the_reference_must_judge_are_handed_back_whole(line: str) -> None:
    data = line.encode()
    *_, rows, not_inbound, first, last, leftovers = scan([data])
    assert (rows, not_inbound, first, last, leftovers) == (0, 0, None, None, [data])


def test_records_outside_the_time_bounds_are_handed_back() -> None:
    spans = (("10", "99"), ("100", "200"), ("201", "300"))
    old, now, future = (v2("1.2.3.4", "10.0.1.10", start=s, end=e).encode() for s, e in spans)
    *_, rows, _, first, last, leftovers = scan([old, now, future], bounds=(100, 200))
    assert (rows, first, last, leftovers) == (1, 100, 200, [old, future])
    *_, rows, _, _, _, leftovers = scan([old, now, future], bounds=(-(2**80), 2**80))  # clamped, not refused
    assert (rows, leftovers) == (3, [])


def test_outbound_records_are_counted_unless_the_vpc_may_have_opened_them() -> None:
    answer = v2("10.0.1.10", "8.8.8.8", sport="443", dport="40000").encode()  # the server's reply
    rejected = v2("10.0.1.10", "8.8.8.8", sport="40000", dport="443", action="REJECT").encode()
    opened = v2("10.0.1.10", "8.8.8.8", sport="40000", dport="443").encode()  # ephemeral to service port
    *_, rows, not_inbound, _, _, leftovers = scan([answer, rejected, opened])
    assert (rows, not_inbound, leftovers) == (0, 2, [opened])


@pytest.mark.parametrize("compiled", [True, False])
def test_an_outbound_record_with_zero_padded_ports_names_its_dependency(compiled: bool) -> None:
    # int("0000040000") is 40000: an ephemeral port to HTTPS, a connection the VPC opened to 8.8.8.8.
    line = v2("10.0.1.10", "8.8.8.8", sport="0000040000", dport="0000000443") + "\n"
    fast = fastscan.FastScanner(FlowLogParser(V2, [VPC_CIDR]), compiled=compiled).scan(line.encode())
    assert fast.dependencies == {(4, 0x08080808)}
    assert fast.stats.skipped == {"not_inbound": 1}


def test_a_last_line_without_its_newline_is_still_a_line() -> None:
    good = v2("1.2.3.4", "10.0.1.10").encode()
    *_, rows, _, _, _, leftovers = scan([good, b"odd"], newline=False)
    assert (rows, leftovers) == (1, [b"odd"])
    *_, rows, _, _, _, leftovers = scan([b"odd", good], newline=False)
    assert (rows, leftovers) == (1, [b"odd"])


@pytest.mark.parametrize(
    ("nf", "where", "bounds", "ranges"),
    [
        (0, positions(V2), None, VPC_RANGES),
        (blockscan.MAX_FIELDS + 1, positions(V2), None, VPC_RANGES),
        (14, positions(V2)[:-1], None, VPC_RANGES),
        (14, (14, *positions(V2)[1:]), None, VPC_RANGES),  # a position past the last field
        (14, (-2, *positions(V2)[1:]), None, VPC_RANGES),
        (14, (-1, -1, *positions(V2)[2:]), None, VPC_RANGES),  # no source at all
        (14, positions(V2), (1,), VPC_RANGES),
        (14, positions(V2), None, ((1,),)),
    ],
)
def test_arguments_that_do_not_describe_a_format_are_refused(
    nf: int, where: tuple[int, ...], bounds: object, ranges: object
) -> None:
    with pytest.raises(ValueError, match=r"."):
        blockscan.scan(b"x\n", nf, where, bounds, ranges)


# Hostile blocks: plain records of several formats, some fields replaced by hostile text, some separators
# by odd whitespace, some fields dropped or repeated, some lines pure noise.
# Dotted texts inet_pton may refuse: leading zeros, octets past 255, too few or too many parts, empty parts.
_octet = st.integers(0, 300).map(str) | st.sampled_from(["0", "00", "01", "007", "0255", "", "1a"])
_odd_address = st.lists(_octet, min_size=4, max_size=4).map(".".join) | st.lists(
    _octet, min_size=3, max_size=5
).map(".".join)
_addresses = st.one_of(
    st.sampled_from(["10.0.1.10", "10.0.200.3", "198.51.100.7", "203.0.113.9", "8.8.8.8", "-"]),
    st.ip_addresses(v=4).map(str),
    _odd_address,
)
# Destinations mostly inside the VPC (10.0.0.0/16), so that most records are inbound and their sources
# are read.
_destinations = st.sampled_from(["10.0.1.10", "10.0.0.0", "10.0.255.255"]) | _addresses
_hostile = st.one_of(
    st.binary(max_size=24).map(lambda b: b.decode("latin-1")),
    st.text(alphabet="0123456789", min_size=1, max_size=40),  # overlong numbers, leading zeros
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(
        [
            "-",
            "OK",
            "NODATA",
            "SKIPDATA",
            "ACCEPT",
            "REJECT",
            "ingress",
            "egress",
            "IPv4",
            "IPv6",
            "IPv5",
            "1",
            "6",
            "17",
            "58",
            "06",
            "2",
            "18",
            "511",
            "512",
            "0",
            "1.2.3.04",
            "1.2.3.4.5",
            "::1",
            "2001:db8::7",
            "10.0.1.256",
            "٣",
            "1.2.3.4\u00a0",
            "Ｏ",
            "eu-west-1",
            "AMAZON",
            "ingres",
        ]
    ),
    st.ip_addresses(v=4).map(str),
)
_separator = st.sampled_from([" "] * 12 + ["  ", "\t", "\x0b", "\x0c", "\r", "\x1c", "\xa0", "\x85", "\x00"])

_PLAIN: dict[str, st.SearchStrategy[str]] = {
    "version": st.just("2"),
    "account-id": st.just("123456789012"),
    "interface-id": st.just("eni-0abc"),
    "vpc-id": st.just("vpc-01"),
    "srcaddr": _addresses,
    "dstaddr": _destinations,
    "pkt-srcaddr": _addresses,
    "pkt-dstaddr": _destinations,
    "srcport": st.sampled_from(["443", "53", "40000", "1024", "1023", "-", "0000040000"]),
    "dstport": st.sampled_from(["443", "53", "40000", "1024", "-"]),
    "protocol": st.sampled_from(["6", "17", "1", "58", "47"]),
    "packets": st.integers(0, 10**4).map(str),
    "bytes": st.integers(0, 10**7).map(str),
    "start": st.integers(1000, 1100).map(str),
    "end": st.integers(1050, 1200).map(str),
    "action": st.sampled_from(["ACCEPT", "REJECT"]),
    "log-status": st.sampled_from(["OK"] * 8 + ["NODATA", "SKIPDATA"]),
    "tcp-flags": st.sampled_from(["2", "18", "3", "0", "-", "19"]),
    "type": st.sampled_from(["IPv4", "-"]),
    "pkt-src-aws-service": st.sampled_from(["-"] * 5 + ["AMAZON"]),
    "flow-direction": st.sampled_from(["ingress", "egress", "-"]),
}


@st.composite
def _line(draw: st.DrawFn, fmt: FlowLogFormat) -> str:
    fields = [draw(_PLAIN[name]) for name in fmt.fields]
    for _ in range(draw(st.integers(0, 3))):
        fields[draw(st.integers(0, len(fields) - 1))] = draw(_hostile)
    shape = draw(st.sampled_from(["plain"] * 6 + ["drop", "repeat", "noise"]))
    if shape == "drop":
        del fields[draw(st.integers(0, len(fields) - 1))]
    elif shape == "repeat":
        fields += fields[: draw(st.integers(1, 30))]
    elif shape == "noise":
        return draw(_hostile)
    text = fields[0]
    for field in fields[1:]:
        text += draw(_separator) + field
    return text


@st.composite
def _block(draw: st.DrawFn) -> tuple[FlowLogFormat, list[str], TimeBounds | None]:
    fmt = draw(st.sampled_from([V2, STACK, BARE, UNTIMED]))
    lines = draw(st.lists(_line(fmt), max_size=25))
    bounds = draw(st.none() | st.builds(TimeBounds, st.integers(1000, 1150), st.integers(1000, 1150)))
    return fmt, lines, bounds


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_block())
def test_hostile_blocks_give_what_the_reference_parser_gives(
    block: tuple[FlowLogFormat, list[str], TimeBounds | None],
) -> None:
    fmt, lines, bounds = block
    data = "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n"
    scanner = fastscan.FastScanner(FlowLogParser(fmt, [VPC_CIDR]))
    assert scanner.compiled
    fast = scanner.scan(data, bounds)
    # What the reference scanner reads from the same bytes: one line per newline, decoded leniently.
    reference = FlowLogParser(fmt, [VPC_CIDR]).parse(data.decode("utf-8", "replace").split("\n")[:-1], bounds)
    assert fast.sources == reference.sources
    assert fast.stats == reference.stats
    assert fast.dependencies == reference.dependencies
    assert (fast.first_start, fast.last_end) == (reference.first_start, reference.last_end)
