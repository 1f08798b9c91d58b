"""Kinesis ingest end to end on the emulator: the stack deployed with `ingest: "kinesis"`, flow-log
deliveries put into its stream as the logs destination puts them, the stream read as the deployed mapping
reads it (emulator.stream_runner), and the scheduled decision denying the flood."""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import random
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from emulator import server
from emulator.deploy import DeployedStack, deploy
from emulator.lambda_runtime import LocalFunction, alarm_event, subscription_document
from emulator.network import DemoNetwork, create_demo_network
from emulator.stream_runner import DecisionSchedule, MappingConfig, StreamRunner
from emulator.traffic import START, Source, background, flow_lines, in_format, prefix_hosts, public_addresses
from floodgate.adapters.window import WINDOW_PREFIX
from floodgate.observability import OUTPUT
from floodgate.services.streaming import DECISION_LEASE_PREFIX
from floodgate.settings import ENV

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning"),
    pytest.mark.xdist_group(name="emulator-kinesis"),
]

CONTEXT = {
    "ingest": "kinesis",
    "kinesisShards": 2,
    "kinesisBatchSize": 3,
    "kinesisBatchWindow": "10s",
    "kinesisTumblingWindow": "30s",
    "kinesisParallelization": 2,
    "kinesisMaxRecordAge": "1h",
    "windowShards": 2,
    "detectorReservedConcurrency": 5,
}
FLOODERS = ["198.51.100.7", "198.51.100.8"]
BOTNET = "203.0.113.0/24"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class World:
    def __init__(self, emulator: server.Emulator, network: DemoNetwork, stack: DeployedStack) -> None:
        self.emulator = emulator
        self.network = network
        self.stack = stack
        self.clock = Clock(float(START + 3600))
        self.detector = LocalFunction(
            stack.function_for_output(OUTPUT.DETECTOR_FUNCTION), emulator, self.clock
        )
        self.config = MappingConfig.of_function(self.client("lambda"), self.detector.function.name)
        self.runner = StreamRunner(
            self.detector,
            kinesis=self.client("kinesis"),
            sqs=self.client("sqs"),
            config=self.config,
            clock=self.clock,
            region=emulator.region,
            keep_responses=True,
        )
        rule = self.stack.resources[self.logical_id("AWS::Events::Rule", "DecisionSchedule")]
        self.schedule = DecisionSchedule(self.client("events"), rule.split("/")[-1], self.clock)

    def client(self, service: str) -> Any:
        return server.client(self.emulator, service)

    def logical_id(self, kind: str, part: str) -> str:
        (found,) = [k for k, r in self.stack.template["Resources"].items() if r["Type"] == kind and part in k]
        return str(found)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        with redirect_stdout(io.StringIO()):  # the function's structured logs and EMF
            return self.detector.invoke(event)

    def documents(self, sources: list[Source], *, seed: int) -> list[dict[str, Any]]:
        """One minute of records, one delivery per interface, in the deployed flow-log format."""
        start = int(self.clock())
        written_as = self.detector.environment[ENV.FLOW_LOG_FORMAT]
        interfaces = [(self.network.eni_id, self.network.instance_ip), ("eni-0aaaabbbbcccc0001", "10.0.2.10")]
        by_interface: dict[str, list[str]] = {}
        for line in flow_lines(sources, intervals=1, seed=seed, start=start - 60, interfaces=interfaces):
            by_interface.setdefault(line.split()[2], []).append(in_format(line, written_as))
        return [
            subscription_document(
                lines,
                log_group=self.stack.outputs["FlowLogGroupName"],
                log_stream=f"{eni}-all",
                filter_name="to-destination",
                timestamp_ms=start * 1000,
                batch=f"{seed}-{eni}",
            )
            for eni, lines in sorted(by_interface.items())
        ]

    def minute(self, sources: list[Source], *, seed: int) -> list[dict[str, Any]]:
        """Deliver a minute of traffic, then let the minute pass polling every batching window; returns the
        scheduled decisions that ran."""
        self.runner.deliver(self.documents(sources, seed=seed))
        answers = []
        for _ in range(60 // self.config.batch_window_s):
            self.clock.now += self.config.batch_window_s
            with redirect_stdout(io.StringIO()):
                self.runner.poll()
            answers += [self.invoke(tick) for tick in self.schedule.due()]
        return answers

    def alarm(self, state: str) -> dict[str, Any]:
        cloudwatch = self.client("cloudwatch")
        name = self.stack.outputs["EarlyAlarmName"]
        (before,) = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")
        (alarm,) = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        return self.invoke(alarm_event(alarm, before["StateValue"], self.clock()))

    def denied(self) -> set[str]:
        (acl,) = self.client("ec2").describe_network_acls(NetworkAclIds=[self.network.nacl_id])["NetworkAcls"]
        return {
            e["CidrBlock"]
            for e in acl["Entries"]
            if e["RuleAction"] == "deny" and not e["Egress"] and e["RuleNumber"] < 32767
        }

    def window_keys(self) -> set[str]:
        table = self.detector.environment[ENV.WINDOW_TABLE]  # the stack's own window table
        items = self.client("dynamodb").scan(TableName=table, ProjectionExpression="pk")["Items"]
        return {item["pk"]["S"] for item in items if item["pk"]["S"].startswith(WINDOW_PREFIX)}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    emulator = server.start(set_environment=False)
    try:
        network = create_demo_network(server.client(emulator, "ec2"))
        outdir: Path = tmp_path_factory.mktemp("cdk-kinesis")
        stack = deploy(emulator, context={**network.context(), **CONTEXT}, outdir=outdir)
        yield World(emulator, network, stack)
    finally:
        server.stop(emulator)


def test_the_mapping_and_schedule_are_deployed_with_the_settings(world: World) -> None:
    config = world.config
    assert (config.batch_size, config.batch_window_s, config.tumbling_window_s) == (3, 10, 30)
    assert (config.parallelization, config.bisect, config.max_record_age_s) == (2, True, 3600)
    assert config.retry_attempts >= 1 and config.on_failure is not None and ":sqs:" in config.on_failure
    assert len(world.runner.shard_ids) == 2
    assert world.schedule.period_s == 60
    alarm_name = world.stack.resources[world.logical_id("AWS::CloudWatch::Alarm", "IteratorAge")]
    (alarm,) = world.client("cloudwatch").describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "IteratorAge")
    assert alarm["AlarmActions"] == [world.stack.outputs[OUTPUT.TOPIC_ARN]]
    destination = world.client("logs").describe_destinations()["destinations"][0]
    assert destination["targetArn"] == config.stream_arn


