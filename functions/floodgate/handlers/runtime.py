"""What both handlers share: the powertools Logger, Metrics and Tracer, the domain service each one builds
once per execution environment, and the mapping from a service's report to metrics and a JSON answer."""

from __future__ import annotations

import gc
import os
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from floodgate.observability import METRIC, METRIC_NAMESPACE, SERVICE_NAME
from floodgate.settings import Settings

# The Logger is the `floodgate` stdlib logger: the domain modules' own loggers (floodgate.*) propagate to it
# and come out as the same structured JSON, correlation id included.
logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRIC_NAMESPACE, service=SERVICE_NAME)
# Only botocore is patched: the AWS calls are what a trace should show, and patching every library X-Ray
# knows costs cold-start time for nothing.
tracer = Tracer(service=SERVICE_NAME, patch_modules=["botocore"])

# An alarm clearing or a control message has nothing to measure; that is not worth a warning per invocation.
warnings.filterwarnings("ignore", "No application metrics to publish")

T = TypeVar("T")


class Report(Protocol):
    def metric_values(self) -> dict[str, float]: ...

    def as_dict(self) -> dict[str, Any]: ...


class ColdStart(Generic[T]):
    """A service built from the environment on first use, i.e. at cold start, then kept for the life of the
    execution environment. Settings are validated there, once: a bad variable fails every invocation with
    an error naming it. Tests and benchmarks put their own service in place with `use`."""

    def __init__(self, build: Callable[[Settings], T]) -> None:
        self._build = build
        self._service: T | None = None

    def get(self) -> T:
        service = self._service
        if service is None:
            service = self._service = self._build(Settings.from_env(os.environ))
            # What exists now - modules, clients, the service - lives as long as the execution environment.
            # Frozen out of the collector's sight, it is no longer walked by every full collection, which is
            # what made the slowest tenth of 10,000-record deliveries twice as slow as the median.
            gc.freeze()
        return service

    def use(self, service: T | None) -> None:
        self._service = service


_UNITS = {
    METRIC.DECISION_LATENCY_MS: MetricUnit.Milliseconds,
    METRIC.INBOUND_PPS: MetricUnit.CountPerSecond,
    METRIC.DENIED_ACCEPT_PPS: MetricUnit.CountPerSecond,
    METRIC.DENIED_REJECT_PPS: MetricUnit.CountPerSecond,
    METRIC.INGEST_LAG_S: MetricUnit.Seconds,
    METRIC.DECISION_AGE_S: MetricUnit.Seconds,
}


def record(report: Report) -> dict[str, Any]:
    """Emit the report's metrics (EMF, flushed by `log_metrics`) and return its JSON answer."""
    for name, value in report.metric_values().items():
        unit = _UNITS.get(name, MetricUnit.Count)
        metrics.add_metric(name=name, unit=unit, value=value)
    return report.as_dict()


def record_per_nacl(name: str, values: Mapping[str, int]) -> None:
    """One series per NACL: the metric with a NaclId dimension besides service (see infra.observability)."""
    for nacl_id, value in sorted(values.items()):
        with single_metric(
            name=name,
            unit=MetricUnit.Count,
            value=value,
            namespace=METRIC_NAMESPACE,
            default_dimensions={"service": SERVICE_NAME},
        ) as metric:
            metric.add_dimension(name="NaclId", value=nacl_id)


def replay_failed_ranges(replays: ColdStart[Any], context: Any) -> dict[str, Any] | None:
    """After a scheduled decision, in the time the invocation has left: the stream's failed ranges read back
    and stored (`services.stream_replay`); None without a stream failure queue. Its own failure is logged
    and left to the next tick, never made the tick's."""
    try:
        replay = replays.get()
        if replay is None:
            return None
        deadline = time.time() + context.get_remaining_time_in_millis() / 1000
        return record(replay.run(deadline=deadline))
    except Exception:
        logger.exception("replaying the stream's failed ranges failed; left to the next tick")
        return None


def record_failure(name: str) -> None:
    """Count one failure now, in its own EMF line: the invocation is about to raise, and what `log_metrics`
    gathered for it is not what on-call needs to see."""
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=1,
        namespace=METRIC_NAMESPACE,
        default_dimensions={"service": SERVICE_NAME},
    ):
        pass
