"""Floodgate's ceilings and monthly cost, computed from AWS's published quotas and us-east-1 list prices and
from this project's measured per-delivery figures. Prints JSON lines (`make bench`); `--markdown` prints the
README's tables instead (tests/unit/test_cost_model.py checks the README holds exactly that).

Every figure is labelled: "computed" (arithmetic on the assumptions below) or "measured" (a `make bench`
figure, quoted). Nothing here calls AWS.

Prices (us-east-1, on-demand list prices; check https://aws.amazon.com/<service>/pricing/ before relying):
- CloudWatch Logs, vended logs (flow logs) ingested: $0.50/GB first 10 TB a month, $0.25 next 20 TB, $0.10
  next 20 TB, $0.05 beyond 50 TB; to S3: $0.25, $0.15, $0.075, $0.05 on the same tiers.
- Kinesis Data Streams, provisioned: $0.015 per shard-hour, $0.014 per million PUT payload units (25 KB).
- Lambda, Arm: $0.0000133334 per GB-second, $0.20 per million requests.
- DynamoDB on-demand: $0.625 per million write request units, $0.125 per million read request units.
- SQS $0.40 and SNS $0.50 per million requests; S3 Standard $0.023 per GB-month; Athena $5 per TB scanned
  (10 MB minimum per query).
- Shield Advanced: $3,000 a month per organization, plus data transfer out fees of the protected resources.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass

MONTH_S = 730 * 3600  # AWS bills a month as 730 hours
GB = 1e9

# -- assumptions ------------------------------------------------------------------------------------------
RECORDS_PER_S_PER_INSTANCE = 50.0  # flow-log records per second per instance (one ENI), a busy web host
BYTES_PER_RECORD = 115  # default-format record as ingested (aws-facts: ~110-120 bytes)
GZIP_RATIO = 5.0  # flow-log text to the gzip'd batches CloudWatch Logs hands a Kinesis destination
ARMED_FRACTION = 0.05  # share of the month an alarm arms enforcement (decisions run only then)
SIZES = {"small": 10, "medium": 200, "large": 5000}  # instances in the VPC

# -- measured per-delivery figures (make bench; quoted from the README's Figures) --------------------------
DETECTOR_GB = 0.5  # the detector's 512 MB
EXPIRER_GB = 0.25
# Per delivery: ~10 DynamoDB requests (measured: 10.7, bench_window) at ~6 ms each in AWS (assumption).
DELIVERY_FIXED_S = 0.06
# Per record: 50 ms of reference-parser CPU per 10,000 records in process (measured, one core), scaled to
# the CPU share of 512 MB (1,769 MB is one vCPU): ~17 us.
PER_RECORD_S = 5e-6 * 1769 / 512
MAX_RECORDS_PER_DELIVERY = 10_000  # CloudWatch Logs subscription batches (bench's largest delivery)
WINDOW_PART_KB = 30  # a packed window part: 18-42 KB (bench_window / the measurement)
RECORDS_PER_PART = 5_000  # a 10,000-record delivery of ~4,000 sources packs into 2 parts (measured)
DECISION_READ_KB = 400  # one decision reads ~21 items, 0.4 MB (bench_window, measured)
DECISIONS_PER_MIN_ARMED = 3  # one per DECISION_PACE_S = 20 s
EXPIRER_RUN_S = 0.3  # one expirer run with a sample of the window (order of magnitude; bench_enforcement)
KINESIS_BATCH_RECORDS = 10_000  # event source mapping batch size (assumption for the Kinesis path)
KINESIS_BATCH_WINDOW_S = 10  # its batching window: at most one batch per shard per 10 s when quiet


def tiered(gigabytes: float, prices: tuple[float, float, float, float]) -> float:
    """Vended-log tiers: first 10 TB, next 20 TB, next 20 TB, beyond 50 TB (per month)."""
    cost, left = 0.0, gigabytes
    for size_gb, price in zip((10_000, 20_000, 20_000, math.inf), prices, strict=True):
        used = min(left, size_gb)
        cost += used * price
        left -= used
    return cost


CWL_VENDED = (0.50, 0.25, 0.10, 0.05)
S3_VENDED = (0.25, 0.15, 0.075, 0.05)


@dataclass(frozen=True)
class Traffic:
    instances: int

    @property
    def records_per_s(self) -> float:
        return self.instances * RECORDS_PER_S_PER_INSTANCE

    @property
    def gb_per_month(self) -> float:
        return self.records_per_s * BYTES_PER_RECORD * MONTH_S / GB

    @property
    def subscription_deliveries_per_s(self) -> float:
        """One delivery per ENI log stream about once a minute, split at 10,000 records."""
        per_eni_minute = RECORDS_PER_S_PER_INSTANCE * 60
        return self.instances / 60 * math.ceil(per_eni_minute / MAX_RECORDS_PER_DELIVERY)


def lambda_cost(invocations: float, seconds_each: float, gb: float) -> float:
    return invocations * seconds_each * gb * 0.0000133334 + invocations / 1e6 * 0.20


def detector_cost(traffic: Traffic, deliveries_per_s: float) -> dict[str, float]:
    """Lambda and DynamoDB of the detector and expirer, for `deliveries_per_s` carrying the traffic."""
    deliveries = deliveries_per_s * MONTH_S
    records_each = traffic.records_per_s / deliveries_per_s
    seconds_each = DELIVERY_FIXED_S + PER_RECORD_S * records_each
    expirer_runs = MONTH_S / 60
    lambda_usd = lambda_cost(deliveries, seconds_each, DETECTOR_GB) + lambda_cost(
        expirer_runs, EXPIRER_RUN_S, EXPIRER_GB
    )
    parts = math.ceil(records_each / RECORDS_PER_PART)
    # Writes: the delivery marker, its parts, the health item; the minute's merged versions (~once per
    # minute per 4 deliveries settled: a merged version of 2 parts each time).
    writes_per_delivery = 1 + parts * WINDOW_PART_KB + 1 + 2 * WINDOW_PART_KB / 4
    # Reads: key-only queries while compacting (~8 eventually consistent, 0.5 unit each), the merge reads.
    reads_per_delivery = 4 + parts * WINDOW_PART_KB / 4 / 2
    decisions = MONTH_S / 60 * DECISIONS_PER_MIN_ARMED * ARMED_FRACTION
    reads = deliveries * reads_per_delivery + decisions * DECISION_READ_KB / 4 / 2 + expirer_runs * 10
    dynamodb_usd = deliveries * writes_per_delivery / 1e6 * 0.625 + reads / 1e6 * 0.125
    return {"lambda": lambda_usd, "dynamodb": dynamodb_usd}


def subscription_path(traffic: Traffic) -> dict[str, float]:
    """Flow logs -> CloudWatch Logs -> subscription filter -> detector (asynchronous invocations)."""
    return {
        "cloudwatch_logs_ingestion": tiered(traffic.gb_per_month, CWL_VENDED),
        **detector_cost(traffic, traffic.subscription_deliveries_per_s),
        "sqs_sns": 0.5,  # failure queue polling by CloudWatch and a few notices: cents; rounded up
    }


def kinesis_shards(traffic: Traffic) -> int:
    """Shards for the gzip'd stream: 1 MB/s in per shard (records in are CloudWatch Logs batches, far under
    1,000/s), at least 1, with 2x headroom for bursts."""
    compressed_mb_per_s = traffic.records_per_s * BYTES_PER_RECORD / GZIP_RATIO / 1e6
    return max(1, math.ceil(2 * compressed_mb_per_s))


def kinesis_path(traffic: Traffic) -> dict[str, float]:
    """Flow logs -> CloudWatch Logs -> logs destination -> Kinesis Data Stream -> detector (event source
    mapping, 10,000-record batches). CloudWatch Logs ingestion is paid all the same."""
    shards = kinesis_shards(traffic)
    compressed_kb = traffic.gb_per_month * 1e6 / GZIP_RATIO
    put_units = compressed_kb / 25  # each batch rounded up to 25 KB units: a lower bound
    batches_per_s = max(traffic.records_per_s / KINESIS_BATCH_RECORDS, shards / KINESIS_BATCH_WINDOW_S)
    return {
        "cloudwatch_logs_ingestion": tiered(traffic.gb_per_month, CWL_VENDED),
        "kinesis": shards * 730 * 0.015 + put_units / 1e6 * 0.014,
        **detector_cost(traffic, batches_per_s),
        "sqs_sns": 0.5,
    }


def s3_athena_path(traffic: Traffic) -> dict[str, float]:
    """Flow logs -> S3 (Parquet, hourly partitions, 30 days kept) -> an Athena query every 5 minutes over the
    last hour: no Floodgate, detection minutes later (files every ~10 minutes)."""
    parquet_gb = traffic.gb_per_month / 8  # Parquet of flow logs: ~8x smaller than the text (assumption)
    hourly_gb = parquet_gb / 730
    queries = 12 * 730
    scanned_tb = queries * max(hourly_gb, 0.01) / 1000
    return {
        "s3_vended_delivery": tiered(traffic.gb_per_month, S3_VENDED),
        "s3_storage": parquet_gb * 0.023,  # 30 days kept: about one month stored at any time
        "athena": scanned_tb * 5,
    }


def shield_advanced(_: Traffic) -> dict[str, float]:
    """The subscription alone; data transfer out fees come on top and depend on outbound traffic."""
    return {"subscription": 3000.0}


PATHS = {
    "subscription": subscription_path,
    "kinesis": kinesis_path,
    "s3_athena": s3_athena_path,
    "shield_advanced": shield_advanced,
}

ASSUMPTIONS = {
    "records_per_s_per_instance": RECORDS_PER_S_PER_INSTANCE,
    "bytes_per_record": BYTES_PER_RECORD,
    "gzip_ratio_to_kinesis": GZIP_RATIO,
    "armed_fraction": ARMED_FRACTION,
    "window_part_kb": WINDOW_PART_KB,
    "region": "us-east-1",
}


def costs() -> Iterator[dict[str, object]]:
    for size, instances in SIZES.items():
        traffic = Traffic(instances)
        for path, model in PATHS.items():
            parts = model(traffic)
            yield {
                "figure": "monthly_cost_usd",
                "source": "computed",
                "size": size,
                "instances": instances,
                "records_per_s": traffic.records_per_s,
                "flow_log_gb_per_month": round(traffic.gb_per_month, 1),
                "path": path,
                "total": round(sum(parts.values()), 2),
                "parts": {name: round(value, 2) for name, value in parts.items()},
                "assumptions": ASSUMPTIONS,
            }


def ceilings() -> Iterator[dict[str, object]]:
    """Each component's limit and the records/s at which it saturates, for subscription deliveries of one
    ENI-minute (3,000 records at the assumed rate) and for 10,000-record Kinesis batches."""
    eni_minute = RECORDS_PER_S_PER_INSTANCE * 60
    delivery_s = DELIVERY_FIXED_S + PER_RECORD_S * eni_minute
    batch_s = DELIVERY_FIXED_S + PER_RECORD_S * KINESIS_BATCH_RECORDS

    def wcu(records: float) -> float:
        return 1 + math.ceil(records / RECORDS_PER_PART) * WINDOW_PART_KB + 1 + 2 * WINDOW_PART_KB / 4

    rows: list[tuple[str, str, float | None, str, str]] = [
        (
            "armed decision (window read + merge)",
            "bounded: ~21 items, 0.4 MB, p50 0.61 s against moto at 1,000 deliveries/window (0.45 s merge + "
            "plan in process)",
            None,
            "measured",
            "bench/bench_window.py; the bound: tests/integration/test_window.py",
        ),
        (
            "detector reserved concurrency 2, subscription path",
            f"2 deliveries at a time, {eni_minute:,.0f} records in ~{delivery_s * 1000:.0f} ms each",
            2 * eni_minute / delivery_s,
            "computed",
            "detectorReservedConcurrency; time per delivery from bench figures (see the script)",
        ),
        (
            "one WINDOW#<minute> partition key, subscription path",
            f"1,000 WCU/s per partition; ~{wcu(eni_minute):.0f} WCU per {eni_minute:,.0f}-record delivery",
            1000 / wcu(eni_minute) * eni_minute,
            "computed",
            "DynamoDB quotas: 1,000 write units/s per partition",
        ),
        (
            "one WINDOW#<minute> partition key, 10,000-record batches",
            f"1,000 WCU/s per partition; ~{wcu(KINESIS_BATCH_RECORDS):.0f} WCU per batch",
            1000 / wcu(KINESIS_BATCH_RECORDS) * KINESIS_BATCH_RECORDS,
            "computed",
            "DynamoDB quotas: 1,000 write units/s per partition (a sharded key lifts it)",
        ),
        (
            "detector concurrency 2, 10,000-record batches",
            f"2 batches at a time, ~{batch_s * 1000:.0f} ms each",
            2 * KINESIS_BATCH_RECORDS / batch_s,
            "computed",
            "event source mapping: one batch per shard at a time (parallelisation factor 1-10 multiplies it)",
        ),
        (
            "Kinesis shard (Kinesis path)",
            f"1 MB/s or 1,000 records/s in; CloudWatch Logs batches gzip'd ~{GZIP_RATIO:.0f}x",
            1e6 * GZIP_RATIO / BYTES_PER_RECORD,
            "computed",
            "Kinesis Data Streams quotas: write throughput per shard",
        ),
        (
            "EC2 mutating calls (NACL entries)",
            "bucket of ~50 refilled at 5/s per account and Region: one new deny in N NACLs every N/5 s",
            None,
            "computed",
            "EC2 API request throttling, mutating actions",
        ),
        (
            "asynchronous event age",
            "asyncMaxEventAge (1 h): a delivery throttled longer lands in the failure queue "
            "(floodgate replay)",
            None,
            "computed",
            "Lambda asynchronous invocation: MaximumEventAgeInSeconds 60 s - 6 h",
        ),
    ]
    for component, limit, records_per_s, source, reference in rows:
        yield {
            "figure": "ceiling",
            "component": component,
            "limit": limit,
            "records_per_s_at_saturation": None if records_per_s is None else round(records_per_s, -3),
            "source": source,
            "reference": reference,
            "assumptions": ASSUMPTIONS,
        }


def _money(value: float) -> str:
    return f"${value:,.0f}" if value >= 10 else f"${value:,.2f}"


def markdown() -> str:
    out = [
        "| Component | Limit | Records/s at saturation | Source |",
        "|---|---|---|---|",
    ]
    for row in ceilings():
        saturation = row["records_per_s_at_saturation"]
        shown = "not records-bound" if saturation is None else f"~{float(str(saturation)):,.0f}"
        out.append(f"| {row['component']} | {row['limit']} | {shown} | {row['source']}: {row['reference']} |")
    out += [
        "",
        "| VPC | records/s | flow logs GB/month | subscription | Kinesis | S3 + Athena | Shield Advanced |",
        "|---|---|---|---|---|---|---|",
    ]
    by_size: dict[str, dict[str, dict[str, object]]] = {}
    for row in costs():
        by_size.setdefault(str(row["size"]), {})[str(row["path"])] = row
    for size, paths in by_size.items():
        first = paths["subscription"]

        def cell(path: str, paths: dict[str, dict[str, object]] = paths) -> str:
            row = paths[path]
            parts = row["parts"]
            assert isinstance(parts, dict)
            total = float(str(row["total"]))
            if path == "shield_advanced":
                return f"{_money(total)} + data transfer fees"
            if path in ("subscription", "kinesis"):
                ingestion = parts["cloudwatch_logs_ingestion"]
                return f"{_money(total)} ({ingestion / total:.0%} log ingestion)"
            return _money(total)

        out.append(
            f"| {size} ({first['instances']:,} instances) | {float(str(first['records_per_s'])):,.0f} | "
            f"{float(str(first['flow_log_gb_per_month'])):,.0f} | {cell('subscription')} | "
            f"{cell('kinesis')} | {cell('s3_athena')} | {cell('shield_advanced')} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown())
    else:
        for figure in (*ceilings(), *costs()):
            print(json.dumps(figure))
