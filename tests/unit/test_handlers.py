"""The handlers' own layer, without AWS: events validated before the service is touched, correlation ids,
metrics as EMF, settings read once and named when wrong."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from floodgate.handlers import detector as detector_handler
from floodgate.handlers import expirer as expirer_handler
from floodgate.handlers.runtime import ColdStart, logger, tracer
from floodgate.observability import METRIC, SERVICE_NAME
from floodgate.services.events import AlarmStateChange, DetectorEvent, Home, InvalidEvent
from floodgate.settings import ENV, ConfigError, Settings
from tests.events import LambdaContextStub, load

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@dataclass
class Report:
    metrics: dict[str, float]
    body: dict[str, Any]
    active: dict[str, int] = field(default_factory=dict)

    def metric_values(self) -> dict[str, float]:
        return self.metrics

    def as_dict(self) -> dict[str, Any]:
        return self.body


@dataclass
class StubDetector:
    handled: list[DetectorEvent] = field(default_factory=list)
    homes: list[Home | None] = field(default_factory=list)

    def handle(self, event: DetectorEvent, *, home: Home | None = None) -> Report:
        self.handled.append(event)
        self.homes.append(home)
        return Report({METRIC.BLOCKS: 2, METRIC.DECISION_LATENCY_MS: 41.5}, {"kind": type(event).__name__})


@dataclass
class StubExpirer:
    def run(self) -> Report:
        return Report({METRIC.EXPIRIES: 1}, {"due": []}, active={"acl-2": 0, "acl-1": 3})


@pytest.fixture
def stub_detector() -> Iterator[StubDetector]:
    stub = StubDetector()
    detector_handler.detector.use(cast(Any, stub))
    yield stub
    detector_handler.detector.use(None)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logging.getLogger(SERVICE_NAME).addHandler(handler)
    yield stream
    logging.getLogger(SERVICE_NAME).removeHandler(handler)


def emf(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]


def test_an_alarm_is_handled_under_its_name_and_its_metrics_go_out_as_emf(
    stub_detector: StubDetector, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = detector_handler.lambda_handler(load("alarm-eventbridge-alarm"), LambdaContextStub())
    assert answer == {"kind": "AlarmStateChange"}
    (event,) = stub_detector.handled
    assert isinstance(event, AlarmStateChange) and event.alarm_name == "Floodgate-early-warning"
    # The function's own account and region, from its ARN, for the detector to check the alarm's against.
    assert stub_detector.homes == [Home(account="123456789012", region="us-east-1")]
    # The first invocation of a process also emits powertools' ColdStart metric, in its own document.
    (document,) = [d for d in emf(capsys.readouterr().out) if METRIC.BLOCKS in d]
    units = {m["Name"]: m["Unit"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units == {METRIC.BLOCKS: "Count", METRIC.DECISION_LATENCY_MS: "Milliseconds"}
    assert document["service"] == SERVICE_NAME and document[METRIC.BLOCKS] == [2.0]


def test_the_domain_logs_carry_the_correlation_id(
    stub_detector: StubDetector, json_logs: io.StringIO
) -> None:
    class Logging(StubDetector):
        def handle(self, event: DetectorEvent, *, home: Home | None = None) -> Report:
            logging.getLogger("floodgate.services.detection").info("deciding")
            return super().handle(event, home=home)

    detector_handler.detector.use(cast(Any, Logging()))
    detector_handler.lambda_handler(load("alarm-action-alarm"), LambdaContextStub())
    detector_handler.lambda_handler(load("manual-status"), LambdaContextStub(aws_request_id="req-42"))
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    assert [(line["message"], line["correlation_id"]) for line in lines] == [
        ("deciding", "Floodgate-early-warning"),
        ("deciding", "req-42"),
    ]
    assert lines[0]["function_request_id"] == LambdaContextStub().aws_request_id


def test_a_bad_event_is_refused_before_the_service_is_touched(
    stub_detector: StubDetector, json_logs: io.StringIO
) -> None:
    with pytest.raises(InvalidEvent, match="unrecognised event"):
        detector_handler.lambda_handler(load("malformed-unknown-kind"), LambdaContextStub())
    assert stub_detector.handled == []
    (line,) = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    assert line["level"] == "ERROR" and line["message"].startswith("rejected event: unrecognised event")


def test_the_expirer_reports_active_denies_per_nacl(capsys: pytest.CaptureFixture[str]) -> None:
    expirer_handler.expirer.use(cast(Any, StubExpirer()))
    try:
        answer = expirer_handler.lambda_handler(load("scheduled-event"), LambdaContextStub())
    finally:
        expirer_handler.expirer.use(None)
    assert answer == {"due": []}
    per_nacl = [
        (d[METRIC.DENIES_ACTIVE], d["NaclId"], d["_aws"]["CloudWatchMetrics"][0]["Dimensions"])
        for d in emf(capsys.readouterr().out)
        if "NaclId" in d
    ]
    assert per_nacl == [([3.0], "acl-1", [["service", "NaclId"]]), ([0.0], "acl-2", [["service", "NaclId"]])]


def test_settings_are_validated_once_at_cold_start_and_a_bad_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[Settings] = []

    def build(settings: Settings) -> Settings:
        built.append(settings)
        return settings

    cold_start = ColdStart(build)
    monkeypatch.setenv(ENV.NACL_IDS, "acl-0123456789abcdef0")
    monkeypatch.setenv(ENV.VPC_CIDRS, "10.0.0.0/16")
    monkeypatch.setenv(ENV.STATE_TABLE, "state")
    monkeypatch.setenv(ENV.LOG_TABLE, "log")
    monkeypatch.setenv(ENV.MIN_SHARE, "2")
    with pytest.raises(ConfigError, match=f"^{ENV.MIN_SHARE}: 2 is outside"):
        cold_start.get()
    monkeypatch.setenv(ENV.MIN_SHARE, "0.02")
    first = cold_start.get()
    monkeypatch.setenv(ENV.MIN_SHARE, "2")
    assert cold_start.get() is first and len(built) == 1


def test_tracing_is_a_no_op_outside_lambda() -> None:
    # powertools disables the Tracer without LAMBDA_TASK_ROOT (or with POWERTOOLS_TRACE_DISABLED=true):
    # the decorators run, nothing is sent to an X-Ray daemon.
    assert tracer.disabled
