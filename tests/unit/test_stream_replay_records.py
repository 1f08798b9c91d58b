"""What the automatic stream replay reads off the mapping's on-failure queue (`services.stream_replay`), and
the batch it makes of a range: the Kinesis on-failure record AWS documents (tests/events/
kinesis-failure-record.json), and what is not one."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from floodgate.adapters.stream import StreamData
from floodgate.services.events import FlowLogDelivery, StreamBatch
from floodgate.services.stream_replay import FailedRange, StreamReplay, batches, read_failed_range
from floodgate.settings import Settings
from tests.events import load

START = "49601189658422359378836298521827638475320189012309704722"
END = "49601189658422359378836298522902373528957594348623495186"


def test_a_kinesis_failure_record_names_the_range() -> None:
    failed = read_failed_range("m-1", json.dumps(load("kinesis-failure-record")))
    assert failed == FailedRange(
        message_id="m-1",
        stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/Floodgate-KinesisIngestStream",
        shard_id="shardId-000000000001",
        start=START,
        end=END,
        size=500,
        condition="RetryAttemptsExhausted",
    )
    assert failed.label == f"shardId-000000000001 {START}..{END}"


def _with(**info: Any) -> str:
    record = load("kinesis-failure-record")
    record["KinesisBatchInfo"].update(info)
    return json.dumps(record)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("garbage", "not JSON: not a Kinesis on-failure record"),
        (json.dumps(load("failed-invocation-flowlogs")), "no KinesisBatchInfo: not a Kinesis on-failure"),
        (_with(shardId=None), "KinesisBatchInfo.shardId is None, not a name"),
        (_with(startSequenceNumber="49601-x"), "KinesisBatchInfo.startSequenceNumber is '49601-x', not a"),
        (_with(endSequenceNumber="9" * 200), "KinesisBatchInfo.endSequenceNumber is '9999"),
        (
            _with(startSequenceNumber=END, endSequenceNumber=START),
            f"KinesisBatchInfo: the range starts at {END}",
        ),
    ],
)
def test_what_is_not_a_failure_record_says_why(body: str, why: str) -> None:
    found = read_failed_range("m-2", body)
    assert isinstance(found, str) and found.startswith(why)


def test_a_range_becomes_one_final_batch_of_the_detectors_own_event_shape() -> None:
    failed = read_failed_range("m-3", json.dumps(load("kinesis-failure-record")))
    assert isinstance(failed, FailedRange)
    document = load("subscription-flowlogs.decoded.json")
    records = [
        StreamData(START, gzip.compress(json.dumps(document).encode())),
        StreamData(END, b"not a delivery"),
    ]
    (batch,) = batches(failed, records)
    assert isinstance(batch, StreamBatch)
    assert (batch.shard_id, batch.final, dict(batch.state)) == ("shardId-000000000001", True, {})
    assert [r.sequence_number for r in batch.records] == [START, END]
    delivery = batch.records[0].delivery
    assert isinstance(delivery, FlowLogDelivery)
    assert list(delivery.messages) == [e["message"] for e in document["logEvents"]]
    # A record that is no delivery is carried with its reason, as the mapping's invocation would carry it.
    assert batch.records[1].delivery is None and batch.records[1].problem is not None


def test_without_a_stream_failure_queue_there_is_nothing_to_replay() -> None:
    settings = Settings.from_env(
        {
            "FLOODGATE_NACL_IDS": "acl-0a1b2c3d4e5f60718",
            "FLOODGATE_VPC_CIDRS": "10.0.0.0/16",
            "FLOODGATE_STATE_TABLE": "state",
            "FLOODGATE_LOG_TABLE": "log",
        }
    )
    assert settings.stream_failures is None
    assert StreamReplay.from_settings(settings, lambda batch: None) is None
