"""Reading the failure queue's invocation records (pure): what can be replayed, what stays, and why."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from floodgate.services.replay import (
    DETECTOR,
    EXPIRER,
    FailedInvocation,
    LeftInQueue,
    function_name,
    read_record,
)
from tests.events import load

FUNCTIONS = {"Floodgate-Detector": DETECTOR, "Floodgate-Expirer": EXPIRER}


def record(
    payload: Any, *, arn: str = "arn:aws:lambda:us-east-1:123456789012:function:Floodgate-Detector"
) -> str:
    stored = load("failed-invocation-flowlogs")
    stored["requestContext"]["functionArn"] = arn
    stored["requestPayload"] = payload
    return json.dumps(stored)


def test_a_failed_flow_log_delivery_is_read_with_its_age_kind_and_size() -> None:
    body = json.dumps(load("failed-invocation-flowlogs"))
    failed = read_record("m-1", body, FUNCTIONS)
    assert isinstance(failed, FailedInvocation)
    original = load("subscription-flowlogs")
    assert failed.payload == original
    assert (failed.function, failed.role, failed.kind) == ("Floodgate-Detector", DETECTOR, "flow-logs")
    assert (failed.condition, failed.attempts) == ("RetriesExhausted", 3)
    assert failed.failed_at == datetime(2025, 11, 24, 16, 41, 7, 318000, tzinfo=UTC).timestamp()
    # The size is the event's compact JSON: what the redelivery sends.
    assert failed.size == len(json.dumps(original, separators=(",", ":")))
    assert failed.as_dict(now=failed.failed_at + 90)["age_s"] == 90.0


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (load("alarm-eventbridge-alarm"), "alarm"),
        (load("manual-block"), "manual"),
        (load("alarm-action-alarm"), "alarm"),
    ],
)
def test_each_detector_event_kind_is_named(payload: dict[str, Any], kind: str) -> None:
    failed = read_record("m", record(payload), FUNCTIONS)
    assert isinstance(failed, FailedInvocation) and failed.kind == kind


def test_an_expirer_run_is_replayable_to_the_expirer() -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:Floodgate-Expirer:$LATEST"
    failed = read_record("m", record(load("scheduled-event"), arn=arn), FUNCTIONS)
    assert isinstance(failed, FailedInvocation)
    assert (failed.function, failed.role, failed.kind) == ("Floodgate-Expirer", EXPIRER, "schedule")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("{not json", "not JSON"),
        (json.dumps(["a", "list"]), "no requestContext.functionArn"),
        (json.dumps({"requestContext": {"functionArn": 7}, "requestPayload": {}}), "no requestContext"),
        (
            json.dumps({"requestContext": {"functionArn": "Floodgate-Detector"}}),
            "no requestPayload event object",
        ),
        (record("just text"), "no requestPayload event object"),
        (
            record({}, arn="arn:aws:lambda:us-east-1:123456789012:function:SomeoneElses"),
            "for function 'SomeoneElses', not this deployment's detector or expirer",
        ),
        (record(load("malformed-unknown-kind")), "the detector would refuse it again"),
        (record(load("malformed-awslogs-not-gzip")), "the detector would refuse it again"),
    ],
)
def test_what_cannot_be_replayed_is_left_with_the_reason(body: str, why: str) -> None:
    left = read_record("m-9", body, FUNCTIONS)
    assert isinstance(left, LeftInQueue)
    assert left.message_id == "m-9" and why in left.why


@pytest.mark.parametrize(
    ("arn", "name"),
    [
        ("arn:aws:lambda:us-east-1:123456789012:function:Floodgate-Detector", "Floodgate-Detector"),
        ("arn:aws:lambda:us-east-1:123456789012:function:Floodgate-Detector:$LATEST", "Floodgate-Detector"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:fn:live", "fn"),
        ("Floodgate-Detector", "Floodgate-Detector"),
    ],
)
def test_the_function_name_leaves_out_the_qualifier(arn: str, name: str) -> None:
    assert function_name(arn) == name
