"""Many accounts against the emulator: one security account decides, two member accounts enforce.

moto keys its backends by account: a request signed with the credentials STS AssumeRole returns for
arn:aws:iam::<account>:role/... is served by that account's EC2, DynamoDB and EventBridge. The security
account is the emulator's default account; members A and B are reached through AssumeRole, as `floodgate
status --all` reaches them. EventBridge routes across accounts in moto; its last hop to a Lambda is played by
`emulator.estate` (see there for what moto changes on the way and how it is put back).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config

from emulator.deploy import DeployedFunction
from emulator.estate import delivered, queue_target
from emulator.lambda_runtime import subscription_document
from emulator.server import ACCOUNT_ID
from emulator.stream_runner import MappingConfig, StreamRunner, scheduled_event
from emulator.traffic import Source, background, flow_lines
from floodgate.adapters.estate import BusPublisher, MemberVpc
from floodgate.adapters.failure_queue import FailureQueue
from floodgate.adapters.health import HealthRecords
from floodgate.adapters.notify import Notifier
from floodgate.adapters.retry import Retrier
from floodgate.adapters.stream import StreamReader
from floodgate.adapters.window import WINDOW_PREFIX
from floodgate.core.model import PlannedDeny
from floodgate.handlers import member as member_handler
from floodgate.handlers import security as security_handler
from floodgate.observability import MEMBER_ACCOUNTS_OUTPUT, METRIC, OUTPUT, SECURITY_HANDLER
from floodgate.services.bus import (
    DECISION_DETAIL_TYPE,
    BusEventError,
    Decision,
    Estate,
    MemberAlarm,
    Outcome,
    Target,
    decision_detail,
    decision_route,
    member_inbound,
    member_outbound,
    parse_bus_event,
    put_events_entry,
    security_alarms,
    security_inbound,
)
from floodgate.services.estate import (
    FLOW_LOG_GROUP_ENV,
    FLOW_LOG_ROLE_ENV,
    MemberService,
    ensure_member_flow_log,
    member_settings,
)
from floodgate.services.expiry import ExpiryService
from floodgate.services.producer import DecisionProducer
from floodgate.services.stream_replay import StreamReplay
from floodgate.services.streaming import DECISION_LEASE_PREFIX
from floodgate.services.wiring import Wiring
from floodgate.settings import Settings
from tests.events import LambdaContextStub, load
from tests.integration.conftest import FAST_RETRIES, REGION, Tables, VpcFixture
from tests.integration.incident import _detector_function, floodgate

pytestmark = pytest.mark.integration

SECURITY = ACCOUNT_ID
MEMBER_A, MEMBER_B = "222222222222", "333333333333"
READER_ROLE = "FloodgateEstateReader"
OWNED = range(100, 122)  # the default owned block: rule 100, budget 10, two families
ALARM_PREFIX = "Floodgate-"  # the stack name's: a member's Floodgate alarms start with it


def session(endpoint: str, account: str) -> boto3.Session:
    """Credentials of `account`, as AssumeRole into its reader role gives them."""
    sts = boto3.client("sts", endpoint_url=endpoint, region_name=REGION)
    role = f"arn:aws:iam::{account}:role/{READER_ROLE}"
    credentials = sts.assume_role(RoleArn=role, RoleSessionName="floodgate-test")["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    )


@dataclass
class Member:
    account: str
    clients: Callable[[str], Any]
    vpc: VpcFixture
    tables: Tables
    service: MemberService
    inbox: str  # the queue standing in for the member's enforcer Lambda

    def owned_entries(self) -> list[tuple[int, str]]:
        acls = self.clients("ec2").describe_network_acls(NetworkAclIds=list(self.vpc.nacl_ids))["NetworkAcls"]
        return sorted(
            (e["RuleNumber"], e.get("CidrBlock") or e.get("Ipv6CidrBlock", ""))
            for acl in acls
            for e in acl["Entries"]
            if e["RuleNumber"] in OWNED and not e["Egress"]
        )

    def items(self, table: str) -> list[dict[str, Any]]:
        return list(self.clients("dynamodb").scan(TableName=table)["Items"])


@dataclass
class EstateKit:
    bus: str
    security_events: Any
    security_sqs: Any
    security_inbox: str  # decision outcomes (the detection inbox)
    security_alarm_inbox: str  # members' alarms (standing in for the security detector)
    members: dict[str, Member]
    estate: Estate


@pytest.fixture
def estate(
    aws_endpoint: str, make_vpc: Callable[..., VpcFixture], make_tables: Callable[..., Tables]
) -> EstateKit:
    suffix = uuid.uuid4().hex[:8]
    bus = f"floodgate-estate-{suffix}"
    tag = f"floodgate:protect-{suffix}"  # the emulator is shared by the session's tests: one tag per test
    # Timeouts within the engine's 60 s lease, as conftest's (the engine refuses a client that outlasts it).
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=20)
    security_events = boto3.client("events", endpoint_url=aws_endpoint, region_name=REGION, config=config)
    security_sqs = boto3.client("sqs", endpoint_url=aws_endpoint, region_name=REGION)
    security_events.create_event_bus(Name=bus)
    security_inbox, security_queue_arn = queue_target(security_sqs, f"security-inbox-{suffix}")
    security_events.put_rule(
        Name=f"inbound-{suffix}", EventBusName=bus, EventPattern=json.dumps(security_inbound())
    )
    security_events.put_targets(
        Rule=f"inbound-{suffix}", EventBusName=bus, Targets=[{"Id": "record", "Arn": security_queue_arn}]
    )
    # Members' alarms, to (the queue standing in for) the security detector.
    security_alarm_inbox, alarm_queue_arn = queue_target(security_sqs, f"security-alarms-{suffix}")
    security_events.put_rule(
        Name=f"alarms-{suffix}", EventBusName=bus, EventPattern=json.dumps(security_alarms())
    )
    security_events.put_targets(
        Rule=f"alarms-{suffix}", EventBusName=bus, Targets=[{"Id": "detection", "Arn": alarm_queue_arn}]
    )
    members: dict[str, Member] = {}
    for account in (MEMBER_A, MEMBER_B):
        member_session = session(aws_endpoint, account)

        def clients(service: str, member_session: boto3.Session = member_session) -> Any:
            return member_session.client(service, endpoint_url=aws_endpoint, config=config)

        vpc = make_vpc(ec2=clients("ec2"), cidr="10.30.0.0/16")
        clients("ec2").create_tags(Resources=[vpc.vpc_id], Tags=[{"Key": tag, "Value": "yes"}])
        tables = make_tables(clients("dynamodb"))
        # Security bus -> this member's default bus, for decisions naming this member only.
        route = f"to-{account}-{suffix}"
        security_events.put_rule(
            Name=route, EventBusName=bus, EventPattern=json.dumps(decision_route(account))
        )
        security_events.put_targets(
            Rule=route,
            EventBusName=bus,
            Targets=[{"Id": "member", "Arn": f"arn:aws:events:{REGION}:{account}:event-bus/default"}],
        )
        # The member's default bus: decisions in (to its enforcer), outcomes and alarms out.
        events = clients("events")
        inbox, inbox_arn = queue_target(clients("sqs"), f"member-inbox-{suffix}")
        events.put_rule(Name=f"decisions-{suffix}", EventPattern=json.dumps(member_inbound()))
        events.put_targets(Rule=f"decisions-{suffix}", Targets=[{"Id": "enforcer", "Arn": inbox_arn}])
        for index, pattern in enumerate(member_outbound([], ALARM_PREFIX)):
            events.put_rule(Name=f"outbound-{index}-{suffix}", EventPattern=json.dumps(pattern))
            events.put_targets(
                Rule=f"outbound-{index}-{suffix}",
                Targets=[{"Id": "security", "Arn": f"arn:aws:events:{REGION}:{SECURITY}:event-bus/{bus}"}],
            )
        settings = Settings.from_env(
            {
                "FLOODGATE_MODE": "member",
                "FLOODGATE_SECURITY_ACCOUNT": SECURITY,
                "FLOODGATE_MEMBER_ACCOUNTS": f"{MEMBER_A},{MEMBER_B}",
                "FLOODGATE_SECURITY_BUS": bus,
                "FLOODGATE_MEMBER_VPC_TAG": tag,
                "FLOODGATE_STATE_TABLE": tables.state,
                "FLOODGATE_LOG_TABLE": tables.log,
            }
        )
        wiring = Wiring(ec2=clients("ec2"), dynamodb=clients("dynamodb"), retrier=Retrier(FAST_RETRIES))
        service = MemberService.from_settings(
            settings, account=account, region=REGION, wiring=wiring, events=clients("events")
        )
        members[account] = Member(account, clients, vpc, tables, service, inbox)
    return EstateKit(
        bus,
        security_events,
        security_sqs,
        security_inbox,
        security_alarm_inbox,
        members,
        Estate(SECURITY, frozenset(members)),
    )


def decision_for(member: Member, *cidrs: str, decided_at: float | None = None) -> Decision:
    denies = tuple(PlannedDeny(cidr, 90_000.0, 4e7, 0.6 / len(cidrs), 1, f"{cidr} floods") for cidr in cidrs)
    target = Target(member.account, REGION, member.vpc.vpc_id)
    return Decision(f"d-{uuid.uuid4().hex[:8]}", target, decided_at or time.time(), False, denies)


def send(kit: EstateKit, decision: Decision) -> None:
    entry = put_events_entry(DECISION_DETAIL_TYPE, decision_detail(decision), bus=kit.bus)
    assert BusPublisher(kit.security_events).put(entry)


def test_a_decision_for_member_a_reaches_a_alone_and_changes_only_a(estate: EstateKit) -> None:
    a, b = estate.members[MEMBER_A], estate.members[MEMBER_B]
    send(estate, decision_for(a, "203.0.113.7/32", "198.51.100.0/24"))

    assert delivered(b.clients("sqs"), b.inbox, sender=SECURITY) == []
    (event,) = delivered(a.clients("sqs"), a.inbox, sender=SECURITY)
    report = a.service.receive(event)

    assert report.outcome_sent and not report.result.dry_run
    assert sorted(cidr for _, cidr in a.owned_entries()) == ["198.51.100.0/24"] * 2 + ["203.0.113.7/32"] * 2
    assert a.items(a.tables.state) and a.items(a.tables.log)  # A's own ledger and deny log
    assert b.owned_entries() == []
    assert b.items(b.tables.state) == [] and b.items(b.tables.log) == []

    # The outcome travels back: A's bus -> the security bus -> detection, and reads as A's.
    (returned,) = delivered(estate.security_sqs, estate.security_inbox, sender=MEMBER_A)
    outcome = parse_bus_event(returned, estate.estate, now=time.time(), clock_skew_s=300, max_age_s=600)
    assert isinstance(outcome, Outcome)
    assert outcome.target == Target(MEMBER_A, REGION, a.vpc.vpc_id)
    assert sorted(outcome.denied) == ["198.51.100.0/24", "203.0.113.7/32"]


def test_a_decision_for_a_that_reaches_b_is_refused_and_b_writes_nothing(estate: EstateKit) -> None:
    a, b = estate.members[MEMBER_A], estate.members[MEMBER_B]
    send(estate, decision_for(a, "203.0.113.9/32"))
    (event,) = delivered(a.clients("sqs"), a.inbox, sender=SECURITY)

    with pytest.raises(BusEventError, match=f"^decision for account {MEMBER_A} reached account {MEMBER_B}$"):
        b.service.receive(event)
    assert b.owned_entries() == []
    assert b.items(b.tables.state) == [] and b.items(b.tables.log) == []
    assert a.owned_entries() == []  # nothing applied anywhere yet


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        (lambda e: {**e, "account": MEMBER_B}, f"decision sent by account {MEMBER_B}, not by the security"),
        (
            lambda e: {**e, "detail": {**e["detail"], "vpcId": "vpc-0123456789abcdef0"}},
            "decision for vpc-0123",
        ),
        (
            lambda e: {**e, "detail": {**e["detail"], "decidedAt": "2020-01-01T00:00:00Z"}},
            "decision .* stale",
        ),
    ],
)
def test_a_forged_misaddressed_or_stale_decision_writes_nothing(
    estate: EstateKit, forge: Callable[[dict[str, Any]], dict[str, Any]], message: str
) -> None:
    a = estate.members[MEMBER_A]
    send(estate, decision_for(a, "203.0.113.11/32"))
    (event,) = delivered(a.clients("sqs"), a.inbox, sender=SECURITY)
    with pytest.raises(BusEventError, match="^" + message):
        a.service.receive(forge(event))
    assert a.owned_entries() == []
    assert a.items(a.tables.state) == [] and a.items(a.tables.log) == []


def test_each_member_keeps_its_own_ledger_when_both_are_flooded(estate: EstateKit) -> None:
    a, b = estate.members[MEMBER_A], estate.members[MEMBER_B]
    send(estate, decision_for(a, "203.0.113.7/32"))
    send(estate, decision_for(b, "192.0.2.44/32"))
    for member in (a, b):
        for event in delivered(member.clients("sqs"), member.inbox, sender=SECURITY):
            member.service.receive(event)
    assert {cidr for _, cidr in a.owned_entries()} == {"203.0.113.7/32"}
    assert {cidr for _, cidr in b.owned_entries()} == {"192.0.2.44/32"}
    assert "192.0.2.44" not in json.dumps(a.items(a.tables.log))
    assert "203.0.113.7" not in json.dumps(b.items(b.tables.log))


def _put_alarm(member: Member, name: str, *, state: str = "ALARM", at: float | None = None) -> None:
    """The member's alarm changing state, as CloudWatch puts it on the member's default bus."""
    alarm = load("bus-member-alarm")
    alarm["detail"]["alarmName"] = name
    alarm["detail"]["state"]["value"] = state
    if at is not None:
        moment = datetime.fromtimestamp(at, UTC)
        alarm["detail"]["state"]["timestamp"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    entry = {
        "Source": alarm["source"],
        "DetailType": alarm["detail-type"],
        "Detail": json.dumps(alarm["detail"]),
        "Resources": [f"arn:aws:cloudwatch:{REGION}:{member.account}:alarm:{name}"],
    }
    assert member.clients("events").put_events(Entries=[entry])["FailedEntryCount"] == 0


def test_a_members_alarm_reaches_the_security_account_as_that_members(estate: EstateKit) -> None:
    a = estate.members[MEMBER_A]
    _put_alarm(a, "web-cpu-high")  # not one of Floodgate's: stays in the member
    _put_alarm(a, "Floodgate-early-warning")
    events = delivered(estate.security_sqs, estate.security_alarm_inbox, sender=MEMBER_A)
    assert [e["detail"]["alarmName"] for e in events] == ["Floodgate-early-warning"]
    assert delivered(estate.security_sqs, estate.security_inbox, sender=MEMBER_A) == []  # outcomes only
    # moto's cross-account hop drops `resources` too; EventBridge keeps the alarm's ARN (emulator.estate).
    assert events[0]["resources"] == []
    forwarded = {
        **events[0],
        "resources": [f"arn:aws:cloudwatch:{REGION}:{MEMBER_A}:alarm:Floodgate-early-warning"],
    }
    alarm = parse_bus_event(forwarded, estate.estate, now=time.time(), clock_skew_s=300, max_age_s=600)
    assert isinstance(alarm, MemberAlarm) and alarm.account == MEMBER_A


def _member_stack_in(member: Member, security_stack: str) -> None:
    """The member's deployment as the StackSet leaves it: StackSet-<stack>-member-<id>, whose outputs name
    the tables and the enforcer function (whose environment the CLI reads the settings from)."""
    environment = {
        "FLOODGATE_MODE": "member",
        "FLOODGATE_SECURITY_ACCOUNT": SECURITY,
        "FLOODGATE_MEMBER_VPC_TAG": member.service.settings.member_vpc_tag,
        "FLOODGATE_STATE_TABLE": member.tables.state,
        "FLOODGATE_LOG_TABLE": member.tables.log,
    }
    function = _detector_function(member.clients, environment)
    outputs = {
        OUTPUT.STATE_TABLE: member.tables.state,
        OUTPUT.LOG_TABLE: member.tables.log,
        OUTPUT.DETECTOR_FUNCTION: function,
    }
    template = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    member.clients("cloudformation").create_stack(
        StackName=f"StackSet-{security_stack}-member-{uuid.uuid4()}", TemplateBody=json.dumps(template)
    )


def _security_stack(kit: EstateKit, name: str, accounts: list[str]) -> None:
    template = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {MEMBER_ACCOUNTS_OUTPUT: {"Value": ",".join(accounts)}},
    }
    client = boto3.client(
        "cloudformation", endpoint_url=kit.security_events.meta.endpoint_url, region_name=REGION
    )
    client.create_stack(StackName=name, TemplateBody=json.dumps(template))


def test_status_all_reads_every_member_merges_the_deny_log_and_names_what_it_cannot_read(
    estate: EstateKit,
) -> None:
    a, b = estate.members[MEMBER_A], estate.members[MEMBER_B]
    stack = f"Floodgate{uuid.uuid4().hex[:8]}"
    for member in (a, b):
        _member_stack_in(member, stack)
    outsider = "444444444444"  # listed, but nothing deployed there
    _security_stack(estate, stack, [MEMBER_A, MEMBER_B, outsider])
    send(estate, decision_for(a, "203.0.113.7/32"))
    send(estate, decision_for(b, "192.0.2.44/32", "198.51.100.0/24"))
    for member in (a, b):
        for event in delivered(member.clients("sqs"), member.inbox, sender=SECURITY):
            member.service.receive(event)

    run = floodgate("status", "--all", "--json", "--stack", stack)
    assert run.code == 0, run.err
    report = run.json()
    by_account = {m["account"]: m for m in report["members"]}
    assert set(by_account) == {MEMBER_A, MEMBER_B}
    denied = {
        account: sorted({d["cidr"] for n in m["nacls"] for d in n["denies"]})
        for account, m in by_account.items()
    }
    assert denied == {MEMBER_A: ["203.0.113.7/32"], MEMBER_B: ["192.0.2.44/32", "198.51.100.0/24"]}
    assert {n["vpc_id"] for n in by_account[MEMBER_A]["nacls"]} == {a.vpc.vpc_id}
    assert list(report["unreadable"]) == [outsider]
    assert "no Floodgate member stack in account 444444444444" in report["unreadable"][outsider]
    log = report["log"]
    blocks = {(e["account"], e["cidr"]) for e in log if e["event"] == "BLOCK"}
    assert blocks == {
        (MEMBER_A, "203.0.113.7/32"),
        (MEMBER_B, "192.0.2.44/32"),
        (MEMBER_B, "198.51.100.0/24"),
    }
    times = [e["at"] for e in log]
    assert times == sorted(times, reverse=True)

    text = floodgate("status", "--all", "--stack", stack)
    assert text.code == 0
    assert f"account {outsider}: CANNOT READ" in text.out
    assert f"account {MEMBER_A} (StackSet-{stack}-member-" in text.out


def test_status_all_fails_only_when_no_member_can_be_read(estate: EstateKit) -> None:
    run = floodgate("status", "--all", "--accounts", "444444444444,555555555555", "--stack", "FloodgateNone")
    assert run.code == 1
    assert "no member account could be read (444444444444, 555555555555)" in run.err


def test_the_member_handlers_apply_a_delivered_decision_and_expire_over_the_tagged_vpc(
    estate: EstateKit,
) -> None:
    a = estate.members[MEMBER_A]
    send(estate, decision_for(a, "203.0.113.7/32"))
    (event,) = delivered(a.clients("sqs"), a.inbox, sender=SECURITY)
    wiring = Wiring(ec2=a.clients("ec2"), dynamodb=a.clients("dynamodb"), retrier=Retrier(FAST_RETRIES))
    member_handler.member.use(a.service)
    member_handler.expirer.use(
        ExpiryService.from_settings(member_settings(a.service.settings, wiring), wiring)
    )
    try:
        answer = member_handler.lambda_handler(event, LambdaContextStub())
        assert answer["vpc"] == a.vpc.vpc_id and answer["tally"]["BLOCK"] == len(a.vpc.nacl_ids)
        assert answer["outcome_sent"] is True
        with pytest.raises(BusEventError, match=r"^decision .* is dated"):
            future = {**event, "detail": {**event["detail"], "decidedAt": "2999-01-01T00:00:00Z"}}
            member_handler.lambda_handler(future, LambdaContextStub())
        expiry = member_handler.expiry_handler({}, LambdaContextStub())
        # Every NACL of the tagged VPC; the default one, whose allow-all rule 100 sits in the owned block,
        # is left out of enforcement and holds none.
        assert expiry["active"] == {**{nacl_id: 1 for nacl_id in a.vpc.nacl_ids}, a.vpc.default_nacl_id: 0}
        assert expiry["due"] == []
    finally:
        member_handler.member.use(None)
        member_handler.expirer.use(None)


# -- the decision producer: members' flow logs in, one decision per member out ---------------------------

FLOODERS = ["198.51.100.7", "198.51.100.8"]


class _SecurityDetector:
    """The security account's detector Lambda as the stream runner invokes it: its handler, over the
    producer wired to the emulator (`handlers.security.producer`)."""

    def __init__(self, arn: str) -> None:
        self.function = DeployedFunction(
            "SecurityDetector",
            "floodgate-security",
            arn,
            SECURITY_HANDLER,
            "python3.13",
            {},
            60,
            512,
            None,
            {},
        )

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        with redirect_stdout(io.StringIO()):  # the handler's structured logs and EMF
            answer: dict[str, Any] = security_handler.lambda_handler(event, LambdaContextStub())
        return answer


@dataclass
class SecurityKit:
    producer: DecisionProducer
    runner: StreamRunner
    tables: Tables
    dynamodb: Any
    kinesis: Any
    stream: str  # the stream behind the logs destination
    failures: str  # its mapping's on-failure queue, which the scheduled tick replays


@pytest.fixture
def security(estate: EstateKit, make_tables: Callable[..., Tables]) -> Iterator[SecurityKit]:
    suffix = uuid.uuid4().hex[:8]
    kinesis = boto3.client(
        "kinesis", endpoint_url=estate.security_events.meta.endpoint_url, region_name=REGION
    )
    stream = f"floodgate-estate-flow-logs-{suffix}"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    stream_arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    tables = make_tables()
    a = estate.members[MEMBER_A]
    settings = Settings.from_env(
        {
            "FLOODGATE_MODE": "security",
            "FLOODGATE_MEMBER_ACCOUNTS": f"{MEMBER_A},{MEMBER_B}",
            "FLOODGATE_SECURITY_BUS": estate.bus,
            "FLOODGATE_MEMBER_VPC_TAG": a.service.settings.member_vpc_tag,
            "FLOODGATE_STATE_TABLE": tables.state,
            "FLOODGATE_LOG_TABLE": tables.log,
            "FLOODGATE_WINDOW_SHARDS": "2",
            # Decides at the always threshold unless a test turns it off (then only members' alarms arm).
            "FLOODGATE_ALWAYS_PPS": "5000",
            "FLOODGATE_MEMBER_ALARM_PREFIX": ALARM_PREFIX,
        }
    )
    dynamodb = boto3.client("dynamodb", endpoint_url=kinesis.meta.endpoint_url, region_name=REGION)
    producer = DecisionProducer.from_settings(
        settings,
        account=SECURITY,
        region=REGION,
        wiring=Wiring(dynamodb=dynamodb, retrier=Retrier(FAST_RETRIES)),
        events=estate.security_events,
        # AssumeRole into each member's reader role, as the deployed function does.
        member_clients=lambda account, service: estate.members[account].clients(service),
    )
    config = MappingConfig(
        uuid=suffix,
        stream_arn=stream_arn,
        batch_size=5,
        batch_window_s=10,
        tumbling_window_s=30,
        parallelization=1,
        bisect=True,
        retry_attempts=2,
        max_record_age_s=3600,
        on_failure=None,
    )
    runner = StreamRunner(
        _SecurityDetector(f"arn:aws:lambda:{REGION}:{SECURITY}:function:floodgate-security"),
        kinesis=kinesis,
        sqs=estate.security_sqs,
        config=config,
        clock=time.time,
        region=REGION,
        keep_responses=True,
    )
    failures = estate.security_sqs.create_queue(QueueName=f"stream-failures-{suffix}")["QueueUrl"]
    retrier = Retrier(FAST_RETRIES)
    replay = StreamReplay(
        FailureQueue(failures, estate.security_sqs, retrier=retrier),
        StreamReader(kinesis, retrier=retrier),
        producer.ingest_stream,
        health=HealthRecords(tables.state, dynamodb, retrier=retrier),
        notifier=Notifier(None),
    )
    security_handler.producer.use(producer)
    security_handler.replays.use(replay)
    try:
        yield SecurityKit(producer, runner, tables, dynamodb, kinesis, stream, failures)
    finally:
        security_handler.producer.use(None)
        security_handler.replays.use(None)


def _minute_of_flow_logs(
    member: Member, sources: list[Source], *, seed: int, owner: str
) -> list[dict[str, Any]]:
    """The subscription documents the member's flow-log group sends the destination for a minute of
    `sources`, one per interface of the member's VPC (10.30.0.0/16), stamped with `owner`."""
    now = int(time.time())
    interfaces = [("eni-0aaaabbbbcccc0001", "10.30.1.10"), ("eni-0aaaabbbbcccc0002", "10.30.2.10")]
    by_interface: dict[str, list[str]] = {}
    for line in flow_lines(sources, intervals=1, seed=seed, start=now - 90, interfaces=interfaces):
        by_interface.setdefault(line.split()[2], []).append(line)
    return [
        subscription_document(
            lines,
            log_group="/floodgate/member-flow-logs",
            log_stream=f"{eni}-all",
            filter_name="to-security",
            timestamp_ms=now * 1000,
            batch=f"{member.account}-{seed}-{eni}",
            owner=owner,
        )
        for eni, lines in sorted(by_interface.items())
    ]


