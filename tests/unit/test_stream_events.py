"""Kinesis ingest events: the mapping's batches and the decision schedule's tick are recognised; a record
that holds no delivery is reported with its sequence number, never failing the batch; the tumbling window's
state carries a summary from one invocation to the next without changing it."""

from __future__ import annotations

import base64
import copy
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.lambda_runtime import encode_awslogs, subscription_document
from emulator.traffic import START, Source, flow_lines, public_addresses
from floodgate.adapters.window import window_key
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser
from floodgate.core.summary import TrafficSummary
from floodgate.core.window import merge_batches, pack_summary
from floodgate.services.events import (
    ControlMessage,
    FlowLogDelivery,
    InvalidEvent,
    ScheduledDecision,
    StreamBatch,
    parse_detector_event,
)
from floodgate.services.streaming import STATE_PART, open_state, state_chars, state_of, window_shard
from tests.events import load

VPC = ("10.0.0.0/16",)


def test_a_flow_log_batch_holds_the_same_delivery_as_the_subscription_event() -> None:
    batch = parse_detector_event(load("kinesis-flowlogs"))
    assert isinstance(batch, StreamBatch)
    assert (batch.shard_id, batch.window_start, batch.final) == (
        "shardId-000000000001",
        "2025-11-24T16:01:00Z",
        False,
    )
    delivery, control = (record.delivery for record in batch.records)
    assert delivery == parse_detector_event(load("subscription-flowlogs"))
    assert isinstance(delivery, FlowLogDelivery) and isinstance(control, ControlMessage)


def test_records_that_are_not_deliveries_are_named_by_sequence_not_refused() -> None:
    # The Powertools test event: a real mapping envelope whose data is plain text, not gzip.
    batch = parse_detector_event(load("kinesis-stream-powertools"))
    assert isinstance(batch, StreamBatch)
    assert batch.shard_id == "shardId-000000000006"
    assert [(r.sequence_number[-6:], r.delivery, r.problem) for r in batch.records] == [
        ("588898", None, "data is not gzip data"),
        ("515618", None, "data is not gzip data"),
    ]
    assert batch.state == {"1": "282", "2": "715"}


def test_the_final_invocation_of_a_window_may_hold_no_record() -> None:
    event = load("kinesis-stream-powertools") | {"Records": [], "isFinalInvokeForWindow": True}
    batch = parse_detector_event(event)
    assert isinstance(batch, StreamBatch) and batch.records == () and batch.final


def test_without_a_tumbling_window_the_shard_comes_from_the_event_id() -> None:
    event = {"Records": load("kinesis-flowlogs")["Records"]}
    batch = parse_detector_event(event)
    assert isinstance(batch, StreamBatch) and batch.shard_id == "shardId-000000000001"
    assert batch.state == {} and not batch.final


