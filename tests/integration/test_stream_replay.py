"""The automatic replay of the stream's failed ranges against the emulator over HTTP: a batch the mapping gave
up on (emulator.stream_runner, with the detector failing) is read back from the Kinesis stream and stored by
the next scheduled tick, counted once however often it is replayed; a range no longer in the stream is
reported lost (metric, HEALTH item, notice) and its message kept; each run's work is bounded."""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from emulator.deploy import DeployedFunction
from emulator.stream_runner import MappingConfig, StreamRunner
from emulator.traffic import START
from floodgate.adapters.failure_queue import FailureQueue
from floodgate.adapters.health import HealthRecords
from floodgate.adapters.notify import Notifier
from floodgate.adapters.retry import Retrier
from floodgate.adapters.stream import StreamReader
from floodgate.handlers import detector as detector_handler
from floodgate.observability import DETECTOR_HANDLER, METRIC
from floodgate.services.events import FlowLogDelivery, parse_detector_event
from floodgate.services.stream_replay import StreamReplay
from floodgate.settings import ENV
from tests.events import load
from tests.integration.conftest import FAST_RETRIES, AwsClientFactory
from tests.integration.test_handlers import (  # the handlers' deployment, reused as it is
    FLOOD,
    MINUTE,
    ORDINARY,
    Deployment,
    deliveries,
    deployment,
    make_deployment,
)

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics to publish")]

__all__ = ["deployment", "make_deployment"]  # fixtures, imported to be found

DETECTOR_ARN = "arn:aws:lambda:us-east-1:123456789012:function:Floodgate-Detector"


@dataclass
class Stream:
    kinesis: Any
    sqs: Any
    name: str
    arn: str
    shard_id: str
    queue_url: str
    queue_arn: str

    def put(self, data: bytes) -> str:
        return str(
            self.kinesis.put_record(StreamName=self.name, Data=data, PartitionKey="k")["SequenceNumber"]
        )

    def fail(self, start: str, end: str, size: int, *, shard_id: str | None = None) -> None:
        """The on-failure record the mapping sends for a range it gave up on."""
        record = load("kinesis-failure-record")
        record["KinesisBatchInfo"].update(
            shardId=shard_id or self.shard_id,
            startSequenceNumber=start,
            endSequenceNumber=end,
            batchSize=size,
            streamArn=self.arn,
        )
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(record))

    def waiting(self) -> tuple[int, int]:
        """(visible, hidden) messages of the failure queue."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def peek(self) -> list[str]:
        """The bodies waiting, left visible."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", [])
        return [m["Body"] for m in messages]


