"""Synthetic VPC Flow Log traffic for tests, benchmarks and the sample capture.

Lines are shaped like real default-format (v2) records: one record per flow per 60 s aggregation interval on
an interface, packets split across a source's flows, ~bytes per packet by traffic kind.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

ACCOUNT = "123456789012"
INTERVAL_S = 60
START = 1_764_000_000  # 2025-11-24T16:00:00Z, aligned to the minute
VPC_CIDR = "10.0.0.0/16"
# Network interfaces receiving the traffic: (ENI id, private address).
INTERFACES = tuple(
    (f"eni-0{n:016x}", f"10.0.{subnet}.{host}")
    for n, (subnet, host) in enumerate(((s, h) for s in (1, 2) for h in range(10, 14)), start=1)
)
ENIS = tuple(eni for eni, _ in INTERFACES)


@dataclass(frozen=True)
class Source:
    address: str
    pps: float
    flows: int = 4  # records per interval
    bytes_per_packet: int = 600
    action: str = "ACCEPT"


def public_addresses(rng: random.Random, count: int, version: int = 4) -> list[str]:
    """Distinct random globally routable addresses (no private, reserved or documentation ranges)."""
    seen: set[str] = set()
    while len(seen) < count:
        candidate: ipaddress.IPv4Address | ipaddress.IPv6Address
        if version == 4:
            candidate = ipaddress.IPv4Address(rng.getrandbits(32))
        else:
            candidate = ipaddress.IPv6Address((0x2 << 124) | rng.getrandbits(124))  # 2000::/3
        if candidate.is_global and not candidate.is_multicast:
            seen.add(str(candidate))
    return sorted(seen)


def prefix_hosts(prefix: str, count: int) -> list[str]:
    hosts = list(ipaddress.ip_network(prefix).hosts())
    return [str(h) for h in hosts[:count]]


def background(rng: random.Random, clients: int, pps: float = 5.0) -> list[Source]:
    return [Source(a, pps * rng.uniform(0.5, 1.5), flows=2) for a in public_addresses(rng, clients)]


def in_format(line: str, format_text: str) -> str:
    """A default-format inbound line as a flow log with `format_text` writes it: the default itself, or the
    stack's v5 format (`floodgate.core.flowlog.STACK_FORMAT`: flags of a whole TCP connection, ingress)."""
    if "${flow-direction}" not in format_text:
        return line
    fields = line.split()
    kind = "IPv6" if ":" in fields[3] else "IPv4"
    flags = "3" if fields[7] == "6" else "0"
    return " ".join(["5", *fields[1:], "vpc-0demo", flags, kind, fields[3], fields[4], "-", "ingress"])


def flow_lines(
    sources: list[Source],
    intervals: int = 5,
    seed: int = 7,
    *,
    start: int = START,
    interfaces: Sequence[tuple[str, str]] = INTERFACES,
) -> Iterator[str]:
    """Default-format lines for `intervals` minutes of traffic from `sources` to the interfaces."""
    rng = random.Random(seed)
    for interval in range(intervals):
        begin = start + interval * INTERVAL_S
        end = begin + INTERVAL_S
        for source in sources:
            packets_total = source.pps * INTERVAL_S
            for flow in range(source.flows):
                packets = max(1, round(packets_total / source.flows * rng.uniform(0.8, 1.2)))
                eni, address = interfaces[rng.randrange(len(interfaces))]
                yield (
                    f"2 {ACCOUNT} {eni} {source.address} {address} "
                    f"{1024 + (flow * 7919 + interval) % 60000} 443 6 {packets} "
                    f"{packets * source.bytes_per_packet} {begin} {end} {source.action} OK"
                )


def garbage_lines(rng: random.Random, count: int) -> list[str]:
    """Malformed records of every kind the parser must survive."""
    kinds = [
        "",
        "not a flow log line",
        f"2 {ACCOUNT} eni-0abc 198.51.100.1 10.0.1.10 1 2 6 12",
        f"2 {ACCOUNT} eni-0abc 198.51.100.1 10.0.1.10 1 2 6 abc 400 {START} {START + 60} ACCEPT OK",
        f"2 {ACCOUNT} eni-0abc 198.51.100.1 10.0.1.10 1 2 6 -5 400 {START} {START + 60} ACCEPT OK",
        f"2 {ACCOUNT} eni-0abc 198.51.100.1 10.0.1.10 1 2 6 10 {10**17} {START} {START + 60} ACCEPT OK",
        f"2 {ACCOUNT} eni-0abc 999.1.2.3 10.0.1.10 1 2 6 10 4000 {START} {START + 60} ACCEPT OK",
        f"2 {ACCOUNT} eni-0abc 198.51.100.1 10.0.1.10 1 2 6 10 4000 {START + 60} {START} ACCEPT OK",
        f"2 {ACCOUNT} eni-0abc 198.51.100.1 10.0.1.10 1 2 6 10 4000 {START} {START + 60} MAYBE OK",
        f"2 {ACCOUNT} eni-0abc - - - - - - - {START} {START + 60} - NODATA",
        f"2 {ACCOUNT} eni-0abc - - - - - - - {START} {START + 60} - SKIPDATA",
        "\x00\x01\x02 binary junk \xff",
    ]
    return [rng.choice(kinds) for _ in range(count)]


def sample_attack() -> list[Source]:
    """The bundled capture: 2,000 ordinary clients, three single floods and a /24 of bots."""
    rng = random.Random(2026)
    return (
        background(rng, 2000, pps=8.0)
        + [Source(a, 12000, flows=16) for a in public_addresses(rng, 3)]
        + [Source(a, 250, flows=2) for a in prefix_hosts("203.0.113.0/24", 200)]
        + [Source(public_addresses(rng, 1, 6)[0], 15000, flows=8)]
    )


if __name__ == "__main__":
    import gzip
    import sys

    with gzip.open(sys.argv[1], "wt", compresslevel=9) as out:
        for line in flow_lines(sample_attack(), intervals=3):
            out.write(line + "\n")