def _broken(path: str, value: object) -> dict[str, Any]:
    event = copy.deepcopy(load("kinesis-flowlogs"))
    target: Any = event
    *parents, leaf = path.split(".")
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[leaf] = value
    return event


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (_broken("Records", "many"), "Records is not a list of at most 10000 stream records"),
        (_broken("Records.0.kinesis.sequenceNumber", "12ab"), "Records[0].kinesis.sequenceNumber is not"),
        (_broken("Records.0.kinesis", None), "Records[0].kinesis is missing"),
        (_broken("Records.1.eventSource", "aws:sqs"), "Records[1] is not a Kinesis stream record"),
        (_broken("shardId", "shard-1"), "shardId is not a shard id: 'shard-1'"),
        (_broken("state", ["a"]), "state is not an object of texts"),
        (_broken("isFinalInvokeForWindow", "yes"), "isFinalInvokeForWindow is not true or false"),
    ],
)
def test_a_malformed_envelope_is_refused_with_what_is_wrong(event: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_detector_event(event)
    assert str(caught.value).startswith(message)


def test_the_decision_schedule_tick_is_recognised_with_its_rule() -> None:
    tick = parse_detector_event(load("scheduled-event"))
    assert tick == ScheduledDecision("arn:aws:events:us-east-1:123456789012:rule/Floodgate-ExpirerSchedule")


# -- the tumbling window's state ------------------------------------------------------------------------


def _summary(lines: list[str]) -> TrafficSummary:
    summary = TrafficSummary.for_share(0.01)
    summary.add(FlowLogParser(FlowLogFormat.parse(DEFAULT_FORMAT), VPC).parse(lines))
    return summary


def _counters(summary: TrafficSummary) -> dict[tuple[int, int], dict[int, tuple[int, int]]]:
    return {
        level_key: {key: (c.packets, c.bytes) for key, c in level.counters.items()}
        for level_key, level in summary.levels.items()
    }


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), cuts=st.lists(st.integers(1, 400), max_size=4))
def test_summing_through_the_state_equals_summing_at_once(seed: int, cuts: list[int]) -> None:
    """However the deliveries fall into invocations, the state hands on exactly what was summed: the
    stored result equals one summary of all the lines."""
    rng = random.Random(seed)
    sources = [Source(a, rng.uniform(10, 5000), flows=3) for a in public_addresses(rng, 40)]
    lines = list(flow_lines(sources, intervals=2, seed=seed, start=START))
    bounds = [*sorted({min(cut, len(lines)) for cut in cuts}), len(lines)]
    state: dict[str, str] = {}
    begin = 0
    for end in bounds:
        held = open_state(state)
        summary = TrafficSummary.for_share(0.01)
        if held.digest is not None:
            merge_batches(summary, [held.digest])
        summary.add(FlowLogParser(FlowLogFormat.parse(DEFAULT_FORMAT), VPC).parse(lines[begin:end]))
        state = state_of(summary, held.first or str(begin), str(end))
        begin = end
    assert state["first"] == "0" and state["last"] == str(len(lines))
    final = TrafficSummary.for_share(0.01)
    merge_batches(final, [open_state(state).digest])  # type: ignore[list-item]
    whole = _summary(lines)
    assert _counters(final) == _counters(whole)
    assert (final.total_packets, final.total_bytes) == (whole.total_packets, whole.total_bytes)


def test_the_state_is_texts_within_lambdas_limit_for_a_full_summary() -> None:
    rng = random.Random(3)
    sources = [Source(a, 100, flows=1) for a in public_addresses(rng, 3000)]
    summary = _summary(list(flow_lines(sources, intervals=1, start=START)))
    state = state_of(summary, "1", "2")
    assert all(isinstance(v, str) for v in state.values())
    parts = [base64.b64decode(state[k]) for k in sorted(state) if k.startswith(STATE_PART)]
    assert parts == list(pack_summary(summary))
    assert state_chars(state) < 1_000_000  # Lambda's limit on a tumbling window's state


def test_a_damaged_state_is_dropped_not_fatal() -> None:
    held = open_state({"first": "1", "last": "9", f"{STATE_PART}000": "not base64!"})
    assert (held.digest, held.first, held.last) == (None, None, None)
    assert open_state({}).digest is None  # an empty state (a window's first invocation) holds none either


def test_window_keys_keep_shard_zero_unsharded_and_stream_shards_map_stably() -> None:
    assert window_key(1764000000) == window_key(1764000000, 0) == "WINDOW#1764000000"
    assert window_key(1764000000, 3) == "WINDOW#1764000000#3"
    shards = [f"shardId-{n:012d}" for n in range(64)]
    mapped = [window_shard(shard, 4) for shard in shards]
    assert mapped == [window_shard(shard, 4) for shard in shards]
    assert set(mapped) == {0, 1, 2, 3}  # 64 stream shards reach every window shard
    assert {window_shard(shard, 1) for shard in shards} == {0}


def test_a_scoped_window_keys_each_member_apart_and_the_unscoped_keys_stay_as_they_were() -> None:
    assert window_key(1764000000, 0, "222222222222") == "WINDOW#222222222222#1764000000"
    assert window_key(1764000000, 1, "222222222222") == "WINDOW#222222222222#1764000000#1"
    assert window_key(1764000000, 1) == "WINDOW#1764000000#1"


@pytest.mark.parametrize(
    ("owner", "expected"),
    [("222222222222", "222222222222"), ("2222", ""), (222222222222, ""), ("222222222222\n", "")],
)
def test_a_delivery_names_its_owner_account_only_when_it_is_one(owner: object, expected: str) -> None:
    document = subscription_document(
        ["2 x eni-1 198.51.100.1 10.0.0.1 1 2 6 1 40 1764000000 1764000060 ACCEPT OK"],
        log_group="g",
        log_stream="eni-1-all",
        filter_name="f",
        timestamp_ms=1764000000000,
    )
    delivery = parse_detector_event(encode_awslogs({**document, "owner": owner}))
    assert isinstance(delivery, FlowLogDelivery) and delivery.owner == expected
