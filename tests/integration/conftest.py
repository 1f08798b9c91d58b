"""Fixtures for tests against the AWS emulator: moto in server mode, reached over HTTP as real AWS would be.

Session-wide (one emulator per pytest process, so each xdist worker has its own):
- `aws_endpoint`: starts a moto server process of its own (`emulator.server`: no other emulator shares its
  state) on a free port, sets dummy credentials and us-east-1 for the whole session, and yields the endpoint
  URL (`http://localhost:PORT`). Also exported as AWS_ENDPOINT_URL, so code that builds its own boto3
  clients reaches the emulator too.

Per test (everything is created fresh with unique names, so tests never see each other's state):
- `aws_client("ec2")`: a boto3 client for the emulator. botocore retries are off (one attempt) unless a
  `retries=` config is passed, so retry behaviour under test is the code's own.
- `make_vpc(...)` / `vpc`: a VPC (IPv4 and IPv6) with two subnets, each associated with its own custom NACL
  whose allow-all rules sit at rule 1000, far above Floodgate's owned block (default rules 100-121).
- `make_tables()` / `tables`: the STATE and LOG tables with the key schema of `floodgate.tables`, the
  by-cidr index included.
- `clock`: a settable clock (`clock()` is now; `clock.advance(seconds)`), for the engine's `now=`.
- `make_enforcer(...)` / `enforcer`: an `Enforcer` wired to the emulator over `vpc` and `tables`, with a
  fast retry backoff and `clock` as its clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.config import Config

from emulator import server
from floodgate.adapters.ledger import Ledger
from floodgate.adapters.nacl import NaclGateway
from floodgate.adapters.retry import Backoff, Retrier
from floodgate.core.bans import BanPolicy
from floodgate.core.decision import EnforcementConfig
from floodgate.core.networks import DenyPolicy
from floodgate.engine.enforcer import Enforcer
from floodgate.tables import (
    LOG_BY_CIDR_INDEX,
    LOG_BY_CIDR_PARTITION_KEY,
    LOG_BY_CIDR_SORT_KEY,
    PARTITION_KEY,
    SORT_KEY,
)

REGION = "us-east-1"
ALLOW_RULE = 1000
START = 1_764_000_000.0  # the test clock's epoch: 2025-11-24T16:00:00Z


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """The emulator's endpoint URL; dummy credentials, region and AWS_ENDPOINT_URL are set for the session."""
    emulator = server.start(region=REGION, set_environment=False)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {**emulator.environment(), "AWS_SECURITY_TOKEN": "testing"}.items():
                patch.setenv(name, value)
            yield emulator.endpoint
    finally:
        server.stop(emulator)


AwsClientFactory = Callable[..., Any]


@pytest.fixture
def aws_client(aws_endpoint: str) -> AwsClientFactory:
    """`aws_client("ec2")` or `aws_client("dynamodb", retries={...})`: a client bound to the emulator."""

    def build(service: str, **config: Any) -> Any:
        # Timeouts well within the engine's 60 s lease (it refuses a client that could outlast it), and
        # generous for an emulator on a busy machine.
        settings = {
            "retries": {"mode": "standard", "total_max_attempts": 1},
            "connect_timeout": 5,
            "read_timeout": 20,
            **config,
        }
        return boto3.client(service, endpoint_url=aws_endpoint, region_name=REGION, config=Config(**settings))

    return build


@dataclass(frozen=True)
class VpcFixture:
    vpc_id: str
    cidr: str
    ipv6_cidr: str
    subnet_ids: tuple[str, ...]
    nacl_ids: tuple[str, ...]  # the custom NACLs, one per subnet
    default_nacl_id: str


@pytest.fixture
def make_vpc(aws_client: AwsClientFactory) -> Callable[..., VpcFixture]:
    """`make_vpc(nacls=2, allow_rule=1000)`: a fresh VPC whose subnets each have their own custom NACL
    allowing all traffic (IPv4 and IPv6, both directions) at `allow_rule`; `ec2=` another account's client."""
    default_ec2 = aws_client("ec2")

    def build(
        *, nacls: int = 2, allow_rule: int = ALLOW_RULE, cidr: str = "10.20.0.0/16", ec2: Any = None
    ) -> VpcFixture:
        ec2 = ec2 or default_ec2
        vpc = ec2.create_vpc(CidrBlock=cidr, AmazonProvidedIpv6CidrBlock=True)["Vpc"]
        vpc_id = vpc["VpcId"]
        ipv6 = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"][0][
            "Ipv6CidrBlock"
        ]
        default_nacl = ec2.describe_network_acls(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "default", "Values": ["true"]}]
        )["NetworkAcls"][0]
        base = cidr.split(".")
        subnet_ids: list[str] = []
        nacl_ids: list[str] = []
        for index in range(nacls):
            subnet_cidr = f"{base[0]}.{base[1]}.{index}.0/24"
            subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock=subnet_cidr)["Subnet"]["SubnetId"]
            nacl_id = ec2.create_network_acl(VpcId=vpc_id)["NetworkAcl"]["NetworkAclId"]
            for egress in (False, True):
                ec2.create_network_acl_entry(
                    NetworkAclId=nacl_id, RuleNumber=allow_rule, Protocol="-1", RuleAction="allow",
                    Egress=egress, CidrBlock="0.0.0.0/0",
                )  # fmt: skip
                ec2.create_network_acl_entry(
                    NetworkAclId=nacl_id, RuleNumber=allow_rule + 1, Protocol="-1", RuleAction="allow",
                    Egress=egress, Ipv6CidrBlock="::/0",
                )  # fmt: skip
            association = next(
                a["NetworkAclAssociationId"]
                for a in ec2.describe_network_acls(NetworkAclIds=[default_nacl["NetworkAclId"]])[
                    "NetworkAcls"
                ][0]["Associations"]
                if a["SubnetId"] == subnet_id
            )
            ec2.replace_network_acl_association(AssociationId=association, NetworkAclId=nacl_id)
            subnet_ids.append(subnet_id)
            nacl_ids.append(nacl_id)
        return VpcFixture(
            vpc_id, cidr, ipv6, tuple(subnet_ids), tuple(nacl_ids), default_nacl["NetworkAclId"]
        )

    return build