def _tick() -> dict[str, Any]:
    event = scheduled_event(f"arn:aws:events:{REGION}:{SECURITY}:rule/floodgate-decisions", time.time())
    return _SecurityDetector("arn").invoke(event)


def test_the_security_account_decides_for_the_flooded_member_alone_and_that_member_enforces(
    estate: EstateKit, security: SecurityKit
) -> None:
    a, b = estate.members[MEMBER_A], estate.members[MEMBER_B]
    rng = random.Random(3)
    ordinary_a, ordinary_b = background(rng, 60, pps=8.0), background(rng, 60, pps=8.0)
    flood = [Source(address, 15_000, flows=12) for address in FLOODERS]
    outsider = "444444444444"  # a log group of an account outside the estate, aimed at the destination
    documents = [
        *_minute_of_flow_logs(a, ordinary_a + flood, seed=1, owner=MEMBER_A),
        *_minute_of_flow_logs(b, ordinary_b, seed=2, owner=MEMBER_B),
        *_minute_of_flow_logs(b, [Source("192.0.2.99", 50_000, flows=12)], seed=3, owner=outsider),
    ]
    security.runner.deliver(documents)
    stats = security.runner.drain()
    assert stats.records == len(documents) and stats.failed_batches == 0
    assert all(r == {"state": {}, "batchItemFailures": []} for r in stats.responses)
    # One window per member, and none for the outsider, whose deliveries were refused at ingest.
    items = security.dynamodb.scan(TableName=security.tables.state)["Items"]
    scopes = {i["pk"]["S"].split("#")[1] for i in items if i["pk"]["S"].startswith(WINDOW_PREFIX)}
    assert scopes == {MEMBER_A, MEMBER_B}

    answer = _tick()
    by_account = {m["account"]: m for m in answer["members"]}
    assert by_account[MEMBER_A]["sent"] is True and by_account[MEMBER_A]["vpc"] == a.vpc.vpc_id
    assert set(FLOODERS) <= {cidr.split("/")[0] for cidr in by_account[MEMBER_A]["denies"]}
    assert by_account[MEMBER_B]["decision"] is None and by_account[MEMBER_B]["denies"] == []
    assert "192.0.2.99" not in json.dumps(answer)

    # The decision travels the bus to A alone; A's enforcer writes it into A's NACLs.
    assert delivered(b.clients("sqs"), b.inbox, sender=SECURITY) == []
    (event,) = delivered(a.clients("sqs"), a.inbox, sender=SECURITY)
    assert event["detail"]["decisionId"] == by_account[MEMBER_A]["decision"]
    report = a.service.receive(event)
    assert not report.result.dry_run and report.outcome_sent
    denied = {cidr for _, cidr in a.owned_entries()}
    assert {f"{address}/32" for address in FLOODERS} <= denied
    assert not any(cidr.split("/")[0] in {s.address for s in ordinary_a} for cidr in denied)
    assert b.owned_entries() == [] and b.items(b.tables.log) == []
    # The security account enforces nothing: its deny log stays empty.
    assert security.dynamodb.scan(TableName=security.tables.log)["Items"] == []


