"""The shared window against the emulator: compacted as it fills, it still holds exactly what was stored,
each delivery once, and a decision reads a few items however many deliveries the window holds."""

from __future__ import annotations

import random

import pytest

from emulator.traffic import START, VPC_CIDR, Source, background, flow_lines
from floodgate.adapters.retry import Retrier
from floodgate.adapters.window import BUCKET_S, COMPACT_AFTER, SETTLE_S, TrafficWindow
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser, SourceBatch
from floodgate.core.summary import TrafficSummary
from tests.integration.conftest import FAST_RETRIES, AwsClientFactory, Tables

pytestmark = pytest.mark.integration

V2 = FlowLogFormat.parse(DEFAULT_FORMAT)
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


@pytest.fixture
def window(aws_client: AwsClientFactory, tables: Tables) -> TrafficWindow:
    return TrafficWindow(
        tables.state,
        window_s=300,
        new_summary=new_summary,
        client=aws_client("dynamodb"),
        retrier=Retrier(FAST_RETRIES),
    )


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
    read = window.read(now=at + SETTLE_S + 1)
    assert counters(read) == counters(expected)
    assert (read.total_packets, read.total_bytes) == (expected.total_packets, expected.total_bytes)
    # The minutes are merged: the read took each minute's merged version (its key, then its part) and the
    # few deliveries of the last minute not merged yet (fewer than COMPACT_AFTER, and the unsettled last
    # one), not the 60 deliveries.
    minutes = len({int((START + n * 4.0) // BUCKET_S) for n in range(60)})
    assert window.last_read.items <= 2 * minutes + COMPACT_AFTER + 1
    again = window.read(now=at + SETTLE_S + 2)
    assert counters(again) == counters(expected)
    # Merged versions already opened in this container are not downloaded again: their keys only.
    assert (window.last_read.items, window.last_read.bytes) == (minutes, 0)


@pytest.mark.parametrize("stored", [8, 96])
def test_the_items_a_decision_reads_do_not_grow_with_the_deliveries_stored(
    window: TrafficWindow, stored: int
) -> None:
    # The same four minutes, twelve times the deliveries: the read costs the same bound, set by the window's
    # minutes (a merged version each, its key and its part) and the few deliveries not merged yet.
    at = float(START)
    for n, batch in enumerate(batches(stored)):
        at = START + n * (240.0 / stored)
        window.add(f"delivery-{n}", summary_of(batch), now=at)
        window.compact(now=at)
    window.read(now=at + SETTLE_S + 1)
    minutes = len({int((START + n * (240.0 / stored)) // BUCKET_S) for n in range(stored)})
    assert minutes == 4
    assert window.last_read.items <= 2 * minutes + COMPACT_AFTER + 1


def test_a_delivery_whose_parts_land_after_a_merge_passed_it_is_filed_again(window: TrafficWindow) -> None:
    first, late = batches(2)
    window.add("on-time", summary_of(first), now=START + 10.0)
    window.read(now=START + 20.0)  # merges "on-time" (mark: START + 10 s)
    # A writer stamped at START + 5 s whose put was held up until after that merge.
    assert (
        window.add("held-up", summary_of(late), now=START + 5.0).written == 2
    )  # its first filing, then again
    expected = new_summary()
    expected.add(first)
    expected.add(late)
    assert counters(window.read(now=START + 30.0)) == counters(expected)


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
    read = sharded.read(now=START + 240 + SETTLE_S + 1)
    assert counters(read) == counters(expected)
    keys = {item["pk"]["S"] for item in ddb.scan(TableName=tables.state)["Items"]}
    minute = int(START // BUCKET_S * BUCKET_S)
    assert {f"WINDOW#{minute}", f"WINDOW#{minute}#1", f"WINDOW#{minute}#2"} <= keys
    assert not any(key.startswith("WINDOW#") and key.endswith("#0") for key in keys)
    # An unsharded reader of the same table sees only shard 0: the shards are partitions, not copies.
    alone = TrafficWindow(tables.state, window_s=300, new_summary=new_summary, client=ddb)
    assert alone.read(now=START + 240 + SETTLE_S + 1).total_packets < expected.total_packets
    with pytest.raises(ValueError, match=r"window shard 3 is outside 0\.\.2"):
        sharded.add("nowhere", summary_of(stored[0]), now=START, shard=3)
