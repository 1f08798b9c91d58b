"""Member-account Lambdas of a multi-account estate (mode "member"):

- `lambda_handler`: a `Floodgate Decision` from the security account, delivered by the rule on this
  account's default event bus, applied to this account's tagged VPC (`floodgate.services.estate`);
- `expiry_handler`: the expirer's run over the same VPC, on the member's schedule.

An event that breaks the bus contract or is not addressed to this member raises BusEventError: nothing is
written, and the failure lands in the on-failure queue with its reason.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from floodgate.handlers.runtime import ColdStart, logger, metrics, record, record_per_nacl, tracer
from floodgate.observability import METRIC
from floodgate.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from floodgate.services.estate import MemberService
    from floodgate.services.expiry import ExpiryService


def _build(settings: Settings) -> MemberService:
    # The domain and boto3 load here, on first use, not at import: the handler module stays cheap to load.
    from floodgate.adapters.estate import own_account  # noqa: PLC0415 - lazy on purpose
    from floodgate.services.estate import MemberService  # noqa: PLC0415

    return MemberService.from_settings(settings, account=own_account(), region=os.environ["AWS_REGION"])


def _build_expiry(settings: Settings) -> ExpiryService:
    from floodgate.services.estate import member_settings  # noqa: PLC0415 - lazy on purpose
    from floodgate.services.expiry import ExpiryService  # noqa: PLC0415
    from floodgate.services.wiring import Wiring  # noqa: PLC0415

    wiring = Wiring()
    return ExpiryService.from_settings(member_settings(settings, wiring), wiring)


member: ColdStart[MemberService] = ColdStart(_build)
expirer: ColdStart[ExpiryService] = ColdStart(_build_expiry)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(context.aws_request_id)
    return record(member.get().receive(event))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def expiry_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(context.aws_request_id)
    service = expirer.get()
    from floodgate.services.estate import ensure_member_flow_log  # noqa: PLC0415 - loaded with the service
    from floodgate.services.wiring import Wiring  # noqa: PLC0415

    # Idempotent, so on every run: a flow log deleted by hand comes back at the next one.
    ensure_member_flow_log(service.settings, os.environ, Wiring())
    report = service.run()
    record_per_nacl(METRIC.DENIES_ACTIVE, report.active)
    return record(report)
