"""Real-shaped detector and expirer events (the JSON files next to this module) and the helpers that build
CloudWatch Logs subscription payloads from flow-log lines.

Subscription payloads are stored decoded (`*.decoded.json`, readable); `subscription-flowlogs.json` is the
same delivery as Lambda receives it (`awslogs.data` = base64 of gzip), ready to paste into the console.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from emulator.lambda_runtime import LambdaContext, encode_awslogs, subscription_document

EVENTS_DIR = Path(__file__).parent
ACCOUNT = "123456789012"
LOG_GROUP = "/floodgate/vpc-flow-logs"


def load(name: str) -> dict[str, Any]:
    """The event stored as `name` (with or without .json)."""
    path = EVENTS_DIR / (name if name.endswith(".json") else f"{name}.json")
    event: dict[str, Any] = json.loads(path.read_text())
    return event


def subscription_event(name: str) -> dict[str, Any]:
    """The subscription event for the decoded document stored as `<name>.decoded.json`."""
    return encode_awslogs(load(f"{name}.decoded.json"))


def flow_log_document(
    lines: Iterable[str], *, interface: str, batch: str, timestamp_ms: int, log_group: str = LOG_GROUP
) -> dict[str, Any]:
    """A decoded DATA_MESSAGE delivering `lines` from one interface's log stream. `batch` makes the log event
    ids unique across deliveries (CloudWatch Logs ids are unique per event)."""
    return subscription_document(
        lines,
        log_group=log_group,
        log_stream=f"{interface}-all",
        filter_name="Floodgate-ToDetector",
        timestamp_ms=timestamp_ms,
        batch=batch,
    )


def flow_log_event(
    lines: Iterable[str], *, interface: str, batch: str, timestamp_ms: int, log_group: str = LOG_GROUP
) -> dict[str, Any]:
    return encode_awslogs(
        flow_log_document(
            lines, interface=interface, batch=batch, timestamp_ms=timestamp_ms, log_group=log_group
        )
    )


# What powertools reads from the Lambda context, with fixed values a test can assert on.
LambdaContextStub = partial(
    LambdaContext,
    function_name="Floodgate-Detector",
    invoked_function_arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:Floodgate-Detector",
    memory_limit_in_mb=512,
    aws_request_id="3f1b2c4d-0000-4a5b-8c7d-123456789abc",
    log_group_name="/aws/lambda/Floodgate-Detector",
    log_stream_name="2025/11/24/[$LATEST]0123456789abcdef",
)
