"""The detector and expirer handlers against the emulator over HTTP: a scripted spike from ordinary traffic to
denies in the NACLs and back, and bad events of every kind refused without a write.

Handlers are invoked in-process with a LambdaContext stand-in (moto cannot run Lambdas). The services are
built by their production `from_settings` on emulator clients with the test clock, and put in place of the
handlers' cold-start build.
"""

from __future__ import annotations

import io
import json
import logging
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from emulator.traffic import (
    ENIS,
    INTERVAL_S,
    START,
    Source,
    background,
    flow_lines,
    prefix_hosts,
    public_addresses,
)
from floodgate.adapters.retry import Retrier
from floodgate.core.records import EventKind, LogEvent
from floodgate.handlers import detector as detector_handler
from floodgate.handlers import expirer as expirer_handler
from floodgate.handlers.runtime import logger
from floodgate.observability import METRIC, METRIC_NAMESPACE, SERVICE_NAME
from floodgate.services.detection import DetectionService, IngestReport
from floodgate.services.events import FlowLogDelivery, InvalidEvent, parse_detector_event
from floodgate.services.expiry import ExpiryService
from floodgate.services.wiring import Wiring
from floodgate.settings import ENV, ConfigError, Settings
from tests.events import EVENTS_DIR, LambdaContextStub, flow_log_event, load, subscription_event
from tests.integration.conftest import FAST_RETRIES, AwsClientFactory, Clock, Tables, VpcFixture

# Alarm clearings and control messages emit no metric; powertools would warn about each (runtime.py
# silences it in Lambda, but pytest resets warning filters per test).
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics to publish")]

VPC_CIDR = "10.0.0.0/16"  # emulator.traffic sends to 10.0.1.x and 10.0.2.x
FLOODERS = public_addresses(random.Random(2026), 3)
BOTNET = "203.0.113.0/24"
MINUTE = INTERVAL_S


# -- the deployment under test -------------------------------------------------------------------------


@dataclass
class Deployment:
    settings: Settings
    vpc: VpcFixture
    tables: Tables
    clock: Clock
    ec2: Any
    dynamodb: Any
    sqs: Any
    queue_url: str
    calls: list[str] = field(default_factory=list)  # every AWS operation the services made, in order
    service_clients: dict[str, Any] = field(default_factory=dict)  # the clients the services were built on

    def detect(self, event: dict[str, Any], request_id: str = "req-detector") -> dict[str, Any]:
        """Invoke the detector handler as Lambda would."""
        answer: dict[str, Any] = detector_handler.lambda_handler(
            event, LambdaContextStub(aws_request_id=request_id)
        )
        return answer

    def expire(self) -> dict[str, Any]:
        context = LambdaContextStub(function_name="Floodgate-Expirer", aws_request_id="req-expirer")
        answer: dict[str, Any] = expirer_handler.lambda_handler(load("scheduled-event"), context)
        return answer

    def deny_entries(self) -> dict[str, set[str]]:
        """Per NACL, the CIDRs its deny entries cover (inbound)."""
        acls = self.ec2.describe_network_acls(NetworkAclIds=list(self.vpc.nacl_ids))["NetworkAcls"]
        return {
            acl["NetworkAclId"]: {
                e.get("CidrBlock") or e["Ipv6CidrBlock"]
                for e in acl["Entries"]
                if e["RuleAction"] == "deny" and not e["Egress"] and e["RuleNumber"] < 32767
            }
            for acl in acls
        }

    def log(self) -> list[LogEvent]:
        """The whole deny log, oldest first."""
        detector = detector_handler.detector.get()
        events = detector.enforcer.ledger.events(
            since=START - 86400, until=self.clock() + 86400, now=self.clock()
        )
        return sorted(events, key=lambda e: e.sort_key)

    def items(self, table: str) -> list[dict[str, Any]]:
        return list(self.dynamodb.scan(TableName=table).get("Items", []))

    def notifications(self) -> list[str]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        return [json.loads(m["Body"])["Message"] for m in messages]


