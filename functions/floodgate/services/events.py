"""The detector's kinds of event, recognised and validated before anything is read or written.

1. A CloudWatch Logs subscription delivery (VPC Flow Logs): `{"awslogs": {"data": base64(gzip(JSON))}}`.
2. A CloudWatch alarm state change, in either shape AWS sends it:
   - EventBridge: `{"source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change",
     "detail": {"alarmName", "state": {...}, "previousState": {...}}, "resources": [alarm ARN]}`
   - the alarm's own Lambda action: `{"source": "aws.cloudwatch", "alarmArn",
     "alarmData": {"alarmName", "state": {...}, "previousState": {...}}}`
3. A manual action (console test event, SSM runbook, CLI): any object with an `"action"` key. Its contract
   is validated by `services.manual`, which answers a bad payload with an error body instead of raising.
4. (`ingest: "kinesis"`) A batch of the flow-log stream from the event source mapping, with its tumbling
   window: `{"Records": [{"kinesis": {"data", "sequenceNumber", ...}, "eventSource": "aws:kinesis"}, ...],
   "window": {"start", "end"}, "state": {...}, "shardId", "isFinalInvokeForWindow", ...}`. Each record's
   data is the same base64 gzip document a subscription delivers; a record that is not one is reported
   with its sequence number, and never stops the rest of the batch.
5. (`ingest: "kinesis"`) The decision schedule's EventBridge "Scheduled Event".

Anything else raises InvalidEvent, whose message says what was wrong in a few words: it quotes no more
than a few dozen characters of any value, whatever its size (a 10 MB field, a 5,000-digit number, a structure
nested 100,000 deep), and nothing has been read or written. Texts that end up in the deny log or in DynamoDB
keys (log group and stream, alarm name) must be valid Unicode without control characters, within AWS's own
length limits. Pure: standard library only, so the handler imports it at no cost (the powertools data classes
package costs ~45 ms to import, and explicit checks give clearer errors than their KeyErrors).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from operator import itemgetter
from typing import Any

from floodgate.core.text import clean, has_surrogates, printable, shown

ALARM_DETAIL_TYPE = "CloudWatch Alarm State Change"
ALARM_SOURCE = "aws.cloudwatch"
DATA_MESSAGE = "DATA_MESSAGE"
CONTROL_MESSAGE = "CONTROL_MESSAGE"
# A delivery is one batch of log events as CloudWatch Logs takes them in: at most 10,000 events and 1 MB of
# messages, i.e. ~2.5 MB of JSON with ids and timestamps. Twice that is allowed for; a larger document is not
# a delivery CloudWatch Logs made, and inflating or parsing it would only burn memory (a 0.25 MB payload of
# tiny events inflates to over a million of them). Both caps are checked before JSON parsing.
MAX_DATA_CHARS = 1_400_000  # base64 of the 1 MB async invocation payload limit
MAX_DECODED_BYTES = 6 << 20
MAX_LOG_EVENTS = 20_000
MAX_NAME_CHARS = 512  # log group and log stream names
MAX_ALARM_NAME_CHARS = 255  # CloudWatch's limit
MAX_REASON_CHARS = 1023  # CloudWatch's limit on a state reason; what is kept beyond it is cut
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant a datetime holds
KINESIS_SOURCE = "aws:kinesis"
SCHEDULE_SOURCE = "aws.events"
SCHEDULED_DETAIL_TYPE = "Scheduled Event"
MAX_STREAM_RECORDS = 10_000  # the mapping's largest batch
_SHARD = re.compile(r"shardId-\d{12}")
_SEQUENCE = re.compile(r"\d{1,128}")
_ACCOUNT = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


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
    # The account whose log group sent it (the payload's `owner`), "" when it names none: what the security
    # account keeps members' windows apart by.
    owner: str = ""

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
    account: str | None = None  # the alarm's account and region, as the event states them
    region: str | None = None

    @property
    def correlation_id(self) -> str:
        """What ties the logs of this alarm's invocations together."""
        return self.alarm_name