def test_a_flood_through_the_stream_is_denied_by_the_scheduled_decision(world: World) -> None:
    rng = random.Random(5)
    ordinary = background(rng, 150, pps=8.0)
    flood = [Source(address, 15_000, flows=12) for address in FLOODERS] + [
        Source(address, 300, flows=2) for address in prefix_hosts(BOTNET, 120)
    ]
    stats = world.runner.drain()  # what other tests left in the stream
    records, finals, answered = stats.records, stats.final_invocations, len(stats.responses)
    world.minute(ordinary, seed=1)
    armed = world.alarm("ALARM")
    assert armed["armed"] is not None
    decisions = []
    for minute in range(3):
        decisions += world.minute(ordinary + flood, seed=10 + minute)
    # Every record was read (4 minutes x 2 interfaces), each tumbling window closed by a final invocation.
    assert stats.records - records == 4 * 2 and stats.failed_batches == 0 and stats.expired_records == 0
    assert stats.final_invocations - finals >= 4
    stream_answers = [a for a in stats.responses[answered:] if "state" in a]
    assert all(
        set(a) == {"state", "batchItemFailures"} and a["batchItemFailures"] == [] for a in stream_answers
    )
    # Ingest stored only: the decisions are the schedule's, and the last one denies the flood.
    assert decisions and all(d["kind"] == "scheduled-decision" for d in decisions)
    assert decisions[-1]["decision"] is not None
    denied = world.denied()
    assert set(FLOODERS) <= {cidr.split("/")[0] for cidr in denied} or any(
        cidr.startswith("198.51.100.") for cidr in denied
    )
    assert any(cidr.startswith("203.0.113.") for cidr in denied)
    assert not any(cidr.split("/")[0] in {s.address for s in ordinary} for cidr in denied)
    # The window's items are under the minute's key or its shard's, nothing else.
    keys = world.window_keys()
    assert keys and all(k.count("#") in (1, 2) and (k.count("#") == 1 or k.endswith("#1")) for k in keys)


def test_a_scheduled_decision_leaves_the_vpc_to_a_decision_already_running(world: World) -> None:
    from floodgate.handlers import detector as detector_handler  # noqa: PLC0415 - the deployed service

    world.alarm("ALARM")  # armed, whatever ran before
    service = detector_handler.detector.get()
    ledger = service.enforcer.ledger
    assert service.decision_lease.startswith(DECISION_LEASE_PREFIX)
    lease = ledger.try_acquire(service.decision_lease, actor="someone-else", now=world.clock(), lease_s=120)
    assert lease is not None
    world.clock.now += 60
    (tick,) = world.schedule.due()
    busy = world.invoke(tick)
    assert {k: v for k, v in busy.items() if k != "replay"} == {
        "kind": "scheduled-decision",
        "decision": None,
        "why_no_decision": "another decision on this VPC is running",
    }
    ledger.release(lease)
    world.clock.now += 60
    (tick,) = world.schedule.due()
    assert world.invoke(tick)["decision"] is not None


