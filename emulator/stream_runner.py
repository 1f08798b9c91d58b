"""Acting as CloudWatch Logs' destination and Lambda's Kinesis event source mapping (`ingest: "kinesis"`).

moto keeps a Kinesis stream and the mapping's configuration but runs neither: no log event is forwarded
through a logs destination, no record reaches a function. Here:

- `deliver` does what the destination does with a subscription delivery: one stream record per
  DATA_MESSAGE document, its data the gzip of the JSON (the function receives it as base64), partitioned
  by log stream;
- `StreamRunner` reads each shard as the mapping would, with the mapping's deployed settings read back from
  the emulator (`MappingConfig.of_function`): get_shard_iterator / get_records per shard, batches of at most
  BatchSize records, grouped by tumbling window (TumblingWindowInSeconds) on the records' arrival, the state
  carried from one invocation of a window to the next and a final invocation (`isFinalInvokeForWindow`)
  once the window has ended; a failing batch is split in two (BisectBatchOnFunctionError) and retried up to
  MaximumRetryAttempts, then its range goes to the on-failure queue; records older than
  MaximumRecordAgeInSeconds go there unread;
- `DecisionSchedule` fires the decision rule's rate on the caller's clock (EventBridge cannot target a
  Lambda in moto).

Liberties, said plainly: invocations run one after another in this process, so ParallelizationFactor is
read and reported but not exercised; the batching window is the caller's polling period; arrival times
are the caller's clock at `deliver` (or at the read, for records put otherwise), not the emulator's wall
time.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from emulator.deploy import DeployedFunction

Clock = Callable[[], float]
_PUT_RECORDS_MAX = 500  # Kinesis PutRecords takes at most 500 records per call
_PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024  # ... and at most 5 MiB of data and partition keys
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours)\)")


class Invocable(Protocol):
    """A deployed function the runner can invoke (emulator.lambda_runtime.LocalFunction)."""

    function: DeployedFunction

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class MappingConfig:
    """The event source mapping as deployed (list_event_source_mappings)."""

    uuid: str
    stream_arn: str
    batch_size: int
    batch_window_s: int
    tumbling_window_s: int
    parallelization: int
    bisect: bool
    retry_attempts: int
    max_record_age_s: int
    on_failure: str | None  # SQS queue ARN

    @classmethod
    def of_function(cls, lambda_client: Any, function_name: str) -> MappingConfig:
        mappings = [
            m
            for m in lambda_client.list_event_source_mappings(FunctionName=function_name)[
                "EventSourceMappings"
            ]
            if ":kinesis:" in m["EventSourceArn"]
        ]
        if len(mappings) != 1:
            raise LookupError(
                f"{function_name}: expected one Kinesis event source mapping, found {len(mappings)}"
            )
        m = mappings[0]
        return cls(
            uuid=m["UUID"],
            stream_arn=m["EventSourceArn"],
            batch_size=int(m.get("BatchSize", 100)),
            batch_window_s=int(m.get("MaximumBatchingWindowInSeconds", 0)),
            tumbling_window_s=int(m.get("TumblingWindowInSeconds", 0)),
            parallelization=int(m.get("ParallelizationFactor", 1)),
            bisect=bool(m.get("BisectBatchOnFunctionError", False)),
            retry_attempts=int(m.get("MaximumRetryAttempts", -1)),
            max_record_age_s=int(m.get("MaximumRecordAgeInSeconds", -1)),
            on_failure=m.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"),
        )

    @property
    def stream_name(self) -> str:
        return self.stream_arn.rpartition("/")[2]


@dataclass
class _Record:
    shard_id: str
    sequence: str
    partition_key: str
    data: bytes
    arrived: float


@dataclass
class _Window:
    start: float
    state: dict[str, str] = field(default_factory=dict)


@dataclass
class RunStats:
    """What the runner did: invocations, records, failures sent to the queue, and each batch's lag."""

    invocations: int = 0
    records: int = 0
    final_invocations: int = 0
    failed_batches: int = 0
    expired_records: int = 0
    lags_s: list[float] = field(default_factory=list)  # per batch: now - its oldest record's arrival
    flush_lags_s: list[float] = field(default_factory=list)  # per closed window: now - the window's start
    responses: list[dict[str, Any]] = field(default_factory=list)


