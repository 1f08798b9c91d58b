"""Never failing open in silence, against the emulator over HTTP: the detector measures its lag, records and
announces a failed decision and still fails the invocation; `floodgate replay` redelivers what Lambda gave
up on without counting a batch twice or losing a message; `floodgate status` says all of it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulator.traffic import START
from floodgate.adapters.failure_queue import FailureQueue
from floodgate.adapters.health import HealthRecords
from floodgate.adapters.retry import Retrier
from floodgate.handlers import detector as detector_handler
from floodgate.observability import METRIC
from floodgate.services.detection import DecisionFailed
from floodgate.services.events import FlowLogDelivery, parse_detector_event
from floodgate.services.replay import DETECTOR, replay
from tests.events import load
from tests.integration.conftest import FAST_RETRIES, AwsClientFactory, Tables, VpcFixture
from tests.integration.incident import Deployment as CliDeployment
from tests.integration.incident import stand_in
from tests.integration.test_handlers import (  # the handlers' deployment, reused as it is
    FLOOD,
    MINUTE,
    ORDINARY,
    Deployment,
    deliveries,
    deployment,
    emf_metrics,
    make_deployment,
)

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics to publish")]

__all__ = ["deployment", "make_deployment"]  # fixtures, imported to be found

DETECTOR_ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}:$LATEST"


def health(d: Deployment) -> HealthRecords:
    return HealthRecords(d.tables.state, d.dynamodb, retrier=Retrier(FAST_RETRIES))


def invocation_record(event: Mapping[str, Any], function: str, *, failed_at: str) -> str:
    """What Lambda puts in the on-failure queue for `event` (shape of tests/events/failed-invocation-*)."""
    record = load("failed-invocation-flowlogs")
    record["requestContext"]["functionArn"] = DETECTOR_ARN.format(function)
    record["requestPayload"] = event
    record["timestamp"] = failed_at
    return json.dumps(record)


def arm(d: Deployment) -> None:
    answer = d.detect(load("alarm-action-alarm"))
    assert answer["armed"]["alarm"] == "Floodgate-early-warning", answer


# -- lag and decision age --------------------------------------------------------------------------------


def test_each_delivery_reports_its_lag_and_each_armed_decision_its_age(
    deployment: Deployment, capfd: pytest.CaptureFixture[str]
) -> None:
    clock = deployment.clock
    first, second, *_ = deliveries(ORDINARY + FLOOD, 0)  # records of [START, START + 60]
    clock.at = START + MINUTE + 20
    arm(deployment)  # decides at once: a completed decision at START + 80
    capfd.readouterr()
    answer = deployment.detect(first)
    assert answer["ingest_lag_s"] == 20.0  # stored at START + 80, latest record ended at START + 60
    assert answer["decision_age_s"] == 0.0  # the alarm's own decision completed just now
    assert emf_metrics(capfd.readouterr().out)[METRIC.INGEST_LAG_S] == 20.0
    clock.advance(45)
    answer = deployment.detect(second)
    assert (answer["ingest_lag_s"], answer["decision_age_s"]) == (65.0, 45.0)
    assert answer["decision"] is not None
    metrics = emf_metrics(capfd.readouterr().out)
    assert (metrics[METRIC.INGEST_LAG_S], metrics[METRIC.DECISION_AGE_S]) == (65.0, 45.0)
    recorded = health(deployment).read()
    assert (recorded.newest_end, recorded.stored_at) == (START + MINUTE, START + MINUTE + 20)
    assert (recorded.decision_ok, recorded.decision_at, recorded.completed_at) == (True, clock(), clock())
    assert recorded.outcome is not None and recorded.outcome.startswith("concentrated")


def test_a_record_stamped_in_the_future_cannot_hide_the_lag(deployment: Deployment) -> None:
    records = health(deployment)
    assert records.stored(START + 50, now=START)  # a record ending ahead of the clock counts as now
    assert not records.stored(START - 10, now=START + 1)  # older than what is recorded: kept as it was
    assert records.stored(START + 5, now=START + 8)
    assert (records.read().newest_end, records.read().stored_at) == (START + 5, START + 8)


# -- a failed decision ------------------------------------------------------------------------------------


def test_a_failed_decision_is_recorded_counted_announced_once_and_still_fails_the_invocation(
    deployment: Deployment, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = deployment.clock
    clock.at = START + MINUTE + 20
    arm(deployment)
    completed = health(deployment).read().completed_at
    service = detector_handler.detector.get()

    def throttled(**_: Any) -> Any:
        error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
        raise ClientError(error, "Query")

    monkeypatch.setattr(service.window, "read", throttled)
    batches = deliveries(ORDINARY + FLOOD, 0)
    capfd.readouterr()
    for n, event in enumerate(batches[:3]):
        clock.advance(30)  # each one past the pace: each one decides, and fails
        with pytest.raises(DecisionFailed, match="ProvisionedThroughputExceededException"):
            deployment.detect(event)
        assert emf_metrics(capfd.readouterr().out)[METRIC.DECISION_FAILURES] == 1, n
    recorded = health(deployment).read()
    assert (recorded.decision_ok, recorded.decision_at) == (False, clock())
    assert (
        recorded.outcome == "ClientError: An error occurred (ProvisionedThroughputExceededException) "
        "when calling the Query operation: slow down"
    )
    assert recorded.completed_at == completed  # the last decision that completed is still the alarm's
    notices = [n for n in deployment.notifications() if "failed" in n]
    assert len(notices) == 1  # three failures in 90 s: one notice
    assert "floodgate replay" in notices[0] and "ProvisionedThroughputExceededException" in notices[0]
    clock.advance(11 * MINUTE)
    with pytest.raises(DecisionFailed):
        deployment.detect(batches[3])
    assert len([n for n in deployment.notifications() if "failed" in n]) == 1  # the next notice, 10 min on


# -- replay -----------------------------------------------------------------------------------------------


@pytest.fixture
def failure_queue(aws_client: AwsClientFactory) -> tuple[Any, str]:
    sqs = aws_client("sqs")
    return sqs, sqs.create_queue(QueueName=f"failures-{uuid.uuid4().hex[:8]}")["QueueUrl"]


def queued(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"  # none left hidden
    return int(attributes["ApproximateNumberOfMessages"])


def test_a_replayed_delivery_is_not_counted_twice_and_what_fails_stays_in_the_queue(
    deployment: Deployment, failure_queue: tuple[Any, str]
) -> None:
    sqs, url = failure_queue
    clock = deployment.clock
    clock.at = START + MINUTE + 20
    stored, lost = deliveries(ORDINARY + FLOOD, 0)[:2]
    deployment.detect(stored)  # stored, then its invocation failed later on (a decision, say)
    for event in (stored, lost):
        sqs.send_message(
            QueueUrl=url, MessageBody=invocation_record(event, "Floodgate-Detector", failed_at="x")
        )
    sqs.send_message(QueueUrl=url, MessageBody="garbage")
    clock.advance(2 * MINUTE)

    def in_process(function: str, event: Mapping[str, Any]) -> None:
        assert function == "Floodgate-Detector"
        deployment.detect(dict(event))

    queue = FailureQueue(url, sqs, retrier=Retrier(FAST_RETRIES))
    report = replay(queue, in_process, functions={"Floodgate-Detector": DETECTOR}, dry_run=False)
    assert [f.kind for f in report.replayed] == ["flow-logs", "flow-logs"]
    assert [m.why for m in report.left] == ["not JSON: not a Lambda invocation record"]
    assert queued(sqs, url) == 1  # the garbage, visible again, not lost
    window = detector_handler.detector.get().window.read(now=clock())
    expected = 0
    for event in (stored, lost):
        delivery = parse_detector_event(event)
        assert isinstance(delivery, FlowLogDelivery)
        expected += len(delivery.messages)
    assert window.stats.parsed == expected  # both batches, each counted once

    def refused(function: str, event: Mapping[str, Any]) -> None:
        raise RuntimeError("TooManyRequestsException")

    sqs.send_message(QueueUrl=url, MessageBody=invocation_record(lost, "Floodgate-Detector", failed_at="x"))
    report = replay(queue, refused, functions={"Floodgate-Detector": DETECTOR}, dry_run=False)
    assert report.replayed == [] and len(report.left) == 2
    assert "redelivery refused: RuntimeError: TooManyRequestsException" in [m.why for m in report.left]
    assert queued(sqs, url) == 2


# -- the CLI: replay and status ---------------------------------------------------------------------------


@pytest.fixture
def cli_deployment(aws_client: AwsClientFactory, vpc: VpcFixture, tables: Tables) -> CliDeployment:
    return stand_in(aws_client, vpc, tables)


def test_replay_lists_replays_in_steps_and_reports_what_it_leaves(
    cli_deployment: CliDeployment, aws_client: AwsClientFactory
) -> None:
    sqs, url = aws_client("sqs"), cli_deployment.failure_queue
    events = deliveries(ORDINARY, 0)[:2]
    for event in events:
        body = invocation_record(event, cli_deployment.function, failed_at="2025-11-24T16:41:07.318Z")
        sqs.send_message(QueueUrl=url, MessageBody=body)
    foreign = invocation_record(events[0], "SomeoneElses", failed_at="2025-11-24T16:41:07.318Z")
    sqs.send_message(QueueUrl=url, MessageBody=foreign)

    listed = cli_deployment.cli("replay", "--dry-run", "--json")
    assert listed.code == 1  # a message is left: the foreign one
    report = listed.json()
    assert [(f["kind"], f["function"], f["condition"]) for f in report["would_replay"]] == [
        ("flow-logs", cli_deployment.function, "RetriesExhausted")
    ] * 2
    sizes = sorted(len(json.dumps(e, separators=(",", ":"))) for e in events)
    assert sorted(f["size"] for f in report["would_replay"]) == sizes
    assert report["replayed"] == [] and "not this deployment's" in report["left"][0]["why"]
    assert queued(sqs, url) == 3  # a dry run changes nothing

    one = cli_deployment.cli("replay", "--max", "1", "--json")
    assert len(one.json()["replayed"]) == 1 and one.json()["left"] == []  # stopped after one
    assert queued(sqs, url) == 2

    rest = cli_deployment.cli("replay")
    assert rest.code == 1, rest.err
    assert rest.out.splitlines()[0] == "replayed 1 event: accepted by Lambda and deleted from the queue"
    assert "1 message left in the queue:" in rest.out and "SomeoneElses" in rest.out
    assert queued(sqs, url) == 1

    assert cli_deployment.cli("replay", "--max", "0").code == 2  # a usage error


def test_status_says_how_far_behind_the_last_decision_and_the_failures_waiting(
    cli_deployment: CliDeployment, aws_client: AwsClientFactory
) -> None:
    sqs, url = aws_client("sqs"), cli_deployment.failure_queue
    records = HealthRecords(cli_deployment.tables.state, aws_client("dynamodb"))
    now = time.time()
    records.stored(now - 7 * MINUTE - 10, now=now - 60)
    records.decided(at=now - 30, ok=False, outcome="ClientError: throttled")
    for event in deliveries(ORDINARY, 0)[:2]:
        sqs.send_message(
            QueueUrl=url, MessageBody=invocation_record(event, cli_deployment.function, failed_at="x")
        )

    text = cli_deployment.cli("status")
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    assert any(line.startswith("flow logs: behind by 7m") for line in lines), lines
    assert any(line.endswith("FAILED: ClientError: throttled") for line in lines), lines
    (waiting,) = [line for line in lines if "failed deliveries waiting" in line]
    assert waiting.startswith("2 failed deliveries waiting, oldest ") and waiting.endswith(
        ": run floodgate replay"
    )

    report = cli_deployment.cli("status", "--json").json()["keeping_up"]
    assert 7 * MINUTE <= report["ingest_lag_s"] < 8 * MINUTE and report["behind"] is False
    assert report["last_decision"]["ok"] is False and report["last_completed_decision"] is None
    assert report["failed_deliveries"]["waiting"] == 2
    assert queued(sqs, url) == 2  # status only peeked
