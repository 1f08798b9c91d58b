"""Detector Lambda: VPC Flow Log batches (CloudWatch Logs subscription, or the Kinesis stream's mapping),
alarm state changes (EventBridge or the alarm's own Lambda action), manual actions (console, SSM runbooks,
CLI) and, with kinesis ingest, the decision schedule.

An event of no known kind, or a malformed one, raises InvalidEvent before anything is read or written. A
decision that fails is counted (DecisionFailures) and raised on: Lambda retries the event, then keeps it in
the failure queue. After each scheduled decision, whether it failed or not, the stream's failed ranges are
replayed in the time left (`services.stream_replay`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from floodgate.handlers.runtime import (
    ColdStart,
    logger,
    metrics,
    record,
    record_failure,
    replay_failed_ranges,
    tracer,
)
from floodgate.observability import METRIC
from floodgate.services.events import (
    AlarmStateChange,
    Home,
    InvalidEvent,
    ScheduledDecision,
    parse_detector_event,
)
from floodgate.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from floodgate.services.detection import DetectionService
    from floodgate.services.stream_replay import StreamReplay


def _build(settings: Settings) -> DetectionService:
    # The domain and boto3 load here, on first use, not at import: the handler module stays cheap to load.
    from floodgate.services.detection import DetectionService  # noqa: PLC0415 - lazy on purpose

    return DetectionService.from_settings(settings)


def _build_replay(settings: Settings) -> StreamReplay | None:
    from floodgate.services.stream_replay import StreamReplay  # noqa: PLC0415 - lazy on purpose

    return StreamReplay.from_settings(settings, lambda batch: detector.get().ingest_stream(batch))


detector: ColdStart[DetectionService] = ColdStart(_build)
replays: ColdStart[StreamReplay | None] = ColdStart(_build_replay)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        detector_event = parse_detector_event(event)
    except InvalidEvent as exc:
        logger.error("rejected event: %s", exc)
        raise
    if isinstance(detector_event, AlarmStateChange):
        logger.set_correlation_id(detector_event.correlation_id)
    else:
        logger.set_correlation_id(context.aws_request_id)
    if isinstance(detector_event, ScheduledDecision):
        # The decision lease lasts as long as this invocation may: a holder that times out frees it.
        lease_s = context.get_remaining_time_in_millis() / 1000
        detector_event = dataclasses.replace(detector_event, lease_s=lease_s)
    tracer.put_annotation(key="event", value=type(detector_event).__name__)
    home = Home.of_function(context.invoked_function_arn)
    tick = isinstance(detector_event, ScheduledDecision)
    try:
        answer = record(detector.get().handle(detector_event, home=home))
    except Exception as exc:
        # Loaded already when a decision failed: the service is what raised it.
        from floodgate.services.detection import DecisionFailed  # noqa: PLC0415 - lazy on purpose

        if isinstance(exc, DecisionFailed):
            record_failure(METRIC.DECISION_FAILURES)
        if tick:
            replay_failed_ranges(replays, context)
        raise
    if tick:
        answer["replay"] = replay_failed_ranges(replays, context)
    return answer