def test_a_member_decision_already_running_is_left_to_its_holder(
    estate: EstateKit, security: SecurityKit
) -> None:
    producer = security.producer
    lease = producer.ledger.try_acquire(
        f"{DECISION_LEASE_PREFIX}{MEMBER_A}", actor="another-invocation", now=time.time(), lease_s=60
    )
    assert lease is not None
    answer = _tick()
    by_account = {m["account"]: m for m in answer["members"]}
    assert by_account[MEMBER_A]["why_not"] == "another decision is running"
    assert by_account[MEMBER_B]["why_not"] is not None and by_account[MEMBER_B]["vpc"] is not None


def test_without_the_always_threshold_the_security_account_decides_nothing(
    estate: EstateKit, security: SecurityKit
) -> None:
    a = estate.members[MEMBER_A]
    flood = [Source(address, 15_000, flows=12) for address in FLOODERS]
    security.runner.deliver(_minute_of_flow_logs(a, flood, seed=4, owner=MEMBER_A))
    security.runner.drain()
    security.producer.settings = dataclasses.replace(security.producer.settings, always_pps=None)
    answer = _tick()
    assert {m["account"]: m["decision"] for m in answer["members"]} == {MEMBER_A: None, MEMBER_B: None}
    assert all(m["why_not"].startswith("not armed") for m in answer["members"])
    assert delivered(a.clients("sqs"), a.inbox, sender=SECURITY) == []


