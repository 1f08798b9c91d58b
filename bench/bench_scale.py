"""Scale benchmark of the Kinesis ingest path: a synthetic 100k flow-log records/s for 5 minutes (simulated
clock) through the stack deployed into moto with `ingest: "kinesis"`, the stream read as its mapping reads it
(emulator.stream_runner), the scheduled decision once a minute. Prints JSON lines:

- scale_setup: the load (records/s, interfaces, records per delivery, shards) and `--scale`;
- scale_ingest: records and deliveries read, invocations, wall seconds spent reading against the simulated
  seconds of traffic, the records/s one process kept up with, the simulated lag from a record's arrival to
  its invocation and to its tumbling window's storage (p50 / max);
- scale_decision: per scheduled decision, wall latency (p50 / max), DynamoDB items and summary bytes read;
  tracemalloc's peak of one decision on the full window;
- scale_memory: the process's peak resident memory (the generator, the runner and the function together).

The load: `interfaces` network interfaces (1,000 at --scale 1), each delivering one batch of
RECORDS_PER_DELIVERY records a minute (60 s aggregation), i.e. 1,000 x 6,000 / 60 = 100k records/s; sources
drawn from a population of ordinary clients, and from minute 2 a flood (a few sources and a /24). At full
scale that is 30 million records: on a shared 2-core machine `--scale` runs a fraction of the interfaces and
the figures say which. The mapping's settings are the deployed ones (read back from the emulator).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import random
import resource
import statistics
import sys
import time
import tracemalloc
import warnings
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from emulator import server  # noqa: E402
from emulator.deploy import deploy  # noqa: E402
from emulator.lambda_runtime import LocalFunction, alarm_event, subscription_document  # noqa: E402
from emulator.network import create_demo_network  # noqa: E402
from emulator.stream_runner import DecisionSchedule, MappingConfig, StreamRunner  # noqa: E402
from emulator.traffic import ACCOUNT, START, public_addresses  # noqa: E402
from floodgate.observability import OUTPUT  # noqa: E402

FULL_RATE = 100_000  # records/s at --scale 1
RECORDS_PER_DELIVERY = 6_000  # one busy interface's minute (CloudWatch Logs delivers up to 10,000 events)
MINUTES = 5
POPULATION = 50_000  # ordinary clients
FLOODERS = ("198.51.100.7", "198.51.100.8", "198.51.100.9")
BOTNET = "203.0.113."
POLL_S = 10  # the mapping's batching window below, and the runner's polling period
DELIVERY_BYTES = 120_000  # a 6,000-record delivery gzipped, about: sizes the stream (1 MB/s per shard)


def emit(**figure: object) -> None:
    print(json.dumps(figure), flush=True)


def spread(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    return {"p50": round(statistics.median(samples), 3), "max": round(max(samples), 3)}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def delivery_lines(rng: random.Random, eni: str, address: str, start: int, flood: bool) -> list[str]:
    """One interface's minute in the stack's v5 format: ordinary clients, and the flood once it starts."""
    lines = []
    flood_share = 0.4 if flood else 0.0
    for n in range(RECORDS_PER_DELIVERY):
        if rng.random() < flood_share:
            source = rng.choice(FLOODERS) if n % 3 else f"{BOTNET}{rng.randrange(1, 255)}"
            packets = rng.randint(20_000, 60_000)
        else:
            source = POPULATION_ADDRESSES[rng.randrange(POPULATION)]
            packets = rng.randint(1, 400)
        lines.append(
            f"5 {ACCOUNT} {eni} {source} {address} {1024 + n % 60000} 443 6 {packets} {packets * 500} "
            f"{start} {start + 60} ACCEPT OK vpc-0demo 3 IPv4 {source} {address} - ingress"
        )
    return lines


POPULATION_ADDRESSES = public_addresses(random.Random(1), POPULATION)


def main(scale: float) -> None:
    warnings.filterwarnings("ignore")
    interfaces = max(1, round(1000 * scale))
    rate = interfaces * RECORDS_PER_DELIVERY / 60
    shards = max(1, math.ceil(2 * interfaces * DELIVERY_BYTES / 60 / 1_000_000))  # half of a shard's MB/s
    emulator = server.start(set_environment=False)
    try:
        network = create_demo_network(server.client(emulator, "ec2"))
        context = {
            **network.context(),
            "ingest": "kinesis",
            "kinesisShards": shards,
            "kinesisBatchSize": 100,
            "kinesisBatchWindow": f"{POLL_S}s",
            "kinesisTumblingWindow": "30s",
            "kinesisParallelization": 1,
            "windowShards": 4,
            "detectorReservedConcurrency": shards + 1,
        }
        with redirect_stdout(io.StringIO()):
            stack = deploy(emulator, context=context)
        clock = Clock(float(START + 3600))
        detector = LocalFunction(stack.function_for_output(OUTPUT.DETECTOR_FUNCTION), emulator, clock)
        logging.getLogger("floodgate").setLevel(logging.WARNING)  # the function's INFO lines are not figures
        config = MappingConfig.of_function(server.client(emulator, "lambda"), detector.function.name)
        runner = StreamRunner(
            detector,
            kinesis=server.client(emulator, "kinesis"),
            sqs=server.client(emulator, "sqs"),
            config=config,
            clock=clock,
            region=emulator.region,
        )
        rules = [
            name
            for logical_id, name in stack.resources.items()
            if "DecisionSchedule" in logical_id
            and stack.template["Resources"][logical_id]["Type"] == "AWS::Events::Rule"
        ]
        schedule = DecisionSchedule(server.client(emulator, "events"), rules[0].split("/")[-1], clock)
        emit(
            name="scale_setup",
            scale=scale,
            records_per_s=round(rate),
            full_records_per_s=FULL_RATE,
            interfaces=interfaces,
            records_per_delivery=RECORDS_PER_DELIVERY,
            minutes=MINUTES,
            stream_shards=len(runner.shard_ids),
            batch_size=config.batch_size,
            tumbling_window_s=config.tumbling_window_s,
            window_shards=4,
        )
        arm(emulator, stack, detector, clock)
        run(runner, schedule=schedule, detector=detector, clock=clock, interfaces=interfaces)
    finally:
        server.stop(emulator)


def arm(emulator: server.Emulator, stack: Any, detector: LocalFunction, clock: Clock) -> None:
    cloudwatch = server.client(emulator, "cloudwatch")
    name = stack.outputs["EarlyAlarmName"]
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="bench")
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    with redirect_stdout(io.StringIO()):
        detector.invoke(alarm_event(alarm, "OK", clock()))


def run(
    runner: StreamRunner,
    *,
    schedule: DecisionSchedule,
    detector: LocalFunction,
    clock: Clock,
    interfaces: int,
) -> None:
    from floodgate.handlers import detector as detector_handler  # noqa: PLC0415 - after the deploy

    service = detector_handler.detector.get()
    rng = random.Random(7)
    enis = [(f"eni-{n:017x}", f"10.0.{1 + n // 250}.{10 + n % 240}") for n in range(interfaces)]
    read_wall = 0.0
    generate_wall = 0.0
    decisions: list[dict[str, Any]] = []
    steps = 60 // POLL_S
    for minute in range(MINUTES):
        flood = minute >= 1
        start = int(clock()) - 60
        for step in range(steps):
            began = time.perf_counter()
            mine = enis[step::steps]  # the interfaces whose delivery arrives in this part of the minute
            documents = [
                subscription_document(
                    delivery_lines(rng, eni, address, start, flood),
                    log_group="/floodgate/flow-logs",
                    log_stream=f"{eni}-all",
                    filter_name="to-destination",
                    timestamp_ms=int(clock()) * 1000,
                    batch=f"{minute}-{eni}",
                )
                for eni, address in mine
            ]
            runner.deliver(documents)
            generate_wall += time.perf_counter() - began
            clock.now += POLL_S
            began = time.perf_counter()
            with redirect_stdout(io.StringIO()):
                runner.poll()
            read_wall += time.perf_counter() - began
            for tick in schedule.due():
                with redirect_stdout(io.StringIO()):
                    answer = detector.invoke(tick)
                cost = service.window.last_read
                decision = answer.get("decision") or {}
                decisions.append(
                    {
                        "latency_ms": decision.get("latency_ms"),
                        "items": cost.items,
                        "bytes": cost.bytes,
                        "planned": len(decision.get("planned", [])),
                    }
                )
    clock.now += runner.config.tumbling_window_s + POLL_S
    began = time.perf_counter()
    with redirect_stdout(io.StringIO()):
        runner.poll()
    read_wall += time.perf_counter() - began
    stats = runner.stats
    simulated_s = MINUTES * 60
    records = interfaces * RECORDS_PER_DELIVERY * MINUTES
    emit(
        name="scale_ingest",
        records=records,
        deliveries=stats.records,
        invocations=stats.invocations,
        final_invocations=stats.final_invocations,
        failed_batches=stats.failed_batches,
        read_wall_s=round(read_wall, 1),
        generate_wall_s=round(generate_wall, 1),
        simulated_s=simulated_s,
        wall_per_simulated_s=round(read_wall / simulated_s, 3),
        records_per_s_one_process=round(records / read_wall),
        lag_to_invocation_s=spread(stats.lags_s),
        lag_to_storage_s=spread(stats.flush_lags_s),
    )
    latencies = [float(d["latency_ms"]) for d in decisions if d["latency_ms"] is not None]
    tracemalloc.start()
    with redirect_stdout(io.StringIO()):
        service.analyze(dry_run=True, actor="bench")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    emit(
        name="scale_decision",
        decisions=len(decisions),
        latency_ms=spread(latencies),
        items_read=[d["items"] for d in decisions],
        bytes_read=[d["bytes"] for d in decisions],
        planned=[d["planned"] for d in decisions],
        decision_peak_traced_mb=round(peak / 1e6, 1),
    )
    emit(name="scale_memory", peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.05, help="fraction of 100k records/s (default 0.05)")
    main(parser.parse_args().scale)
