"""Captures for the split-invariance tests: what a load-balanced fleet sees during an attack.

`capture` builds the flows of one generated scenario; the tests spread them over interfaces
(`emulator.fleet`) and check that the detector's window plans what `floodgate analyze` plans.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import strategies as st

from emulator.fleet import FIN_SYN, ICMP, SYN_ONLY, TCP, UDP, Flow, spread_hosts
from emulator.traffic import public_addresses

DNS_RESOLVER = "8.8.8.8"
PARTNER_API = "52.94.7.10"
# Kinds of evidence: (protocol, tcp flags).
EVIDENCE = {"tcp": (TCP, FIN_SYN), "udp": (UDP, 0), "syn": (TCP, SYN_ONLY), "icmp": (ICMP, 0)}


@dataclass(frozen=True)
class Scenario:
    bots_24: int  # bots inside one /24
    bots_16: int  # bots spread across one /16
    bot_pps: float
    neighbours: int  # ordinary hosts in the /24 botnet's own /24
    singles: int  # single floods
    single_pps: float
    rotating_v6: int  # addresses one IPv6 attacker rotates through in one /64
    background: int  # ordinary clients
    evidence: str  # the botnets' kind of traffic
    spoof_dependency: bool  # a spoofed UDP flood "from" the DNS resolver the VPC uses
    seed: int


scenarios = st.builds(
    Scenario,
    bots_24=st.sampled_from([0, 3, 40, 150, 250]),
    bots_16=st.sampled_from([0, 60, 200]),
    bot_pps=st.floats(20, 150),
    neighbours=st.integers(0, 30),
    singles=st.integers(0, 3),
    single_pps=st.floats(2_000, 15_000),
    rotating_v6=st.sampled_from([0, 40, 200]),
    background=st.integers(0, 150),
    evidence=st.sampled_from(sorted(EVIDENCE)),
    spoof_dependency=st.booleans(),
    seed=st.integers(0, 2**16),
)


def capture(scenario: Scenario, *, with_egress: bool) -> list[Flow]:
    """The scenario's flows; with `with_egress`, the VPC's own calls to its resolver and a partner API."""
    rng = random.Random(scenario.seed)
    protocol, flags = EVIDENCE[scenario.evidence]

    def bot(address: str) -> Flow:
        return Flow(address, scenario.bot_pps, protocol=protocol, tcp_flags=flags)

    flows = [bot(a) for a in spread_hosts("198.51.100.0/24", scenario.bots_24, rng)]
    flows += [Flow(a, 2.0) for a in spread_hosts("198.51.100.0/24", scenario.neighbours, rng)]
    flows += [bot(a) for a in spread_hosts("45.67.0.0/16", scenario.bots_16, rng)]
    flows += [bot(a) for a in spread_hosts("2001:db8:bad:1::/64", scenario.rotating_v6, rng)]
    flows += [Flow(a, scenario.single_pps) for a in public_addresses(rng, scenario.singles)]
    flows += [Flow(a, rng.uniform(1, 10)) for a in public_addresses(rng, scenario.background)]
    if scenario.spoof_dependency:
        flows.append(Flow(DNS_RESOLVER, 6_000, protocol=UDP, tcp_flags=0, remote_port=53))
    if with_egress:
        flows.append(Flow(DNS_RESOLVER, 3, protocol=UDP, remote_port=53, local_port=45123, egress=True))
        flows.append(
            Flow(PARTNER_API, 5, protocol=TCP, tcp_flags=3, remote_port=443, local_port=50000, egress=True)
        )
    return _distinct(flows)


def _distinct(flows: list[Flow]) -> list[Flow]:
    """One flow per (remote, direction): neighbours drawn onto a bot's address are dropped."""
    seen: set[tuple[str, bool]] = set()
    kept = []
    for flow in flows:
        if (flow.remote, flow.egress) not in seen:
            seen.add((flow.remote, flow.egress))
            kept.append(flow)
    return kept
