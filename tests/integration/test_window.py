"""The shared window against the emulator: compacted as it fills, it still holds exactly what was stored,
each delivery once, and a decision reads a few items, by key, however many deliveries the window holds."""

from __future__ import annotations

import random
from typing import Any

import pytest

from emulator.traffic import START, VPC_CIDR, Source, background, flow_lines
from floodgate.adapters.retry import Retrier
from floodgate.adapters.window import BUCKET_S, COMPACT_AFTER, HEAD, TrafficWindow, window_key
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser, SourceBatch
from floodgate.core.summary import TrafficSummary
from tests.integration.conftest import FAST_RETRIES, AwsClientFactory, Tables

pytestmark = pytest.mark.integration

V2 = FlowLogFormat.parse(DEFAULT_FORMAT)
SHARDS = 14  # a wide Kinesis window: 6 minutes x 14 shards, more than a container keeps opened
CAPACITY = 4096


def new_summary() -> TrafficSummary:
    return TrafficSummary(capacity=CAPACITY)


def batches(count: int) -> list[SourceBatch]:
    rng = random.Random(count)
    parser = FlowLogParser(V2, [VPC_CIDR])
    return [
        parser.parse(
            flow_lines([*background(rng, 60), Source(f"203.0.113.{n % 200 + 1}", 900)], intervals=1, seed=n)
        )
        for n in range(count)
    ]


def summary_of(batch: SourceBatch) -> TrafficSummary:
    summary = new_summary()
    summary.add(batch)
    return summary


def counters(summary: TrafficSummary) -> dict[tuple[int, int], dict[int, tuple[int, int, int, int]]]:
    return {
        level: {key: (c.packets, c.bytes, c.reject_packets, c.spoofable) for key, c in kept.counters.items()}
        for level, kept in summary.levels.items()
    }


def container(aws_client: AwsClientFactory, tables: Tables) -> TrafficWindow:
    """The window as one Lambda container has it: its own client and its own opened versions."""
    return TrafficWindow(
        tables.state,
        window_s=300,
        new_summary=new_summary,
        client=aws_client("dynamodb"),
        retrier=Retrier(FAST_RETRIES),
    )


@pytest.fixture
def window(aws_client: AwsClientFactory, tables: Tables) -> TrafficWindow:
    return container(aws_client, tables)