def test_a_members_flow_log_into_the_subscribed_group_is_created_once_on_its_tagged_vpc(
    estate: EstateKit,
) -> None:
    a, b = estate.members[MEMBER_A], estate.members[MEMBER_B]
    wiring = Wiring(ec2=a.clients("ec2"), dynamodb=a.clients("dynamodb"), retrier=Retrier(FAST_RETRIES))
    settings = member_settings(a.service.settings, wiring)
    group = f"floodgate-member-flow-logs-{uuid.uuid4().hex[:8]}"
    environ = {
        FLOW_LOG_GROUP_ENV: group,
        FLOW_LOG_ROLE_ENV: f"arn:aws:iam::{MEMBER_A}:role/FloodgateFlowLogDelivery",
    }
    created = ensure_member_flow_log(settings, environ, wiring)
    assert created is not None
    assert ensure_member_flow_log(settings, environ, wiring) is None  # the next run finds it
    flows = a.clients("ec2").describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [a.vpc.vpc_id]}])
    ours = [f for f in flows["FlowLogs"] if f["LogGroupName"] == group]
    assert [f["FlowLogId"] for f in ours] == [created]
    assert ours[0]["TrafficType"] == "ALL" and ours[0]["MaxAggregationInterval"] == 60
    # B's VPC has none: each member creates its own, in its own account.
    theirs = b.clients("ec2").describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [b.vpc.vpc_id]}])
    assert theirs["FlowLogs"] == []
    # Without the stack's variables (single mode, older member stacks) nothing is asked of EC2.
    assert ensure_member_flow_log(settings, {}, Wiring(ec2=object())) is None


