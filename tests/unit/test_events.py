"""The detector's events: every fixture is recognised as its kind, every malformed one is refused clearly."""

from __future__ import annotations

import base64
import gzip
import json
import zlib

import pytest

from emulator.lambda_runtime import encode_awslogs
from floodgate.services import events as events_module
from floodgate.services.events import (
    AlarmShape,
    AlarmState,
    AlarmStateChange,
    ControlMessage,
    FlowLogDelivery,
    InvalidEvent,
    ManualRequest,
    parse_detector_event,
)
from tests.events import EVENTS_DIR, load, subscription_event


def test_the_stored_subscription_event_is_its_readable_sibling_encoded() -> None:
    assert load("subscription-flowlogs") == subscription_event("subscription-flowlogs")


def test_a_subscription_delivery_is_decoded_with_its_records_stream_and_newest_timestamp() -> None:
    delivery = parse_detector_event(load("subscription-flowlogs"))
    assert isinstance(delivery, FlowLogDelivery)
    document = load("subscription-flowlogs.decoded")
    assert delivery.log_group == "/floodgate/vpc-flow-logs"
    assert delivery.log_stream == "eni-0a1b2c3d4e5f60718-all"
    assert delivery.messages == tuple(e["message"] for e in document["logEvents"])
    assert delivery.latest_event_ms == max(e["timestamp"] for e in document["logEvents"])


def test_a_redelivered_batch_keeps_its_id_and_another_batch_gets_another() -> None:
    first = parse_detector_event(load("subscription-flowlogs"))
    again = parse_detector_event(load("subscription-flowlogs"))
    document = load("subscription-flowlogs.decoded")
    document["logEvents"] = document["logEvents"][:-1]
    other = parse_detector_event(encode_awslogs(document))
    assert isinstance(first, FlowLogDelivery) and isinstance(again, FlowLogDelivery)
    assert isinstance(other, FlowLogDelivery)
    assert first.delivery_id == again.delivery_id != other.delivery_id


def test_a_control_message_is_recognised_and_not_parsed() -> None:
    assert parse_detector_event(subscription_event("subscription-control")) == ControlMessage("")


@pytest.mark.parametrize(
    ("name", "state", "previous", "shape"),
    [
        ("alarm-eventbridge-alarm", AlarmState.ALARM, AlarmState.OK, AlarmShape.EVENTBRIDGE),
        ("alarm-eventbridge-ok", AlarmState.OK, AlarmState.ALARM, AlarmShape.EVENTBRIDGE),
        (
            "alarm-eventbridge-insufficient-data",
            AlarmState.INSUFFICIENT_DATA,
            AlarmState.ALARM,
            AlarmShape.EVENTBRIDGE,
        ),
        ("alarm-action-alarm", AlarmState.ALARM, AlarmState.OK, AlarmShape.ALARM_ACTION),
        ("alarm-action-ok", AlarmState.OK, AlarmState.ALARM, AlarmShape.ALARM_ACTION),
    ],
)
def test_both_alarm_shapes_give_the_same_state_change(
    name: str, state: AlarmState, previous: AlarmState, shape: AlarmShape
) -> None:
    change = parse_detector_event(load(name))
    assert isinstance(change, AlarmStateChange)
    assert (change.alarm_name, change.state, change.previous_state, change.shape) == (
        "Floodgate-early-warning",
        state,
        previous,
        shape,
    )
    assert change.correlation_id == "Floodgate-early-warning"
    assert change.reason
    assert change.changed_at is not None and 1_764_000_000 < change.changed_at < 1_764_010_000


@pytest.mark.parametrize(
    "name", ["manual-block", "manual-unblock", "manual-analyze", "manual-analyze-enforce", "manual-status"]
)
def test_manual_actions_are_passed_on_whole(name: str) -> None:
    assert parse_detector_event(load(name)) == ManualRequest(load(name))


MALFORMED = {
    "malformed-unknown-kind": "unrecognised event (top-level keys: Records)",
    "malformed-awslogs-not-base64": "awslogs.data is not valid base64",
    "malformed-awslogs-not-gzip": "awslogs.data is not gzip data",
    "malformed-awslogs-missing-data": "awslogs.data is missing",
    "malformed-alarm-bad-state": "detail.state.value is 'ON_FIRE'",
    "malformed-alarm-no-name": "alarmData.alarmName is missing",
    "malformed-alarm-wrong-source": "alarm state change from source 'my.app'",
}


