"""Kinesis adapter: reading a range of the flow-log stream back, for the automatic replay of the ranges the
event source mapping gave up on (`services.stream_replay`).

A range is read from its first sequence number (GetShardIterator AT_SEQUENCE_NUMBER) with GetRecords until
past its last. It is lost, not read, when its first record is no longer in the stream (trimmed: the stream
keeps records for its retention, 24 h; Kinesis then starts at the oldest record it still has, or refuses the
number), or when the shard or the stream is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from floodgate.adapters.retry import Retrier, client_config, error_code

MAX_GET_RECORDS = 10_000  # Kinesis: at most 10,000 records per GetRecords
READ_TIMEOUT_S = 20  # one GetRecords answer may hold 10 MB: longer than the adapters' default read timeout
# An empty answer while behind the tip is normal (Kinesis skips empty stretches of a shard); this many in a
# row and the range is given up on for this run.
MAX_EMPTY_READS = 20
_GONE = frozenset({"ResourceNotFoundException", "InvalidArgumentException"})


class RangeLost(Exception):
    """The range's records are no longer in the stream (the message says why). Reading again cannot help."""


@dataclass(frozen=True, slots=True)
class StreamData:
    sequence_number: str
    data: bytes


class StreamReader:
    """Reads ranges of a stream. Takes a low-level Kinesis client (default: a new one)."""

    def __init__(self, client: Any = None, *, retrier: Retrier | None = None) -> None:
        self._kinesis = client if client is not None else _long_read_client()
        self._retry = retrier or Retrier()

    def read_range(
        self,
        stream_arn: str,
        shard_id: str,
        start: str,
        end: str,
        *,
        deadline: float,
        clock: Callable[[], float],
    ) -> list[StreamData] | None:
        """The records `start`..`end` (inclusive) of the shard, in order. None when `deadline` (by `clock`)
        passes first: nothing was lost, the range is left for another run. Raises RangeLost."""
        first, last = int(start), int(end)
        try:
            iterator: str | None = self._retry.call(
                "GetShardIterator",
                partial(
                    self._kinesis.get_shard_iterator,
                    StreamARN=stream_arn,
                    ShardId=shard_id,
                    ShardIteratorType="AT_SEQUENCE_NUMBER",
                    StartingSequenceNumber=start,
                ),
            )["ShardIterator"]
        except ClientError as exc:
            if error_code(exc) in _GONE:
                message = exc.response.get("Error", {}).get("Message", "")
                raise RangeLost(f"{error_code(exc)}: {message}") from None
            raise
        records: list[StreamData] = []
        empty_reads = 0
        while iterator:
            if clock() >= deadline:
                return None
            reply = self._retry.call(
                "GetRecords",
                partial(
                    self._kinesis.get_records,
                    ShardIterator=iterator,
                    Limit=MAX_GET_RECORDS,
                    StreamARN=stream_arn,
                ),
            )
            for item in reply.get("Records", []):
                sequence = int(item["SequenceNumber"])
                if not records and sequence != first:
                    raise RangeLost(
                        f"its first record {start} is no longer in the stream (the oldest left there is "
                        f"{item['SequenceNumber']}): trimmed past the stream's retention"
                    )
                if sequence > last:
                    return records
                records.append(StreamData(item["SequenceNumber"], bytes(item["Data"])))
                if sequence == last:
                    return records
            iterator = reply.get("NextShardIterator")
            if not reply.get("Records"):
                if not reply.get("MillisBehindLatest"):
                    break  # at the shard's newest record, and the range's end not reached
                empty_reads += 1
                if empty_reads >= MAX_EMPTY_READS:
                    return None  # still behind the tip: the rest is read by another run
        if not records:
            raise RangeLost(f"none of its records is in the stream any more (from {start})")
        raise RangeLost(f"the shard ends at {records[-1].sequence_number}, before the range's end {end}")


def _long_read_client() -> Any:
    """The adapters' client config, with a read timeout one 10 MB GetRecords answer fits in."""
    import boto3  # noqa: PLC0415 - lazy on purpose (as `default_client`)
    from botocore.config import Config  # noqa: PLC0415

    return boto3.client("kinesis", config=client_config().merge(Config(read_timeout=READ_TIMEOUT_S)))
