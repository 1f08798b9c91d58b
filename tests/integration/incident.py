"""A Floodgate deployment in the emulator as the CLI finds it, and a scripted incident played through it.

The deployment is what `--stack` resolves: a stand-in CloudFormation stack whose outputs name the tables, the
NACLs and the detector function, and that function (created, never invoked: moto runs no Lambda code without
Docker) with the configuration in its environment, as the CDK stack sets it.

The incident runs through the real Enforcer on a clock from three hours ago up to now, so the CLI, which
reads the wall clock, finds it as recent history.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Any

from floodgate.adapters.arming import Arming
from floodgate.adapters.ledger import Ledger
from floodgate.adapters.nacl import NaclGateway
from floodgate.adapters.retry import Retrier
from floodgate.cli.main import main
from floodgate.core.decision import EnforcementConfig
from floodgate.core.model import PlannedDeny
from floodgate.core.records import EventKind, Evidence, LogEvent, Origin
from floodgate.core.slots import Direction
from floodgate.engine.enforcer import Enforcer
from floodgate.observability import OUTPUT
from floodgate.settings import ENV, Settings
from tests.integration.conftest import FAST_RETRIES, AwsClientFactory, Clock, Tables, VpcFixture

ALLOWLISTED = "198.51.100.0/24"
ALARM = "Floodgate-early-warning"
ON_CALL = "arn:aws:sts::123456789012:assumed-role/OnCall/alice"
BUDGET = 3


@dataclass
class Run:
    """One CLI invocation's exit code and output."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


def floodgate(*argv: str) -> Run:
    """`floodgate ARGV`, in process; AWS_ENDPOINT_URL (set by the aws_endpoint fixture) points it at moto."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return Run(code, out.getvalue(), err.getvalue())


@dataclass
class Deployment:
    stack: str
    vpc: VpcFixture
    tables: Tables
    settings: Settings
    enforcer: Enforcer
    arming: Arming
    clock: Clock
    ec2: Any
    function: str = ""  # the detector function's name
    failure_queue: str = ""  # the failure queue's URL (output FailureQueueUrl)

    def cli(self, *argv: str) -> Run:
        """`floodgate ARGV --stack STACK`: this deployment."""
        return floodgate(*argv, "--stack", self.stack)

    def entries(self, nacl_id: str, direction: Direction = Direction.INGRESS) -> dict[int, str]:
        """The NACL's deny entries below the allow rules, by rule number."""
        (acl,) = self.ec2.describe_network_acls(NetworkAclIds=[nacl_id])["NetworkAcls"]
        return {
            e["RuleNumber"]: e.get("CidrBlock") or e["Ipv6CidrBlock"]
            for e in acl["Entries"]
            if e["Egress"] == direction.egress and e["RuleAction"] == "deny" and e["RuleNumber"] < 1000
        }

    def detect(self, **rates: float) -> None:
        """The alarm arms the detector, which asks for these sources: detect(**{"203.0.113.7/32": 9000.0})."""
        now = self.clock()
        self.arming.arm(ALARM, now=now, until=now + 1800, reason="Threshold Crossed: 1 datapoint [61234.0]")
        plan = [
            PlannedDeny(cidr, pps, pps * 4800, 0.2, 1, f"{pps:,.0f} pps, 20% of inbound")
            for cidr, pps in rates.items()
        ]
        self.enforcer.apply(plan, origin=Origin.alarm(ALARM))

    def sample(self, inbound_pps: float, **rates: tuple[float, float]) -> None:
        """The expirer's EFFECT events of one run, now: sample(inbound, **{cidr: (pps, reject pps)})."""
        now = self.clock()
        self.enforcer.ledger.append(
            [
                LogEvent(
                    EventKind.EFFECT,
                    now,
                    cidr,
                    f"{reject:,.0f} pps REJECT",
                    "floodgate-expirer",
                    evidence=Evidence(
                        pps=pps, share=pps / inbound_pps, reject_pps=reject, inbound_pps=inbound_pps
                    ),
                )
                for cidr, (pps, reject) in rates.items()
            ]
        )


def stand_in(aws_client: AwsClientFactory, vpc: VpcFixture, tables: Tables) -> Deployment:
    """The stack, the detector function and an Enforcer with the same configuration, its clock 3 h ago."""
    environment = {
        ENV.NACL_IDS: ",".join(vpc.nacl_ids),
        ENV.VPC_CIDRS: f"{vpc.cidr},{vpc.ipv6_cidr}",
        ENV.ALLOW_CIDRS: ALLOWLISTED,
        ENV.BUDGET: str(BUDGET),
        ENV.RULE_START: "100",
        ENV.MIN_PPS: "1000",
        ENV.BASE_TTL: "30m",
        ENV.MAX_TTL: "1d",
        ENV.ALARM_NAMES: json.dumps([ALARM]),
        ENV.STATE_TABLE: tables.state,
        ENV.LOG_TABLE: tables.log,
    }
    function = _detector_function(aws_client, environment)
    failure_queue = aws_client("sqs").create_queue(QueueName=f"floodgate-failures-{uuid.uuid4().hex[:8]}")[
        "QueueUrl"
    ]
    stack = _stack(
        aws_client,
        {
            OUTPUT.STATE_TABLE: tables.state,
            OUTPUT.LOG_TABLE: tables.log,
            OUTPUT.DETECTOR_FUNCTION: function,
            OUTPUT.EXPIRER_FUNCTION: function,
            OUTPUT.NACL_IDS: ",".join(vpc.nacl_ids),
            OUTPUT.VPC_ID: vpc.vpc_id,
            OUTPUT.FAILURE_QUEUE: failure_queue,
        },
    )
    settings = Settings.from_env(environment)
    clock = Clock(time.time() - 3 * 3600)
    retrier = Retrier(FAST_RETRIES)
    ec2, dynamodb = aws_client("ec2"), aws_client("dynamodb")
    enforcer = Enforcer(
        EnforcementConfig.from_settings(settings),
        NaclGateway(ec2, retrier=retrier),
        Ledger(tables.state, tables.log, dynamodb, retrier=retrier),
        now=clock,
        actor="floodgate-detector",
    )
    arming = Arming(tables.state, dynamodb, retrier=retrier)
    return Deployment(stack, vpc, tables, settings, enforcer, arming, clock, ec2, function, failure_queue)