def test_a_member_that_cannot_be_read_fails_alone_and_the_others_still_get_their_decisions(
    estate: EstateKit, security: SecurityKit
) -> None:
    a = estate.members[MEMBER_A]
    flood = [Source(address, 15_000, flows=12) for address in FLOODERS]
    security.runner.deliver(_minute_of_flow_logs(a, flood, seed=5, owner=MEMBER_A))
    security.runner.drain()
    read_vpc = security.producer.member_vpc

    def reader_role_gone_in_b(account: str) -> MemberVpc:
        if account == MEMBER_B:
            raise PermissionError(f"AccessDenied assuming the reader role of {account}")
        return read_vpc(account)

    security.producer.member_vpc = reader_role_gone_in_b
    answer = _tick()
    by_account = {m["account"]: m for m in answer["members"]}
    assert by_account[MEMBER_B]["failed"] is True
    assert (
        by_account[MEMBER_B]["why_not"]
        == f"PermissionError: AccessDenied assuming the reader role of {MEMBER_B}"
    )
    assert by_account[MEMBER_A]["sent"] is True and by_account[MEMBER_A]["failed"] is False
    (event,) = delivered(a.clients("sqs"), a.inbox, sender=SECURITY)
    assert {d["cidr"] for d in event["detail"]["denies"]} >= {f"{address}/32" for address in FLOODERS}


