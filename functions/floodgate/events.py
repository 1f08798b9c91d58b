"""The detector's three kinds of event, recognised and validated before anything is read or written.

1. A CloudWatch Logs subscription delivery (VPC Flow Logs): `{"awslogs": {"data": base64(gzip(JSON))}}`.
2. A CloudWatch alarm state change, in either shape AWS sends it:
   - EventBridge: `{"source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change",
     "detail": {"alarmName", "state": {...}, "previousState": {...}}, "resources": [alarm ARN]}`
   - the alarm's own Lambda action: `{"source": "aws.cloudwatch", "alarmArn",
     "alarmData": {"alarmName", "state": {...}, "previousState": {...}}}`
3. A manual action (console test event, SSM runbook, CLI): any object with an `"action"` key. Its contract
   is validated by `floodgate.manual`, which answers a bad payload with an error body instead of raising.

Anything else raises InvalidEvent, whose message says what was wrong. Pure: standard library only, so the
handler imports it at no cost (the powertools data classes package costs ~45 ms to import, and explicit
checks give clearer errors than their KeyErrors).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from operator import itemgetter
from typing import Any

ALARM_DETAIL_TYPE = "CloudWatch Alarm State Change"
ALARM_SOURCE = "aws.cloudwatch"
DATA_MESSAGE = "DATA_MESSAGE"
CONTROL_MESSAGE = "CONTROL_MESSAGE"
# The async invocation payload is at most 1 MB of base64; gzip of flow-log text rarely beats 20:1. A larger
# result is not a delivery CloudWatch Logs made, and decompressing it further only burns memory.
MAX_DECODED_BYTES = 64 << 20


class InvalidEvent(ValueError):
    """The event is of no known kind, or of a known kind but malformed. Nothing has been read or written."""


class AlarmState(StrEnum):
    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


class AlarmShape(StrEnum):
    EVENTBRIDGE = "eventbridge"
    ALARM_ACTION = "alarm-action"


@dataclass(frozen=True, slots=True)
class FlowLogDelivery:
    """One subscription delivery: flow-log records of one log stream (one network interface)."""

    log_group: str
    log_stream: str
    messages: tuple[str, ...]
    delivery_id: str  # the same for a redelivery of the same batch (Lambda's async retries)
    latest_event_ms: int  # the newest log event's timestamp

    @property
    def stream_path(self) -> str:
        """Where the batch came from: log group and stream (the stream is named after the interface)."""
        return f"{self.log_group}/{self.log_stream}"


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """CloudWatch Logs checking that the destination is reachable: acknowledged, never parsed."""

    log_group: str


@dataclass(frozen=True, slots=True)
class AlarmStateChange:
    alarm_name: str
    state: AlarmState
    previous_state: AlarmState | None
    reason: str
    changed_at: float | None  # epoch seconds of the state change, when the event carries a readable one
    shape: AlarmShape

    @property
    def correlation_id(self) -> str:
        """What ties the logs of this alarm's invocations together."""
        return self.alarm_name


@dataclass(frozen=True, slots=True)
class ManualRequest:
    """A manual action's payload, validated later by `floodgate.manual`."""

    payload: Mapping[str, Any]


DetectorEvent = FlowLogDelivery | ControlMessage | AlarmStateChange | ManualRequest


def parse_detector_event(event: object) -> DetectorEvent:
    """What the detector was invoked with. Raises InvalidEvent for anything it does not know how to handle."""
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"expected a JSON object, got {type(event).__name__}")
    if "awslogs" in event:
        return _subscription(event["awslogs"])
    if event.get("source") == ALARM_SOURCE and "alarmData" in event:
        return _alarm(event["alarmData"], AlarmShape.ALARM_ACTION, "alarmData")
    if event.get("detail-type") == ALARM_DETAIL_TYPE:
        if event.get("source") != ALARM_SOURCE:
            raise InvalidEvent(f"alarm state change from source {event.get('source')!r}, not {ALARM_SOURCE}")
        return _alarm(event.get("detail"), AlarmShape.EVENTBRIDGE, "detail")
    if "action" in event:
        return ManualRequest(event)
    keys = ", ".join(sorted(str(k) for k in event)[:8]) or "none"
    raise InvalidEvent(
        f"unrecognised event (top-level keys: {keys}); expected a CloudWatch Logs subscription (awslogs), "
        f'a CloudWatch alarm state change, or a manual action such as {{"action": "status"}}'
    )


# -- CloudWatch Logs subscription ----------------------------------------------------------------------


