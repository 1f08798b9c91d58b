"""The security account's detector (mode "security"): the members' flow logs in, one `Floodgate Decision`
per member out. It never touches a NACL: each member applies its own decisions (`services.estate`).

- Ingest. Members' flow-log log groups subscribe to the security account's logs destination, which puts
  every delivery into the security account's stream; a stream batch is read here. CloudWatch Logs stamps a
  delivery with the account of the log group that sent it (`owner`), so each member keeps a window of its
  own (`TrafficWindow(scope=account)`): one member's flood never counts in another's shares. A delivery
  from an account outside the estate (`memberAccounts`) is refused and counted, never stored.
- Arming. A member's alarm state change reaches this account over the estate bus (the member's rule
  forwards it unchanged; `bus.security_alarms` routes it here). It is read by the bus contract
  (`parse_bus_event`: the sender is a member, the alarm's ARN names the sender's account) and checked as
  single mode checks an alarm (`bus.member_alarm_refusal`: one of the member's Floodgate alarms, of this
  Region, not from the future nor older than `armTtl`); anything else is refused, logged and counted
  (MemberAlarmsRefused), and arms nothing. An ALARM arms that member alone (`Arming(scope=account)`:
  `ARMED#<account>` items) for `armTtl` and decides for it at once; OK disarms it; INSUFFICIENT_DATA
  changes nothing.
- Decisions. On the schedule and on a member's ALARM, per member and single-flight (a `DECISION#<account>`
  lease in the security account's ledger, taken without waiting), when that member is armed (threshold:
  `minPps`, as single mode) or the always threshold (`alwaysPps`) is set: the member's tagged VPC and its
  CIDR blocks, read through the member's read-only role, give the deny policy (never the member's own
  blocks, the allowlist, the prefix caps, the budget); the same `plan_denies` as single mode plans on the
  member's window, and a plan with denies goes onto the security bus as that member's decision, routed to
  its account alone.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from floodgate.adapters.arming import Armed, Arming
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
from floodgate.core.text import clean, shown
from floodgate.core.window import rate_window_s
from floodgate.engine.leases import Leases
from floodgate.engine.results import NaclBusy
from floodgate.observability import METRIC
from floodgate.services.bus import (
    DECISION_DETAIL_TYPE,
    BusEventError,
    Decision,
    Estate,
    MemberAlarm,
    Target,
    decision_detail,
    is_member_alarm,
    member_alarm_refusal,
    parse_bus_event,
    put_events_entry,
)
from floodgate.services.events import (
    MAX_ALARM_NAME_CHARS,
    AlarmState,
    FlowLogDelivery,
    ScheduledDecision,
    StreamBatch,
)
from floodgate.services.reports import armed_json
from floodgate.services.streaming import ALARM_DECISION_LEASE_S, DECISION_LEASE_PREFIX, window_shard
from floodgate.services.wiring import Wiring, detection_config, window_for
from floodgate.settings import Settings

if TYPE_CHECKING:
    from floodgate.core.fastscan import FastScanner

_log = logging.getLogger(__name__)

ACTOR = "floodgate-security"
_ACCOUNT = re.compile(r"\d{12}")


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
    armed_by: str | None = None  # the member's alarm that armed this decision; None: the always threshold

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "armed_by": self.armed_by,
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


@dataclass(frozen=True, slots=True)
class MemberAlarmReport:
    """One alarm event from the estate bus: whose, what it armed (that member's arming in force after it),
    the decision it started, or why it was refused."""

    account: str | None  # the sender, when the event names an account
    alarm_name: str | None
    state: str | None
    armed: Armed | None
    decision: MemberDecisionReport | None
    refused: str | None = None

    def metric_values(self) -> dict[str, float]:
        return {
            METRIC.MEMBER_ALARMS_REFUSED: float(self.refused is not None),
            METRIC.DECISIONS_PUBLISHED: float(bool(self.decision and self.decision.sent)),
            METRIC.DECISION_FAILURES: float(bool(self.decision and self.decision.failed)),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "member-alarm",
            "account": self.account,
            "alarm": self.alarm_name,
            "state": self.state,
            "armed": armed_json(self.armed),
            "decision": self.decision.as_dict() if self.decision else None,
            "refused": self.refused,
        }


class DecisionProducer:
    """Reads the members' flow logs and publishes their decisions. `member_vpc(account)` is the member's
    tagged VPC and its CIDR blocks (read through its reader role); `windows(account)` its traffic window;
    `arming(account)` the armings of its alarms."""

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
        arming: Callable[[str], Arming],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.arming = arming
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

        def arming(member: str) -> Arming:
            return Arming(
                settings.state_table,
                dynamodb,
                retrier=wiring.retrier,
                clock_skew_s=settings.clock_skew_s,
                scope=member,
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
            arming=arming,
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

    def on_member_alarm(self, event: Mapping[str, Any]) -> MemberAlarmReport:
        """A member's alarm state change from the estate bus: ALARM arms that member's decisions (and decides
        for it at once), OK disarms them, INSUFFICIENT_DATA changes nothing. An event the bus contract or
        the alarm checks refuse changes nothing and says why."""
        now = self._clock()
        try:
            message = parse_bus_event(
                event,
                self.estate,
                now=now,
                clock_skew_s=self.settings.clock_skew_s,
                max_age_s=self.settings.decision_max_age_s,
            )
        except BusEventError as exc:
            return self._refused(event, str(exc))
        if not isinstance(message, MemberAlarm):
            return self._refused(event, f"a {type(message).__name__.lower()}, not a member's alarm")
        why = member_alarm_refusal(
            message,
            alarm_names=self.settings.alarm_names,
            alarm_prefix=self.settings.member_alarm_prefix or "",
            region=self.region,
            now=now,
            clock_skew_s=self.settings.clock_skew_s,
            arm_ttl_s=self.settings.arm_ttl_s,
        )
        if why is not None:
            return self._refused(event, why)
        account, change = message.account, message.change
        arming = self.arming(account)
        if change.state is AlarmState.ALARM:
            armed = arming.arm(
                change.alarm_name,
                now=now,
                until=now + self.settings.arm_ttl_s,
                reason=change.reason,
                changed_at=change.changed_at,
            )
            if armed is None:
                _log.warning("ignored a stale ALARM of %s from member %s", change.alarm_name, account)
                current = self._armed(account, now)
                return MemberAlarmReport(account, change.alarm_name, change.state, current, None)
            _log.info(
                "member %s armed by %s until %.0f: %s",
                account,
                change.alarm_name,
                armed.armed_until,
                change.reason,
            )
            decision = self.decide_for(account, lease_s=ALARM_DECISION_LEASE_S)
            return MemberAlarmReport(account, change.alarm_name, change.state, armed, decision)
        if change.state is AlarmState.OK and arming.disarm(
            change.alarm_name, now=now, changed_at=change.changed_at
        ):
            _log.info(
                "member %s disarmed by %s; its denies stay until they expire", account, change.alarm_name
            )
        return MemberAlarmReport(account, change.alarm_name, change.state, self._armed(account, now), None)

    def _refused(self, event: Mapping[str, Any], why: str) -> MemberAlarmReport:
        sender, detail = event.get("account"), event.get("detail")
        name = detail.get("alarmName") if isinstance(detail, Mapping) else None
        _log.warning("refused an alarm event from account %s: %s", shown(sender, 20), why)
        return MemberAlarmReport(
            sender if isinstance(sender, str) and _ACCOUNT.fullmatch(sender) else None,
            clean(name[:MAX_ALARM_NAME_CHARS]) if isinstance(name, str) else None,
            None,
            None,
            None,
            refused=why,
        )

    def _armed(self, account: str, now: float) -> Armed | None:
        """The member's most recent arming in force by one of its Floodgate alarms (an arming recorded
        before the alarm names changed does not count, as in single mode)."""
        names, prefix = self.settings.alarm_names, self.settings.member_alarm_prefix or ""
        return next(
            (
                armed
                for armed in self.arming(account).in_force(now=now)
                if is_member_alarm(armed.alarm_name, names, prefix)
            ),
            None,
        )

    def scheduled(self, tick: ScheduledDecision) -> ProducerScheduleReport:
        """Every member's decision, one after another: each member armed by its own alarms, or at the always
        threshold (`alwaysPps`); one member's failure is reported and the others still decide."""
        return ProducerScheduleReport(
            tuple(self.decide_for(account, lease_s=tick.lease_s) for account in sorted(self.estate.members))
        )

    def decide_for(self, account: str, *, lease_s: float) -> MemberDecisionReport:
        """The member's decision when it is armed or the always threshold is set, under its decision lease."""
        leases = Leases(
            self.ledger, actor=ACTOR, lease_s=lease_s, wait_s=0.0, now=self._clock, call_budget_s=0.0
        )
        try:
            armed = self._armed(account, self._clock())
            if armed is None and self.settings.always_pps is None:
                return MemberDecisionReport(
                    account, None, None, None, False, "not armed and no always threshold"
                )
            with leases.held(f"{DECISION_LEASE_PREFIX}{account}"):
                return self._decide(account, armed)
        except NaclBusy:
            return MemberDecisionReport(account, None, None, None, False, "another decision is running")
        except Exception as exc:
            _log.exception("decision for member %s failed", account)
            why = f"{type(exc).__name__}: {exc}"
            return MemberDecisionReport(account, None, None, None, False, why, failed=True)

    def _decide(self, account: str, armed: Armed | None) -> MemberDecisionReport:
        vpc = self.member_vpc(account)
        detection = detection_config(self.settings, member_policy(self.settings, vpc.cidrs))
        now = self._clock()
        summary = self.windows(account).read(now=now)
        span = rate_window_s(summary, self.settings.window_s)
        # Armed: the detection threshold, as single mode; otherwise only the always threshold denies.
        min_pps = detection.min_pps if armed else max(detection.min_pps, self.settings.always_pps or 0.0)
        plan = plan_denies(summary, dataclasses.replace(detection, window_s=span, min_pps=min_pps))
        armed_by = armed.alarm_name if armed else None
        if not plan.denies:
            why = f"verdict {plan.verdict}"
            return MemberDecisionReport(account, vpc.vpc_id, plan, None, False, why, armed_by=armed_by)
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
            armed_by,
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