# -- members' alarms arm their own decisions in the security account ------------------------------------


def _alarms_at_security(estate: EstateKit, member: Member) -> list[dict[str, Any]]:
    """The member's alarm events as the security detector receives them from the security bus: moto drops
    the alarm's ARN on the cross-account hop, which EventBridge keeps (emulator.estate), so it is put back."""
    return [
        {
            **event,
            "resources": [
                f"arn:aws:cloudwatch:{REGION}:{member.account}:alarm:{event['detail']['alarmName']}"
            ],
        }
        for event in delivered(estate.security_sqs, estate.security_alarm_inbox, sender=member.account)
    ]


def _armed_members(security: SecurityKit) -> dict[str, str | None]:
    now = time.time()
    armed = {account: security.producer._armed(account, now) for account in (MEMBER_A, MEMBER_B)}
    return {account: a.alarm_name if a else None for account, a in armed.items()}


def test_member_as_alarm_arms_a_alone_and_as_flood_is_decided_on_the_bus_for_a(
    estate: EstateKit, security: SecurityKit
) -> None:
    a, b = estate.members[MEMBER_A], estate.members[MEMBER_B]
    security.producer.settings = dataclasses.replace(security.producer.settings, always_pps=None)
    rng = random.Random(11)
    # Both members flooded alike: only the armed one may be decided for.
    flood_a = [Source(address, 15_000, flows=12) for address in FLOODERS]
    flood_b = [Source(address, 15_000, flows=12) for address in ("192.0.2.44", "192.0.2.45")]
    security.runner.deliver(
        [
            *_minute_of_flow_logs(a, background(rng, 40, pps=8.0) + flood_a, seed=21, owner=MEMBER_A),
            *_minute_of_flow_logs(b, background(rng, 40, pps=8.0) + flood_b, seed=22, owner=MEMBER_B),
        ]
    )
    security.runner.drain()
    before = _tick()
    assert [m["why_not"] for m in before["members"]] == ["not armed and no always threshold"] * 2

    # A's early warning fires in A; A's rule forwards it to the security bus, which routes it to detection.
    _put_alarm(a, "Floodgate-early-warning", at=time.time() - 5)
    (event,) = _alarms_at_security(estate, a)
    answer = _SecurityDetector("arn").invoke(event)
    assert answer["kind"] == "member-alarm" and answer["refused"] is None
    assert (answer["account"], answer["alarm"], answer["state"]) == (
        MEMBER_A,
        "Floodgate-early-warning",
        "ALARM",
    )
    assert answer["armed"]["alarm"] == "Floodgate-early-warning"
    # Armed, A is decided for at once, at the detection threshold (no always threshold is set).
    decided = answer["decision"]
    assert decided["account"] == MEMBER_A and decided["sent"] is True
    assert decided["armed_by"] == "Floodgate-early-warning"
    assert {f"{address}/32" for address in FLOODERS} <= set(decided["denies"])
    assert _armed_members(security) == {MEMBER_A: "Floodgate-early-warning", MEMBER_B: None}

    # The decision reaches A alone, and A's enforcer writes it; B's flood is left alone (B is not armed).
    (decision,) = delivered(a.clients("sqs"), a.inbox, sender=SECURITY)
    assert decision["detail"]["decisionId"] == decided["decision"]
    assert delivered(b.clients("sqs"), b.inbox, sender=SECURITY) == []
    assert a.service.receive(decision).outcome_sent
    assert {f"{address}/32" for address in FLOODERS} <= {cidr for _, cidr in a.owned_entries()}
    assert b.owned_entries() == []

    # The schedule keeps deciding for A while it is armed, and still not for B.
    by_account = {m["account"]: m for m in _tick()["members"]}
    assert (
        by_account[MEMBER_A]["sent"] is True and by_account[MEMBER_A]["armed_by"] == "Floodgate-early-warning"
    )
    assert by_account[MEMBER_B]["decision"] is None
    assert by_account[MEMBER_B]["why_not"] == "not armed and no always threshold"
    assert len(delivered(a.clients("sqs"), a.inbox, sender=SECURITY)) == 1
    assert delivered(b.clients("sqs"), b.inbox, sender=SECURITY) == []

    # A's alarm back to OK disarms A: the next tick decides nothing for it.
    _put_alarm(a, "Floodgate-early-warning", state="OK", at=time.time())
    (ok,) = _alarms_at_security(estate, a)
    cleared = _SecurityDetector("arn").invoke(ok)
    assert cleared["refused"] is None and cleared["armed"] is None
    assert _armed_members(security) == {MEMBER_A: None, MEMBER_B: None}
    assert [m["why_not"] for m in _tick()["members"]] == ["not armed and no always threshold"] * 2


