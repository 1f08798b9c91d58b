"""Flow-log parsing: formats, record validation, inbound selection, skip accounting."""

from __future__ import annotations

import pytest

from floodgate.core.flowlog import (
    DEFAULT_FORMAT,
    FlowLogFormat,
    FlowLogParser,
    SourceBatch,
)

V2 = FlowLogFormat.parse(DEFAULT_FORMAT)
VPC = ["10.0.0.0/16", "2001:db8:1234::/48"]
T0 = 1_700_000_000


def v2(src: str, dst: str = "10.0.1.10", packets: str = "10", octets: str = "4000", **kw: str) -> str:
    start, end = kw.get("start", str(T0)), kw.get("end", str(T0 + 60))
    action, status = kw.get("action", "ACCEPT"), kw.get("status", "OK")
    counters = f"{packets} {octets} {start} {end}"
    return f"2 123456789012 eni-0a1b2c3d {src} {dst} 443 51234 6 {counters} {action} {status}"


def parse(lines: list[str], fmt: FlowLogFormat = V2, vpc: list[str] = VPC) -> SourceBatch:
    return FlowLogParser(fmt, vpc).parse(lines)


def test_default_format_counts_inbound_packets_bytes_and_rejects_per_source() -> None:
    batch = parse(
        [
            v2("198.51.100.7", packets="20", octets="4249"),
            v2("198.51.100.7", packets="5", octets="1000", action="REJECT"),
            v2("203.0.113.9", packets="7", octets="700"),
        ]
    )
    assert batch.stats.parsed == 3
    assert batch.stats.skipped == {}
    tallies = {key: tuple(t) for key, t in batch.sources.items()}
    assert tallies[(4, 0xC6336407)] == (25, 5249, 5, 2, 0)
    assert tallies[(4, 0xCB007109)] == (7, 700, 0, 1, 0)
    assert (batch.first_start, batch.last_end) == (T0, T0 + 60)


def test_documented_example_lines_including_nodata_and_ipv6() -> None:
    lines = [
        "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 "
        "1418530010 1418530070 ACCEPT OK",
        "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA",
        "2 123456789010 eni-1235b8ca123456789 2001:db8:1234:a100:8d6e:3477:df66:f105 "
        "2001:db8:1234:a102:3304:8879:34cf:4071 34892 22 6 54 8855 1477913708 1477913820 ACCEPT OK",
    ]
    batch = parse(lines, vpc=["172.31.0.0/16"])
    # The first record is internal (source inside the VPC); the IPv6 one goes to an address outside it.
    assert batch.stats.parsed == 0
    assert batch.stats.skipped == {"nodata": 1, "not_inbound": 2}
    batch = parse(lines, vpc=["2001:db8:1234:a102::/64"])
    assert batch.stats.parsed == 1
    assert [key[0] for key in batch.sources] == [6]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "empty_line"),
        ("   ", "empty_line"),
        ("2 123 eni-1 198.51.100.1 10.0.1.1 1 2 6 10", "wrong_field_count"),
        (v2("198.51.100.1", packets="ten"), "not_a_number"),
        (v2("198.51.100.1", packets="1e3"), "not_a_number"),
        (v2("198.51.100.1", packets="-3"), "negative_counter"),
        (v2("198.51.100.1", octets="-3"), "negative_counter"),
        (v2("198.51.100.1", packets="999999999999999"), "absurd_counter"),
        (v2("198.51.100.1", packets="100", octets="99"), "absurd_counter"),
        (v2("198.51.100.1", start=str(T0 + 60), end=str(T0)), "bad_time"),
        (v2("198.51.100.1", start="soon"), "bad_time"),
        (v2("198.51.100.1", action="DROP"), "bad_value"),
        (v2("198.51.100.1", status="WEIRD"), "bad_value"),
        (v2("198.51.100.1", status="SKIPDATA"), "skipdata"),
        (v2("999.51.100.1"), "bad_address"),
        (v2("not-an-ip"), "bad_address"),
        (v2("198.51.100.1", dst="10.0.1.300"), "bad_address"),
        (v2("198.51.100.1", dst="8.8.8.8"), "not_inbound"),
        (v2("10.0.5.5"), "not_inbound"),
        (v2("١٢٣.1.1.1"), "bad_address"),
        (v2("198.51.100.1", packets="١٢"), "not_a_number"),
    ],
)
def test_bad_records_are_skipped_with_their_reason(line: str, reason: str) -> None:
    batch = parse([line, v2("198.51.100.77")])
    assert batch.stats.skipped == {reason: 1}
    assert batch.stats.parsed == 1


