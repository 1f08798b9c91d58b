"""Detection on the team's example situations: floods, a bot /24, budget pressure, crowds, IPv6, garbage."""

from __future__ import annotations

import ipaddress
import random

import pytest

from emulator.traffic import (
    VPC_CIDR,
    Source,
    background,
    flow_lines,
    garbage_lines,
    prefix_hosts,
    public_addresses,
)
from floodgate.core.detect import DetectionConfig, plan_denies
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser
from floodgate.core.model import DenyPlan, Verdict
from floodgate.core.networks import DenyPolicy
from floodgate.core.summary import TrafficSummary


def plan_for(lines: list[str], *, budget: int = 10, allow: tuple[str, ...] = (), **knobs: float) -> DenyPlan:
    config = DetectionConfig(
        policy=DenyPolicy.build(vpc_cidrs=[VPC_CIDR], allow=allow), budget=budget, **knobs
    )
    summary = TrafficSummary.for_share(config.min_share)
    summary.add(FlowLogParser(FlowLogFormat.parse(DEFAULT_FORMAT), [VPC_CIDR]).parse(lines))
    return plan_denies(summary, config)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(42)


def test_three_single_floods_of_a_fifth_each_become_three_host_entries(rng: random.Random) -> None:
    floods = public_addresses(rng, 3)
    plan = plan_for(
        list(flow_lines(background(rng, 2000, 10) + [Source(a, 10_000, flows=20) for a in floods]))
    )
    assert plan.verdict is Verdict.CONCENTRATED
    assert sorted(d.cidr for d in plan.denies) == sorted(f"{a}/32" for a in floods)
    for deny in plan.denies:
        assert deny.share == pytest.approx(0.2, abs=0.02)
        assert deny.pps == pytest.approx(10_000, rel=0.05)
        assert deny.members == 1
        assert "single source" in deny.reason


def test_a_slash24_of_moderate_bots_becomes_one_prefix_entry(rng: random.Random) -> None:
    bots = [Source(a, rng.uniform(200, 400), flows=3) for a in prefix_hosts("203.0.113.0/24", 250)]
    plan = plan_for(list(flow_lines(background(rng, 2000, 10) + bots)))
    assert [d.cidr for d in plan.denies] == ["203.0.113.0/24"]
    assert plan.denies[0].members == 250
    assert "250 hot sources" in plan.denies[0].reason


def test_one_heavy_source_inside_an_ordinary_prefix_is_denied_alone(rng: random.Random) -> None:
    neighbours = [Source(a, 4, flows=1) for a in prefix_hosts("198.51.100.0/24", 120)]
    heavy = Source("198.51.100.200", 20_000, flows=10)
    plan = plan_for(list(flow_lines(background(rng, 1000, 10) + neighbours + [heavy])))
    assert [d.cidr for d in plan.denies] == ["198.51.100.200/32"]


def test_a_prefix_of_bots_absorbs_its_own_heavy_member(rng: random.Random) -> None:
    bots = [Source(a, 300, flows=3) for a in prefix_hosts("203.0.113.0/24", 200)]
    heavy = Source("203.0.113.250", 30_000, flows=10)
    plan = plan_for(list(flow_lines(background(rng, 1000, 10) + bots + [heavy])))
    assert [d.cidr for d in plan.denies] == ["203.0.113.0/24"]


def test_forty_floods_and_eight_slots_keep_the_eight_heaviest(rng: random.Random) -> None:
    addresses = public_addresses(rng, 40)
    floods = [Source(a, 6_000 + 1_000 * i, flows=5) for i, a in enumerate(addresses)]
    plan = plan_for(list(flow_lines(background(rng, 1000, 10) + floods)), budget=8)
    assert len(plan.denies) == 8
    assert {d.cidr for d in plan.denies} == {f"{a}/32" for a in addresses[-8:]}
    assert [d.pps for d in plan.denies] == sorted((d.pps for d in plan.denies), reverse=True)