@pytest.mark.parametrize(("name", "message"), sorted(MALFORMED.items()))
def test_malformed_events_are_refused_with_what_is_wrong(name: str, message: str) -> None:
    with pytest.raises(InvalidEvent, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_detector_event(load(name))


def test_every_malformed_fixture_is_covered() -> None:
    stored = {path.stem for path in EVENTS_DIR.glob("malformed-*.json")}
    manual = {name for name in stored if name.startswith("malformed-manual-")}
    assert stored - manual == set(MALFORMED)


def _gzip_b64(raw: bytes) -> dict[str, object]:
    return {"awslogs": {"data": base64.b64encode(gzip.compress(raw)).decode()}}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([1, 2], "expected a JSON object, got list"),
        ("status", "expected a JSON object, got str"),
        (_gzip_b64(b"{not json"), "awslogs.data does not hold a JSON document"),
        (_gzip_b64(b"[1, 2]"), "awslogs.data holds JSON that is not an object"),
        (
            encode_awslogs({"messageType": "DATA_MESSAGE", "logStream": "s"}),
            "awslogs.data.logGroup is missing",
        ),
        (encode_awslogs({"messageType": "PING", "logGroup": "g"}), "awslogs.data messageType is 'PING'"),
        (
            encode_awslogs(
                {"messageType": "DATA_MESSAGE", "logGroup": "g", "logStream": "s", "logEvents": []}
            ),
            "awslogs.data logEvents is missing, empty",
        ),
        (
            encode_awslogs(
                {
                    "messageType": "DATA_MESSAGE",
                    "logGroup": "g",
                    "logStream": "s",
                    "logEvents": [{"id": "1", "timestamp": "yesterday", "message": "x"}],
                }
            ),
            r"awslogs.data logEvents\[0\].timestamp is missing or not epoch milliseconds",
        ),
        (
            encode_awslogs(
                {
                    "messageType": "DATA_MESSAGE",
                    "logGroup": "g",
                    "logStream": "s",
                    "logEvents": [{"id": "1", "timestamp": 1, "message": None}],
                }
            ),
            r"awslogs.data logEvents\[0\].message is missing",
        ),
        ({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch"}, "alarm state change"),
    ],
)
def test_damaged_payloads_are_refused(event: object, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        parse_detector_event(event)


def test_truncated_gzip_is_refused() -> None:
    packed = gzip.compress(json.dumps(load("subscription-flowlogs.decoded")).encode())
    event = {"awslogs": {"data": base64.b64encode(packed[: len(packed) // 2]).decode()}}
    with pytest.raises(InvalidEvent, match="truncated"):
        parse_detector_event(event)


def test_a_decompression_bomb_stops_at_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "MAX_DECODED_BYTES", 1024)
    bomb = zlib.compress(b"[" + b" " * 100_000 + b"]")
    with pytest.raises(InvalidEvent, match="inflates past"):
        parse_detector_event({"awslogs": {"data": base64.b64encode(bomb).decode()}})


def test_an_unreadable_alarm_time_is_not_worth_failing_over() -> None:
    event = load("alarm-action-alarm")
    event["alarmData"]["state"]["timestamp"] = "sometime"
    change = parse_detector_event(event)
    assert isinstance(change, AlarmStateChange) and change.changed_at is None


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"id": "x", "timestamp": True, "message": "m"}, r"logEvents\[7777\].timestamp is missing"),
        ({"id": "x", "timestamp": -1, "message": "m"}, r"logEvents\[7777\].timestamp is missing"),
        ({"id": "x", "timestamp": 1}, r"logEvents\[7777\].message is missing"),
        ("just a string", r"logEvents\[7777\] is not an object"),
    ],
)
def test_one_bad_event_in_a_large_delivery_is_named(bad: object, error: str) -> None:
    events: list[object] = [{"id": str(n), "timestamp": 1000 + n, "message": f"m{n}"} for n in range(10_000)]
    events[7777] = bad
    document = {"messageType": "DATA_MESSAGE", "logGroup": "g", "logStream": "s", "logEvents": events}
    with pytest.raises(InvalidEvent, match=error):
        parse_detector_event(encode_awslogs(document))


def test_a_large_delivery_keeps_every_message_in_order_and_the_newest_timestamp() -> None:
    events = [{"id": str(n), "timestamp": 5000 - n % 77, "message": f"m{n}"} for n in range(10_000)]
    document = {"messageType": "DATA_MESSAGE", "logGroup": "g", "logStream": "s", "logEvents": events}
    delivery = parse_detector_event(encode_awslogs(document))
    assert isinstance(delivery, FlowLogDelivery)
    assert delivery.messages == tuple(f"m{n}" for n in range(10_000))
    assert delivery.latest_event_ms == 5000
