"""The security account's detector (mode "security"): the members' flow logs in, one `Floodgate Decision`
per member out. It never touches a NACL: each member applies its own decisions (`services.estate`).

- Ingest. Members' flow-log log groups subscribe to the security account's logs destination, which puts
  every delivery into the security account's stream; a stream batch is read here. CloudWatch Logs stamps a
  delivery with the account of the log group that sent it (`owner`), so each member keeps a window of its
  own (`TrafficWindow(scope=account)`): one member's flood never counts in another's shares. A delivery
  from an account outside the estate (`memberAccounts`) is refused and counted, never stored.
- Decisions. On the schedule (with the always threshold, `alwaysPps`: members' alarms do not arm the
  security account yet), per member and single-flight (a `DECISION#<account>` lease in the security
  account's ledger, taken without waiting): the member's tagged VPC and its CIDR blocks, read through the
  member's read-only role, give the deny policy (never the member's own blocks, the allowlist, the prefix
  caps, the budget); the same `plan_denies` as single mode plans on the member's window, and a plan with
  denies goes onto the security bus as that member's decision, routed to its account alone.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from floodgate.adapters.estate import BusPublisher, MemberVpc, MemberVpcReader
from floodgate.adapters.ledger import Ledger
from floodgate.adapters.retry import default_client
from floodgate.adapters.window import LATE_DELIVERY_S, TrafficWindow
from floodgate.core.detect import plan_denies
from floodgate.core.flowlog import FlowLogParser, TimeBounds
from floodgate.core.model import DenyPlan, ParseStats
from floodgate.core.networks import DenyPolicy
from floodgate.core.scanning import ReferenceScanner, block_scanner, summarise_lines
from floodgate.core.summary import TrafficSummary
from floodgate.core.window import rate_window_s
from floodgate.engine.leases import Leases
from floodgate.engine.results import NaclBusy
from floodgate.observability import METRIC
from floodgate.services.bus import (
    DECISION_DETAIL_TYPE,
    Decision,
    Estate,
    Target,
    decision_detail,
    put_events_entry,
)
from floodgate.services.events import FlowLogDelivery, ScheduledDecision, StreamBatch
from floodgate.services.streaming import DECISION_LEASE_PREFIX, window_shard
from floodgate.services.wiring import Wiring, detection_config, window_for
from floodgate.settings import Settings

if TYPE_CHECKING:
    from floodgate.core.fastscan import FastScanner

_log = logging.getLogger(__name__)

ACTOR = "floodgate-security"


@dataclass(frozen=True, slots=True)
class ProducerIngestReport:
    """One stream batch in the security account: what each member's window received, what was refused."""

    stats: ParseStats
    stored: dict[str, int]  # member account -> window parts written
    refused: tuple[tuple[str, str], ...]  # (sequence number, why) of deliveries not stored

    def metric_values(self) -> dict[str, float]:
        return {
            METRIC.RECORDS_PARSED: float(self.stats.parsed),
            METRIC.RECORDS_SKIPPED: float(self.stats.total_skipped),
            METRIC.WINDOW_WRITES: float(sum(self.stored.values())),
            METRIC.STREAM_RECORDS_UNREADABLE: float(len(self.refused)),
        }

    def as_dict(self) -> dict[str, Any]:
        """The mapping's answer: no state carried (each batch is stored at once), no record retried (one
        that cannot be read or comes from outside the estate cannot be mended by a retry)."""
        return {"state": {}, "batchItemFailures": []}


@dataclass(frozen=True, slots=True)
class MemberDecisionReport:
    """One member at one tick: the plan, and the decision published, or why there is none."""

    account: str
    vpc_id: str | None
    plan: DenyPlan | None
    decision_id: str | None
    sent: bool
    why_not: str | None
    failed: bool = False  # the decision raised, or its event was not put on the bus

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "vpc": self.vpc_id,
            "verdict": self.plan.verdict if self.plan else None,
            "denies": [d.cidr for d in self.plan.denies] if self.plan else [],
            "decision": self.decision_id,
            "sent": self.sent,
            "why_not": self.why_not,
            "failed": self.failed,
        }


