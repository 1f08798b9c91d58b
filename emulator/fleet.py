"""A capture as a load-balanced fleet logs it: every flow's records spread over many network interfaces.

Each interface has its own log stream, and a subscription delivery carries one stream's events, so no
delivery sees more than its interface's share of any source. Records come in the default format (v2) or
in the stack's v5 custom format (`floodgate.core.flowlog.STACK_FORMAT`), with the VPC's own egress
records (connections it opens: DNS, APIs) alongside when asked.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass

from emulator.traffic import ACCOUNT

UDP, TCP, ICMP = 17, 6, 1
FIN_SYN = 3  # a whole client connection within the interval, as an inbound record shows it
SYN_ONLY = 2
VPC_ID = "vpc-0fleet0000000000"


@dataclass(frozen=True)
class Flow:
    """Traffic between a remote and the VPC over the capture: inbound unless `egress`."""

    remote: str
    pps: float
    protocol: int = TCP
    tcp_flags: int = FIN_SYN
    remote_port: int = 41000
    local_port: int = 443
    egress: bool = False  # the VPC's host opens the connection, from local_port to remote_port
    aws_service: str = "-"  # pkt-src-aws-service of inbound records
    bytes_per_packet: int = 200


def interface_ids(count: int) -> list[str]:
    return [f"eni-0f{n:015x}" for n in range(count)]


def fleet_lines(
    flows: Sequence[Flow],
    *,
    interfaces: int,
    start: int,
    span_s: int,
    vpc_hosts: Sequence[str],
    fmt: str = "v2",
) -> dict[str, list[str]]:
    """Per interface id, its records: each flow's packets split evenly over every interface (at least one
    packet on each), over [start, start + span_s]. `vpc_hosts` are the interfaces' own addresses (an IPv6
    remote talks to the first IPv6 one)."""
    enis = interface_ids(interfaces)
    v4_hosts = [h for h in vpc_hosts if ":" not in h]
    v6_hosts = [h for h in vpc_hosts if ":" in h]
    lines: dict[str, list[str]] = {eni: [] for eni in enis}
    for flow in flows:
        total = round(flow.pps * span_s)
        base, extra = divmod(total, interfaces)
        for index, eni in enumerate(enis):
            packets = max(1, base + (1 if index < extra else 0))
            hosts = v6_hosts if ":" in flow.remote else v4_hosts
            local = hosts[index % len(hosts)]
            lines[eni].append(_record(flow, eni, local, packets, start, start + span_s, fmt))
    return lines


def _record(  # noqa: PLR0917 - one record's fields
    flow: Flow, eni: str, local: str, packets: int, start: int, end: int, fmt: str
) -> str:
    octets = packets * flow.bytes_per_packet
    if flow.egress:
        src, dst, sport, dport, direction = local, flow.remote, flow.local_port, flow.remote_port, "egress"
    else:
        src, dst, sport, dport, direction = flow.remote, local, flow.remote_port, flow.local_port, "ingress"
    flags = flow.tcp_flags if flow.protocol == TCP else 0
    counters = f"{flow.protocol} {packets} {octets} {start} {end}"
    head = f"{ACCOUNT} {eni} {src} {dst} {sport} {dport} {counters} ACCEPT OK"
    if fmt == "v2":
        return f"2 {head}"
    kind = "IPv6" if ":" in src else "IPv4"
    service = "-" if flow.egress else flow.aws_service
    return f"5 {head} {VPC_ID} {flags} {kind} {src} {dst} {service} {direction}"


def spread_hosts(prefix: str, count: int, rng: random.Random) -> list[str]:
    """`count` distinct random host addresses inside `prefix`."""
    network = ipaddress.ip_network(prefix)
    chosen: set[str] = set()
    while len(chosen) < count:
        offset = rng.randrange(1, network.num_addresses - 1)
        chosen.add(str(network.network_address + offset))
    return sorted(chosen)
