"""Automatic replay of the flow-log stream's failed ranges (`ingest: "kinesis"`, and the security account's
stream): what the event source mapping gave up on is read back from the stream and stored, on the decision
schedule, with no one at the keyboard.

The mapping sends the position of a batch it gave up on (retries exhausted after bisecting, or older than
`kinesisMaxRecordAge`) to its on-failure queue, not the records:
  {"requestContext": {"functionArn", "condition", ...}, "timestamp",
   "KinesisBatchInfo": {"shardId", "startSequenceNumber", "endSequenceNumber", "batchSize", "streamArn",
                        "approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord"}}
Each run (`StreamReplay.run`, after the scheduled decision) takes such messages off the queue, reads their
ranges back from the stream (`adapters.stream`) and hands them to the same ingest the mapping's invocations
go through (`parse_detector_event` on the Lambda Kinesis event the range makes, then the service's
`ingest_stream`), as one final batch of the range: it is stored at once under `<shard>#<start>#<end>`
(single mode) or `<member>#<shard>#<start>#<end>` (security), the names the mapping's own invocation of
those records uses. The window files a delivery id once (`TrafficWindow.add`: its first part, written if
absent, records where it was filed; a redelivery writes only the parts missing, and a delivery already
merged is not listed again), so a range replayed twice, or replayed after its own invocation stored it and
failed later, counts once. A message is deleted only after its range is stored.

Bounded: at most MAX_RANGES_PER_RUN ranges, and a range is started only while RESERVE_S of the invocation
is left; the rest stays in the queue for the next tick (a message being read is hidden from other runs for
as long as this invocation may last).

A range no longer in the stream (trimmed past its 24 h retention, or its shard or stream gone) is lost, and
said so: logged as an error, counted (StreamRangesLost), recorded in the HEALTH/REPLAY item (`floodgate
status`) and announced on the topic. Its message is kept, not deleted nor moved: this queue is itself the
dead-letter destination of the mapping, its message is the only record of which records were lost, and it is
hidden for nearly 12 hours (SQS's longest) so that it is announced at most twice a day until someone deletes
it or the queue's 14-day retention ends it. A message that is not a Kinesis failure record is left alone
the same way (hidden, logged, not announced); a range that cannot be read or stored now (throttled, access
denied) comes back after this invocation's time, for the next run.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from floodgate.adapters.failure_queue import MAX_HIDE_S, FailureQueue, QueuedMessage
from floodgate.adapters.health import HealthRecords
from floodgate.adapters.notify import Notifier
from floodgate.adapters.retry import Retrier
from floodgate.adapters.stream import RangeLost, StreamData, StreamReader
from floodgate.core.text import shown
from floodgate.observability import METRIC
from floodgate.services.events import (
    KINESIS_SOURCE,
    MAX_STREAM_RECORDS,
    InvalidEvent,
    StreamBatch,
    parse_detector_event,
)
from floodgate.settings import Settings

_log = logging.getLogger(__name__)

BATCH_INFO = "KinesisBatchInfo"
MAX_RANGES_PER_RUN = 10
RESERVE_S = 10.0  # a range is started only while this much of the invocation is left
HIDE_MARGIN_S = 60  # a message being replayed stays hidden this much longer than the invocation may last
# A message kept (lost range, not a failure record) is hidden for the rest of SQS's 12 hours, which count
# from its receipt: less the longest a Lambda invocation lasts (15 minutes).
KEEP_HIDDEN_S = MAX_HIDE_S - 900
_SEQUENCE_DIGITS = 128

Ingest = Callable[[StreamBatch], object]


@dataclass(frozen=True, slots=True)
class FailedRange:
    """One range the mapping gave up on, as its on-failure record names it."""

    message_id: str
    stream_arn: str
    shard_id: str
    start: str
    end: str
    size: int | None  # records in the range, as the mapping counted them
    condition: str

    @property
    def label(self) -> str:
        return f"{self.shard_id} {self.start}..{self.end}"


def read_failed_range(message_id: str, body: str) -> FailedRange | str:
    """The range a Kinesis on-failure record names, or why the message is not one."""
    try:
        record = json.loads(body)
    except ValueError:
        return "not JSON: not a Kinesis on-failure record"
    info = record.get(BATCH_INFO) if isinstance(record, dict) else None
    if not isinstance(info, dict):
        return f"no {BATCH_INFO}: not a Kinesis on-failure record"
    keys = ("streamArn", "shardId", "startSequenceNumber", "endSequenceNumber")
    values = {key: info.get(key) for key in keys}
    for key, value in values.items():
        if not isinstance(value, str) or not value or len(value) > 2048:
            return f"{BATCH_INFO}.{key} is {shown(value)}, not a name"
    start, end = values["startSequenceNumber"], values["endSequenceNumber"]
    for key, number in (("startSequenceNumber", start), ("endSequenceNumber", end)):
        assert number is not None
        if not (number.isdigit() and len(number) <= _SEQUENCE_DIGITS):
            return f"{BATCH_INFO}.{key} is {shown(number)}, not a sequence number"
    assert start is not None and end is not None
    if int(start) > int(end):
        return f"{BATCH_INFO}: the range starts at {start}, after its end {end}"
    size = info.get("batchSize")
    context = record.get("requestContext")
    condition = context.get("condition") if isinstance(context, dict) else None
    return FailedRange(
        message_id=message_id,
        stream_arn=str(values["streamArn"]),
        shard_id=str(values["shardId"]),
        start=start,
        end=end,
        size=size if type(size) is int else None,
        condition=condition if isinstance(condition, str) else "?",
    )


def kinesis_event(failed: FailedRange, records: list[StreamData]) -> dict[str, Any]:
    """The Lambda Kinesis event the mapping would have sent with the range's records: one final invocation
    of a tumbling window with an empty state, so that the range is stored as it stands."""
    return {
        "Records": [
            {
                "eventSource": KINESIS_SOURCE,
                "eventSourceARN": failed.stream_arn,
                "eventID": f"{failed.shard_id}:{record.sequence_number}",
                "kinesis": {
                    "sequenceNumber": record.sequence_number,
                    "data": base64.b64encode(record.data).decode(),
                },
            }
            for record in records
        ],
        "shardId": failed.shard_id,
        "eventSourceARN": failed.stream_arn,
        "state": {},
        "isFinalInvokeForWindow": True,
    }


def batches(failed: FailedRange, records: list[StreamData]) -> list[StreamBatch]:
    """The range as the stream batches the ingest reads, parsed by the detector's own event parser."""
    parsed = []
    for start in range(0, len(records), MAX_STREAM_RECORDS):
        batch = parse_detector_event(kinesis_event(failed, records[start : start + MAX_STREAM_RECORDS]))
        if not isinstance(batch, StreamBatch):
            raise InvalidEvent(f"the range reads as a {type(batch).__name__}, not a stream batch")
        parsed.append(batch)
    return parsed