def _subscription(awslogs: object) -> FlowLogDelivery | ControlMessage:
    document = _decode_awslogs(awslogs)
    message_type = document.get("messageType")
    if message_type == CONTROL_MESSAGE:
        return ControlMessage(str(document.get("logGroup") or ""))  # CloudWatch Logs leaves it empty
    if message_type != DATA_MESSAGE:
        raise InvalidEvent(f"awslogs.data messageType is {message_type!r}, not {DATA_MESSAGE}")
    log_group = _text(document, "logGroup", "awslogs.data")
    log_stream = _text(document, "logStream", "awslogs.data")
    events = document.get("logEvents")
    if not isinstance(events, list) or not events:
        raise InvalidEvent("awslogs.data logEvents is missing, empty or not a list")
    messages, latest_ms = _messages(events)
    return FlowLogDelivery(
        log_group=log_group,
        log_stream=log_stream,
        messages=tuple(messages),
        delivery_id=_delivery_id(log_group, log_stream, events),
        latest_event_ms=latest_ms,
    )


def _messages(events: list[Any]) -> tuple[list[str], int]:
    """The log events' messages and the newest timestamp. Checked column by column at C speed (a delivery
    holds up to 10,000 events); only a delivery that fails is walked event by event, to name the bad one."""
    try:
        messages = list(map(itemgetter("message"), events))
        stamps = list(map(itemgetter("timestamp"), events))
    except (KeyError, TypeError, IndexError):
        pass
    else:  # exact types: a bool is no timestamp
        if set(map(type, messages)) == {str} and set(map(type, stamps)) == {int} and min(stamps) >= 0:
            return messages, max(stamps)
    messages = []
    latest_ms = 0
    for position, item in enumerate(events):
        where = f"awslogs.data logEvents[{position}]"
        if not isinstance(item, Mapping):
            raise InvalidEvent(f"{where} is not an object")
        message, timestamp = item.get("message"), item.get("timestamp")
        if not isinstance(message, str):
            raise InvalidEvent(f"{where}.message is missing or not a string")
        if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
            raise InvalidEvent(f"{where}.timestamp is missing or not epoch milliseconds")
        messages.append(message)
        latest_ms = max(latest_ms, timestamp)
    return messages, latest_ms


def _decode_awslogs(awslogs: object) -> Mapping[str, Any]:
    """The JSON document inside awslogs.data (base64 of gzip)."""
    if not isinstance(awslogs, Mapping) or not isinstance(awslogs.get("data"), str):
        raise InvalidEvent("awslogs.data is missing or not a string")
    try:
        compressed = base64.b64decode(awslogs["data"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEvent("awslogs.data is not valid base64") from None
    try:
        # wbits 32 + MAX_WBITS: accept the gzip header CloudWatch Logs writes (and zlib, harmlessly).
        inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)
        raw = inflater.decompress(compressed, MAX_DECODED_BYTES)
    except zlib.error:
        raise InvalidEvent("awslogs.data is not gzip data") from None
    if inflater.unconsumed_tail:
        raise InvalidEvent(f"awslogs.data inflates past {MAX_DECODED_BYTES >> 20} MB")
    if not inflater.eof:
        raise InvalidEvent("awslogs.data is truncated gzip data")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidEvent("awslogs.data does not hold a JSON document") from None
    if not isinstance(document, Mapping):
        raise InvalidEvent("awslogs.data holds JSON that is not an object")
    return document


def _delivery_id(log_group: str, log_stream: str, events: list[Any]) -> str:
    """Stable for one batch: log event ids are unique, so the first, last and count pin the batch down."""
    first, last = events[0].get("id", ""), events[-1].get("id", "")
    text = f"{log_group}\n{log_stream}\n{first}\n{last}\n{len(events)}\n{events[-1]['timestamp']}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# -- CloudWatch alarm state change ---------------------------------------------------------------------


def _alarm(data: object, shape: AlarmShape, where: str) -> AlarmStateChange:
    if not isinstance(data, Mapping):
        raise InvalidEvent(f"alarm state change without an object in {where}")
    name = _text(data, "alarmName", where)
    state = data.get("state")
    if not isinstance(state, Mapping):
        raise InvalidEvent(f"{where}.state is missing or not an object")
    value = _alarm_state(state.get("value"), f"{where}.state.value")
    previous = data.get("previousState")
    previous_value = None
    if isinstance(previous, Mapping) and previous.get("value") is not None:
        previous_value = _alarm_state(previous.get("value"), f"{where}.previousState.value")
    reason = state.get("reason")
    return AlarmStateChange(
        alarm_name=name,
        state=value,
        previous_state=previous_value,
        reason=reason if isinstance(reason, str) else "",
        changed_at=_epoch(state.get("timestamp")),
        shape=shape,
    )


def _alarm_state(value: object, where: str) -> AlarmState:
    try:
        return AlarmState(str(value))
    except ValueError:
        allowed = ", ".join(AlarmState)
        raise InvalidEvent(f"{where} is {value!r}, expected one of {allowed}") from None


def _epoch(text: object) -> float | None:
    """CloudWatch writes "2019-10-02T17:04:40.985+0000"; an unreadable time is not worth failing over."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(f"{where}.{key} is missing or empty")
    return value