@dataclass(frozen=True, slots=True)
class Home:
    """Where the function runs: only alarms of this account and region may arm it."""

    account: str
    region: str

    @classmethod
    def of_function(cls, function_arn: str) -> Home | None:
        """From the invoked function's ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME), if it is one."""
        parts = function_arn.split(":")
        if len(parts) < 7 or parts[2] != "lambda":
            return None
        return cls(account=parts[4], region=parts[3])


@dataclass(frozen=True, slots=True)
class ManualRequest:
    """A manual action's payload, validated later by `floodgate.services.manual`."""

    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One record of the flow-log stream: the delivery it holds, or why it holds none."""

    sequence_number: str
    delivery: FlowLogDelivery | ControlMessage | None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class StreamBatch:
    """One invocation by the Kinesis event source mapping: a shard's records and its tumbling window."""

    shard_id: str
    records: tuple[StreamRecord, ...]
    window_start: str
    state: Mapping[str, str]  # what the previous invocation of this window returned
    final: bool  # the window's last invocation: what the state holds must be stored now


@dataclass(frozen=True, slots=True)
class ScheduledDecision:
    """The decision schedule's tick. `lease_s`: how long this invocation may hold the decision lease (the
    handler sets it from the time Lambda leaves the invocation)."""

    rule: str
    lease_s: float = 60.0


DetectorEvent = (
    FlowLogDelivery | ControlMessage | AlarmStateChange | ManualRequest | StreamBatch | ScheduledDecision
)


def parse_detector_event(event: object) -> DetectorEvent:
    """What the detector was invoked with. Raises InvalidEvent for anything it does not know how to handle."""
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"expected a JSON object, got {type(event).__name__}")
    if "awslogs" in event:
        return _subscription(event["awslogs"])
    if event.get("source") == ALARM_SOURCE and "alarmData" in event:
        account, region = _home(event, "accountId", event.get("alarmArn"))
        return _alarm(event["alarmData"], AlarmShape.ALARM_ACTION, "alarmData", account, region)
    if event.get("detail-type") == ALARM_DETAIL_TYPE:
        if event.get("source") != ALARM_SOURCE:
            raise InvalidEvent(
                f"alarm state change from source {shown(event.get('source'))}, not {ALARM_SOURCE}"
            )
        resources = event.get("resources")
        arn = resources[0] if isinstance(resources, list) and resources else None
        account, region = _home(event, "account", arn)
        return _alarm(event.get("detail"), AlarmShape.EVENTBRIDGE, "detail", account, region)
    if "action" in event:
        return ManualRequest(event)
    if "Records" in event and ("shardId" in event or _kinesis_records(event["Records"])):
        return _stream_batch(event)
    if event.get("detail-type") == SCHEDULED_DETAIL_TYPE and event.get("source") == SCHEDULE_SOURCE:
        resources = event.get("resources")
        rule = resources[0] if isinstance(resources, list) and resources else ""
        return ScheduledDecision(clean(rule[:MAX_NAME_CHARS]) if isinstance(rule, str) else "")
    keys = ", ".join(sorted(printable(str(k)[:40]) for k in event)[:8]) or "none"
    raise InvalidEvent(
        f"unrecognised event (top-level keys: {keys}); expected a CloudWatch Logs subscription (awslogs), "
        f'a CloudWatch alarm state change, or a manual action such as {{"action": "status"}}'
    )


# -- Kinesis stream ------------------------------------------------------------------------------------


def _kinesis_records(records: object) -> bool:
    return (
        isinstance(records, list)
        and bool(records)
        and isinstance(records[0], Mapping)
        and records[0].get("eventSource") == KINESIS_SOURCE
    )


