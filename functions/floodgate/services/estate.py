"""A member account's side of the estate: apply the security account's decisions to its own VPC, with its
own ledger and EC2 budget, and say what came of each (its default bus forwards it to the security bus).

A member protects the one VPC of its account tagged FLOODGATE_MEMBER_VPC_TAG (StackSets deploy the same
template everywhere, so no VPC id is configured). A decision is applied only when the bus contract holds
(`services.bus`: sent by the security account, well formed, fresh) and it names this account, this region
and that VPC; anything else is refused with BusEventError and nothing is written. The expirer of a member
runs the ordinary expiry over the same VPC (`member_settings`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from floodgate.adapters.estate import BusPublisher, ensure_flow_log, tagged_vpc
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat
from floodgate.core.records import EventKind, Origin, OriginKind
from floodgate.engine.enforcer import Enforcer
from floodgate.engine.results import EnforcementResult
from floodgate.services.bus import (
    DEFAULT_BUS,
    OUTCOME_DETAIL_TYPE,
    BusEventError,
    Decision,
    Estate,
    Outcome,
    outcome_detail,
    parse_bus_event,
    put_events_entry,
)
from floodgate.services.reports import event_metrics, event_tally
from floodgate.services.wiring import Wiring
from floodgate.settings import Settings

ACTOR = "floodgate-member"


def member_settings(settings: Settings, wiring: Wiring) -> Settings:
    """The settings of a member, aimed at its tagged VPC, whose CIDR blocks (read from EC2) are protected."""
    vpc_id = tagged_vpc(settings.member_vpc_tag, client=wiring.ec2, retrier=wiring.retrier)
    return wiring.known_vpc(dataclasses.replace(settings, vpc_id=vpc_id, nacl_ids=(), vpc_cidrs=()))


# Set by the member stack on the expirer: the log group subscribed to the security account's destination and
# the role VPC Flow Logs delivers into it with.
FLOW_LOG_GROUP_ENV = "FLOODGATE_MEMBER_FLOW_LOG_GROUP"
FLOW_LOG_ROLE_ENV = "FLOODGATE_MEMBER_FLOW_LOG_ROLE"
_log = logging.getLogger(__name__)


def ensure_member_flow_log(settings: Settings, environ: Mapping[str, str], wiring: Wiring) -> str | None:
    """The tagged VPC's flow log into the group the security account reads, created when missing (the id),
    else None. Failing is logged, never raised: expiry must run whatever happens to the flow log."""
    group, role = environ.get(FLOW_LOG_GROUP_ENV), environ.get(FLOW_LOG_ROLE_ENV)
    if not (group and role and settings.vpc_id):
        return None
    fields = settings.flow_log_format.fields
    try:
        created = ensure_flow_log(
            settings.vpc_id,
            log_group=group,
            delivery_role_arn=role,
            log_format=None if fields == FlowLogFormat.parse(DEFAULT_FORMAT).fields else _format_text(fields),
            client=wiring.ec2,
            retrier=wiring.retrier,
        )
    except Exception:
        _log.exception("the flow log of %s into %s could not be checked or created", settings.vpc_id, group)
        return None
    if created:
        _log.info("created flow log %s of %s into %s", created, settings.vpc_id, group)
    return created


def _format_text(fields: tuple[str, ...]) -> str:
    return " ".join(f"${{{name}}}" for name in fields)


@dataclass(frozen=True, slots=True)
class MemberReport:
    decision: Decision
    result: EnforcementResult
    outcome_sent: bool

    def metric_values(self) -> dict[str, float]:
        return event_metrics(self.result.events)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.decision_id,
            "vpc": self.decision.target.vpc_id,
            "dry_run": self.result.dry_run,
            "tally": event_tally(self.result.events),
            "failed": dict(self.result.failures),
            "outcome_sent": self.outcome_sent,
        }


class MemberService:
    """Applies decisions addressed to this member (`account`, `region`, the settings' VPC)."""

    def __init__(
        self,
        settings: Settings,
        *,
        account: str,
        region: str,
        enforcer: Enforcer,
        publisher: BusPublisher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.security_account is None or settings.vpc_id is None:
            raise ValueError("a member needs the security account and its VPC (member_settings)")
        self.settings = settings
        self.account = account
        self.region = region
        self.enforcer = enforcer
        self.publisher = publisher
        self.estate = Estate(settings.security_account, frozenset({*settings.member_accounts, account}))
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        account: str,
        region: str,
        wiring: Wiring | None = None,
        events: Any = None,
    ) -> MemberService:
        wiring = wiring or Wiring()
        settings = member_settings(settings, wiring)
        parts = wiring.parts(settings, actor=ACTOR)
        return cls(
            settings,
            account=account,
            region=region,
            enforcer=parts.enforcer,
            publisher=BusPublisher(events, retrier=wiring.retrier),
            clock=wiring.clock,
        )

    def receive(self, event: Mapping[str, Any]) -> MemberReport:
        """Apply the decision `event` carries; raises BusEventError (nothing written) when it is not one for
        this member."""
        decision = self.addressed(event)
        origin = Origin(OriginKind.AUTOMATIC, f"estate decision {decision.decision_id}")
        result = self.enforcer.apply(
            decision.denies, origin=origin, dry_run=True if decision.dry_run else None
        )
        # One event per NACL: each CIDR once, in the order they went in.
        denied = tuple(dict.fromkeys(e.cidr for e in result.of_kind(EventKind.BLOCK, EventKind.EXTEND)))
        outcome = Outcome(
            decision.decision_id, decision.target, result.dry_run, denied, dict(result.failures)
        )
        # On this account's own bus: the member's forwarding rule takes it to the security bus, as it does
        # the member's alarms (one cross-account path, one resource policy to trust).
        entry = put_events_entry(OUTCOME_DETAIL_TYPE, outcome_detail(outcome), bus=DEFAULT_BUS)
        sent = self.publisher.put(entry)
        return MemberReport(decision, result, sent)

    def addressed(self, event: Mapping[str, Any]) -> Decision:
        """The decision `event` carries, when it is one for this account, region and VPC."""
        message = parse_bus_event(
            event,
            self.estate,
            now=self._clock(),
            clock_skew_s=self.settings.clock_skew_s,
            max_age_s=self.settings.decision_max_age_s,
        )
        if not isinstance(message, Decision):
            raise BusEventError(f"a member applies decisions only, not {type(message).__name__} events")
        target = message.target
        if target.account != self.account:
            raise BusEventError(f"decision for account {target.account} reached account {self.account}")
        if target.region != self.region:
            raise BusEventError(f"decision for region {target.region} reached region {self.region}")
        if target.vpc_id != self.settings.vpc_id:
            raise BusEventError(
                f"decision for {target.vpc_id}; this member protects {self.settings.vpc_id} "
                f"(tagged {self.settings.member_vpc_tag!r})"
            )
        return message
