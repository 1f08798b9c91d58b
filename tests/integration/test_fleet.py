"""The deployed detector, fed a capture the way a load-balanced fleet delivers it, plans what
`floodgate analyze` plans, and never turns against the VPC it protects.

Every interface has its own log stream and each subscription delivery carries one stream's records
(`emulator.fleet`). Deliveries go through `floodgate.handlers.detector.lambda_handler` (or the service it
calls), then the early alarm's EventBridge event makes the decision.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.fleet import TCP, UDP, Flow, fleet_lines, spread_hosts
from emulator.traffic import START, public_addresses
from floodgate.adapters.vpc import UnknownVpcCidr
from floodgate.cli.analyze import analyze_paths
from floodgate.core.detect import DEPENDENCY_REFUSAL, DetectionConfig
from floodgate.core.flowlog import DEFAULT_FORMAT, STACK_FORMAT, FlowLogFormat
from floodgate.core.model import DenyPlan
from floodgate.core.networks import DenyPolicy
from floodgate.core.records import EventKind
from floodgate.handlers import detector as detector_handler
from floodgate.services.detection import DetectionService
from floodgate.services.events import parse_detector_event
from floodgate.services.expiry import ExpiryService
from floodgate.services.wiring import Wiring
from floodgate.settings import ENV
from tests.events import flow_log_event, load
from tests.fleet_scenarios import DNS_RESOLVER, Scenario, capture, scenarios
from tests.integration.conftest import AwsClientFactory
from tests.integration.test_handlers import Deployment, make_deployment  # noqa: F401 - the fixture

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics to publish")]

FORMATS = {"v2": DEFAULT_FORMAT, "v5": STACK_FORMAT}
SPAN_S = 120
RECORDS_START = START + 120
DECIDED_AT = RECORDS_START + SPAN_S + 60
BACKGROUND = [Flow(a, random.Random(a).uniform(1, 10)) for a in public_addresses(random.Random(5), 300)]
SINGLES = public_addresses(random.Random(6), 2)

# The issue's four situations, each with the plan a person expects (written by hand).
ROWS: dict[str, tuple[list[Flow], dict[str, str], set[str]]] = {
    "botnets in a /24 and across a /16": (
        [
            *(Flow(a, 60) for a in spread_hosts("198.51.100.0/24", 200, random.Random(1))),
            *(Flow(a, 60) for a in spread_hosts("45.67.0.0/16", 300, random.Random(2))),
            *BACKGROUND,
        ],
        {},
        {"198.51.100.0/24", "45.67.0.0/16"},
    ),
    "a /24 botnet among ordinary neighbours": (
        [
            *(Flow(f"203.0.113.{n}", 80) for n in range(1, 151)),
            *(Flow(f"203.0.113.{n}", 3) for n in range(160, 180)),
            *BACKGROUND,
        ],
        {},
        {"203.0.113.0/24"},
    ),
    "an IPv6 attacker rotating addresses in one /64": (
        [
            *(Flow(a, 60) for a in spread_hosts("2001:db8:bad:1::/64", 300, random.Random(3))),
            *BACKGROUND[:100],
        ],
        {},
        {"2001:db8:bad:1::/64"},
    ),
    "two single floods and a /24 botnet, 3 slots": (
        [
            *(Flow(a, 10_000) for a in SINGLES),
            *(Flow(a, 60) for a in spread_hosts("198.51.100.0/24", 200, random.Random(4))),
            *BACKGROUND,
        ],
        {ENV.BUDGET: "3"},
        {*(f"{a}/32" for a in SINGLES), "198.51.100.0/24"},
    ),
}
# What the stack's v5 flow log adds: the VPC's own calls, an AWS service, and a spoofer forging the resolver.
VPC_OWN_CALLS = [
    Flow(DNS_RESOLVER, 3, protocol=UDP, tcp_flags=0, remote_port=53, local_port=45123, egress=True),
    Flow("52.94.7.10", 5, protocol=TCP, tcp_flags=2, remote_port=443, local_port=50000, egress=True),
]
S3_DOWNLOAD = Flow("52.216.8.9", 21_053, aws_service="S3")
SPOOFED_RESOLVER = Flow(DNS_RESOLVER, 6_000, protocol=UDP, tcp_flags=0, remote_port=53, local_port=53)


def vpc_hosts(deployment: Deployment) -> list[str]:
    ipv6 = ipaddress.ip_network(deployment.vpc.ipv6_cidr)
    return ["10.0.1.10", "10.0.2.11", str(ipv6.network_address + 0x10)]


def fleet_events(
    deployment: Deployment, flows: list[Flow], *, interfaces: int, fmt: str, tag: str = ""
) -> list[dict[str, Any]]:
    per_interface = fleet_lines(
        flows,
        interfaces=interfaces,
        start=RECORDS_START,
        span_s=SPAN_S,
        vpc_hosts=vpc_hosts(deployment),
        fmt=fmt,
    )
    return [
        flow_log_event(
            lines, interface=eni, batch=f"{tag}{eni}", timestamp_ms=(RECORDS_START + SPAN_S) * 1000
        )
        for eni, lines in per_interface.items()
    ]


def deploy(make_deployment: Callable[..., Deployment], fmt: str, **overrides: str) -> Deployment:  # noqa: F811
    deployment = make_deployment(**{ENV.MIN_PPS: "5000", ENV.FLOW_LOG_FORMAT: FORMATS[fmt], **overrides})
    deployment.clock.at = DECIDED_AT
    return deployment


@pytest.mark.parametrize("row", sorted(ROWS))
@pytest.mark.parametrize(("fmt", "interfaces"), [("v2", 16), ("v2", 48), ("v5", 24)])
def test_the_issue_situations_through_the_deployed_handler_over_many_interfaces(
    make_deployment: Callable[..., Deployment],  # noqa: F811
    row: str,
    fmt: str,
    interfaces: int,
) -> None:
    flows, overrides, expected = ROWS[row]
    deployment = deploy(make_deployment, fmt, **overrides)
    if fmt == "v5":
        flows = [*flows, *VPC_OWN_CALLS, S3_DOWNLOAD, SPOOFED_RESOLVER]
    for event in fleet_events(deployment, flows, interfaces=interfaces, fmt=fmt):
        answer = deployment.detect(event)
        assert answer["parsed"] > 0 and answer["window_writes"] >= 1
    answer = deployment.detect(load("alarm-eventbridge-alarm"))
    decision = answer["decision"]
    assert decision["verdict"] == "concentrated"
    assert {d["cidr"] for d in decision["planned"]} == expected
    assert deployment.deny_entries() == {nacl: expected for nacl in deployment.vpc.nacl_ids}
    if fmt == "v5":
        # The resolver the VPC calls is forged by a UDP flood: refused, logged and announced, never denied.
        assert [d["cidr"] for d in decision["refused"]] == [f"{DNS_RESOLVER}/32"]
        (refusal,) = [e for e in deployment.log() if e.kind is EventKind.REFUSED]
        assert refusal.cidr == f"{DNS_RESOLVER}/32"
        assert refusal.reason.startswith(f"{DEPENDENCY_REFUSAL} ({DNS_RESOLVER})")
        assert "UDP, ICMP or SYN-only" in refusal.reason
        notices = deployment.notifications()
        assert any(f"REFUSED {DNS_RESOLVER}/32" in notice for notice in notices)


def test_a_manual_block_of_a_dependency_needs_force(make_deployment: Callable[..., Deployment]) -> None:  # noqa: F811
    deployment = deploy(make_deployment, "v5")
    for event in fleet_events(deployment, [*BACKGROUND[:20], *VPC_OWN_CALLS], interfaces=4, fmt="v5"):
        deployment.detect(event)
    block = {"action": "block", "cidr": "8.8.8.0/24", "reason": "drill", "actor": "alice"}
    answer = deployment.detect(block)
    assert not answer["ok"]
    assert (
        answer["error"]
        == f"8.8.8.0/24 refused: {DEPENDENCY_REFUSAL} (8.8.8.8); block with force to deny it anyway"
    )
    assert deployment.deny_entries() == {nacl: set() for nacl in deployment.vpc.nacl_ids}
    assert [e.kind for e in deployment.log()] == [EventKind.REFUSED]
    answer = deployment.detect({**block, "force": True})
    assert answer["ok"]
    assert deployment.deny_entries() == {nacl: {"8.8.8.0/24"} for nacl in deployment.vpc.nacl_ids}


def test_records_are_judged_by_their_own_time(make_deployment: Callable[..., Deployment]) -> None:  # noqa: F811
    deployment = deploy(make_deployment, "v2")
    flood = [Flow(SINGLES[0], 20_000)]
    old = fleet_lines(flood, interfaces=1, start=START - 3 * 365 * 86400, span_s=60, vpc_hosts=["10.0.1.10"])
    ahead = fleet_lines(flood, interfaces=1, start=DECIDED_AT + 3600, span_s=60, vpc_hosts=["10.0.1.10"])
    lines = [*next(iter(old.values())), *next(iter(ahead.values()))]
    answer = deployment.detect(
        flow_log_event(lines, interface="eni-0time", batch="time", timestamp_ms=DECIDED_AT * 1000)
    )
    assert answer["parsed"] == 0
    assert answer["skipped"] == {"too_old": 1, "future": 1}
    decision = deployment.detect(load("alarm-eventbridge-alarm"))["decision"]
    assert decision["planned"] == []


def _analyze_plan(lines: list[str], fmt: str, vpc_cidrs: list[str]) -> DenyPlan:
    config = DetectionConfig(policy=DenyPolicy.build(vpc_cidrs=vpc_cidrs), min_pps=5000.0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "capture.log"
        path.write_text("\n".join(lines) + "\n")
        return analyze_paths([str(path)], FlowLogFormat.parse(FORMATS[fmt]), config, vpc_cidrs)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_split_redelivered_and_shuffled_deliveries_plan_what_analyze_plans(
    make_deployment: Callable[..., Deployment],  # noqa: F811
    fmt: str,
) -> None:
    deployment = deploy(make_deployment, fmt, **{ENV.DRY_RUN: "true"})
    service = detector_handler.detector.get()
    vpc_cidrs = [deployment.vpc.cidr, deployment.vpc.ipv6_cidr]
    examples = iter(range(1_000))

    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        scenario=scenarios,
        interfaces=st.integers(1, 64),
        with_egress=st.booleans(),
        order=st.randoms(use_true_random=False),
    )
    def check(scenario: Scenario, interfaces: int, with_egress: bool, order: random.Random) -> None:
        example = next(examples)
        # Each example in a window and a dependency memory of its own: eight days after the previous one.
        shift = example * 8 * 86400
        deployment.clock.at = DECIDED_AT + shift
        flows = capture(scenario, with_egress=with_egress)
        per_interface = fleet_lines(
            flows,
            interfaces=interfaces,
            start=RECORDS_START + shift,
            span_s=SPAN_S,
            vpc_hosts=vpc_hosts(deployment),
            fmt=fmt,
        )
        events = [
            flow_log_event(
                lines, interface=eni, batch=f"x{example}{eni}", timestamp_ms=(RECORDS_START + shift) * 1000
            )
            for eni, lines in per_interface.items()
            if lines
        ]
        redelivered = [events[i] for i in range(0, len(events), 3)]  # Lambda's retries of some deliveries
        batches = events + redelivered
        order.shuffle(batches)
        for event in batches:
            service.handle(parse_detector_event(event))
        planned = service.analyze(dry_run=True, actor="test").plan
        expected = _analyze_plan([line for lines in per_interface.values() for line in lines], fmt, vpc_cidrs)
        assert planned.verdict == expected.verdict
        assert planned.denies == expected.denies
        assert planned.refused == expected.refused

    check()


def test_the_vpc_blocks_are_read_at_cold_start_and_a_foreign_cidr_is_an_error(
    make_deployment: Callable[..., Deployment],  # noqa: F811
    aws_client: AwsClientFactory,
) -> None:
    deployment = deploy(make_deployment, "v2")
    wiring = Wiring(clock=deployment.clock, ec2=aws_client("ec2"), dynamodb=aws_client("dynamodb"))
    # Configured with the IPv4 block only (as a first deployment often is): the IPv6 block joins it.
    ipv4_only = dataclasses.replace(deployment.settings, vpc_cidrs=(deployment.vpc.cidr,))
    service = DetectionService.from_settings(ipv4_only, wiring)
    # Compared as networks: EC2 may spell the IPv6 block with leading zeros ("…:0700::/56").
    assert [ipaddress.ip_network(block) for block in service.settings.vpc_cidrs] == [
        ipaddress.ip_network(deployment.vpc.cidr),
        ipaddress.ip_network(deployment.vpc.ipv6_cidr),
    ]
    assert service.parser.destination_inside(vpc_hosts(deployment)[-1]) is True
    assert ExpiryService.from_settings(ipv4_only, wiring).settings.vpc_cidrs == service.settings.vpc_cidrs
    foreign = dataclasses.replace(deployment.settings, vpc_cidrs=(deployment.vpc.cidr, "10.99.0.0/16"))
    with pytest.raises(
        UnknownVpcCidr, match=r"FLOODGATE_VPC_CIDRS: 10\.99\.0\.0/16 is not a CIDR block of vpc-"
    ):
        DetectionService.from_settings(foreign, wiring)