def _stream_batch(event: Mapping[str, Any]) -> StreamBatch:
    records = event["Records"]
    if not isinstance(records, list) or len(records) > MAX_STREAM_RECORDS:
        raise InvalidEvent(f"Records is not a list of at most {MAX_STREAM_RECORDS} stream records")
    shard = event.get("shardId")
    parsed = [_stream_record(record, f"Records[{n}]") for n, record in enumerate(records)]
    if not isinstance(shard, str):
        # Without a tumbling window the shard is only in each record's eventID ("shardId-…:sequence").
        first = records[0].get("eventID") if records else None
        shard = first.partition(":")[0] if isinstance(first, str) else None
    if not isinstance(shard, str) or not _SHARD.fullmatch(shard):
        raise InvalidEvent(f"shardId is not a shard id: {shown(shard)}")
    window = event.get("window")
    start = window.get("start") if isinstance(window, Mapping) else ""
    if not isinstance(start, str) or len(start) > 40:
        raise InvalidEvent(f"window.start is not a time: {shown(start)}")
    state = event.get("state") or {}
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str | int | float) for key, value in state.items()
    ):
        raise InvalidEvent("state is not an object of texts (the tumbling window's state)")
    final = event.get("isFinalInvokeForWindow", False)
    if not isinstance(final, bool):
        raise InvalidEvent(f"isFinalInvokeForWindow is not true or false: {shown(final)}")
    return StreamBatch(
        shard_id=shard,
        records=tuple(parsed),
        window_start=start,
        state={key: str(value) for key, value in state.items()},
        final=final,
    )


def _stream_record(record: object, where: str) -> StreamRecord:
    """A record's envelope must be the mapping's; its data may be anything, reported as a problem."""
    if not isinstance(record, Mapping) or record.get("eventSource") != KINESIS_SOURCE:
        raise InvalidEvent(f"{where} is not a Kinesis stream record")
    kinesis = record.get("kinesis")
    if not isinstance(kinesis, Mapping):
        raise InvalidEvent(f"{where}.kinesis is missing")
    sequence = kinesis.get("sequenceNumber")
    if not isinstance(sequence, str) or not _SEQUENCE.fullmatch(sequence):
        raise InvalidEvent(f"{where}.kinesis.sequenceNumber is not a sequence number: {shown(sequence)}")
    try:
        delivery = _subscription({"data": kinesis.get("data")})
    except InvalidEvent as exc:
        return StreamRecord(sequence, None, str(exc).replace("awslogs.data", "data"))
    return StreamRecord(sequence, delivery)


# -- CloudWatch Logs subscription ----------------------------------------------------------------------


def _subscription(awslogs: object) -> FlowLogDelivery | ControlMessage:
    document = _decode_awslogs(awslogs)
    message_type = document.get("messageType")
    if message_type == CONTROL_MESSAGE:
        group = document.get("logGroup")  # CloudWatch Logs leaves it empty; only echoed back
        return ControlMessage(clean(group[:MAX_NAME_CHARS]) if isinstance(group, str) else "")
    if message_type != DATA_MESSAGE:
        raise InvalidEvent(f"awslogs.data messageType is {shown(message_type)}, not {DATA_MESSAGE}")
    log_group = _text(document, "logGroup", "awslogs.data", MAX_NAME_CHARS)
    log_stream = _text(document, "logStream", "awslogs.data", MAX_NAME_CHARS)
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
        owner=owner if isinstance(owner := document.get("owner"), str) and _ACCOUNT.fullmatch(owner) else "",
    )


def _messages(events: list[Any]) -> tuple[list[str], int]:
    """The log events' messages and the newest timestamp. Checked column by column at C speed (a delivery
    holds up to 10,000 events); only a delivery that fails is walked event by event, to name the bad one."""
    try:
        messages = list(map(itemgetter("message"), events))
        stamps = list(map(itemgetter("timestamp"), events))
        ids = list(map(itemgetter("id"), events))
    except (KeyError, TypeError, IndexError):
        pass
    else:  # exact types: a bool is no timestamp; any surrogate makes the joined ids unencodable too
        if (
            set(map(type, messages)) == {str}
            and set(map(type, stamps)) == {int}
            and set(map(type, ids)) == {str}
            and min(stamps) >= 0
            and max(stamps) <= MAX_EPOCH_MS
            and max(map(len, ids)) <= MAX_NAME_CHARS
            and not has_surrogates("".join(ids))
        ):
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
        if (
            not isinstance(timestamp, int)
            or isinstance(timestamp, bool)
            or not 0 <= timestamp <= MAX_EPOCH_MS
        ):
            raise InvalidEvent(f"{where}.timestamp is missing or not epoch milliseconds")
        event_id = item.get("id", "")
        if not isinstance(event_id, str) or len(event_id) > MAX_NAME_CHARS or has_surrogates(event_id):
            raise InvalidEvent(f"{where}.id is not an event id: {shown(event_id)}")
        messages.append(message)
        latest_ms = max(latest_ms, timestamp)
    return messages, latest_ms


