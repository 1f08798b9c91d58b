"""Detection and `floodgate analyze` against the tests' own oracle: floods from a public allowlist, the VPC's
public IPv4 and IPv6 blocks and the special ranges are never in a plan, prefixes never wider than the caps,
never more entries than the budget, while the unprotected floods beside them are denied."""

from __future__ import annotations

import ipaddress
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.traffic import Source, background, flow_lines, prefix_hosts, public_addresses
from floodgate.cli.main import main
from floodgate.core.detect import DetectionConfig, plan_denies
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser
from floodgate.core.model import DenyPlan
from floodgate.core.networks import DenyPolicy
from floodgate.core.summary import TrafficSummary
from tests.safety_oracle import PARTNER_ALLOW, VPC_CIDRS, unsafe_denies

V2 = FlowLogFormat.parse(DEFAULT_FORMAT)
DESTINATIONS = "10.0.0.0/16"  # where emulator.traffic sends

# Floods that would be denied if nothing protected them: single sources and dense bot prefixes.
PROTECTED_FLOODS = [
    Source("198.51.100.7", 20_000, flows=8),  # allowlisted partner
    Source("192.0.2.70", 20_000, flows=8),  # allowlisted partner, second range
    Source("2001:db8:feed::7", 20_000, flows=8),  # allowlisted partner, IPv6
    Source("203.0.113.200", 20_000, flows=8),  # the VPC's public IPv4 block
    Source("2600:1f18:4a3:6e00::99", 20_000, flows=8),  # the VPC's IPv6 block
    Source("100.64.7.7", 20_000, flows=8),  # carrier-grade NAT
    Source("169.254.169.254", 20_000, flows=8),  # link-local
    Source("fd00::1", 20_000, flows=8),  # unique local
    *(Source(a, 300, flows=2) for a in prefix_hosts("198.51.100.0/24", 200)),  # bots inside the allowlist
    *(Source(f"2600:1f18:4a3:6e42::{i:x}", 300, flows=2) for i in range(1, 201)),  # bots in the VPC
]
UNPROTECTED_FLOODS = [
    Source("45.33.12.9", 20_000, flows=8),
    Source("2a00:1450:4001:81a::5", 20_000, flows=8),
    *(Source(a, 300, flows=2) for a in prefix_hosts("45.33.200.0/24", 200)),
]
EXPECTED = {"45.33.12.9/32", "2a00:1450:4001:81a::5/128", "45.33.200.0/24"}


def plan_for(
    sources: list[Source], *, budget: int = 10, cap_v4: int = 16, cap_v6: int = 48, summary_caps: int = 16
) -> DenyPlan:
    policy = DenyPolicy.build(
        vpc_cidrs=VPC_CIDRS, allow=PARTNER_ALLOW, max_prefix_v4=cap_v4, max_prefix_v6=cap_v6
    )
    config = DetectionConfig(policy=policy, budget=budget, min_pps=1000, min_share=0.005)
    # The summary may keep levels wider than the policy's caps: the policy is what must stop them.
    summary = TrafficSummary.for_share(config.min_share, summary_caps, summary_caps)
    # The parser drops sources inside the VPC CIDRs it is given; given only the private block the records are
    # sent to, it lets the VPC's public sources through, so that the policy is what has to stop them.
    summary.add(FlowLogParser(V2, [DESTINATIONS]).parse(flow_lines(sources, intervals=1)))
    return plan_denies(summary, config)


def test_protected_floods_are_never_planned_and_the_others_are() -> None:
    rng = random.Random(17)
    plan = plan_for(background(rng, 500, 5) + PROTECTED_FLOODS + UNPROTECTED_FLOODS)
    cidrs = [d.cidr for d in plan.denies]
    assert unsafe_denies(cidrs) == []
    assert set(cidrs) == EXPECTED


def test_when_over_budget_no_merge_reaches_into_protected_space() -> None:
    # Hosts of the allowlisted /24 and the neighbouring public /24 all flood: a /16 covering both would fit
    # the budget, and the unprotected hosts are what may be denied.
    floods = [Source(a, 8_000, flows=2) for a in prefix_hosts("198.51.100.0/24", 20)]
    floods += [Source(a, 8_000, flows=2) for a in prefix_hosts("198.51.101.0/24", 20)]
    plan = plan_for(background(random.Random(3), 300, 5) + floods, budget=3)
    cidrs = [d.cidr for d in plan.denies]
    assert unsafe_denies(cidrs) == []
    assert 0 < len(cidrs) <= 3
    assert cidrs == ["198.51.101.0/24"]


BASE_V6 = int(ipaddress.IPv6Address("2a00:1400::"))