def _forwarded_alarm(estate: EstateKit, name: str) -> dict[str, Any]:
    """A genuine alarm event of member A as it reaches the security detector."""
    a = estate.members[MEMBER_A]
    _put_alarm(a, "Floodgate-early-warning", at=time.time() - 5)
    (event,) = _alarms_at_security(estate, a)
    event["detail"]["alarmName"] = name
    event["resources"] = [f"arn:aws:cloudwatch:{REGION}:{MEMBER_A}:alarm:{name}"]
    return event


OUTSIDER = "444444444444"


@pytest.mark.parametrize(
    ("forge", "why"),
    [
        # An account outside the estate (were the bus policy ever to let it put).
        (
            lambda e: {
                **e,
                "account": OUTSIDER,
                "resources": [f"arn:aws:cloudwatch:{REGION}:{OUTSIDER}:alarm:Floodgate-early-warning"],
            },
            f"alarm from account {OUTSIDER}, which is not a member of the estate",
        ),
        # Member A's alarm that is not its Floodgate deployment's (a rule widened by hand forwards it).
        (
            lambda e: {
                **e,
                "detail": {**e["detail"], "alarmName": "web-cpu-high"},
                "resources": [f"arn:aws:cloudwatch:{REGION}:{MEMBER_A}:alarm:web-cpu-high"],
            },
            f"alarm 'web-cpu-high' of member {MEMBER_A} is not one of its Floodgate deployment's",
        ),
        # Member B passing on A's alarm: the alarm's ARN is not the sender's.
        (lambda e: {**e, "account": MEMBER_B}, "alarm 'arn:aws:cloudwatch:us-east-1:22222222"),
        # A replay of an old state change.
        (
            lambda e: {
                **e,
                "detail": {
                    **e["detail"],
                    "state": {**e["detail"]["state"], "timestamp": "2020-01-01T00:00:00.000+0000"},
                },
            },
            "alarm 'Floodgate-early-warning' changed state",
        ),
    ],
)
def test_an_alarm_from_outside_the_estate_or_not_the_members_arms_nothing_and_is_counted(
    estate: EstateKit,
    security: SecurityKit,
    forge: Callable[[dict[str, Any]], dict[str, Any]],
    why: str,
) -> None:
    a = estate.members[MEMBER_A]
    security.producer.settings = dataclasses.replace(security.producer.settings, always_pps=None)
    flood = [Source(address, 15_000, flows=12) for address in FLOODERS]
    security.runner.deliver(_minute_of_flow_logs(a, flood, seed=31, owner=MEMBER_A))
    security.runner.drain()
    event = forge(_forwarded_alarm(estate, "Floodgate-early-warning"))

    report = security.producer.on_member_alarm(event)
    assert report.refused is not None and report.refused.startswith(why)
    assert report.metric_values()[METRIC.MEMBER_ALARMS_REFUSED] == 1.0
    assert report.armed is None and report.decision is None
    answer = _SecurityDetector("arn").invoke(event)  # the handler answers with the reason, never raises
    assert answer["refused"] == report.refused
    assert _armed_members(security) == {MEMBER_A: None, MEMBER_B: None}
    assert [m["why_not"] for m in _tick()["members"]] == ["not armed and no always threshold"] * 2
    for member in estate.members.values():
        assert delivered(member.clients("sqs"), member.inbox, sender=SECURITY) == []
    # No arming item was written for anyone.
    items = security.dynamodb.scan(TableName=security.tables.state)["Items"]
    assert not [i for i in items if i["pk"]["S"].startswith("ARMED")]