def test_floods_sharing_a_dense_prefix_are_merged_when_over_budget(rng: random.Random) -> None:
    floods = [Source(a, 8_000, flows=4) for a in prefix_hosts("203.0.113.0/24", 12)]
    plan = plan_for(list(flow_lines(background(rng, 500, 10) + floods)), budget=4, min_share=0.005)
    assert [d.cidr for d in plan.denies] == ["203.0.113.0/24"]
    assert "covers 12 chosen entries" in plan.denies[0].reason


def test_thirty_thousand_sources_at_a_few_pps_yield_nothing_and_say_why(rng: random.Random) -> None:
    crowd = [Source(a, rng.uniform(2, 5), flows=1) for a in public_addresses(rng, 30_000)]
    plan = plan_for(list(flow_lines(crowd, intervals=2)))
    assert plan.denies == ()
    assert plan.verdict is Verdict.DISTRIBUTED


def test_a_flash_crowd_from_one_provider_is_not_denied(rng: random.Random) -> None:
    users = [Source(a, rng.uniform(2, 8), flows=2) for a in prefix_hosts("203.0.113.0/24", 250)]
    plan = plan_for(list(flow_lines(users + background(rng, 200, 5))), min_pps=500)
    assert plan.denies == ()


def test_quiet_traffic_is_quiet(rng: random.Random) -> None:
    plan = plan_for(list(flow_lines(background(rng, 50, 5))))
    assert plan.verdict is Verdict.QUIET
    assert plan.denies == ()


def test_an_ipv6_flood_becomes_a_slash128_entry(rng: random.Random) -> None:
    attacker = public_addresses(rng, 1, version=6)[0]
    plan = plan_for(list(flow_lines([*background(rng, 1000, 10), Source(attacker, 30000, flows=8)])))
    assert [d.cidr for d in plan.denies] == [f"{ipaddress.ip_address(attacker)}/128"]


def test_two_percent_garbage_lines_do_not_change_the_plan(rng: random.Random) -> None:
    sources = (
        background(rng, 2000, 10)
        + [Source(a, 10_000, flows=20) for a in public_addresses(rng, 3)]
        + [Source(a, 300, flows=3) for a in prefix_hosts("203.0.113.0/24", 250)]
    )
    clean = list(flow_lines(sources))
    dirty = list(clean)
    for junk in garbage_lines(rng, len(clean) // 50):
        dirty.insert(rng.randrange(len(dirty)), junk)
    clean_plan, dirty_plan = plan_for(clean), plan_for(dirty)
    assert [d.cidr for d in dirty_plan.denies] == [d.cidr for d in clean_plan.denies]
    assert dirty_plan.records.parsed == clean_plan.records.parsed
    assert dirty_plan.records.total_skipped == len(dirty) - len(clean)


def test_allowlisted_and_private_sources_are_never_denied(rng: random.Random) -> None:
    partner = public_addresses(rng, 1)[0]
    heavy = [Source(partner, 20_000, flows=8), Source("172.16.9.9", 20_000, flows=8)]
    plan = plan_for(list(flow_lines(background(rng, 500, 10) + heavy)), allow=(f"{partner}/32",))
    assert plan.denies == ()


def test_prefixes_are_never_wider_than_the_caps(rng: random.Random) -> None:
    bots = [Source(a, 300, flows=1) for a in prefix_hosts("203.0.0.0/16", 3000)[::12]]
    config_policy = DenyPolicy.build(vpc_cidrs=[VPC_CIDR], max_prefix_v4=24)
    config = DetectionConfig(policy=config_policy, min_share=0.001)
    summary = TrafficSummary.for_share(config.min_share, max_prefix_v4=24)
    summary.add(FlowLogParser(FlowLogFormat.parse(DEFAULT_FORMAT), [VPC_CIDR]).parse(flow_lines(bots)))
    plan = plan_denies(summary, config)
    assert plan.denies
    assert all(ipaddress.ip_network(d.cidr).prefixlen >= 24 for d in plan.denies)