@pytest.mark.parametrize(("cap_v4", "cap_v6"), [(16, 48), (24, 64), (32, 128)])
def test_no_prefix_is_wider_than_the_caps_even_when_the_summary_has_wider_levels(
    cap_v4: int, cap_v6: int
) -> None:
    # Dense bots across a public /15 (one per /24) and a /48 (one per /64); the summary keeps /16 and /48.
    bots = [Source(a, 300, flows=1) for a in prefix_hosts("45.32.0.0/15", 131_072)[::256]]
    bots += [Source(str(ipaddress.IPv6Address(BASE_V6 + (i << 64))), 300, flows=1) for i in range(256)]
    plan = plan_for(bots, cap_v4=cap_v4, cap_v6=cap_v6, summary_caps=8)
    cidrs = [d.cidr for d in plan.denies]
    if cap_v4 == 16:  # the control: at the widest caps the dense prefixes are denied
        assert set(cidrs) == {"45.32.0.0/16", "45.33.0.0/16", "2a00:1400::/48"}
    assert unsafe_denies(cidrs, cap_v4=cap_v4, cap_v6=cap_v6) == []


_neighbourhoods = st.sampled_from(
    ["198.51.100.", "192.0.2.", "203.0.113.", "45.33.12.", "45.33.200.", "100.64.0.", "172.16.0."]
)
_v4 = st.builds(lambda net, host: f"{net}{host}", _neighbourhoods, st.integers(1, 254))
_v6 = st.builds(
    lambda prefix, host: f"{prefix}{host:x}",
    st.sampled_from(["2600:1f18:4a3:6e00::", "2600:1f18:4a3:6f00::", "2001:db8:feed::", "2a00:1450::"]),
    st.integers(1, 300),
)
_source = st.builds(
    lambda address, pps, flows: Source(address, pps, flows=flows),
    st.one_of(_v4, _v4, _v6),
    st.floats(50, 40_000),
    st.integers(1, 3),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sources=st.lists(_source, min_size=1, max_size=150),
    budget=st.integers(0, 8),
    cap_v4=st.sampled_from([16, 24, 32]),
    cap_v6=st.sampled_from([48, 64, 128]),
)
def test_no_traffic_mix_makes_a_plan_deny_protected_space(
    sources: list[Source], budget: int, cap_v4: int, cap_v6: int
) -> None:
    plan = plan_for(sources, budget=budget, cap_v4=cap_v4, cap_v6=cap_v6, summary_caps=8)
    cidrs = [d.cidr for d in plan.denies]
    assert unsafe_denies(cidrs, cap_v4=cap_v4, cap_v6=cap_v6) == []
    assert len(cidrs) <= budget


# -- `floodgate analyze` -------------------------------------------------------------------------------------


def test_analyze_never_lists_the_allowlist_the_vpc_or_special_ranges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "capture.log"
    sources = background(random.Random(5), 500, 5) + PROTECTED_FLOODS + UNPROTECTED_FLOODS
    capture.write_text("\n".join(flow_lines(sources, intervals=2)) + "\n")
    argv = ["analyze", str(capture), "--json", "--min-pps", "1000", "--min-share", "0.005"]
    argv += [arg for cidr in PARTNER_ALLOW for arg in ("--allow", cidr)]
    argv += [arg for cidr in VPC_CIDRS for arg in ("--vpc-cidr", cidr)]
    assert main(argv) == 0
    cidrs = [d["cidr"] for d in json.loads(capsys.readouterr().out)["denies"]]
    assert unsafe_denies(cidrs) == []
    assert set(cidrs) == EXPECTED


def test_analyze_with_a_narrow_cap_denies_nothing_wider(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "capture.log"
    bots = [Source(a, 300, flows=1) for a in prefix_hosts("45.33.0.0/16", 65_536)[::64]]
    capture.write_text("\n".join(flow_lines(bots + background(random.Random(9), 200, 5), intervals=1)) + "\n")
    argv = ["analyze", str(capture), "--json", "--min-pps", "1000", "--min-share", "0.001"]
    assert main([*argv, "--max-prefix-v4", "16"]) == 0
    wide = [d["cidr"] for d in json.loads(capsys.readouterr().out)["denies"]]
    assert wide == ["45.33.0.0/16"]  # the control: at a /16 cap the whole /16 is one entry
    assert main([*argv, "--max-prefix-v4", "24"]) == 0
    narrow = [d["cidr"] for d in json.loads(capsys.readouterr().out)["denies"]]
    assert narrow
    assert unsafe_denies(narrow, allow=(), vpc_cidrs=(), cap_v4=24) == []


def test_public_floods_pass_the_oracle_so_the_checks_above_can_fail() -> None:
    """The oracle is not vacuous: it flags every protected flood source and none of the unprotected ones."""
    protected = {f"{ipaddress.ip_network(s.address)}" for s in PROTECTED_FLOODS if s.pps >= 20_000}
    assert unsafe_denies(sorted(protected)) == sorted(protected)
    assert unsafe_denies(sorted(EXPECTED)) == []
    assert unsafe_denies(public_addresses(random.Random(1), 50)) == []