@pytest.fixture
def stream(aws_client: AwsClientFactory) -> Stream:
    kinesis, sqs = aws_client("kinesis"), aws_client("sqs")
    name = f"floodgate-flow-logs-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    (shard,) = kinesis.list_shards(StreamName=name)["Shards"]
    url = sqs.create_queue(QueueName=f"stream-failures-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return Stream(kinesis, sqs, name, arn, shard["ShardId"], url, queue_arn)


@pytest.fixture
def kinesis_deployment(
    make_deployment: Callable[..., Deployment], stream: Stream, aws_client: AwsClientFactory
) -> Iterator[tuple[Deployment, StreamReplay]]:
    """The detector with kinesis ingest, its replay wired to the stream and its failure queue as the
    handler's cold start wires them (`StreamReplay.from_settings`), on the emulator's clients."""
    deployment = make_deployment(**{ENV.INGEST: "kinesis", ENV.STREAM_FAILURES: stream.queue_url})
    retrier = Retrier(FAST_RETRIES)
    replay = StreamReplay(
        FailureQueue(stream.queue_url, stream.sqs, retrier=retrier),
        StreamReader(stream.kinesis, retrier=retrier),
        lambda batch: detector_handler.detector.get().ingest_stream(batch),
        health=HealthRecords(deployment.tables.state, deployment.dynamodb, retrier=retrier),
        notifier=Notifier(deployment.settings.topic_arn, aws_client("sns"), retrier=retrier),
    )
    detector_handler.replays.use(replay)
    try:
        yield deployment, replay
    finally:
        detector_handler.replays.use(None)


class BrokenDetector:
    """The detector's handler, failing every batch of records while `broken` (its table throttled for longer
    than the mapping retries, say), as the event source mapping invokes it."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.broken = True
        self.function = DeployedFunction(
            "Detector",
            "Floodgate-Detector",
            DETECTOR_ARN,
            DETECTOR_HANDLER,
            "python3.13",
            {},
            60,
            512,
            None,
            {},
        )

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        if self.broken and event["Records"]:
            raise RuntimeError("ProvisionedThroughputExceededException")
        return self.deployment.detect(event)


def documents(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The subscription documents inside subscription events: what the logs destination puts in the stream."""
    return [json.loads(gzip.decompress(base64.b64decode(e["awslogs"]["data"]))) for e in events]


def records_in(events: list[dict[str, Any]]) -> int:
    total = 0
    for event in events:
        delivery = parse_detector_event(event)
        assert isinstance(delivery, FlowLogDelivery)
        total += len(delivery.messages)
    return total


def window_records(deployment: Deployment) -> int:
    return detector_handler.detector.get().window.read(now=deployment.clock()).stats.parsed


def tick(deployment: Deployment) -> dict[str, Any]:
    answer = deployment.detect(load("scheduled-event"))
    assert answer["kind"] == "scheduled-decision"
    replay: dict[str, Any] = answer["replay"]
    return replay


def test_a_range_the_mapping_gave_up_on_is_replayed_by_the_next_tick_and_counted_once(
    kinesis_deployment: tuple[Deployment, StreamReplay], stream: Stream
) -> None:
    deployment, _ = kinesis_deployment
    deployment.clock.at = START + MINUTE + 20
    events = deliveries(ORDINARY + FLOOD, 0)
    expected = records_in(events)
    assert expected > 0
    detector = BrokenDetector(deployment)
    config = MappingConfig(
        uuid="replay",
        stream_arn=stream.arn,
        batch_size=10,
        batch_window_s=10,
        tumbling_window_s=30,
        parallelization=1,
        bisect=True,
        retry_attempts=2,
        max_record_age_s=3600,
        on_failure=stream.queue_arn,
    )
    runner = StreamRunner(
        detector,
        kinesis=stream.kinesis,
        sqs=stream.sqs,
        config=config,
        clock=deployment.clock,
        region="us-east-1",
    )
    runner.deliver(documents(events))
    stats = runner.drain()
    assert stats.failed_batches >= 1 and stats.records == 0
    bodies = stream.peek()
    assert sum(json.loads(b)["KinesisBatchInfo"]["batchSize"] for b in bodies) == len(events)
    assert window_records(deployment) == 0  # the mapping moved on: nothing of it is in the window

    detector.broken = False
    replayed = tick(deployment)
    assert len(replayed["replayed"]) == len(bodies) and replayed["records"] == len(events)
    assert replayed["lost"] == [] and replayed["left"] == []
    assert window_records(deployment) == expected
    assert stream.waiting() == (0, 0)  # each message deleted once its range was stored

    # The same failure records again (SQS delivers at least once; or the range was stored by an invocation
    # that failed afterwards): replayed again, counted once.
    for body in bodies:
        stream.sqs.send_message(QueueUrl=stream.queue_url, MessageBody=body)
    again = tick(deployment)
    assert len(again["replayed"]) == len(bodies)
    assert window_records(deployment) == expected
    assert stream.waiting() == (0, 0)


def test_a_trimmed_or_unknown_range_is_reported_lost_announced_and_its_message_kept(
    kinesis_deployment: tuple[Deployment, StreamReplay], stream: Stream
) -> None:
    deployment, replay = kinesis_deployment
    deployment.clock.at = START + MINUTE + 20
    (document,) = documents(deliveries(ORDINARY, 0)[:1])
    first = stream.put(gzip.compress(json.dumps(document).encode()))
    # Its first record is older than anything the shard still holds (trimmed after 24 h).
    stream.fail(str(int(first) - 1), first, 2)
    stream.fail(first, first, 1, shard_id="shardId-000000000007")  # a shard the stream does not have
    stream.sqs.send_message(QueueUrl=stream.queue_url, MessageBody="not a failure record")

    report = replay.run(deadline=time.time() + 60)
    assert report.replayed == [] and report.records == 0
    whys = dict(report.lost)
    assert set(whys) == {
        f"{stream.shard_id} {int(first) - 1}..{first}",
        f"shardId-000000000007 {first}..{first}",
    }
    assert whys[f"{stream.shard_id} {int(first) - 1}..{first}"].startswith(
        f"its first record {int(first) - 1} is no longer in the stream"
    )
    assert whys[f"shardId-000000000007 {first}..{first}"].startswith("ResourceNotFoundException")
    assert [why for _, why in report.left] == ["not JSON: not a Kinesis on-failure record"]
    assert report.metric_values() == {METRIC.STREAM_RANGES_REPLAYED: 0.0, METRIC.STREAM_RANGES_LOST: 2.0}
    assert window_records(deployment) == 0
    # Said where on-call looks: the HEALTH item `floodgate status` reads, and the topic.
    health = HealthRecords(deployment.tables.state, deployment.dynamodb).read()
    assert health.ranges_lost == 2 and health.last_lost is not None and " lost: " in health.last_lost
    notices = deployment.notifications()
    assert len(notices) == 2 and all(n.startswith("flow-log records lost: ") for n in notices)
    # Kept, hidden for 12 hours: the next ticks neither lose them again nor announce them again.
    assert stream.waiting() == (0, 3)
    assert tick(deployment) == {"replayed": [], "records": 0, "lost": [], "left": [], "deferred": 0}
    assert deployment.notifications() == []
    assert HealthRecords(deployment.tables.state, deployment.dynamodb).read().ranges_lost == 2


def test_each_run_is_bounded_and_leaves_the_rest_for_the_next(
    kinesis_deployment: tuple[Deployment, StreamReplay], stream: Stream
) -> None:
    deployment, replay = kinesis_deployment
    deployment.clock.at = START + MINUTE + 20
    events = deliveries(ORDINARY + FLOOD, 0)
    for document in documents(events):
        sequence = stream.put(gzip.compress(json.dumps(document).encode()))
        stream.fail(sequence, sequence, 1)
    assert stream.waiting() == (len(events), 0)

    # No time left: nothing is taken off the queue.
    assert replay.run(deadline=time.time()).replayed == []
    assert stream.waiting() == (len(events), 0)
    # One range per run: one stored, the others put back at once for the next run.
    first = replay.run(deadline=time.time() + 60, max_ranges=1)
    assert len(first.replayed) == 1 and window_records(deployment) > 0
    assert stream.waiting() == (len(events) - 1, 0)
    rest = replay.run(deadline=time.time() + 60)
    assert len(rest.replayed) == len(events) - 1
    assert window_records(deployment) == records_in(events)
    assert stream.waiting() == (0, 0)


def test_a_range_that_cannot_be_stored_now_stays_in_the_queue_and_the_others_go_on(
    kinesis_deployment: tuple[Deployment, StreamReplay], stream: Stream
) -> None:
    deployment, replay = kinesis_deployment
    deployment.clock.at = START + MINUTE + 20
    events = deliveries(ORDINARY + FLOOD, 0)
    sequences = [stream.put(gzip.compress(json.dumps(d).encode())) for d in documents(events)]
    for sequence in sequences:
        stream.fail(sequence, sequence, 1)
    store = replay.ingest
    calls = []

    def throttled_once(batch: Any) -> object:
        calls.append(batch.records[0].sequence_number)
        if len(calls) == 1:
            raise RuntimeError("ProvisionedThroughputExceededException")
        return store(batch)

    replay.ingest = throttled_once
    report = replay.run(deadline=time.time() + 60)
    assert [why for _, why in report.left] == [
        "storing failed: RuntimeError: ProvisionedThroughputExceededException"
    ]
    assert len(report.replayed) == len(sequences) - 1 and report.lost == []
    # The failed one stays, hidden for this invocation's time, then comes back for the next run.
    assert stream.waiting() == (0, 1)
    assert 0 < window_records(deployment) < records_in(events)
