"""Handler figures against a moto server this script starts. Prints JSON lines:

- handler_import: `python -X importtime` of each handler module (median of 5 fresh interpreters), and the
  first-use build of each service on default clients (what the first invocation adds to a cold start);
- alarm_to_deny: from the alarm event handed to the detector handler to its return, deny entries written
  (p50, p99), with a full 5-minute window (8 interfaces x 5 deliveries, 2,000 ordinary clients + a flood);
- batch_processing: one subscription delivery of 10,000 records through the handler (p50, p99);
- window_writes_per_batch: DynamoDB writes of one batch with 1 and with 100,000 distinct sources.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]
os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from emulator.traffic import (  # noqa: E402
    ACCOUNT,
    START,
    VPC_CIDR,
    Source,
    background,
    flow_lines,
    prefix_hosts,
    public_addresses,
)
from floodgate.adapters.retry import Backoff, Retrier  # noqa: E402
from floodgate.core.window import max_parts  # noqa: E402
from floodgate.handlers import detector as detector_handler  # noqa: E402
from floodgate.services.detection import DetectionService  # noqa: E402
from floodgate.services.wiring import Wiring  # noqa: E402
from floodgate.settings import ENV, Settings  # noqa: E402
from floodgate.tables import LOG_BY_CIDR_INDEX, PARTITION_KEY, SORT_KEY  # noqa: E402
from tests.events import LambdaContextStub, flow_log_event, load  # noqa: E402

RUNS = 40
BATCH_RUNS = 20
WINDOW_MINUTES = 5
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


def emit(**figure: object) -> None:
    print(json.dumps(figure), flush=True)


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(statistics.median(samples), 1), "p99_ms": round(cuts[98], 1)}


class Emulator:
    """A moto server in its own process: in this one it would share the GIL and the garbage collector with
    the code being measured (its in-memory tables make every full collection slow) and skew the figures."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        self.server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.endpoint = f"http://localhost:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):  # noqa: S310 - localhost
                    break
            except OSError:
                if time.monotonic() > deadline or self.server.poll() is not None:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)
        dummy = "testing"  # the emulator's credentials, never real ones
        os.environ.update(
            AWS_ACCESS_KEY_ID=dummy,
            AWS_SECRET_ACCESS_KEY=dummy,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=self.endpoint,
        )
        self.writes: list[tuple[str, int]] = []  # (operation, bytes of window summary written)
        self.dynamodb = self.client("dynamodb")
        for operation in WRITES:
            self.dynamodb.meta.events.register(
                f"provide-client-params.dynamodb.{operation}", self._count_write
            )
        self.ec2, self.sns = self.client("ec2"), self.client("sns")

    def client(self, service: str) -> Any:
        retries: Any = {"mode": "standard", "total_max_attempts": 1}
        config = Config(retries=retries, connect_timeout=5, read_timeout=20)
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1", config=config)

    def _count_write(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        summary = params.get("Item", {}).get("summary", {}).get("B", b"")
        self.writes.append((model.name, len(summary)))

    def deployment(self, **overrides: str) -> Settings:
        """A fresh VPC with one protected NACL, fresh tables and topic: the settings pointing at them."""
        vpc_id = self.ec2.create_vpc(CidrBlock=VPC_CIDR)["Vpc"]["VpcId"]
        nacl_id = self.ec2.create_network_acl(VpcId=vpc_id)["NetworkAcl"]["NetworkAclId"]
        for egress in (False, True):
            self.ec2.create_network_acl_entry(
                NetworkAclId=nacl_id, RuleNumber=1000, Protocol="-1", RuleAction="allow", Egress=egress,
                CidrBlock="0.0.0.0/0",
            )  # fmt: skip
        suffix = uuid.uuid4().hex[:8]
        for name in (f"state-{suffix}", f"window-{suffix}", f"log-{suffix}"):
            self.dynamodb.create_table(
                TableName=name,
                KeySchema=[
                    {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                    {"AttributeName": SORT_KEY, "AttributeType": "S"},
                    {"AttributeName": "cidr", "AttributeType": "S"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": LOG_BY_CIDR_INDEX,
                        "KeySchema": [
                            {"AttributeName": "cidr", "KeyType": "HASH"},
                            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        topic_arn = self.sns.create_topic(Name=f"floodgate-{suffix}")["TopicArn"]
        return Settings.from_env(
            {
                ENV.NACL_IDS: nacl_id,
                ENV.VPC_CIDRS: VPC_CIDR,
                ENV.MIN_PPS: "1000",
                ENV.ALARM_NAMES: json.dumps(["Floodgate-early-warning"]),
                ENV.STATE_TABLE: f"state-{suffix}",
                ENV.WINDOW_TABLE: f"window-{suffix}",
                ENV.LOG_TABLE: f"log-{suffix}",
                ENV.TOPIC_ARN: topic_arn,
                **overrides,
            }
        )

    def detector(self, settings: Settings, clock: Callable[[], float]) -> DetectionService:
        wiring = Wiring(
            clock=clock, dynamodb=self.dynamodb, ec2=self.ec2, sns=self.sns, retrier=Retrier(Backoff())
        )
        service = DetectionService.from_settings(settings, wiring)
        detector_handler.detector.use(service)
        gc.freeze()  # as ColdStart.get does once it has built the service
        return service


class Clock:
    """The services' wall clock, moved by hand so that deliveries arrive in their minutes."""

    def __init__(self, at: float = START) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    """The detector handler, as Lambda calls it; its EMF metrics (printed) kept out of the figures."""
    with contextlib.redirect_stdout(io.StringIO()):
        answer: dict[str, Any] = detector_handler.lambda_handler(event, LambdaContextStub())
    return answer


def window_deliveries(rng: random.Random) -> list[tuple[float, dict[str, Any]]]:
    """Five minutes of 2,000 ordinary clients and a flood (3 sources, a /24 of bots), per interface and
    minute, each with the clock time it arrives at."""
    flooders = public_addresses(rng, 3)
    sources = (
        background(rng, 2000, pps=8.0)
        + [Source(a, 12_000, flows=16) for a in flooders]
        + [Source(a, 250, flows=2) for a in prefix_hosts("203.0.113.0/24", 200)]
    )
    deliveries: list[tuple[float, dict[str, Any]]] = []
    for minute in range(WINDOW_MINUTES):
        start = START + minute * 60
        by_interface: dict[str, list[str]] = {}
        for line in flow_lines(sources, intervals=1, seed=minute):
            fields = line.split()
            fields[10], fields[11] = str(start), str(start + 60)
            by_interface.setdefault(fields[2], []).append(" ".join(fields))
        for interface, lines in sorted(by_interface.items()):
            event = flow_log_event(
                lines, interface=interface, batch=f"{minute}-{interface}", timestamp_ms=start * 1000
            )
            deliveries.append((start + 80.0, event))
    return deliveries


def bench_import() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "functions")}
    for handler in ("detector", "expirer"):
        samples = []
        for _ in range(5):
            run = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", f"import floodgate.handlers.{handler}"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            last = run.stderr.strip().splitlines()[-1]  # the handler module itself, cumulative
            samples.append(int(last.split("|")[1]) / 1000)
        emit(
            bench="handler_import",
            handler=handler,
            median_ms=round(statistics.median(samples), 1),
            goal_ms=300,
        )


def bench_first_use(emulator: Emulator) -> None:
    """The cold start's second half, in a fresh interpreter: the handler's first `get()` imports the domain
    and boto3, validates the settings and makes the default clients (here pointed at the emulator)."""
    settings = emulator.deployment()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "functions"),
        ENV.NACL_IDS: ",".join(settings.nacl_ids),
        ENV.VPC_CIDRS: ",".join(settings.vpc_cidrs),
        ENV.STATE_TABLE: settings.state_table,
        ENV.WINDOW_TABLE: settings.window_table or "",
        ENV.LOG_TABLE: settings.log_table,
    }
    for handler, service in (("detector", "detector"), ("expirer", "expirer")):
        code = (
            f"import time; from floodgate.handlers import {handler} as h; t = time.perf_counter(); "
            f"h.{service}.get(); print((time.perf_counter() - t) * 1000)"
        )
        samples = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(5)
        ]
        emit(bench="first_use_build", handler=handler, median_ms=round(statistics.median(samples), 1))


def bench_alarm_to_deny(emulator: Emulator) -> None:
    deliveries = window_deliveries(random.Random(2026))
    latencies: list[float] = []
    decisions: list[float] = []
    for _ in range(RUNS):
        clock = Clock()
        emulator.detector(emulator.deployment(), clock=clock)
        for arrives, event in deliveries:
            clock.at = arrives
            invoke(event)
        clock.at += 10
        started = time.perf_counter()
        answer = invoke(load("alarm-eventbridge-alarm"))
        latencies.append((time.perf_counter() - started) * 1000)
        decisions.append(answer["decision"]["latency_ms"])
        assert answer["decision"]["tally"] == {"BLOCK": 4}, answer["decision"]
    emit(
        bench="alarm_to_deny",
        runs=RUNS,
        window_deliveries=len(deliveries),
        entries_written=4,
        **percentiles(latencies),
        decision_metric_p99_ms=percentiles(decisions)["p99_ms"],
        goal_p99_ms=1000,
    )


def bench_batch(emulator: Emulator) -> None:
    rng = random.Random(7)
    sources = background(rng, 4000, pps=8.0) + [Source(a, 12_000, flows=16) for a in public_addresses(rng, 3)]
    lines = [line for line in flow_lines(sources, intervals=2, seed=1)][:10_000]
    assert len(lines) == 10_000
    settings = emulator.deployment()
    emulator.detector(settings, clock=lambda: START + 90.0)
    samples = []
    for run in range(BATCH_RUNS):
        event = flow_log_event(lines, interface="eni-0bench", batch=f"run{run}", timestamp_ms=START * 1000)
        started = time.perf_counter()
        answer = invoke(event)
        samples.append((time.perf_counter() - started) * 1000)
        # 10,000 records of ~4,000 sources: every source kept exactly (issue 10), in 2 parts of the window
        assert answer["parsed"] == 10_000 and answer["window_writes"] == answer["window_parts"] >= 1, answer
    emit(bench="batch_processing", records=10_000, runs=BATCH_RUNS, **percentiles(samples))


def bench_writes(emulator: Emulator) -> None:
    settings = emulator.deployment()
    emulator.detector(settings, clock=lambda: START + 90.0)

    def line(n: int, source: str, packets: int) -> str:
        return (
            f"2 {ACCOUNT} eni-0bench {source} 10.0.1.10 {1024 + n % 60000} 443 6 {packets} {packets * 60} "
            f"{START} {START + 60} ACCEPT OK"
        )

    one = [line(n, "198.51.100.7", 20) for n in range(10_000)]
    # Unequal rates, so that the batch's summary keeps its full capacity of counters: the largest item.
    many = [line(n, a, n % 997 + 1) for n, a in enumerate(public_addresses(random.Random(13), 100_000))]
    for label, lines in (("1", one), ("100000", many)):
        event = flow_log_event(
            lines, interface="eni-0bench", batch=f"writes-{label}", timestamp_ms=START * 1000
        )
        emulator.writes.clear()
        answer = invoke(event)
        emit(
            bench="window_writes_per_batch",
            distinct_sources=int(label),
            records=len(lines),
            dynamodb_writes=len(emulator.writes),
            window_parts=answer["window_parts"],
            bytes_written=sum(size for _, size in emulator.writes),
            configured_bound=max_parts(detector_handler.detector.get().window.new_summary()),
        )


def main(only: set[str]) -> None:
    """Every figure, or those named on the command line (import, first_use, alarm_to_deny, batch, writes)."""
    if not only or "import" in only:
        bench_import()
    emulator = Emulator()
    try:
        for name, bench in (
            ("first_use", bench_first_use),
            ("alarm_to_deny", bench_alarm_to_deny),
            ("batch", bench_batch),
            ("writes", bench_writes),
        ):
            if not only or name in only:
                bench(emulator)
    finally:
        emulator.server.terminate()
        emulator.server.wait(timeout=10)


if __name__ == "__main__":
    main(set(sys.argv[1:]))
