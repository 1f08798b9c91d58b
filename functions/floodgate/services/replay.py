"""`floodgate replay`: events Lambda gave up on, from the failure queue back to the function they are for.

Each message is an invocation record of a Lambda asynchronous destination:
  {"version": "1.0", "timestamp": "<ISO 8601>",
   "requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
   "requestPayload": <the original event>, "responseContext": {...}, "responsePayload": {...}}
`condition` is RetriesExhausted (the function failed), EventAgeExceeded or RetriesExhausted after throttling
(it never ran in time).

A message is deleted only after its event's redelivery was accepted. What cannot be replayed stays in the
queue, reported with the reason: a body that is not such a record, a function that is not this
deployment's detector or expirer (the queue could be sent anything), or a detector event it would refuse
again (`parse_detector_event`). Redelivering is safe: a flow-log batch keeps its delivery id, and the window
stores a delivery once (`adapters.window`); an alarm state change older than its arming is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from floodgate.adapters.failure_queue import FailureQueue, QueuedMessage
from floodgate.services.events import (
    AlarmStateChange,
    ControlMessage,
    FlowLogDelivery,
    InvalidEvent,
    ManualRequest,
    parse_detector_event,
)

# How long a message stays hidden while a replay handles it; left-over ones are released at the end.
HIDE_S = 120
DETECTOR, EXPIRER = "detector", "expirer"

Redeliver = Callable[[str, Mapping[str, Any]], None]  # (function name, event); raises when not accepted


@dataclass(frozen=True, slots=True)
class FailedInvocation:
    """One invocation record, read."""

    message_id: str
    function: str  # the function's name (from the record's ARN, without a qualifier)
    role: str  # DETECTOR or EXPIRER
    kind: str  # flow-logs, alarm, manual, control, schedule
    condition: str
    attempts: int | None
    failed_at: float | None  # the record's timestamp
    size: int  # bytes of the original event as JSON
    payload: Mapping[str, Any]

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "function": self.function,
            "kind": self.kind,
            "condition": self.condition,
            "attempts": self.attempts,
            "age_s": None if self.failed_at is None else round(now - self.failed_at, 1),
            "size": self.size,
        }


@dataclass(frozen=True, slots=True)
class LeftInQueue:
    message_id: str
    why: str


@dataclass
class ReplayReport:
    dry_run: bool
    replayed: list[FailedInvocation] = field(default_factory=list)  # redelivered and deleted
    would_replay: list[FailedInvocation] = field(default_factory=list)  # a dry run's list
    left: list[LeftInQueue] = field(default_factory=list)  # not replayable, or not accepted: still queued

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "replayed": [f.as_dict(now) for f in self.replayed],
            "would_replay": [f.as_dict(now) for f in self.would_replay],
            "left": [{"message_id": m.message_id, "why": m.why} for m in self.left],
        }


def read_record(message_id: str, body: str, functions: Mapping[str, str]) -> FailedInvocation | LeftInQueue:
    """The invocation record in `body`, or why it cannot be replayed. `functions` maps this deployment's
    function names to their role (DETECTOR, EXPIRER)."""
    envelope = _envelope(body)
    if isinstance(envelope, str):
        return LeftInQueue(message_id, envelope)
    record, context, payload = envelope
    function = function_name(context["functionArn"])
    role = functions.get(function)
    if role is None:
        return LeftInQueue(
            message_id, f"for function {function[:80]!r}, not this deployment's detector or expirer"
        )
    kind = "schedule"
    if role == DETECTOR:
        try:
            kind = _kind(parse_detector_event(payload))
        except InvalidEvent as exc:
            return LeftInQueue(message_id, f"the detector would refuse it again: {exc}")
    attempts = context.get("approximateInvokeCount")
    return FailedInvocation(
        message_id=message_id,
        function=function,
        role=role,
        kind=kind,
        condition=str(context.get("condition") or "?"),
        attempts=attempts if isinstance(attempts, int) else None,
        failed_at=_epoch(record.get("timestamp")),
        size=len(json.dumps(payload, separators=(",", ":")).encode()),
        payload=payload,
    )


def _envelope(body: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | str:
    """(record, requestContext, requestPayload) of an invocation record, or what is wrong with it."""
    try:
        record = json.loads(body)
    except ValueError:
        return "not JSON: not a Lambda invocation record"
    context = record.get("requestContext") if isinstance(record, dict) else None
    if not isinstance(context, dict) or not isinstance(context.get("functionArn"), str):
        return "no requestContext.functionArn: not a Lambda invocation record"
    payload = record.get("requestPayload")
    if not isinstance(payload, dict):
        return "no requestPayload event object: nothing to replay"
    return record, context, payload


def function_name(arn: str) -> str:
    """arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] -> NAME (a bare name stays as it is)."""
    parts = arn.split(":")
    return parts[6] if len(parts) >= 7 and parts[5] == "function" else arn


def replay(
    queue: FailureQueue,
    redeliver: Redeliver,
    *,
    functions: Mapping[str, str],
    dry_run: bool,
    limit: int | None = None,
) -> ReplayReport:
    """Redeliver up to `limit` failed invocations (all: None) and delete each one accepted; a dry run lists
    them. Every message received and not deleted is released, visible again, before returning."""
    report = ReplayReport(dry_run)
    kept: list[str] = []
    try:
        while limit is None or _handled(report) < limit:
            wanted = 10 if limit is None else limit - _handled(report)
            messages = queue.receive(wanted, hide_s=HIDE_S, wait_s=1)
            if not messages:
                break
            for message in messages:
                if not _handle(queue, redeliver, message, functions, report, dry_run=dry_run):
                    kept.append(message.receipt)
    finally:
        if kept:
            queue.release(kept)
    return report


def _handle(
    queue: FailureQueue,
    redeliver: Redeliver,
    message: QueuedMessage,
    functions: Mapping[str, str],
    report: ReplayReport,
    *,
    dry_run: bool,
) -> bool:
    """True when the message was deleted."""
    failed = read_record(message.message_id, message.body, functions)
    if isinstance(failed, LeftInQueue):
        report.left.append(failed)
        return False
    if dry_run:
        report.would_replay.append(failed)
        return False
    try:
        redeliver(failed.function, failed.payload)
    except Exception as exc:
        report.left.append(
            LeftInQueue(message.message_id, f"redelivery refused: {type(exc).__name__}: {exc}")
        )
        return False
    queue.delete(message.receipt)
    report.replayed.append(failed)
    return True


def _handled(report: ReplayReport) -> int:
    return len(report.replayed) + len(report.would_replay)


def _kind(event: object) -> str:
    match event:
        case FlowLogDelivery():
            return "flow-logs"
        case AlarmStateChange():
            return "alarm"
        case ManualRequest():
            return "manual"
        case ControlMessage():
            return "control"
    return type(event).__name__


def _epoch(stamp: object) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