@pytest.fixture
def vpc(make_vpc: Callable[..., VpcFixture]) -> VpcFixture:
    return make_vpc()


@dataclass(frozen=True)
class Tables:
    state: str
    log: str


@pytest.fixture
def make_tables(aws_client: AwsClientFactory) -> Callable[..., Tables]:
    """`make_tables()`: fresh STATE and LOG tables (unique names) with the schema of `floodgate.tables`;
    `make_tables(dynamodb=...)` in another account."""
    default_dynamodb = aws_client("dynamodb")

    def build(dynamodb: Any = None) -> Tables:
        dynamodb = dynamodb or default_dynamodb
        suffix = uuid.uuid4().hex[:8]
        tables = Tables(state=f"floodgate-state-{suffix}", log=f"floodgate-log-{suffix}")
        keys = {
            "KeySchema": [
                {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
            ],
            "BillingMode": "PAY_PER_REQUEST",
        }
        dynamodb.create_table(
            TableName=tables.state,
            AttributeDefinitions=[
                {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": SORT_KEY, "AttributeType": "S"},
            ],
            **keys,
        )
        dynamodb.create_table(
            TableName=tables.log,
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": "S"}
                for name in dict.fromkeys(
                    (PARTITION_KEY, SORT_KEY, LOG_BY_CIDR_PARTITION_KEY, LOG_BY_CIDR_SORT_KEY)
                )
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": LOG_BY_CIDR_INDEX,
                    "KeySchema": [
                        {"AttributeName": LOG_BY_CIDR_PARTITION_KEY, "KeyType": "HASH"},
                        {"AttributeName": LOG_BY_CIDR_SORT_KEY, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            **keys,
        )
        for name in (tables.state, tables.log):
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
            )
        return tables

    return build


@pytest.fixture
def tables(make_tables: Callable[..., Tables]) -> Tables:
    return make_tables()


@dataclass
class Clock:
    """A clock tests move by hand; thread-safe enough for reads while one thread advances it."""

    at: float = START

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> float:
        self.at += seconds
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


FAST_RETRIES = Backoff(attempts=8, base_s=0.001, cap_s=0.02)


@dataclass
class EnforcerKit:
    """An Enforcer and the parts it was built from, for tests that look behind it."""

    enforcer: Enforcer
    gateway: NaclGateway
    ledger: Ledger
    config: EnforcementConfig
    engine_ec2: Any  # the engine's own EC2 client: its mutating calls are recorded in `calls`
    ec2: Any  # a separate EC2 client for set-up and tampering, not recorded
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (operation, parameters), in order


MUTATING_EC2_CALLS = ("CreateNetworkAclEntry", "ReplaceNetworkAclEntry", "DeleteNetworkAclEntry")


def default_config(vpc: VpcFixture, **overrides: Any) -> EnforcementConfig:
    """The engine's configuration for tests: the VPC's custom NACLs, budget 10 from rule 100, 30 min bans
    doubling per offence up to a day, and a 1,000 pps REJECT threshold for extensions."""
    settings: dict[str, Any] = {
        "policy": DenyPolicy.build(vpc_cidrs=[vpc.cidr, vpc.ipv6_cidr]),
        "bans": BanPolicy(base_ttl_s=1800, max_ttl_s=86400, factor=2.0, offence_memory_s=7 * 86400),
        "nacl_ids": vpc.nacl_ids,
        "evidence_threshold_pps": 1000.0,
        **overrides,
    }
    return EnforcementConfig(**settings)


@pytest.fixture
def make_enforcer(
    aws_client: AwsClientFactory, vpc: VpcFixture, tables: Tables, clock: Clock
) -> Callable[..., EnforcerKit]:
    """`make_enforcer(budget=3, ...)`: an Enforcer over `vpc`'s NACLs and `tables`; keyword arguments
    override `EnforcementConfig` fields; `ec2=` / `dynamodb=` swap in other clients (e.g. fault-injecting
    ones) and `now=` another clock. Each call builds an independent worker over the same NACLs and tables."""

    def build(
        *,
        actor: str = "test-worker",
        ec2: Any = None,
        dynamodb: Any = None,
        now: Callable[[], float] = clock,
        **overrides: Any,
    ) -> EnforcerKit:
        engine_ec2 = ec2 or aws_client("ec2")
        retrier = Retrier(FAST_RETRIES)
        gateway = NaclGateway(engine_ec2, retrier=retrier)
        ledger = Ledger(tables.state, tables.log, dynamodb or aws_client("dynamodb"), retrier=retrier)
        config = default_config(vpc, **overrides)
        enforcer = Enforcer(config, gateway, ledger, now=now, actor=actor)
        kit = EnforcerKit(enforcer, gateway, ledger, config, engine_ec2, aws_client("ec2"))

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            kit.calls.append((model.name, dict(params)))

        for operation in MUTATING_EC2_CALLS:
            engine_ec2.meta.events.register(f"provide-client-params.ec2.{operation}", record)
        return kit

    return build


@pytest.fixture
def enforcer(make_enforcer: Callable[..., EnforcerKit]) -> EnforcerKit:
    return make_enforcer()