def put_records_calls(entries: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """`entries` in order, cut into PutRecords calls within Kinesis's limits (records and bytes per call)."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_size = len(entry["Data"]) + len(entry["PartitionKey"].encode())
        if chunk and (len(chunk) == _PUT_RECORDS_MAX or size + entry_size > _PUT_RECORDS_MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry_size
    if chunk:
        yield chunk


class StreamRunner:
    """Reads the deployed stream for `function` as its event source mapping would."""

    def __init__(
        self,
        function: Invocable,
        *,
        kinesis: Any,
        sqs: Any,
        config: MappingConfig,
        clock: Clock,
        region: str,
        keep_responses: bool = False,
    ) -> None:
        self.function = function
        self.kinesis = kinesis
        self.sqs = sqs
        self.config = config
        self.clock = clock
        self.region = region
        self.keep_responses = keep_responses
        self.stats = RunStats()
        self._arrivals: dict[str, float] = {}  # sequence number -> the caller's clock at deliver
        self._iterators: dict[str, str] = {}
        self._pending: dict[str, list[_Record]] = {}
        self._windows: dict[str, _Window] = {}
        shards = kinesis.list_shards(StreamName=config.stream_name)["Shards"]
        self.shard_ids = [shard["ShardId"] for shard in shards]

    # -- the destination's side ----------------------------------------------------------------------------

    def deliver(self, documents: Iterable[Mapping[str, Any]]) -> int:
        """Put subscription documents into the stream as the logs destination does; returns records put."""
        entries = [
            {"Data": gzip.compress(json.dumps(doc).encode(), mtime=0), "PartitionKey": str(doc["logStream"])}
            for doc in documents
        ]
        now = self.clock()
        for chunk in put_records_calls(entries):
            reply = self.kinesis.put_records(StreamName=self.config.stream_name, Records=chunk)
            if reply.get("FailedRecordCount"):
                raise RuntimeError(f"put_records: {reply['FailedRecordCount']} records refused")
            for result in reply["Records"]:
                self._arrivals[result["SequenceNumber"]] = now
        return len(entries)

    # -- the mapping's side --------------------------------------------------------------------------------

    def poll(self) -> RunStats:
        """One pass of the mapping over every shard at the caller's clock: read what arrived, invoke the
        function per tumbling window in batches, close the windows that have ended."""
        now = self.clock()
        for shard_id in self.shard_ids:
            self._read_shard(shard_id)
            self._run_shard(shard_id, now)
        return self.stats

    def drain(self) -> RunStats:
        """Poll until every shard is read to its end (the caller's clock does not move)."""
        while True:
            before = self.stats.records + self.stats.expired_records
            self.poll()
            if self.stats.records + self.stats.expired_records == before and not any(self._pending.values()):
                return self.stats

    def _read_shard(self, shard_id: str) -> None:
        iterator = self._iterators.get(shard_id)
        if iterator is None:
            iterator = self.kinesis.get_shard_iterator(
                StreamName=self.config.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        pending = self._pending.setdefault(shard_id, [])
        while True:
            reply = self.kinesis.get_records(ShardIterator=iterator, Limit=max(self.config.batch_size, 1000))
            iterator = reply["NextShardIterator"]
            for item in reply["Records"]:
                sequence = item["SequenceNumber"]
                # Put by `deliver`: the caller's clock then; put otherwise: the caller's clock now (the
                # emulator's own stamp is wall time, not the caller's).
                arrived = self._arrivals.pop(sequence, None)
                if arrived is None:
                    arrived = self.clock()
                pending.append(_Record(shard_id, sequence, item["PartitionKey"], item["Data"], arrived))
            if not reply["Records"] or len(pending) >= 10 * self.config.batch_size:
                break
        self._iterators[shard_id] = iterator

    def _run_shard(self, shard_id: str, now: float) -> None:
        pending = self._pending.get(shard_id, [])
        fresh = []
        for record in pending:
            if 0 < self.config.max_record_age_s < now - record.arrived:
                self.stats.expired_records += 1
                self._to_failure_queue(shard_id, [record], "RecordAgeExceeded")
            else:
                fresh.append(record)
        pending[:] = fresh
        while pending:
            start = self._window_start(pending[0].arrived)
            window = self._windows.get(shard_id)
            if window is not None and window.start != start:
                self._close(shard_id, window)
                window = None
            if window is None:
                window = self._windows[shard_id] = _Window(start)
            same = 0
            while same < len(pending) and self._window_start(pending[same].arrived) == start:
                same += 1
            batch, pending[:] = (
                pending[: min(same, self.config.batch_size)],
                pending[min(same, self.config.batch_size) :],
            )
            self._invoke(shard_id, window, batch, final=False)
        window = self._windows.get(shard_id)
        if window is not None and now >= window.start + self.config.tumbling_window_s:
            self._close(shard_id, window)

    def _window_start(self, arrived: float) -> float:
        size = self.config.tumbling_window_s or 1
        return arrived // size * size

    def _close(self, shard_id: str, window: _Window) -> None:
        self._invoke(shard_id, window, [], final=True)
        self.stats.final_invocations += 1
        # The window's first records waited this long for the final invocation, which stores the state.
        self.stats.flush_lags_s.append(self.clock() - window.start)
        self._windows.pop(shard_id, None)

    def _invoke(self, shard_id: str, window: _Window, batch: list[_Record], *, final: bool) -> None:
        """Invoke with `batch`; on an error split it in two and retry each half (bisect), up to the retry
        attempts; what still fails goes to the on-failure queue."""
        attempts = 0
        queue = [batch]
        while queue:
            part = queue.pop(0)
            try:
                response = self.function.invoke(self.event(shard_id, window, part, final=final))
            except Exception:
                attempts += 1
                if attempts > max(self.config.retry_attempts, 0):
                    self.stats.failed_batches += 1
                    self._to_failure_queue(shard_id, part, "FunctionError")
                    continue
                if self.config.bisect and len(part) > 1:
                    half = len(part) // 2
                    queue[:0] = [part[:half], part[half:]]
                else:
                    queue.insert(0, part)
                continue
            state = response.get("state") if isinstance(response, dict) else None
            if self.config.tumbling_window_s and not isinstance(state, dict):
                raise RuntimeError("with a tumbling window the function must answer with a state")
            window.state = dict(state or {})
            self.stats.invocations += 1
            self.stats.records += len(part)
            if part:
                self.stats.lags_s.append(self.clock() - min(record.arrived for record in part))
            if self.keep_responses:
                self.stats.responses.append(response)

    def event(self, shard_id: str, window: _Window, batch: list[_Record], *, final: bool) -> dict[str, Any]:
        """The Lambda Kinesis event with its tumbling window, as the mapping sends it."""
        role = self.function.function.configuration.get("Role", "")
        event: dict[str, Any] = {
            "Records": [
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": record.partition_key,
                        "sequenceNumber": record.sequence,
                        "data": base64.b64encode(record.data).decode(),
                        "approximateArrivalTimestamp": round(record.arrived, 3),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{shard_id}:{record.sequence}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": role,
                    "awsRegion": self.region,
                    "eventSourceARN": self.config.stream_arn,
                }
                for record in batch
            ]
        }
        if self.config.tumbling_window_s:
            event |= {
                "window": {
                    "start": _iso(window.start),
                    "end": _iso(window.start + self.config.tumbling_window_s),
                },
                "state": dict(window.state),
                "shardId": shard_id,
                "eventSourceARN": self.config.stream_arn,
                "isFinalInvokeForWindow": final,
                "isWindowTerminatedEarly": False,
            }
        return event

    def _to_failure_queue(self, shard_id: str, records: list[_Record], condition: str) -> None:
        """The on-failure record Lambda sends for a stream: the batch's position, not its data."""
        if self.config.on_failure is None or not records:
            return
        queue_url = self.sqs.get_queue_url(QueueName=self.config.on_failure.rpartition(":")[2])["QueueUrl"]
        body = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.function.function.arn,
                "condition": condition,
                "approximateInvokeCount": self.config.retry_attempts + 1,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": _iso(self.clock()),
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": records[0].sequence,
                "endSequenceNumber": records[-1].sequence,
                "approximateArrivalOfFirstRecord": _iso(records[0].arrived),
                "approximateArrivalOfLastRecord": _iso(records[-1].arrived),
                "batchSize": len(records),
                "streamArn": self.config.stream_arn,
            },
        }
        self.sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))


class DecisionSchedule:
    """The decision rule's rate, fired on the caller's clock: `due()` says how many ticks have passed."""

    def __init__(self, events_client: Any, rule_name: str, clock: Clock) -> None:
        rule = events_client.describe_rule(Name=rule_name)
        match = _RATE.fullmatch(rule.get("ScheduleExpression", ""))
        if match is None:
            raise ValueError(f"{rule_name}: schedule {rule.get('ScheduleExpression')!r} is not a rate")
        self.rule_arn = rule["Arn"]
        self.period_s = int(match.group(1)) * (3600 if match.group(2).startswith("hour") else 60)
        self.clock = clock
        self._next = (clock() // self.period_s + 1) * self.period_s

    def due(self) -> list[dict[str, Any]]:
        """The Scheduled Events EventBridge would have sent since the last call."""
        fired = []
        while self.clock() >= self._next:
            fired.append(scheduled_event(self.rule_arn, self._next))
            self._next += self.period_s
        return fired


def scheduled_event(rule_arn: str, when: float) -> dict[str, Any]:
    """What EventBridge sends a scheduled rule's Lambda target."""
    _, _, _, region, account, _ = rule_arn.split(":", 5)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