@dataclass
class StreamReplayReport:
    replayed: list[str] = field(default_factory=list)  # ranges read back and stored
    records: int = 0  # stream records in them
    lost: list[tuple[str, str]] = field(default_factory=list)  # (range, why): no longer in the stream
    left: list[tuple[str, str]] = field(default_factory=list)  # (message id, why): kept in the queue
    deferred: int = 0  # messages put back for the next run (time or the per-run bound ran out)

    def metric_values(self) -> dict[str, float]:
        return {
            METRIC.STREAM_RANGES_REPLAYED: float(len(self.replayed)),
            METRIC.STREAM_RANGES_LOST: float(len(self.lost)),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "replayed": list(self.replayed),
            "records": self.records,
            "lost": [{"range": label, "why": why} for label, why in self.lost],
            "left": [{"message_id": message_id, "why": why} for message_id, why in self.left],
            "deferred": self.deferred,
        }


class StreamReplay:
    """Replays the failed ranges waiting in `queue` into `ingest` (the detector's or the security
    producer's `ingest_stream`). `clock` is wall time: the deadline is the invocation's."""

    def __init__(
        self,
        queue: FailureQueue,
        reader: StreamReader,
        ingest: Ingest,
        *,
        health: HealthRecords,
        notifier: Notifier,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.reader = reader
        self.ingest = ingest
        self.health = health
        self.notifier = notifier
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        ingest: Ingest,
        *,
        dynamodb: Any = None,
        retrier: Retrier | None = None,
    ) -> StreamReplay | None:
        """The production wiring, or None when the stack names no on-failure queue (subscription ingest)."""
        if not settings.stream_failures:
            return None
        return cls(
            FailureQueue(settings.stream_failures, retrier=retrier),
            StreamReader(retrier=retrier),
            ingest,
            health=HealthRecords(settings.state_table, dynamodb, retrier=retrier),
            notifier=Notifier(settings.topic_arn, retrier=retrier),
        )

    def run(self, *, deadline: float, max_ranges: int = MAX_RANGES_PER_RUN) -> StreamReplayReport:
        """Replay what waits, until `max_ranges` were handled or `deadline` (epoch seconds) is near."""
        report = StreamReplayReport()
        handled = 0
        hide_s = min(MAX_HIDE_S, math.ceil(max(0.0, deadline - self._clock())) + HIDE_MARGIN_S)
        while handled < max_ranges and self._clock() + RESERVE_S < deadline:
            messages = self.queue.receive(min(10, max_ranges - handled), hide_s=hide_s)
            if not messages:
                break
            for index, message in enumerate(messages):
                if self._clock() + RESERVE_S >= deadline:
                    put_back = [m.receipt for m in messages[index:]]
                    self.queue.release(put_back)
                    report.deferred += len(put_back)
                    return report
                self._one(message, deadline - RESERVE_S / 2, report)
                handled += 1
        return report

    def _one(self, message: QueuedMessage, deadline: float, report: StreamReplayReport) -> None:
        failed = read_failed_range(message.message_id, message.body)
        if isinstance(failed, str):
            _log.error("stream failure queue: message %s left in the queue: %s", message.message_id, failed)
            report.left.append((message.message_id, failed))
            self.queue.hide(message.receipt, KEEP_HIDDEN_S)
            return
        try:
            records = self.reader.read_range(
                failed.stream_arn,
                failed.shard_id,
                failed.start,
                failed.end,
                deadline=deadline,
                clock=self._clock,
            )
        except RangeLost as exc:
            self._lost(failed, message, str(exc), report)
            return
        except Exception as exc:
            # Throttled past the retries, or not readable by this function (another stream, access denied):
            # the message stays hidden for this invocation's time, and the other ranges go on.
            _log.exception("stream range %s: reading it back failed; left for the next run", failed.label)
            report.left.append((message.message_id, f"reading failed: {type(exc).__name__}: {exc}"))
            return
        if records is None:
            self.queue.release([message.receipt])
            report.deferred += 1
            return
        try:
            for batch in batches(failed, records):
                self.ingest(batch)
        except InvalidEvent as exc:  # not a range this code can store: kept, and said
            _log.error("stream range %s not replayable: %s", failed.label, exc)
            report.left.append((message.message_id, f"not replayable: {exc}"))
            self.queue.hide(message.receipt, KEEP_HIDDEN_S)
            return
        except Exception as exc:
            # A throttled write, say: the message stays hidden for this invocation's time and comes back for
            # the next run; what was stored already is not stored twice then.
            _log.exception("stream range %s: storing it failed; left for the next run", failed.label)
            report.left.append((message.message_id, f"storing failed: {type(exc).__name__}: {exc}"))
            return
        self.queue.delete(message.receipt)
        report.replayed.append(failed.label)
        report.records += len(records)
        _log.info("stream range %s (%d records, %s) replayed", failed.label, len(records), failed.condition)

    def _lost(
        self, failed: FailedRange, message: QueuedMessage, why: str, report: StreamReplayReport
    ) -> None:
        size = f"{failed.size} records" if failed.size is not None else "records"
        what = f"stream range {failed.label} ({size}) lost: {why}"
        _log.error("%s; its failure record stays in the queue (message %s)", what, failed.message_id)
        report.lost.append((failed.label, why))
        self.health.range_lost(at=self._clock(), what=what)
        self.notifier.publish_failure(
            f"flow-log records lost: {failed.shard_id} {failed.start}..{failed.end} ({size}) could not be "
            "read back from the stream",
            f"Why: {why}. The detection window never counted them. Their failure record stays in the "
            f"stream's on-failure queue (message {failed.message_id}), announced again about every 12 hours "
            "until it is deleted. If this repeats, the detector falls behind the stream for longer than the "
            "stream keeps records: raise kinesisShards or kinesisParallelization.",
        )
        self.queue.hide(message.receipt, KEEP_HIDDEN_S)