def test_a_genuine_member_alarm_is_not_refused(estate: EstateKit, security: SecurityKit) -> None:
    """The control of the test above: the same event, unforged, arms A."""
    report = security.producer.on_member_alarm(_forwarded_alarm(estate, "Floodgate-early-warning"))
    assert report.refused is None and report.armed is not None
    assert report.metric_values()[METRIC.MEMBER_ALARMS_REFUSED] == 0.0
    assert _armed_members(security) == {MEMBER_A: "Floodgate-early-warning", MEMBER_B: None}


# -- the estate stream's failed ranges, replayed by the security account's schedule -----------------------


def _window_records(security: SecurityKit, account: str) -> int:
    return int(security.producer.windows(account).read(now=time.time()).stats.parsed)


def test_a_range_of_the_estate_stream_the_mapping_gave_up_on_is_replayed_into_its_members_window_once(
    estate: EstateKit, security: SecurityKit
) -> None:
    a = estate.members[MEMBER_A]
    flood = [Source(address, 15_000, flows=12) for address in FLOODERS]
    documents = _minute_of_flow_logs(a, flood, seed=51, owner=MEMBER_A)
    record = load("kinesis-failure-record")
    bodies = []
    for document in documents:  # put as the destination puts them; the mapping gave up on each
        data = gzip.compress(json.dumps(document).encode())
        put = security.kinesis.put_record(StreamName=security.stream, Data=data, PartitionKey="p")
        info = {
            "shardId": put["ShardId"],
            "startSequenceNumber": put["SequenceNumber"],
            "endSequenceNumber": put["SequenceNumber"],
            "batchSize": 1,
            "streamArn": security.runner.config.stream_arn,
        }
        bodies.append(json.dumps({**record, "KinesisBatchInfo": {**record["KinesisBatchInfo"], **info}}))
    for body in bodies:
        estate.security_sqs.send_message(QueueUrl=security.failures, MessageBody=body)
    assert _window_records(security, MEMBER_A) == 0

    first = _tick()
    assert len(first["replay"]["replayed"]) == len(documents) and first["replay"]["lost"] == []
    expected = sum(len(d["logEvents"]) for d in documents)
    assert _window_records(security, MEMBER_A) == expected
    assert _window_records(security, MEMBER_B) == 0
    # The next tick decides on it (always threshold): A's flooders, on the bus for A.
    by_account = {m["account"]: m for m in _tick()["members"]}
    assert set(FLOODERS) <= {cidr.split("/")[0] for cidr in by_account[MEMBER_A]["denies"]}
    assert by_account[MEMBER_A]["sent"] is True
    # The same failure records again: replayed, counted once.
    for body in bodies:
        estate.security_sqs.send_message(QueueUrl=security.failures, MessageBody=body)
    assert len(_tick()["replay"]["replayed"]) == len(documents)
    assert _window_records(security, MEMBER_A) == expected