def test_custom_format_with_flow_direction_and_packet_source() -> None:
    fmt = FlowLogFormat.parse(
        "${version} ${vpc-id} ${srcaddr} ${dstaddr} ${pkt-srcaddr} ${packets} ${bytes} ${start} ${end} "
        "${action} ${log-status} ${flow-direction} ${tcp-flags} ${type} ${traffic-path}"
    )
    lines = [
        # Behind a load balancer: srcaddr is the balancer, pkt-srcaddr the client.
        f"5 vpc-1 10.0.0.5 10.0.1.10 198.51.100.9 30 3000 {T0} {T0 + 60} ACCEPT OK ingress 2 IPv4 -",
        f"5 vpc-1 10.0.1.10 198.51.100.9 - 30 3000 {T0} {T0 + 60} ACCEPT OK egress 18 IPv4 1",
        f"5 vpc-1 198.51.100.10 10.0.1.10 - 30 3000 {T0} {T0 + 60} ACCEPT OK ingress 2 IPv4 -",
        f"5 vpc-1 198.51.100.11 10.0.1.10 - 30 3000 {T0} {T0 + 60} ACCEPT OK ingress 2 EFA -",
        f"5 vpc-1 198.51.100.12 10.0.1.10 - 30 3000 {T0} {T0 + 60} ACCEPT OK sideways 2 IPv4 -",
    ]
    batch = parse(lines, fmt=fmt)
    assert batch.stats.parsed == 2
    assert batch.stats.skipped == {"not_inbound": 1, "not_ip_traffic": 1, "bad_value": 1}
    assert {key[1] for key in batch.sources} == {0xC6336409, 0xC633640A}


def test_private_destinations_define_inside_when_no_vpc_cidrs_are_given() -> None:
    batch = FlowLogParser(V2).parse([v2("198.51.100.1", dst="172.31.4.4"), v2("198.51.100.1", dst="1.1.1.1")])
    assert batch.stats.parsed == 1
    assert batch.stats.skipped == {"not_inbound": 1}


def test_bytes_lines_and_undecodable_bytes_never_raise() -> None:
    batch = FlowLogParser(V2, VPC).parse([v2("198.51.100.1").encode(), b"\xff\xfe\x00 garbage"])
    assert batch.stats.parsed == 1
    assert batch.stats.skipped == {"wrong_field_count": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${version} ${srcaddr} ${nonsense}", "unknown flow-log field 'nonsense'"),
        ("${srcaddr} ${srcaddr} ${dstaddr} ${packets} ${bytes}", "appears twice"),
        ("${srcaddr} ${dstaddr} ${packets}", "lacks field(s) Floodgate needs: bytes"),
        ("${srcaddr} ${dstaddr} $packets ${bytes}", "cannot read format token"),
    ],
)
def test_bad_formats_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FlowLogFormat.parse(text)


def test_format_round_trips_and_accepts_plain_names() -> None:
    assert FlowLogFormat.parse(V2.text) == V2
    assert FlowLogFormat.parse(DEFAULT_FORMAT.replace("${", "").replace("}", "")) == V2


def test_a_format_with_only_the_packet_source_counts_missing_sources() -> None:
    fmt = FlowLogFormat.parse("${pkt-srcaddr} ${dstaddr} ${packets} ${bytes}")
    batch = parse(["198.51.100.9 10.0.1.10 10 4000", "- 10.0.1.10 10 4000"], fmt=fmt)
    assert batch.stats.parsed == 1
    assert batch.stats.skipped == {"no_address": 1}