def environment(vpc: VpcFixture, tables: Tables, topic_arn: str, **overrides: str) -> dict[str, str]:
    return {
        ENV.NACL_IDS: ",".join(vpc.nacl_ids),
        ENV.VPC_CIDRS: f"{vpc.cidr},{vpc.ipv6_cidr}",
        ENV.MIN_PPS: "1000",
        ENV.BASE_TTL: "30m",
        ENV.WINDOW: "5m",
        ENV.ARM_TTL: "30m",
        ENV.ALARM_NAMES: json.dumps(["Floodgate-early-warning"]),
        ENV.STATE_TABLE: tables.state,
        ENV.LOG_TABLE: tables.log,
        ENV.TOPIC_ARN: topic_arn,
        **overrides,
    }


@pytest.fixture
def make_deployment(
    aws_client: AwsClientFactory, make_vpc: Callable[..., VpcFixture], tables: Tables, clock: Clock
) -> Iterator[Callable[..., Deployment]]:
    """`make_deployment(**env overrides)`: a VPC, tables, an SNS topic read through an SQS queue, and both
    handlers' services wired to them with the test clock."""

    def build(**overrides: str) -> Deployment:
        vpc = make_vpc(cidr=VPC_CIDR)
        sns, sqs = aws_client("sns"), aws_client("sqs")
        topic_arn = sns.create_topic(Name=f"floodgate-{uuid.uuid4().hex[:8]}")["TopicArn"]
        queue_url = sqs.create_queue(QueueName=f"notices-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        settings = Settings.from_env(environment(vpc, tables, topic_arn, **overrides))
        deployment = Deployment(
            settings, vpc, tables, clock, aws_client("ec2"), aws_client("dynamodb"), sqs, queue_url
        )
        clients = {"dynamodb": aws_client("dynamodb"), "ec2": aws_client("ec2"), "sns": aws_client("sns")}
        deployment.service_clients = clients
        for client in clients.values():
            client.meta.events.register(
                "before-call", lambda model, **_: deployment.calls.append(model.name), unique_id="count"
            )
        wiring = Wiring(clock=clock, retrier=Retrier(FAST_RETRIES), **clients)
        detector_handler.detector.use(DetectionService.from_settings(settings, wiring))
        expirer_handler.expirer.use(ExpiryService.from_settings(settings, wiring))
        return deployment

    yield build
    detector_handler.detector.use(None)
    expirer_handler.expirer.use(None)


@pytest.fixture
def deployment(make_deployment: Callable[..., Deployment]) -> Deployment:
    return make_deployment()


# -- traffic -------------------------------------------------------------------------------------------


ORDINARY = background(random.Random(7), 400, pps=8.0)
FLOOD = [Source(address, 12_000, flows=16) for address in FLOODERS] + [
    Source(address, 250, flows=2) for address in prefix_hosts(BOTNET, 200)
]


def deliveries(
    sources: list[Source], minute: int, *, seed: int = 0, action: str | None = None
) -> list[dict[str, Any]]:
    """One subscription event per interface, carrying the records of capture minute `minute` (0 = START)."""
    start = START + minute * MINUTE
    by_interface: dict[str, list[str]] = {}
    for line in flow_lines(sources, intervals=1, seed=seed + minute):
        fields = line.split()
        fields[10], fields[11] = str(start), str(start + MINUTE)
        if action is not None:
            fields[12] = action
        by_interface.setdefault(fields[2], []).append(" ".join(fields))
    return [
        flow_log_event(
            lines, interface=interface, batch=f"m{minute}-{interface}-{seed}", timestamp_ms=start * 1000
        )
        for interface, lines in sorted(by_interface.items())
    ]


def deliver_in_parallel(events: list[dict[str, Any]]) -> list[IngestReport]:
    """Each thread stands in for its own execution environment, as Lambda runs concurrent deliveries. They
    call the service the handler calls: powertools' Logger and Metrics are one per environment, not shared
    between concurrent invocations."""
    service = detector_handler.detector.get()
    start = threading.Barrier(len(events), timeout=30)

    def deliver(event: dict[str, Any]) -> IngestReport:
        delivery = parse_detector_event(event)
        start.wait()
        report = service.handle(delivery)
        assert isinstance(report, IngestReport)
        return report

    with ThreadPoolExecutor(max_workers=len(events)) as pool:
        return list(pool.map(deliver, events))


def emf_metrics(output: str) -> dict[str, float]:
    """Metric name -> value of every EMF document printed, summed over documents."""
    values: dict[str, float] = {}
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == METRIC_NAMESPACE
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                values[metric["Name"]] = values.get(metric["Name"], 0) + (
                    sum(value) if isinstance(value, list) else value
                )
    return values


# -- the scripted spike --------------------------------------------------------------------------------


def test_spike_from_ordinary_traffic_to_denies_and_back(
    deployment: Deployment, capfd: pytest.CaptureFixture[str]
) -> None:
    clock = deployment.clock
    # Two ordinary minutes: stored in the window, nothing decided (not armed, no always threshold).
    for minute in (0, 1):
        clock.at = START + (minute + 1) * MINUTE + 20
        for event in deliveries(ORDINARY, minute):
            answer = deployment.detect(event)
            assert answer["parsed"] > 0 and answer["window_writes"] == 1
            assert (
                answer["decision"] is None
                and answer["why_no_decision"] == "not armed and no always threshold"
            )
    assert deployment.deny_entries() == {nacl: set() for nacl in deployment.vpc.nacl_ids}

    # The flood, delivered from every interface at once.
    clock.at = START + 3 * MINUTE + 20
    reports = deliver_in_parallel(deliveries(ORDINARY + FLOOD, 2))
    assert len(reports) == len(ENIS) and all(r.window.written == 1 for r in reports)
    assert all(r.decision is None for r in reports)
    capfd.readouterr()

    # The early alarm fires: armed, and the decision on the window puts the denies in.
    clock.advance(10)
    answer = deployment.detect(load("alarm-eventbridge-alarm"))
    expected = {*(f"{a}/32" for a in FLOODERS), BOTNET}
    assert answer["armed"]["alarm"] == "Floodgate-early-warning"
    assert answer["decision"]["verdict"] == "concentrated"
    assert {d["cidr"] for d in answer["decision"]["planned"]} == expected
    assert deployment.deny_entries() == {nacl: expected for nacl in deployment.vpc.nacl_ids}
    blocks = [e for e in deployment.log() if e.kind is EventKind.BLOCK]
    assert sorted((e.cidr, e.nacl_id) for e in blocks) == sorted(
        (cidr, nacl) for cidr in expected for nacl in deployment.vpc.nacl_ids
    )
    assert all(str(e.origin) == "alarm:Floodgate-early-warning" for e in blocks)
    metrics = emf_metrics(capfd.readouterr().out)
    assert metrics[METRIC.BLOCKS] == 8
    assert 0 < metrics[METRIC.DECISION_LATENCY_MS] < 5000
    (notice,) = deployment.notifications()
    assert notice.startswith("Floodgate (alarm:Floodgate-early-warning): 4 blocked.")
    assert f"BLOCKED {BOTNET} in " in notice and "hot sources of" in notice

    # The alarm clears: disarmed, the denies stay until they expire.
    clock.advance(5 * MINUTE)
    answer = deployment.detect(load("alarm-eventbridge-ok"))
    assert answer["armed"] is None and answer["decision"] is None
    assert deployment.deny_entries() == {nacl: expected for nacl in deployment.vpc.nacl_ids}

    # Before the ban is over the expirer finds nothing due; after it, the denies go and the log says so.
    assert deployment.expire()["due"] == []
    clock.at = START + 3 * MINUTE + 30 + 30 * MINUTE + 1
    answer = deployment.expire()
    assert sorted(answer["due"]) == sorted(expected)
    assert answer["tally"] == {"EXPIRE": 8}
    assert answer["active"] == {nacl: 0 for nacl in deployment.vpc.nacl_ids}
    assert deployment.deny_entries() == {nacl: set() for nacl in deployment.vpc.nacl_ids}
    story = [(e.kind, e.cidr, e.nacl_id) for e in deployment.log()]
    for cidr in expected:
        for nacl in deployment.vpc.nacl_ids:
            assert [k for k, c, n in story if (c, n) == (cidr, nacl)] == [EventKind.BLOCK, EventKind.EXPIRE]
    (notice,) = deployment.notifications()
    assert notice.startswith("Floodgate (expirer): 4 expired.")


def test_a_flood_that_goes_on_while_denied_has_its_ban_extended_on_evidence(deployment: Deployment) -> None:
    clock = deployment.clock
    clock.at = START + MINUTE + 20
    for event in deliveries(ORDINARY + FLOOD[:1], 0):
        deployment.detect(event)
    deployment.detect(load("alarm-action-alarm"))
    flooder = f"{FLOODERS[0]}/32"
    assert all(flooder in cidrs for cidrs in deployment.deny_entries().values())

    # 30 minutes on the source still sends, now seen as REJECT at the NACL.
    minute = 30
    clock.at = START + (minute + 1) * MINUTE + 20
    for event in deliveries(FLOOD[:1], minute, action="REJECT"):
        deployment.detect(event)
    clock.advance(MINUTE)
    answer = deployment.expire()
    assert answer["due"] == [flooder]
    assert answer["tally"] == {"EXTEND": 2}
    assert all(flooder in cidrs for cidrs in deployment.deny_entries().values())
    extend = next(e for e in deployment.log() if e.kind is EventKind.EXTEND)
    assert "seen as REJECT" in extend.reason and extend.evidence and extend.evidence.reject_pps


def test_the_expirer_records_what_a_deny_stops_once_per_window(
    deployment: Deployment, capfd: pytest.CaptureFixture[str]
) -> None:
    clock = deployment.clock
    clock.at = START + MINUTE + 20
    for event in deliveries(ORDINARY + FLOOD[:1], 0):
        deployment.detect(event)
    deployment.detect(load("alarm-action-alarm"))
    flooder = f"{FLOODERS[0]}/32"
    (block, _) = [e for e in deployment.log() if e.kind is EventKind.BLOCK]
    assert block.evidence is not None and block.evidence.reject_pps is None  # all ACCEPT before
    # Minute 10: the flooder goes on at 12,000 pps, now REJECTed, with the 400 ordinary sources at 8 pps.
    clock.at = START + 11 * MINUTE + 20
    for event in deliveries(ORDINARY + FLOOD[:1], 10, action="REJECT"):
        deployment.detect(event)
    clock.at = START + 14 * MINUTE  # not the first run of a 5-minute window period: no sample
    deployment.calls.clear()
    deployment.expire()
    plain_run = Counter(deployment.calls)
    assert not [e for e in deployment.log() if e.kind is EventKind.EFFECT]
    capfd.readouterr()
    clock.at = START + 15 * MINUTE + 5
    deployment.calls.clear()
    deployment.expire()
    # What the sample costs: the window read, by key - one BatchGetItem of the heads of the 5-minute
    # window's minutes (16:10 to 16:15), one of the merged version of minute 16:11 (its eight deliveries
    # were merged by their writers, four at a time, and this container had not opened it) - and one batch
    # write of the EFFECT events.
    assert Counter(deployment.calls) - plain_run == {"BatchGetItem": 2, "BatchWriteItem": 1}
    (sample,) = [e for e in deployment.log() if e.kind is EventKind.EFFECT]
    assert (sample.cidr, sample.nacl_id, sample.at) == (flooder, None, START + 15 * MINUTE + 5)
    # The window holds minute 10's records, 60 s of them (minute 0's arrived more than 5 minutes ago):
    # the flooder's packets, all REJECT, over 60 s; and everyone's. Counted from the records themselves.
    records = [line.split() for line in flow_lines(ORDINARY + FLOOD[:1], intervals=1, seed=10)]
    flooder_pps = sum(int(r[8]) for r in records if r[3] == FLOODERS[0]) / 60
    inbound_pps = sum(int(r[8]) for r in records) / 60
    assert 0.8 * 12_000 <= flooder_pps <= 1.2 * 12_000
    assert sample.evidence is not None
    assert sample.evidence.pps == pytest.approx(flooder_pps)
    assert sample.evidence.reject_pps == pytest.approx(flooder_pps)
    assert sample.evidence.inbound_pps == pytest.approx(inbound_pps)
    metrics = emf_metrics(capfd.readouterr().out)
    assert metrics[METRIC.DENIED_REJECT_PPS] == pytest.approx(flooder_pps)
    assert metrics[METRIC.DENIED_ACCEPT_PPS] == 0
    assert metrics[METRIC.INBOUND_PPS] == pytest.approx(inbound_pps)
    assert not deployment.notifications()[1:]  # samples are not notified (the BLOCK notice may be there)


def test_while_armed_a_batch_decides_at_most_once_per_pace(deployment: Deployment) -> None:
    clock = deployment.clock
    clock.at = START + MINUTE + 20
    answer = deployment.detect(load("alarm-action-alarm"))
    assert answer["decision"]["verdict"] == "quiet"  # armed before the flood reached the window
    reports = deliver_in_parallel(deliveries(ORDINARY + FLOOD, 0))
    decided = [r for r in reports if r.decision is not None]
    assert len(decided) == 1  # the others saw the pace claimed
    assert all("less than 20s ago" in (r.why_no_decision or "") for r in reports if r.decision is None)
    clock.advance(30)
    (late,) = deliveries(ORDINARY + FLOOD, 1)[:1]
    answer = deployment.detect(late)
    assert answer["decision"]["verdict"] == "concentrated"
    expected = {*(f"{a}/32" for a in FLOODERS), BOTNET}
    assert deployment.deny_entries() == {nacl: expected for nacl in deployment.vpc.nacl_ids}


def test_without_an_alarm_only_sources_above_the_always_threshold_are_denied(
    make_deployment: Callable[..., Deployment],
) -> None:
    deployment = make_deployment(**{ENV.ALWAYS_PPS: "10000"})
    deployment.clock.at = START + MINUTE + 20
    *early, last = deliveries(ORDINARY + FLOOD, 0)
    answers = [deployment.detect(event) for event in early]
    assert answers[0]["decision"]["verdict"] == "quiet"  # the window held one interface's share
    assert all(a["decision"] is None for a in answers[1:])  # paced
    deployment.clock.advance(25)
    decision = deployment.detect(last)["decision"]
    assert decision["origin"] == "automatic" and decision["verdict"] == "concentrated"
    # 12,000 pps sources are above 10,000; the botnet's /24 (50,000 pps) too; its members (250) are not.
    expected = {*(f"{a}/32" for a in FLOODERS), BOTNET}
    assert deployment.deny_entries() == {nacl: expected for nacl in deployment.vpc.nacl_ids}


def test_insufficient_data_neither_arms_nor_disarms(deployment: Deployment) -> None:
    deployment.clock.at = START + MINUTE
    deployment.detect(load("alarm-eventbridge-alarm"))
    answer = deployment.detect(load("alarm-eventbridge-insufficient-data"))
    assert answer["armed"]["alarm"] == "Floodgate-early-warning" and answer["decision"] is None
    deployment.clock.advance(31 * MINUTE)  # past the arm TTL without a refresh: no longer armed
    (event,) = deliveries(ORDINARY, 30)[:1]
    assert deployment.detect(event)["why_no_decision"] == "not armed and no always threshold"


def test_a_redelivered_batch_is_counted_once(deployment: Deployment) -> None:
    deployment.clock.at = START + MINUTE + 20
    event = deliveries(ORDINARY + FLOOD, 0)[0]
    assert deployment.detect(event)["window_writes"] == 1
    deployment.clock.advance(2 * MINUTE)  # Lambda's async retry comes minutes later
    assert deployment.detect(event)["window_writes"] == 0
    window = detector_handler.detector.get().window.read(now=deployment.clock())
    delivery = parse_detector_event(event)
    assert isinstance(delivery, FlowLogDelivery)
    assert window.stats.parsed == len(delivery.messages)  # every record inbound, counted once


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """What the powertools Logger writes, as Lambda would ship it to CloudWatch Logs (JSON lines)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    service_logger = logging.getLogger(SERVICE_NAME)  # the stdlib logger behind the powertools one
    service_logger.addHandler(handler)
    yield stream
    service_logger.removeHandler(handler)


def test_a_poisoned_batch_is_logged_and_counted_not_retried(
    deployment: Deployment, capfd: pytest.CaptureFixture[str], json_logs: io.StringIO
) -> None:
    deployment.clock.at = START + MINUTE
    answer = deployment.detect(subscription_event("subscription-garbage"))
    assert answer["parsed"] == 0 and sum(answer["skipped"].values()) == 5 and answer["window_writes"] == 0
    assert emf_metrics(capfd.readouterr().out)[METRIC.RECORDS_SKIPPED] == 5
    error = next(json.loads(line) for line in json_logs.getvalue().splitlines() if '"level":"ERROR"' in line)
    assert "FLOODGATE_FLOW_LOG_FORMAT" in error["message"] and error["correlation_id"] == "req-detector"
    assert deployment.items(deployment.tables.state) == []


def test_a_control_message_is_acknowledged_and_changes_nothing(deployment: Deployment) -> None:
    answer = deployment.detect(subscription_event("subscription-control"))
    assert answer == {"kind": "control-message", "log_group": ""}
    assert deployment.items(deployment.tables.state) == []


# -- manual actions ------------------------------------------------------------------------------------


def test_manual_block_status_and_unblock(deployment: Deployment) -> None:
    deployment.clock.at = START
    answer = deployment.detect(load("manual-block"))
    assert answer["ok"] and answer["message"].startswith("203.0.113.7/32 denied in acl-")
    assert [e["event"] for e in answer["events"]] == ["BLOCK", "BLOCK"]
    assert all("203.0.113.7/32" in cidrs for cidrs in deployment.deny_entries().values())
    again = deployment.detect(load("manual-block"))
    assert (
        again["ok"]
        and again["message"] == "203.0.113.7/32 is already denied for at least as long; nothing changed"
    )
    status = deployment.detect(load("manual-status"))
    assert status["ok"] and status["armed"] is None
    assert [d["cidr"] for nacl in status["nacls"] for d in nacl["denies"]] == ["203.0.113.7/32"] * 2
    assert all(d["origin"] == "manual:alice@example.com" for n in status["nacls"] for d in n["denies"])
    answer = deployment.detect(load("manual-unblock"))
    assert answer["ok"] and answer["message"].startswith("lifted the deny of 203.0.113.7/32 in acl-")
    assert deployment.deny_entries() == {nacl: set() for nacl in deployment.vpc.nacl_ids}
    blocked, unblocked = deployment.notifications()
    assert blocked.startswith("Floodgate (manual:alice@example.com): 1 blocked.")
    assert unblocked.startswith("Floodgate (manual:alice@example.com): 1 unblocked.")


def test_manual_analyze_reports_in_a_dry_run_and_enforces_when_asked(deployment: Deployment) -> None:
    deployment.clock.at = START + MINUTE + 20
    for event in deliveries(ORDINARY + FLOOD, 0):
        deployment.detect(event)
    answer = deployment.detect(load("manual-analyze"))
    assert answer["ok"] and answer["dry_run"] and answer["verdict"] == "concentrated"
    assert answer["tally"] == {"DRYRUN:BLOCK": 8}
    assert deployment.deny_entries() == {nacl: set() for nacl in deployment.vpc.nacl_ids}
    answer = deployment.detect(load("manual-analyze-enforce"))
    assert answer["ok"] and not answer["dry_run"] and answer["tally"] == {"BLOCK": 8}
    assert answer["origin"] == "automatic:alice@example.com"
    assert all(len(cidrs) == 4 for cidrs in deployment.deny_entries().values())


def test_a_refused_block_answers_why_and_writes_only_the_refusal(deployment: Deployment) -> None:
    answer = deployment.detect({**load("manual-block"), "cidr": "10.0.1.0/24"})
    assert not answer["ok"] and "overlaps protected range" in answer["error"]
    assert deployment.deny_entries() == {nacl: set() for nacl in deployment.vpc.nacl_ids}
    assert [e.kind for e in deployment.log()] == [EventKind.REFUSED]
    assert deployment.items(deployment.tables.state) == []
    answer = deployment.detect(load("manual-unblock"))
    assert not answer["ok"] and "is not denied" in answer["error"]


# -- bad events ----------------------------------------------------------------------------------------

BAD_MANUAL = {
    "malformed-manual-unknown-action": (
        "action must be one of block, unblock, analyze, status, release; got 'nuke'"
    ),
    "malformed-manual-bad-cidr": "cidr: invalid CIDR '203.0.113.7/24': 203.0.113.7/24 has host bits set",
    "malformed-manual-bad-ttl": "ttl: not a duration: 'forever'",
    "malformed-manual-unknown-field": "block does not take tll",
    "malformed-manual-missing-reason": "unblock needs reason",
    "malformed-manual-action-not-text": (
        "action must be one of block, unblock, analyze, status, release; got a list"
    ),
    "malformed-manual-dry-run-text": "dry_run must be true or false, got 'false'",
}


def test_bad_events_of_every_kind_are_refused_and_write_nothing(deployment: Deployment) -> None:
    before = deployment.deny_entries()
    refused = 0
    for path in sorted(EVENTS_DIR.glob("malformed-*.json")):
        name = path.stem
        if name in BAD_MANUAL:
            answer = deployment.detect(load(name))
            assert answer == {"ok": False, "action": answer["action"], "error": answer["error"]}
            assert answer["error"].startswith(BAD_MANUAL[name])
        else:
            with pytest.raises(InvalidEvent):
                deployment.detect(load(name))
        refused += 1
    assert refused == 14
    assert deployment.items(deployment.tables.state) == []
    assert deployment.items(deployment.tables.log) == []
    assert deployment.deny_entries() == before


def test_settings_are_read_from_the_environment_once_and_a_bad_one_is_named(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environment(
        deployment.vpc, deployment.tables, deployment.settings.topic_arn or ""
    ).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(ENV.BUDGET, "99")
    detector_handler.detector.use(None)
    with pytest.raises(ConfigError, match=f"^{ENV.BUDGET}: 99 is outside 1..38"):
        deployment.detect(load("manual-status"))
    monkeypatch.setenv(ENV.BUDGET, "10")
    assert deployment.detect(load("manual-status"))["ok"]  # built now, on default clients (the emulator)
    built = detector_handler.detector.get()
    monkeypatch.setenv(ENV.BUDGET, "99")  # read once: a later change does not matter
    assert deployment.detect(load("manual-status"))["ok"] and detector_handler.detector.get() is built


# -- the expirer ---------------------------------------------------------------------------------------


def test_an_expirer_run_with_nothing_to_do_costs_a_handful_of_calls(deployment: Deployment) -> None:
    deployment.clock.at = START
    deployment.detect(load("manual-block"))
    deployment.clock.at = START + MINUTE  # not the first run of a window period: no effect sample due
    deployment.calls.clear()
    answer = deployment.expire()
    assert answer == {
        "due": [],
        "tally": {},
        "drift": [],
        "active": {n: 1 for n in deployment.vpc.nacl_ids},
        "failed": {},
    }
    # Per NACL: the ledger query for due denies, and the drift check's describe and ledger queries (denies,
    # entry marks).
    assert sorted(deployment.calls) == sorted(["Query"] * 2 + ["DescribeNetworkAcls"] * 3 + ["Query"] * 4)


def test_the_expirer_repairs_drift_and_reports_foreign_entries(deployment: Deployment) -> None:
    deployment.clock.at = START
    deployment.detect(load("manual-block"))
    nacl = deployment.vpc.nacl_ids[0]
    deployment.ec2.delete_network_acl_entry(NetworkAclId=nacl, RuleNumber=100, Egress=False)
    answer = deployment.expire()
    assert answer["tally"] == {"REPAIR": 1}
    assert "203.0.113.7/32" in deployment.deny_entries()[nacl]


def test_the_expirer_logs_and_notifies_a_foreign_entry_once_and_never_deletes_it(
    deployment: Deployment,
) -> None:
    deployment.clock.at = START
    deployment.detect(load("manual-block"))
    nacl = deployment.vpc.nacl_ids[0]
    deployment.ec2.create_network_acl_entry(
        NetworkAclId=nacl, RuleNumber=105, Protocol="-1", RuleAction="deny", Egress=False,
        CidrBlock="192.0.2.44/32",
    )  # fmt: skip
    assert deployment.expire()["tally"] == {"FOREIGN": 1}
    assert any("192.0.2.44/32" in message for message in deployment.notifications())
    deployment.clock.advance(MINUTE)
    answer = deployment.expire()
    assert answer["tally"] == {} and answer["failed"] == {}  # reported once, not every minute
    assert "192.0.2.44/32" in deployment.deny_entries()[nacl]
    assert [e.kind for e in deployment.log()].count(EventKind.FOREIGN) == 1


def test_two_expirer_runs_at_once_leave_a_consistent_result(deployment: Deployment) -> None:
    deployment.clock.at = START
    deployment.detect(load("manual-block"))
    deployment.detect({**load("manual-block"), "cidr": "198.51.100.0/24"})
    deployment.clock.advance(31 * MINUTE)
    service = expirer_handler.expirer.get()
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda _: service.run(), range(2)))
    expiries = [e for r in reports for e in r.events if e.kind is EventKind.EXPIRE]
    assert len(expiries) == 4  # each deny expired exactly once, by one run or the other
    assert deployment.deny_entries() == {nacl: set() for nacl in deployment.vpc.nacl_ids}
    assert [e.kind for e in deployment.log()].count(EventKind.EXPIRE) == 4


# -- failures ------------------------------------------------------------------------------------------


def fail_first(client: Any, operation: str, code: str, *, times: int = 1) -> list[str]:
    """Make the next `times` calls of `operation` on `client` fail with `code` (HTTP 400 or, for
    throttling, as AWS sends it); returns the log of failures injected."""
    injected: list[str] = []

    def answer(model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if model.name != operation or len(injected) >= times:
            return None
        injected.append(code)
        error = {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse("https://injected", 400, {}, None), error

    client.meta.events.register("before-call", answer, unique_id=f"fail-{operation}")
    return injected


def test_throttled_calls_are_retried_inside_the_invocation(deployment: Deployment) -> None:
    deployment.clock.at = START + MINUTE + 20
    clients = deployment.service_clients
    throttled = fail_first(clients["dynamodb"], "PutItem", "ProvisionedThroughputExceededException", times=2)
    for event in deliveries(ORDINARY + FLOOD, 0):
        assert deployment.detect(event)["window_writes"] == 1
    ec2_throttled = fail_first(clients["ec2"], "CreateNetworkAclEntry", "RequestLimitExceeded")
    answer = deployment.detect(load("alarm-action-alarm"))
    assert throttled == ["ProvisionedThroughputExceededException"] * 2 and ec2_throttled == [
        "RequestLimitExceeded"
    ]
    assert answer["decision"]["tally"] == {"BLOCK": 8}
    expected = {*(f"{a}/32" for a in FLOODERS), BOTNET}
    assert deployment.deny_entries() == {nacl: expected for nacl in deployment.vpc.nacl_ids}


def test_a_failure_that_is_not_transient_is_reported_for_its_nacl_and_the_others_carry_on(
    deployment: Deployment,
) -> None:
    deployment.clock.at = START + MINUTE + 20
    for event in deliveries(ORDINARY + FLOOD, 0):
        deployment.detect(event)
    fail_first(deployment.service_clients["ec2"], "CreateNetworkAclEntry", "UnauthorizedOperation")
    answer = deployment.detect(load("alarm-action-alarm"))
    expected = {*(f"{a}/32" for a in FLOODERS), BOTNET}
    entries = deployment.deny_entries()
    (failed,) = answer["decision"]["failed"]  # the invocation says which NACL failed, and why
    assert "UnauthorizedOperation" in answer["decision"]["failed"][failed]
    assert len(entries[failed]) == len(expected) - 1  # only the refused entry is missing
    assert all(entries[nacl] == expected for nacl in deployment.vpc.nacl_ids if nacl != failed)
    # The log says so: that deny is pending there, not blocked.
    assert answer["decision"]["tally"]["PENDING:BLOCK"] == 1
    # The ledger was written first: the expirer's next run puts the missing entry in, and logs its BLOCK.
    repaired = deployment.expire()
    assert repaired["tally"] == {"BLOCK": 1} and repaired["failed"] == {}
    assert deployment.deny_entries() == {nacl: expected for nacl in deployment.vpc.nacl_ids}