@dataclass(frozen=True, slots=True)
class ProducerScheduleReport:
    members: tuple[MemberDecisionReport, ...]

    def metric_values(self) -> dict[str, float]:
        return {
            METRIC.DECISIONS_PUBLISHED: float(sum(m.sent for m in self.members)),
            METRIC.DECISION_FAILURES: float(sum(m.failed for m in self.members)),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "estate-decisions", "members": [m.as_dict() for m in self.members]}


class DecisionProducer:
    """Reads the members' flow logs and publishes their decisions. `member_vpc(account)` is the member's
    tagged VPC and its CIDR blocks (read through its reader role); `windows(account)` its traffic window."""

    def __init__(
        self,
        settings: Settings,
        *,
        estate: Estate,
        region: str,
        ledger: Ledger,
        windows: Callable[[str], TrafficWindow],
        member_vpc: Callable[[str], MemberVpc],
        publisher: BusPublisher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.estate = estate
        self.region = region
        self.ledger = ledger
        self.windows = windows
        self.member_vpc = member_vpc
        self.publisher = publisher
        self._clock = clock
        # Which side of a record is inside is told by the private blocks: the security account does not
        # parse with any one member's CIDRs (the policy, per member, does protect them).
        self.parser = FlowLogParser(settings.flow_log_format, ())

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        account: str,
        region: str,
        wiring: Wiring | None = None,
        events: Any = None,
        member_clients: Callable[[str, str], Any] | None = None,
    ) -> DecisionProducer:
        """The production wiring: this account's ledger and windows, the members read through their reader
        role (`member_clients` stands in for AssumeRole in tests), decisions put on the security bus."""
        wiring = wiring or Wiring()
        dynamodb = default_client("dynamodb", wiring.dynamodb)
        detection = detection_config(settings, member_policy(settings, ()))
        opened: dict[str, TrafficWindow] = {}

        def windows(member: str) -> TrafficWindow:
            if member not in opened:
                opened[member] = window_for(
                    settings, detection, dynamodb=dynamodb, retrier=wiring.retrier, scope=member
                )
            return opened[member]

        ledger = Ledger(
            settings.state_table,
            settings.log_table,
            dynamodb,
            log_retention_days=settings.log_retention_days,
            retrier=wiring.retrier,
        )
        return cls(
            settings,
            estate=Estate(account, frozenset(settings.member_accounts)),
            region=region,
            ledger=ledger,
            windows=windows,
            member_vpc=MemberVpcReader(
                settings.member_vpc_tag,
                role_name=settings.estate_reader_role,
                clients=member_clients,
                retrier=wiring.retrier,
            ),
            publisher=BusPublisher(events, retrier=wiring.retrier),
            clock=wiring.clock,
        )

    @functools.cached_property
    def scanner(self) -> ReferenceScanner | FastScanner:
        return block_scanner(self.parser)

    def handle(self, event: StreamBatch | ScheduledDecision) -> ProducerIngestReport | ProducerScheduleReport:
        if isinstance(event, StreamBatch):
            return self.ingest_stream(event)
        return self.scheduled(event)

    def ingest_stream(self, batch: StreamBatch) -> ProducerIngestReport:
        """Each delivery of the batch into its member's window; one write per member per batch, named by
        the shard and the batch's sequence range (a retry writes the same keys)."""
        now = self._clock()
        bounds = TimeBounds(
            oldest_end=math.floor(now - self.settings.window_s - LATE_DELIVERY_S),
            newest_start=math.ceil(now + self.settings.clock_skew_s),
        )
        summaries: dict[str, TrafficSummary] = {}
        stats = ParseStats()
        refused: list[tuple[str, str]] = []
        for record in batch.records:
            delivery = record.delivery
            if not isinstance(delivery, FlowLogDelivery):
                if record.problem is not None:
                    refused.append((record.sequence_number, record.problem))
                continue
            if delivery.owner not in self.estate.members:
                why = f"delivery from account {delivery.owner or '(none)'}, not a member of the estate"
                refused.append((record.sequence_number, why))
                continue
            if delivery.owner not in summaries:
                summaries[delivery.owner] = self.windows(delivery.owner).new_summary()
            stats.merge(
                summarise_lines(self.scanner, delivery.messages, summaries[delivery.owner], bounds).stats
            )
        for sequence, why in refused:
            _log.error("stream record %s of %s not stored: %s", sequence, batch.shard_id, why)
        sequences = [record.sequence_number for record in batch.records]
        stored: dict[str, int] = {}
        for account, summary in sorted(summaries.items()):
            if not summary.stats.parsed:
                continue
            window = self.windows(account)
            shard = window_shard(batch.shard_id, window.shards)
            stored_at = self._clock()
            written = window.add(
                f"{account}#{batch.shard_id}#{sequences[0]}#{sequences[-1]}",
                summary,
                now=stored_at,
                shard=shard,
            )
            stored[account] = written.written
            try:
                window.compact(now=stored_at, shard=shard)
            except Exception:
                _log.warning(
                    "compacting %s's window shard %d failed; left to the next writer", account, shard
                )
        return ProducerIngestReport(stats, stored, tuple(refused))

    def scheduled(self, tick: ScheduledDecision) -> ProducerScheduleReport:
        """Every member's decision, one after another; one member's failure is reported and the others
        still decide. Members' alarms do not arm the security account yet: without the always threshold
        (`alwaysPps`) no decision is made, as in single mode when nothing is armed."""
        if self.settings.always_pps is None:
            why = "not armed: member alarms do not arm the security account; set alwaysPps"
            return ProducerScheduleReport(
                tuple(
                    MemberDecisionReport(a, None, None, None, False, why) for a in sorted(self.estate.members)
                )
            )
        return ProducerScheduleReport(
            tuple(self.decide_for(account, lease_s=tick.lease_s) for account in sorted(self.estate.members))
        )

    def decide_for(self, account: str, *, lease_s: float) -> MemberDecisionReport:
        leases = Leases(
            self.ledger, actor=ACTOR, lease_s=lease_s, wait_s=0.0, now=self._clock, call_budget_s=0.0
        )
        try:
            with leases.held(f"{DECISION_LEASE_PREFIX}{account}"):
                return self._decide(account)
        except NaclBusy:
            return MemberDecisionReport(account, None, None, None, False, "another decision is running")
        except Exception as exc:
            _log.exception("decision for member %s failed", account)
            why = f"{type(exc).__name__}: {exc}"
            return MemberDecisionReport(account, None, None, None, False, why, failed=True)

    def _decide(self, account: str) -> MemberDecisionReport:
        vpc = self.member_vpc(account)
        detection = detection_config(self.settings, member_policy(self.settings, vpc.cidrs))
        now = self._clock()
        summary = self.windows(account).read(now=now)
        span = rate_window_s(summary, self.settings.window_s)
        min_pps = max(detection.min_pps, self.settings.always_pps or 0.0)  # the always threshold
        plan = plan_denies(summary, dataclasses.replace(detection, window_s=span, min_pps=min_pps))
        if not plan.denies:
            return MemberDecisionReport(account, vpc.vpc_id, plan, None, False, f"verdict {plan.verdict}")
        decision = Decision(
            decision_id=f"{account}-{int(now)}-{uuid.uuid4().hex[:8]}",
            target=Target(account, self.region, vpc.vpc_id),
            decided_at=now,
            dry_run=self.settings.dry_run,
            denies=plan.denies,
        )
        entry = put_events_entry(
            DECISION_DETAIL_TYPE, decision_detail(decision), bus=self.settings.security_bus
        )
        sent = self.publisher.put(entry)
        _log.info(
            "decision %s for %s: %d denies, sent=%s", decision.decision_id, account, len(plan.denies), sent
        )
        return MemberDecisionReport(
            account,
            vpc.vpc_id,
            plan,
            decision.decision_id,
            sent,
            None if sent else "PutEvents failed",
            not sent,
        )


def member_policy(settings: Settings, vpc_cidrs: tuple[str, ...]) -> DenyPolicy:
    """The deny policy for one member: the estate's allowlist and prefix caps, and the member VPC's own
    blocks, which are never denied (as `EnforcementConfig.from_settings` builds it in single mode)."""
    return DenyPolicy.build(
        vpc_cidrs=vpc_cidrs,
        allow=settings.allow_cidrs,
        max_prefix_v4=settings.max_prefix_v4,
        max_prefix_v6=settings.max_prefix_v6,
    )