def play_incident(d: Deployment) -> Deployment:
    """Three hours of an incident, ending now with 203.0.113.7/32 and 192.0.2.0/24 denied in both NACLs.

    T+0     the alarm arms the detector (and re-arms it at each detection below, last at now-5m for 30 min):
            203.0.113.7 and 203.0.113.66 are denied (BLOCK)
    T+10m   192.0.2.0/24 joins: the budget of 3 is full
    T+20m   .7 is seen again (EXTEND); 45.33.32.156 at 30 kpps takes .66's slot (EVICT)
    T+40m   192.0.2.0/24's 30-minute ban runs out (EXPIRE); at T+55m those of .7 and 45.33.32.156
    T+1h30m on-call denies 2001:db8:bad::/48 by hand, and lifts it again at T+2h (UNBLOCK)
    now-5m  the flood is back: .7 and 192.0.2.0/24, second offence, an hour each (BLOCK)
    now-2m  an entry went missing from the first NACL and reconcile puts it back (REPAIR)

    Besides, the expirer's EFFECT samples (not counted among the 27 events: `log` and `report` list
    actions) at T+5m, 15m, 25m, 35m, 45m, T+1h40m and now-1m: the denied sources go on, REJECTed, until
    45.33.32.156 stops (last seen T+35m, gone by T+45m).
    """
    seven, sixty_six, bots, big = "203.0.113.7/32", "203.0.113.66/32", "192.0.2.0/24", "45.33.32.156/32"
    d.detect(**{seven: 9000.0, sixty_six: 6000.0})
    d.clock.advance(300)
    d.sample(45_000.0, **{seven: (9000.0, 8800.0), sixty_six: (6000.0, 6000.0)})
    d.clock.advance(300)
    d.detect(**{bots: 20000.0})
    d.clock.advance(300)
    d.sample(50_000.0, **{seven: (9500.0, 9500.0), sixty_six: (6000.0, 6000.0), bots: (20000.0, 19800.0)})
    d.clock.advance(300)
    d.detect(**{seven: 12000.0, big: 30000.0})
    d.clock.advance(300)
    d.sample(70_000.0, **{seven: (12000.0, 12000.0), bots: (18000.0, 18000.0), big: (30000.0, 30000.0)})
    d.clock.advance(600)
    d.sample(52_000.0, **{seven: (12000.0, 12000.0), bots: (5000.0, 5000.0), big: (30000.0, 30000.0)})
    d.clock.advance(300)
    d.enforcer.expire()
    d.clock.advance(300)
    d.sample(9_000.0, **{seven: (3000.0, 3000.0), big: (0.0, 0.0)})
    d.clock.advance(600)
    d.enforcer.expire()
    d.clock.advance(2100)
    d.enforcer.block("2001:db8:bad::/48", reason="scraper, ticket OPS-112", actor=ON_CALL, ttl_s=3600)
    d.clock.advance(600)
    d.sample(4_000.0, **{"2001:db8:bad::/48": (800.0, 800.0)})
    d.clock.advance(1200)
    d.enforcer.unblock("2001:db8:bad::/48", reason="customer's crawler, allowed", actor=ON_CALL)
    d.clock.at = time.time() - 300
    d.detect(**{seven: 15000.0, bots: 18000.0})
    nacl_id = d.vpc.nacl_ids[0]
    rule = next(rule for rule, cidr in d.entries(nacl_id).items() if cidr == seven)
    d.ec2.delete_network_acl_entry(NetworkAclId=nacl_id, RuleNumber=rule, Egress=False)
    d.clock.advance(180)
    d.enforcer.reconcile()
    d.clock.advance(60)
    d.sample(40_000.0, **{seven: (15000.0, 15000.0), bots: (18000.0, 17000.0)})
    return d


def _detector_function(aws_client: AwsClientFactory, environment: dict[str, str]) -> str:
    suffix = uuid.uuid4().hex[:8]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = aws_client("iam").create_role(
        RoleName=f"floodgate-detector-{suffix}", AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", "def lambda_handler(event, context):\n    return None\n")
    name = f"floodgate-detector-{suffix}"
    aws_client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler="index.lambda_handler",
        Code={"ZipFile": code.getvalue()},
        Environment={"Variables": environment},
    )
    return name


def _stack(aws_client: AwsClientFactory, outputs: dict[str, str]) -> str:
    name = f"floodgate-{uuid.uuid4().hex[:8]}"
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            **{key: {"Value": value} for key, value in outputs.items()},
            OUTPUT.TOPIC_ARN: {"Value": {"Ref": "Topic"}},
        },
    }
    aws_client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name
