"""Reading a failed range back from the stream (`adapters.stream.StreamReader`), against a scripted Kinesis
client: where a range ends, when it is lost, and when it is left for another run. moto's stream is used by
tests/integration/test_stream_replay.py; this covers the answers moto never gives (a shard behind its tip,
a throttle, a range whose end is not in the shard)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from floodgate.adapters.retry import Backoff, Retrier
from floodgate.adapters.stream import MAX_EMPTY_READS, RangeLost, StreamData, StreamReader

ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/flow-logs"
SHARD = "shardId-000000000000"


class Kinesis:
    """Answers GetShardIterator once, then GetRecords from `pages`, one page per call."""

    def __init__(self, pages: list[dict[str, Any]], *, iterator_error: str | None = None) -> None:
        self.pages: Iterator[dict[str, Any]] = iter(pages)
        self.iterator_error = iterator_error
        self.reads = 0

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        assert request["ShardIteratorType"] == "AT_SEQUENCE_NUMBER"
        if self.iterator_error:
            raise ClientError({"Error": {"Code": self.iterator_error, "Message": "no"}}, "GetShardIterator")
        return {"ShardIterator": f"it-{request['StartingSequenceNumber']}"}

    def get_records(self, **request: Any) -> dict[str, Any]:
        self.reads += 1
        page = next(self.pages)
        if "error" in page:
            raise ClientError({"Error": {"Code": page["error"], "Message": "slow down"}}, "GetRecords")
        return {"NextShardIterator": f"it-{self.reads}", **page}


def page(*sequences: int, behind_ms: int = 0) -> dict[str, Any]:
    return {
        "Records": [{"SequenceNumber": str(n), "Data": b"r%d" % n} for n in sequences],
        "MillisBehindLatest": behind_ms,
    }


def read(kinesis: Kinesis, start: int, end: int, *, deadline: float = 100.0) -> list[StreamData] | None:
    reader = StreamReader(kinesis, retrier=Retrier(Backoff(attempts=3, base_s=0.0, cap_s=0.0)))
    return reader.read_range(ARN, SHARD, str(start), str(end), deadline=deadline, clock=lambda: 0.0)


def sequences(found: list[StreamData] | None) -> list[str] | None:
    return None if found is None else [r.sequence_number for r in found]


def test_a_range_is_read_to_its_end_over_several_pages_and_no_further() -> None:
    kinesis = Kinesis([page(10, 11, behind_ms=5000), page(behind_ms=4000), page(12, 13, 14)])
    assert sequences(read(kinesis, 10, 13)) == ["10", "11", "12", "13"]
    assert kinesis.reads == 3


def test_a_range_whose_end_record_is_missing_stops_at_the_first_record_past_it() -> None:
    assert sequences(read(Kinesis([page(10, 12, 15)]), 10, 13)) == ["10", "12"]


def test_a_throttled_read_is_retried() -> None:
    kinesis = Kinesis([{"error": "ProvisionedThroughputExceededException"}, page(10, 11)])
    assert sequences(read(kinesis, 10, 11)) == ["10", "11"]


@pytest.mark.parametrize(
    ("pages", "why"),
    [
        ([page(12, 13)], "its first record 10 is no longer in the stream (the oldest left there is 12)"),
        ([page()], "none of its records is in the stream any more (from 10)"),
        ([page(10, 11), page()], "the shard ends at 11, before the range's end 13"),
    ],
)
def test_a_range_not_wholly_in_the_stream_is_lost(pages: list[dict[str, Any]], why: str) -> None:
    with pytest.raises(RangeLost, match="^" + why.replace("(", r"\(").replace(")", r"\)")):
        read(Kinesis(pages), 10, 13)


@pytest.mark.parametrize("code", ["ResourceNotFoundException", "InvalidArgumentException"])
def test_a_shard_or_sequence_number_kinesis_does_not_know_is_lost(code: str) -> None:
    with pytest.raises(RangeLost, match=f"^{code}: no"):
        read(Kinesis([], iterator_error=code), 10, 13)


def test_another_failure_is_not_taken_for_a_loss() -> None:
    with pytest.raises(ClientError, match="AccessDeniedException"):
        read(Kinesis([], iterator_error="AccessDeniedException"), 10, 13)


def test_out_of_time_or_still_behind_the_tip_leaves_the_range_for_another_run() -> None:
    assert read(Kinesis([page(10)]), 10, 13, deadline=0.0) is None
    behind = Kinesis([page(10, behind_ms=9000)] + [page(behind_ms=9000)] * MAX_EMPTY_READS)
    assert read(behind, 10, 13) is None
    assert behind.reads == 1 + MAX_EMPTY_READS
