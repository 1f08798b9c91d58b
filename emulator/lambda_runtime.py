"""Acting as the Lambda service for functions deployed into the emulator (moto runs no Lambda code).

A `LocalFunction` invokes a deployed function's handler in this process, with that function's configuration
as read back from the emulator: its handler path and its environment. What the real service would deliver —
CloudWatch Logs subscription payloads, EventBridge alarm events — is built here in the shapes AWS sends.
The one liberty taken is the clock: a demo or test passes its own, so that half an hour can pass in a second.
"""

from __future__ import annotations

import base64
import gzip
import importlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emulator.deploy import DeployedFunction
from emulator.server import ACCOUNT_ID, Emulator
from floodgate.settings import Settings

Clock = Callable[[], float]


@dataclass
class LambdaContext:
    """The attributes powertools reads from the real context object."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LocalFunction:
    """One deployed function, invoked in-process with its deployed handler and environment.

    The handler module's service is built once, like at a cold start, from the deployed environment — with
    the caller's clock. The function's own output (structured logs, EMF metrics) goes to standard output,
    as in Lambda: the caller redirects it where it wants it.
    """

    def __init__(self, function: DeployedFunction, emulator: Emulator, clock: Clock) -> None:
        self.function = function
        self.environment = {**function.environment, **emulator.environment()}
        module_name, _, handler_name = function.handler.rpartition(".")
        with _environment(self.environment):
            self.module = importlib.import_module(module_name)
            self.handler = getattr(self.module, handler_name)
            self._install_service(Settings.from_env(os.environ), clock)

    def _install_service(self, settings: Settings, clock: Clock) -> None:
        # Each handler module keeps its service in a ColdStart holder built from the environment; the same
        # construction with an injected clock stands in for it.
        from floodgate.services.detection import DetectionService  # noqa: PLC0415 - after the env is set
        from floodgate.services.expiry import ExpiryService  # noqa: PLC0415
        from floodgate.services.wiring import Wiring  # noqa: PLC0415

        builders: dict[str, tuple[str, Callable[..., Any]]] = {
            "floodgate.handlers.detector": ("detector", DetectionService.from_settings),
            "floodgate.handlers.expirer": ("expirer", ExpiryService.from_settings),
        }
        holder_name, build = builders[self.module.__name__]
        getattr(self.module, holder_name).use(build(settings, Wiring(clock=clock)))
        replays = getattr(self.module, "replays", None)
        if replays is not None:  # the detector's replay of failed stream ranges: rebuilt at its first tick,
            replays.use(None)  # from this deployment's environment, not a previous one's

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        context = LambdaContext(
            function_name=self.function.name,
            invoked_function_arn=self.function.arn,
            memory_limit_in_mb=self.function.memory_mb,
        )
        with _environment(self.environment):
            result: dict[str, Any] = self.handler(event, context)
        return result


def subscription_document(
    lines: Iterable[str],
    *,
    log_group: str,
    log_stream: str,
    filter_name: str,
    timestamp_ms: int,
    batch: str | None = None,
    owner: str = ACCOUNT_ID,
) -> dict[str, Any]:
    """The decoded DATA_MESSAGE CloudWatch Logs delivers for `lines` of one log stream of account `owner`.
    Log event ids are unique across deliveries: `batch` (default: the timestamp) prefixes them."""
    prefix = batch or str(timestamp_ms)
    return {
        "messageType": "DATA_MESSAGE",
        "owner": owner,
        "logGroup": log_group,
        "logStream": log_stream,
        "subscriptionFilters": [filter_name],
        "logEvents": [
            {"id": f"{prefix}-{n:08d}", "timestamp": timestamp_ms, "message": line}
            for n, line in enumerate(lines)
        ],
    }


def encode_awslogs(document: Mapping[str, Any]) -> dict[str, Any]:
    """What a subscribed function receives: base64 of gzip of the JSON document (deterministic gzip)."""
    packed = gzip.compress(json.dumps(document).encode(), mtime=0)
    return {"awslogs": {"data": base64.b64encode(packed).decode()}}


def alarm_event(alarm: dict[str, Any], previous_state: str, now: float) -> dict[str, Any]:
    """What EventBridge delivers for an alarm's state change, from the alarm as `describe_alarms` shows it."""
    when = datetime.fromtimestamp(now, UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": ACCOUNT_ID,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": alarm["AlarmArn"].split(":")[3],
        "resources": [alarm["AlarmArn"]],
        "detail": {
            "alarmName": alarm["AlarmName"],
            "state": {
                "value": alarm["StateValue"],
                "reason": alarm.get("StateReason", ""),
                "reasonData": alarm.get("StateReasonData", "{}"),
                "timestamp": stamp,
            },
            "previousState": {"value": previous_state, "reason": "", "timestamp": stamp},
            "configuration": {
                "metrics": [
                    {
                        "id": "m1",
                        "metricStat": {
                            "metric": {
                                "namespace": alarm.get("Namespace", ""),
                                "name": alarm.get("MetricName", ""),
                                "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
                            },
                            "period": alarm.get("Period", 60),
                            "stat": alarm.get("Statistic", "Sum"),
                        },
                        "returnData": True,
                    }
                ]
            },
        },
    }


def event_pattern_matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge's matching of an event against a rule's pattern (moto does not implement TestEventPattern).

    Supports what rules commonly use: nested fields, lists of literal values, and the prefix, anything-but
    and exists operators. Any other operator raises, rather than answering wrongly.
    """
    for key, expected in pattern.items():
        present = key in event
        actual = event.get(key)
        if isinstance(expected, dict):
            if not isinstance(actual, dict) or not event_pattern_matches(expected, actual):
                return False
            continue
        values = actual if isinstance(actual, list) else [actual]
        if not any(_value_matches(rule, value, present) for rule in expected for value in values):
            return False
    return True


def _value_matches(rule: Any, value: Any, present: bool) -> bool:
    if not isinstance(rule, dict):
        return present and rule == value
    ((operator, operand),) = rule.items()
    if operator == "exists":
        return bool(operand) == present
    if operator == "prefix":
        return present and isinstance(value, str) and value.startswith(operand)
    if operator == "anything-but":
        excluded = operand if isinstance(operand, list) else [operand]
        return present and value not in excluded
    raise ValueError(f"event pattern operator {operator!r} is not supported by the local matcher")