def test_a_window_compacted_as_it_fills_holds_every_delivery_once_and_reads_few_items(
    window: TrafficWindow,
) -> None:
    stored = batches(60)
    expected = new_summary()
    at = float(START)
    for n, batch in enumerate(stored):
        at = START + n * 4.0  # 60 deliveries over four minutes
        assert window.add(f"delivery-{n}", summary_of(batch), now=at).written == 1
        window.compact(now=at)
        expected.add(batch)
    # Lambda retries a few deliveries minutes later (some of them already merged): nothing counts twice.
    for n in (0, 7, 59):
        assert window.add(f"delivery-{n}", summary_of(stored[n]), now=at + 5).written == 0
    read = window.read(now=at + 1)
    assert counters(read) == counters(expected)
    assert (read.total_packets, read.total_bytes) == (expected.total_packets, expected.total_bytes)
    # The minutes are merged: the read took each minute's head and merged version and the few deliveries of
    # the last minute not merged yet (fewer than COMPACT_AFTER), not the 60 deliveries.
    minutes = len({int((START + n * 4.0) // BUCKET_S) for n in range(60)})
    assert window.last_read.items <= 2 * minutes + COMPACT_AFTER + 1
    again = window.read(now=at + 2)
    assert counters(again) == counters(expected)
    # Merged versions already opened in this container are not downloaded again: the heads only.
    assert (window.last_read.items, window.last_read.bytes) == (minutes, 0)


@pytest.mark.parametrize("stored", [8, 96])
def test_the_items_a_decision_reads_do_not_grow_with_the_deliveries_stored(
    window: TrafficWindow, stored: int
) -> None:
    # The same four minutes, twelve times the deliveries: the read costs the same bound, set by the window's
    # minutes (a head and a merged version each) and the few deliveries not merged yet.
    at = float(START)
    for n, batch in enumerate(batches(stored)):
        at = START + n * (240.0 / stored)
        window.add(f"delivery-{n}", summary_of(batch), now=at)
        window.compact(now=at)
    window.read(now=at + 1)
    minutes = len({int((START + n * (240.0 / stored)) // BUCKET_S) for n in range(stored)})
    assert minutes == 4
    assert window.last_read.items <= 2 * minutes + COMPACT_AFTER + 1


def test_a_delivery_listed_after_a_merge_passed_its_arrival_is_counted_once(window: TrafficWindow) -> None:
    first, late = batches(2)
    window.add("on-time", summary_of(first), now=START + 10.0)
    window.read(now=START + 70.0)  # the minute is over: the read merges "on-time" into a version
    # A writer stamped at START + 5 s whose writes were held up until after that merge.
    assert window.add("held-up", summary_of(late), now=START + 5.0).written == 1
    expected = new_summary()
    expected.add(first)
    expected.add(late)
    assert counters(window.read(now=START + 80.0)) == counters(expected)
    # Lambda retries both, and a later merge runs: still each once.
    assert window.add("held-up", summary_of(late), now=START + 90.0).written == 0
    assert window.add("on-time", summary_of(first), now=START + 90.0).written == 0
    window.read(now=START + 95.0)
    assert counters(window.read(now=START + 96.0)) == counters(expected)


def test_mergers_racing_on_one_minute_commit_one_version_and_lose_nothing(
    aws_client: AwsClientFactory, tables: Tables
) -> None:
    one, two = container(aws_client, tables), container(aws_client, tables)
    stored = batches(2 * COMPACT_AFTER)
    expected = new_summary()
    for n, batch in enumerate(stored[:COMPACT_AFTER]):
        one.add(f"race-{n}", summary_of(batch), now=START + n)
        expected.add(batch)
    # Both containers merge from the same head: the same inputs, the same keys; one commit holds.
    assert one.compact(now=START + 10.0) > 0
    assert two.compact(now=START + 10.0) == 0  # the head moved on: nothing left to merge
    for n, batch in enumerate(stored[COMPACT_AFTER:], start=COMPACT_AFTER):
        two.add(f"race-{n}", summary_of(batch), now=START + 20.0 + n)
        expected.add(batch)
    assert counters(one.read(now=START + 40.0)) == counters(expected)
    assert counters(two.read(now=START + 40.0)) == counters(expected)


def test_a_merger_that_died_before_its_commit_blocks_nothing(
    aws_client: AwsClientFactory, tables: Tables, window: TrafficWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    ddb = aws_client("dynamodb")
    stored = batches(COMPACT_AFTER)
    expected = new_summary()
    for n, batch in enumerate(stored):
        window.add(f"died-{n}", summary_of(batch), now=START + n)
        expected.add(batch)
    calls = window._retry.call_if

    def dies_at_the_commit(what: str, operation: Any) -> Any:
        if what == "UpdateItem window merged":
            raise TimeoutError("the container was frozen")
        return calls(what, operation)

    monkeypatch.setattr(window._retry, "call_if", dies_at_the_commit)
    with pytest.raises(TimeoutError):
        window.compact(now=START + 10.0)  # its version's parts are written, the head still lists everything
    pk = window_key(int(START // BUCKET_S * BUCKET_S))
    head_key = {"pk": {"S": pk}, "sk": {"S": HEAD}}
    assert len(ddb.get_item(TableName=tables.state, Key=head_key)["Item"]["pending"]["SS"]) == COMPACT_AFTER
    # Another container merges the same inputs under the same keys: the parts are there, it commits them.
    fresh = TrafficWindow(tables.state, window_s=300, new_summary=new_summary, client=ddb)
    assert fresh.compact(now=START + 11.0) == 0
    head = ddb.get_item(TableName=tables.state, Key=head_key)["Item"]
    assert "pending" not in head  # every listed delivery merged
    assert sorted(head["merged"]["SS"]) == [f"died-{n}" for n in range(COMPACT_AFTER)]
    assert head["version"]["N"] == "1"
    assert counters(fresh.read(now=START + 20.0)) == counters(expected)


def test_a_corrupt_delivery_is_left_out_and_the_rest_still_counts(
    aws_client: AwsClientFactory, tables: Tables, window: TrafficWindow
) -> None:
    ddb = aws_client("dynamodb")
    good, bad = batches(2)
    window.add("good", summary_of(good), now=START + 1.0)
    window.add("bad", summary_of(bad), now=START + 2.0)
    damaged = {"pk": {"S": "DELIVERY#bad"}, "sk": {"S": "PART#000"}, "summary": {"B": b"x"}}
    ddb.put_item(TableName=tables.state, Item=damaged)
    expected = new_summary()
    expected.add(good)
    assert counters(window.read(now=START + 10.0)) == counters(expected)  # before the merge
    assert counters(window.read(now=START + 70.0)) == counters(expected)  # merged: "bad" leaves the head


def test_a_sharded_window_spreads_writes_over_partitions_and_reads_them_all(
    aws_client: AwsClientFactory, tables: Tables
) -> None:
    ddb = aws_client("dynamodb")
    sharded = TrafficWindow(
        tables.state,
        window_s=300,
        new_summary=new_summary,
        client=ddb,
        retrier=Retrier(FAST_RETRIES),
        shards=3,
    )
    stored = batches(24)
    expected = new_summary()
    for n, batch in enumerate(stored):
        at = START + n * 10.0  # four minutes, each delivery to its writer's shard
        sharded.add(f"sharded-{n}", summary_of(batch), now=at, shard=n % 3)
        sharded.compact(now=at, shard=n % 3)
        expected.add(batch)
    read = sharded.read(now=START + 240 + 1)
    assert counters(read) == counters(expected)
    keys = {item["pk"]["S"] for item in ddb.scan(TableName=tables.state)["Items"]}
    minute = int(START // BUCKET_S * BUCKET_S)
    assert {f"WINDOW#{minute}", f"WINDOW#{minute}#1", f"WINDOW#{minute}#2"} <= keys
    assert not any(key.startswith("WINDOW#") and key.endswith("#0") for key in keys)
    # An unsharded reader of the same table sees only shard 0: the shards are partitions, not copies.
    alone = TrafficWindow(tables.state, window_s=300, new_summary=new_summary, client=ddb)
    assert alone.read(now=START + 240 + 1).total_packets < expected.total_packets
    with pytest.raises(ValueError, match=r"window shard 3 is outside 0\.\.2"):
        sharded.add("nowhere", summary_of(stored[0]), now=START, shard=3)


def test_a_window_of_more_minute_shards_than_a_container_keeps_opened_still_reads_whole(
    aws_client: AwsClientFactory, tables: Tables
) -> None:
    def roomy() -> TrafficSummary:  # room for every source of the 84 deliveries: exact sums to compare
        return TrafficSummary(capacity=4 * CAPACITY)

    ddb = aws_client("dynamodb")
    wide = TrafficWindow(tables.state, window_s=300, new_summary=roomy, client=ddb, shards=SHARDS)
    stored = batches(6 * SHARDS)
    expected = roomy()
    for n, batch in enumerate(stored):  # 6 minutes x 14 shards, one delivery each, merged once over
        at = START + (n // SHARDS) * BUCKET_S + 1.0
        wide.add(f"wide-{n}", summary_of(batch), now=at, shard=n % SHARDS)
        expected.add(batch)
    # The read merges the five minutes that are over: 70 versions, more than the 64 a container keeps
    # opened, so that some it merged are let go before it sums them. Then it reads them again.
    now = START + 5 * BUCKET_S + 30.0
    assert counters(wide.read(now=now)) == counters(expected)
    assert wide.last_read.merged_written == 5 * SHARDS
    assert counters(wide.read(now=now + 1.0)) == counters(expected)
    assert counters(
        TrafficWindow(tables.state, window_s=300, new_summary=roomy, client=ddb, shards=SHARDS).read(
            now=now + 2.0
        )
    ) == counters(expected)
