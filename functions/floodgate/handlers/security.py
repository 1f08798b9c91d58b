"""Security-account detector of a multi-account estate (mode "security"): the members' flow logs from the
stream behind the logs destination, the members' alarm state changes from the estate bus (each arms its own
member's decisions), and the decision schedule, which publishes one `Floodgate Decision` per member onto the
estate bus (`floodgate.services.producer`), then replays the stream's failed ranges in the time left
(`floodgate.services.stream_replay`). It writes no NACL.

An alarm event the bus contract or the alarm checks refuse arms nothing and is answered with the reason
(and counted: MemberAlarmsRefused), not raised: a retry could not mend it. Any other event raises
InvalidEvent before anything is read or written.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from floodgate.handlers.runtime import ColdStart, logger, metrics, record, replay_failed_ranges, tracer
from floodgate.services.events import (
    AlarmStateChange,
    InvalidEvent,
    ScheduledDecision,
    StreamBatch,
    parse_detector_event,
)
from floodgate.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from floodgate.services.producer import DecisionProducer
    from floodgate.services.stream_replay import StreamReplay


def _build(settings: Settings) -> DecisionProducer:
    # The domain and boto3 load here, on first use, not at import: the handler module stays cheap to load.
    from floodgate.adapters.estate import own_account  # noqa: PLC0415 - lazy on purpose
    from floodgate.services.producer import DecisionProducer  # noqa: PLC0415

    return DecisionProducer.from_settings(settings, account=own_account(), region=os.environ["AWS_REGION"])


def _build_replay(settings: Settings) -> StreamReplay | None:
    from floodgate.services.stream_replay import StreamReplay  # noqa: PLC0415 - lazy on purpose

    return StreamReplay.from_settings(settings, lambda batch: producer.get().ingest_stream(batch))


producer: ColdStart[DecisionProducer] = ColdStart(_build)
replays: ColdStart[StreamReplay | None] = ColdStart(_build_replay)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(context.aws_request_id)
    try:
        parsed = parse_detector_event(event)
    except InvalidEvent as exc:
        logger.error("rejected event: %s", exc)
        raise
    if isinstance(parsed, AlarmStateChange):
        # The bus contract reads the event itself: who sent it, and whether the alarm is that sender's.
        return record(producer.get().on_member_alarm(event))
    if isinstance(parsed, ScheduledDecision):
        # Each member's decision lease lasts as long as this invocation may: a holder that times out frees it.
        parsed = dataclasses.replace(parsed, lease_s=context.get_remaining_time_in_millis() / 1000)
        answer = record(producer.get().handle(parsed))  # one member's failure is reported, not raised
        answer["replay"] = replay_failed_ranges(replays, context)
        return answer
    if not isinstance(parsed, StreamBatch):
        error = InvalidEvent(
            f"the security account's detector reads stream batches, members' alarms and its schedule, not a "
            f"{type(parsed).__name__}"
        )
        logger.error("rejected event: %s", error)
        raise error
    return record(producer.get().handle(parsed))
