"""The paths that carry the safety guarantees, against moto over HTTP and the tests' own oracle
(tests/safety_oracle.py): the detector's automatic decisions, manual actions through the detector, and the
CLI's block. Whatever they are asked, no NACL ever holds a deny of the allowlist, the VPC's IPv4 or IPv6
blocks, a special range, or a prefix wider than the caps; the unprotected sources beside them are denied."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from emulator.traffic import INTERVAL_S, START, Source, prefix_hosts
from floodgate.core.slots import Direction
from floodgate.settings import ENV
from tests.events import load
from tests.integration.conftest import AwsClientFactory, Tables, VpcFixture
from tests.integration.incident import Deployment as CliDeployment
from tests.integration.incident import stand_in
from tests.integration.test_handlers import (  # the detector deployment and its fixture
    ORDINARY,
    Deployment,
    deliveries,
    make_deployment,  # noqa: F401 - a fixture, used by name
)
from tests.safety_oracle import PARTNER_ALLOW, unsafe_denies

pytestmark = pytest.mark.integration

UNPROTECTED = {"45.33.12.9/32", "2a00:1450:4001:81a::5/128"}


def inside(cidr: str, offset: int = 0x99) -> str:
    network = ipaddress.ip_network(cidr)
    return str(network.network_address + offset)


def all_denies(deployment: Deployment) -> list[str]:
    acls = deployment.ec2.describe_network_acls(NetworkAclIds=list(deployment.vpc.nacl_ids))["NetworkAcls"]
    return [
        e.get("CidrBlock") or e["Ipv6CidrBlock"]
        for acl in acls
        for e in acl["Entries"]
        if e["RuleAction"] == "deny" and e["RuleNumber"] < 32767
    ]


def test_the_detector_denies_floods_beside_protected_space_and_never_inside_it(
    make_deployment: Callable[..., Deployment],  # noqa: F811 - the imported fixture
) -> None:
    deployment = make_deployment(**{ENV.ALLOW_CIDRS: ",".join(PARTNER_ALLOW), ENV.ALWAYS_PPS: "5000"})
    vpc = deployment.vpc
    floods = [
        Source(address, 12_000, flows=16)
        for address in (
            "198.51.100.7",  # allowlisted partners
            "192.0.2.70",
            "2001:db8:feed::7",
            inside(vpc.ipv6_cidr),  # the VPC's own IPv6 block (public space)
            "100.64.7.7",  # carrier-grade NAT
            "fd00::1",  # unique local
            "45.33.12.9",  # not protected: the controls
            "2a00:1450:4001:81a::5",
        )
    ]
    floods += [Source(a, 250, flows=2) for a in prefix_hosts("198.51.100.0/24", 200)]  # bots in the allowlist
    deployment.clock.at = START + INTERVAL_S + 20
    *early, last = deliveries(ORDINARY + floods, 0)
    for event in early:
        deployment.detect(event)
    deployment.clock.advance(25)
    decision = deployment.detect(last)["decision"]
    assert decision["verdict"] == "concentrated"
    denied = all_denies(deployment)
    assert unsafe_denies(denied, vpc_cidrs=[vpc.cidr, vpc.ipv6_cidr]) == []
    assert set(denied) == UNPROTECTED
    assert unsafe_denies([d["cidr"] for d in decision["planned"]], vpc_cidrs=[vpc.cidr, vpc.ipv6_cidr]) == []


def test_manual_blocks_through_the_detector_never_reach_protected_space(
    make_deployment: Callable[..., Deployment],  # noqa: F811 - the imported fixture
) -> None:
    deployment = make_deployment(**{ENV.ALLOW_CIDRS: ",".join(PARTNER_ALLOW)})
    vpc = deployment.vpc
    deployment.clock.at = START
    attempts = [
        "198.51.100.7",
        "192.0.2.127",  # the last address of 192.0.2.64/26
        "2001:db8:feed::/48",
        inside(vpc.ipv6_cidr),
        str(ipaddress.ip_network(vpc.ipv6_cidr).supernet(new_prefix=48)),  # a /48 holding the VPC block
        "45.32.0.0/15",  # one bit wider than the /16 cap
        "2a00:1400::/47",  # one bit wider than the /48 cap
        "169.254.169.254",
    ]
    for cidr in attempts:
        answer = deployment.detect({**load("manual-block"), "cidr": cidr})
        assert not answer["ok"], (cidr, answer)
    assert all_denies(deployment) == []
    answer = deployment.detect({**load("manual-block"), "cidr": "45.32.0.0/16"})  # the control: at the cap
    assert answer["ok"], answer
    assert sorted(all_denies(deployment)) == ["45.32.0.0/16"] * len(vpc.nacl_ids)


@pytest.fixture
def cli_deployment(aws_client: AwsClientFactory, vpc: VpcFixture, tables: Tables) -> CliDeployment:
    return stand_in(aws_client, vpc, tables)  # allowlist 198.51.100.0/24, the VPC's IPv4 and IPv6 blocks


def test_the_cli_block_refuses_protected_space_and_wide_prefixes(cli_deployment: CliDeployment) -> None:
    d = cli_deployment
    allow, vpc_cidrs = ["198.51.100.0/24"], [d.vpc.cidr, d.vpc.ipv6_cidr]
    attempts = [
        "198.51.100.255",
        inside(d.vpc.ipv6_cidr),
        inside(d.vpc.cidr),
        "45.32.0.0/15",
        "2a00:1400::/47",
        "fe80::1",
        "0.0.0.0/0",
    ]
    for cidr in attempts:
        run = d.cli("block", cidr, "--reason", "try it")
        assert run.code == 2 and "refused" in run.err, (cidr, run)
    held = [c for n in d.vpc.nacl_ids for way in Direction for c in d.entries(n, way).values()]
    assert held == []
    assert d.cli("block", "45.33.12.9", "--reason", "the control").code == 0
    held = [c for n in d.vpc.nacl_ids for way in Direction for c in d.entries(n, way).values()]
    assert held and set(held) == {"45.33.12.9/32"}
    assert unsafe_denies(held, allow=allow, vpc_cidrs=vpc_cidrs) == []
