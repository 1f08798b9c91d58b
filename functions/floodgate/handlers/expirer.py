"""Expirer Lambda, run on a schedule (every minute by default): ends bans that are over, extends those whose
source still floods, and repairs drift between the ledger and the NACLs.

The event's content does not matter: the EventBridge schedule sends a Scheduled Event, and `{}` from the
console runs the expirer by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from floodgate.handlers.runtime import ColdStart, logger, metrics, record, record_per_nacl, tracer
from floodgate.observability import METRIC
from floodgate.services.events import InvalidEvent
from floodgate.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from floodgate.services.expiry import ExpiryService


def _build(settings: Settings) -> ExpiryService:
    # The domain and boto3 load here, on first use, not at import: the handler module stays cheap to load.
    from floodgate.services.expiry import ExpiryService  # noqa: PLC0415 - lazy on purpose

    return ExpiryService.from_settings(settings)


expirer: ColdStart[ExpiryService] = ColdStart(_build)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidEvent(f"expected a JSON object (a scheduled event, or {{}}), got {type(event).__name__}")
    logger.set_correlation_id(context.aws_request_id)
    report = expirer.get().run()
    record_per_nacl(METRIC.DENIES_ACTIVE, report.active)
    return record(report)