def _decode_awslogs(awslogs: object) -> Mapping[str, Any]:
    """The JSON document inside awslogs.data (base64 of gzip)."""
    if not isinstance(awslogs, Mapping) or not isinstance(awslogs.get("data"), str):
        raise InvalidEvent("awslogs.data is missing or not a string")
    if len(awslogs["data"]) > MAX_DATA_CHARS:
        raise InvalidEvent(
            f"awslogs.data is {len(awslogs['data'])} characters, more than an invocation holds"
        )
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
    # Every log event has exactly one "timestamp" key, and a quote inside a message is escaped: counting
    # the key bounds the events before the parser builds an object for each.
    if raw.count(b'"timestamp"') > MAX_LOG_EVENTS:
        raise InvalidEvent(f"awslogs.data holds more than {MAX_LOG_EVENTS} log events")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError also covers integers past Python's digit limit; RecursionError, absurd nesting.
        raise InvalidEvent("awslogs.data does not hold a JSON document") from None
    if not isinstance(document, Mapping):
        raise InvalidEvent("awslogs.data holds JSON that is not an object")
    return document


def _delivery_id(log_group: str, log_stream: str, events: list[Any]) -> str:
    """Stable for one batch: log event ids are unique, so the first, last and count pin the batch down."""
    first, last = events[0].get("id", ""), events[-1].get("id", "")
    text = f"{log_group}\n{log_stream}\n{first}\n{last}\n{len(events)}\n{events[-1]['timestamp']}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]  # every part was checked to be valid Unicode


# -- CloudWatch alarm state change ---------------------------------------------------------------------


def _home(event: Mapping[str, Any], account_key: str, arn: object) -> tuple[str | None, str | None]:
    """The account and region an alarm event says it comes from: its own fields, else the alarm's ARN
    (arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME). Values of the wrong shape are refused."""
    parts = arn.split(":", 5) if isinstance(arn, str) and arn.startswith("arn:") else []
    account = event.get(account_key, parts[4] if len(parts) > 4 else None)
    region = event.get("region", parts[3] if len(parts) > 3 else None)
    if account is not None and not (isinstance(account, str) and _ACCOUNT.fullmatch(account)):
        raise InvalidEvent(f"{account_key} is not an AWS account id: {shown(account)}")
    if region is not None and not (isinstance(region, str) and _REGION.fullmatch(region)):
        raise InvalidEvent(f"region is not an AWS region: {shown(region)}")
    return account, region


def _alarm(
    data: object, shape: AlarmShape, where: str, account: str | None = None, region: str | None = None
) -> AlarmStateChange:
    if not isinstance(data, Mapping):
        raise InvalidEvent(f"alarm state change without an object in {where}")
    name = _text(data, "alarmName", where, MAX_ALARM_NAME_CHARS)
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
        # Kept with the arming and shown by `status`: printable, and no longer than CloudWatch makes it.
        reason=clean(reason[: MAX_REASON_CHARS + 1])[:MAX_REASON_CHARS] if isinstance(reason, str) else "",
        changed_at=_epoch(state.get("timestamp")),
        shape=shape,
        account=account,
        region=region,
    )


def _alarm_state(value: object, where: str) -> AlarmState:
    if isinstance(value, str) and value in AlarmState.__members__:
        return AlarmState(value)
    raise InvalidEvent(f"{where} is {shown(value)}, expected one of {', '.join(AlarmState)}")


def _epoch(text: object) -> float | None:
    """CloudWatch writes "2019-10-02T17:04:40.985+0000"; an unreadable time is not worth failing over."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _text(data: Mapping[str, Any], key: str, where: str, longest: int) -> str:
    """A name AWS gave: present, at most `longest` characters, valid Unicode without control characters."""
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(f"{where}.{key} is missing or empty")
    if len(value) > longest:
        raise InvalidEvent(f"{where}.{key} is {len(value)} characters, more than the {longest} AWS allows")
    if has_surrogates(value) or clean(value) != value:
        raise InvalidEvent(f"{where}.{key} holds control characters or invalid Unicode: {shown(value)}")
    return value