def test_a_record_that_is_no_delivery_is_logged_and_the_shard_goes_on(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    kinesis = world.client("kinesis")
    before = world.runner.drain().records  # what other tests left in the stream
    sequence = kinesis.put_record(
        StreamName=world.config.stream_name, Data=b"not a delivery", PartitionKey="x"
    )["SequenceNumber"]
    world.runner.deliver(world.documents(background(random.Random(9), 20), seed=99))
    with caplog.at_level(logging.ERROR, logger="floodgate"):
        world.runner.drain()
    assert world.runner.stats.records == before + 3  # the bad one and the two deliveries
    assert world.runner.stats.failed_batches == 0
    assert any(
        f"stream record {sequence} of" in r.getMessage() and "holds no flow-log delivery" in r.getMessage()
        for r in caplog.records
    )


def test_a_batch_that_keeps_failing_is_split_then_its_range_goes_to_the_failure_queue(world: World) -> None:
    poison = b"poison-record"

    class Failing:
        """The deployed function, except that it fails on any batch holding the poison record."""

        function = world.detector.function

        def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
            if any(base64.b64decode(r["kinesis"]["data"]) == poison for r in event["Records"]):
                raise RuntimeError("boom")
            return world.invoke(event)

    runner = StreamRunner(
        Failing(),
        kinesis=world.client("kinesis"),
        sqs=world.client("sqs"),
        config=world.config,
        clock=world.clock,
        region=world.emulator.region,
    )
    runner.drain()  # reads past everything already in the stream
    shard_of = {}
    for n in range(4):
        data = poison if n == 2 else b"filler-%d" % n
        reply = world.client("kinesis").put_record(
            StreamName=world.config.stream_name, Data=data, PartitionKey="k"
        )
        shard_of[n] = reply["ShardId"]
    with redirect_stdout(io.StringIO()):
        runner.drain()
    assert runner.stats.failed_batches == 1
    assert world.config.on_failure is not None
    queue_name = world.config.on_failure.rpartition(":")[2]
    queue = world.client("sqs").get_queue_url(QueueName=queue_name)["QueueUrl"]
    messages = world.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    infos = [json.loads(m["Body"])["KinesisBatchInfo"] for m in messages]
    assert [(info["batchSize"], info["shardId"]) for info in infos] == [(1, shard_of[2])]


def test_the_deployed_detector_replays_what_the_mapping_gave_up_on_and_then_denies_it(world: World) -> None:
    """End to end on the deployed stack: the mapping gives up on the batches holding a flood (the detector
    failed on them), their ranges wait in the deployed StreamFailures queue, and the scheduled ticks replay
    them (the queue named in the detector's environment) and then deny the flood."""
    flooders = public_addresses(random.Random(1601), 2)
    marker = "-replay-me"

    class FailingOnTheFlood:
        """The deployed function, except that it fails on any batch holding a marked delivery."""

        function = world.detector.function

        def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
            for record in event["Records"]:
                document = json.loads(gzip.decompress(base64.b64decode(record["kinesis"]["data"])))
                if str(document.get("logStream", "")).endswith(marker):
                    raise RuntimeError("boom")
            return world.invoke(event)

    runner = StreamRunner(
        FailingOnTheFlood(),
        kinesis=world.client("kinesis"),
        sqs=world.client("sqs"),
        config=world.config,
        clock=world.clock,
        region=world.emulator.region,
    )
    with redirect_stdout(io.StringIO()):
        runner.drain()  # reads past everything already in the stream
    world.alarm("ALARM")
    # One minute at a rate that stays above minPps over a window spanning the earlier tests' minutes too.
    documents = world.documents([Source(address, 80_000, flows=12) for address in flooders], seed=1601)
    for document in documents:
        document["logStream"] += marker
    failed, read = runner.stats.failed_batches, runner.stats.records
    runner.deliver(documents)
    with redirect_stdout(io.StringIO()):
        runner.drain()
    assert runner.stats.failed_batches > failed and runner.stats.records == read  # nothing of it stored

    world.clock.now += 60
    answers = [world.invoke(tick) for tick in world.schedule.due()]
    replayed = [label for answer in answers for label in answer["replay"]["replayed"]]
    shards = {label.split()[0] for label in replayed}
    assert replayed and shards <= set(world.runner.shard_ids)
    assert sum(answer["replay"]["records"] for answer in answers) >= len(documents)
    # The tick decided before replaying (a deny never waits for a backlog); the next one sees the flood.
    world.clock.now += 60
    final = [world.invoke(tick) for tick in world.schedule.due()]
    denied = {cidr.split("/")[0] for cidr in world.denied()}
    assert final and set(flooders) <= denied
