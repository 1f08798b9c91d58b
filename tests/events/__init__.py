"""Real-shaped detector and expirer events (the JSON files next to this module) and the helpers that build
CloudWatch Logs subscription payloads from flow-log lines.

Subscription payloads are stored decoded (`*.decoded.json`, readable); `subscription-flowlogs.json` is the
same delivery as Lambda receives it (`awslogs.data` = base64 of gzip), ready to paste into the console.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).parent
ACCOUNT = "123456789012"
LOG_GROUP = "/floodgate/vpc-flow-logs"


def load(name: str) -> dict[str, Any]:
    """The event stored as `name` (with or without .json)."""
    path = EVENTS_DIR / (name if name.endswith(".json") else f"{name}.json")
    event: dict[str, Any] = json.loads(path.read_text())
    return event


def encode_awslogs(document: Mapping[str, Any]) -> dict[str, Any]:
    """The event CloudWatch Logs sends for a decoded subscription document (deterministic gzip)."""
    packed = gzip.compress(json.dumps(document).encode(), mtime=0)
    return {"awslogs": {"data": base64.b64encode(packed).decode()}}


def subscription_event(name: str) -> dict[str, Any]:
    """The subscription event for the decoded document stored as `<name>.decoded.json`."""
    return encode_awslogs(load(f"{name}.decoded.json"))


def flow_log_document(
    lines: Iterable[str], *, interface: str, batch: str, timestamp_ms: int, log_group: str = LOG_GROUP
) -> dict[str, Any]:
    """A decoded DATA_MESSAGE delivering `lines` from one interface's log stream. `batch` makes the log event
    ids unique across deliveries (CloudWatch Logs ids are unique per event)."""
    return {
        "messageType": "DATA_MESSAGE",
        "owner": ACCOUNT,
        "logGroup": log_group,
        "logStream": f"{interface}-all",
        "subscriptionFilters": ["Floodgate-ToDetector"],
        "logEvents": [
            {"id": f"{batch}-{index:08d}", "timestamp": timestamp_ms, "message": line}
            for index, line in enumerate(lines)
        ],
    }


def flow_log_event(
    lines: Iterable[str], *, interface: str, batch: str, timestamp_ms: int, log_group: str = LOG_GROUP
) -> dict[str, Any]:
    return encode_awslogs(
        flow_log_document(
            lines, interface=interface, batch=batch, timestamp_ms=timestamp_ms, log_group=log_group
        )
    )


@dataclass
class LambdaContextStub:
    """What powertools reads from the Lambda context (tests invoke handlers in-process)."""

    function_name: str = "Floodgate-Detector"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:Floodgate-Detector"
    aws_request_id: str = "3f1b2c4d-0000-4a5b-8c7d-123456789abc"
    log_group_name: str = "/aws/lambda/Floodgate-Detector"
    log_stream_name: str = "2025/11/24/[$LATEST]0123456789abcdef"
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None
    remaining_ms: int = field(default=60_000)

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
