"""Enforcement figures against a moto server this script starts: plan-to-entries apply latency for a
10-entry change (p50, p99) and EC2 mutating calls per changed entry.

Each measured apply rotates the whole budget: ten new sources arrive while ten quiet ones hold every slot, so
ten entries go in and ten leave, make-before-break, with the ledger and log written first. Prints JSON lines.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))

from floodgate.adapters.ledger import Ledger  # noqa: E402
from floodgate.adapters.nacl import NaclGateway  # noqa: E402
from floodgate.core.bans import BanPolicy  # noqa: E402
from floodgate.core.decision import EnforcementConfig  # noqa: E402
from floodgate.core.model import PlannedDeny  # noqa: E402
from floodgate.core.networks import DenyPolicy  # noqa: E402
from floodgate.core.records import EventKind  # noqa: E402
from floodgate.engine.enforcer import Enforcer  # noqa: E402

BUDGET = 10
RUNS = 40
MUTATING = ("CreateNetworkAclEntry", "ReplaceNetworkAclEntry", "DeleteNetworkAclEntry")


def emit(**figure: object) -> None:
    print(json.dumps(figure), flush=True)


def start_emulator() -> tuple[ThreadedMotoServer, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    return server, f"http://localhost:{port}"


def client(service: str, endpoint: str) -> Any:
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=20)
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", config=config)


def protected_nacl(ec2: Any) -> str:
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    nacl_id: str = ec2.create_network_acl(VpcId=vpc_id)["NetworkAcl"]["NetworkAclId"]
    for egress in (False, True):
        ec2.create_network_acl_entry(
            NetworkAclId=nacl_id, RuleNumber=1000, Protocol="-1", RuleAction="allow", Egress=egress,
            CidrBlock="0.0.0.0/0",
        )  # fmt: skip
    return nacl_id


def tables(dynamodb: Any) -> tuple[str, str]:
    names = (f"bench-state-{uuid.uuid4().hex[:6]}", f"bench-log-{uuid.uuid4().hex[:6]}")
    for name in names:
        dynamodb.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
                {"AttributeName": "cidr", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by-cidr",
                    "KeySchema": [
                        {"AttributeName": "cidr", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    return names


def plan(run: int) -> list[PlannedDeny]:
    """Ten sources no earlier run has seen, each flooding harder than the quiet ones it displaces."""
    return [
        PlannedDeny(f"198.51.{run % 200}.{host}/32", 20_000.0 + host, 1e8, 0.05, 1, "bench flood")
        for host in range(1, BUDGET + 1)
    ]


def main() -> None:
    server, endpoint = start_emulator()
    try:
        ec2 = client("ec2", endpoint)
        calls: list[str] = []
        for operation in MUTATING:
            ec2.meta.events.register(
                f"provide-client-params.ec2.{operation}",
                lambda model, **_: calls.append(model.name),
            )
        nacl_id = protected_nacl(ec2)
        state_table, log_table = tables(client("dynamodb", endpoint))
        config = EnforcementConfig(
            policy=DenyPolicy.build(vpc_cidrs=["10.0.0.0/16"]),
            bans=BanPolicy(base_ttl_s=1800, max_ttl_s=86400),
            nacl_ids=(nacl_id,),
            budget=BUDGET,
        )
        enforcer = Enforcer(
            config,
            NaclGateway(ec2),
            Ledger(state_table, log_table, client("dynamodb", endpoint)),
            actor="bench",
        )
        enforcer.apply(plan(0))  # fill the budget: from here on every run is a full rotation

        latencies: list[float] = []
        changed = 0
        calls.clear()
        for run in range(1, RUNS + 1):
            started = time.perf_counter()
            result = enforcer.apply(plan(run))
            latencies.append((time.perf_counter() - started) * 1000)
            added, evicted = len(result.of_kind(EventKind.BLOCK)), len(result.of_kind(EventKind.EVICT))
            assert added == evicted == BUDGET, result.counts
            changed += added + evicted
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        emit(
            bench="apply_latency",
            entries_changed=BUDGET,
            runs=RUNS,
            p50_ms=round(statistics.median(latencies), 1),
            p99_ms=round(cuts[98], 1),
            goal_p99_ms=1000,
        )
        emit(
            bench="ec2_mutations_per_changed_entry",
            value=round(len(calls) / changed, 3),
            calls=len(calls),
            entries_changed=changed,  # entries added plus entries removed
            per_rotated_slot=round(len(calls) / (changed / 2), 3),  # one in, one out
            goal=2,
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
