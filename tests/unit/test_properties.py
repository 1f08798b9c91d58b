"""Invariants of parsing and detection, checked on generated inputs (hypothesis)."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.traffic import VPC_CIDR, Source, flow_lines
from floodgate.core.detect import DetectionConfig, plan_denies
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser
from floodgate.core.model import DenyPlan
from floodgate.core.networks import NEVER_DENY, DenyPolicy
from floodgate.core.summary import TrafficSummary

V2 = FlowLogFormat.parse(DEFAULT_FORMAT)
ALLOWED_PARTNER = "198.51.100.0/28"

# Addresses drawn from a few crowded neighbourhoods so that prefixes, members and protected ranges collide.
_neighbourhoods = st.sampled_from(
    ["203.0.113.", "198.51.100.", "192.0.2.", "172.16.0.", "10.0.3.", "100.64.0.", "45.33.12.", "45.33.200."]
)
_address = st.builds(lambda net, host: f"{net}{host}", _neighbourhoods, st.integers(1, 254))
_ipv6 = st.builds(lambda host: f"2a00:1450:4001:81{host % 4}::{host:x}", st.integers(1, 4000))
_source = st.builds(
    lambda addr, pps, flows: Source(addr, pps, flows=flows),
    st.one_of(_address, _address, _ipv6, st.just("fd00::1"), st.just("fe80::1")),
    st.floats(1, 50_000),
    st.integers(1, 4),
)


def _plan(sources: list[Source], budget: int, cap_v4: int, cap_v6: int, min_share: float) -> DenyPlan:
    policy = DenyPolicy.build(
        vpc_cidrs=[VPC_CIDR], allow=[ALLOWED_PARTNER], max_prefix_v4=cap_v4, max_prefix_v6=cap_v6
    )
    config = DetectionConfig(policy=policy, budget=budget, min_pps=100, min_share=min_share)
    summary = TrafficSummary.for_share(min_share, cap_v4, cap_v6)
    summary.add(FlowLogParser(V2, [VPC_CIDR]).parse(flow_lines(sources, intervals=1)))
    return plan_denies(summary, config)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sources=st.lists(_source, min_size=1, max_size=120),
    budget=st.integers(0, 12),
    cap_v4=st.sampled_from([16, 24, 32]),
    cap_v6=st.sampled_from([48, 64, 128]),
    min_share=st.sampled_from([0.001, 0.01, 0.05]),
)
def test_plans_respect_budget_allowlist_caps_and_hierarchy(
    sources: list[Source], budget: int, cap_v4: int, cap_v6: int, min_share: float
) -> None:
    plan = _plan(sources, budget, cap_v4, cap_v6, min_share)
    networks = [ipaddress.ip_network(d.cidr) for d in plan.denies]
    assert len(networks) <= budget
    protected = [*NEVER_DENY, ipaddress.ip_network(ALLOWED_PARTNER), ipaddress.ip_network(VPC_CIDR)]
    for net in networks:
        assert not any(net.version == p.version and net.overlaps(p) for p in protected), net
        assert net.prefixlen >= (cap_v4 if net.version == 4 else cap_v6)
        assert str(net) != "0.0.0.0/0" and str(net) != "::/0"
    for a in networks:
        for b in networks:
            assert a == b or not (a.version == b.version and a.overlaps(b)), (a, b)
    assert len(set(networks)) == len(networks)
    # Same input, same plan.
    assert _plan(sources, budget, cap_v4, cap_v6, min_share) == plan


_record_line = st.builds(
    lambda src, dst, pk, by, action, status: (
        f"2 123456789012 eni-0abc {src} {dst} 443 5000 6 {pk} {by} 1700000000 1700000060 {action} {status}"
    ),
    st.one_of(_address, _ipv6, st.just("-"), st.text(max_size=8)),
    st.sampled_from(["10.0.1.10", "10.0.2.11", "8.8.8.8", "-", "2001:db8::1"]),
    st.one_of(st.integers(-5, 10**12).map(str), st.just("-"), st.text(max_size=4)),
    st.one_of(st.integers(-5, 10**15).map(str), st.just("-")),
    st.sampled_from(["ACCEPT", "REJECT", "-", "accept"]),
    st.sampled_from(["OK", "NODATA", "SKIPDATA", "-", "ok"]),
)


def _mutate(line: str, data: st.DataObject) -> str:
    chars = list(line)
    for _ in range(data.draw(st.integers(0, 4))):
        if not chars:
            break
        i = data.draw(st.integers(0, len(chars) - 1))
        op = data.draw(st.sampled_from(["drop", "dup", "flip"]))
        if op == "drop":
            del chars[i]
        elif op == "dup":
            chars.insert(i, chars[i])
        else:
            chars[i] = data.draw(st.characters())
    return "".join(chars)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    lines=st.lists(_record_line, max_size=30),
    noise=st.lists(st.binary(max_size=120), max_size=5),
)
def test_parser_survives_random_and_mutated_records_and_accounts_for_every_line(
    data: st.DataObject, lines: list[str], noise: list[bytes]
) -> None:
    mutated = [_mutate(line, data) for line in lines]
    # A line is one record: the caller splits input on newlines, so the parser never sees one inside a line.
    inputs: list[str | bytes] = [m.replace("\n", " ") for m in mutated] + [
        n.replace(b"\n", b" ") for n in noise
    ]
    batch = FlowLogParser(V2, [VPC_CIDR]).parse(inputs)
    assert batch.stats.parsed + batch.stats.total_skipped == len(inputs)
    assert all(t[0] >= 0 and t[1] >= 20 * t[0] for t in batch.sources.values())
    summary = TrafficSummary.for_share(0.01, 50)
    summary.add(batch)
    plan_denies(summary, DetectionConfig(policy=DenyPolicy.build(vpc_cidrs=[VPC_CIDR])))
