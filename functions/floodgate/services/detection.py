"""The detector's domain: flow-log batches into the shared window, alarms arming enforcement, and decisions
made on the whole window through the enforcement engine.

- A batch is parsed, summarised within a bounded size and stored in the window. Then, when enforcement is
  armed (or an "always" threshold is configured), a decision runs on the whole window: at most one per
  `DECISION_PACE_S` across all invocations, since each decision already sees every stored batch.
- An ALARM arms enforcement for `arm_ttl` and decides at once; OK disarms (denies in force stay until they
  expire); INSUFFICIENT_DATA changes nothing - a flooded instance may well stop reporting its metric.
- Only the alarms the stack names (FLOODGATE_ALARM_NAMES), of the function's own account and region, arm;
  a state change stamped in the future (beyond `clockSkew`) or older than the arming TTL is refused, with
  the reason in the answer and the log. Anyone may paste an alarm event into the console: none of these
  arm enforcement.
- Falling behind is never silent: each stored delivery reports its ingest lag (IngestLagS: stored - its
  latest record's end), each armed decision how long since the last one completed (DecisionAgeS), and a
  decision that fails is recorded (`adapters.health`, read by `floodgate status`), announced on the topic
  (once per FAILURE_NOTICE_EVERY_S) and raised as DecisionFailed: the invocation still fails, Lambda
  retries it, and the delivery ends in the failure queue for `floodgate replay`.
- Without an armed alarm, enforcement is off unless FLOODGATE_ALWAYS_PPS is set; then only sources above
  that rate are denied.
- A record counts by its own time, not its delivery's: one that ended before the window (plus the late
  delivery allowance) or starts more than `clockSkew` ahead of our clock is skipped and counted by
  reason (`too_old`, `future`).
- The remotes the VPC's own hosts connect to (egress records) are remembered (`DependencyMemory`): a plan
  never denies them nor a prefix holding them; each such refusal is logged REFUSED and announced.

With `ingest: "kinesis"` (`services.streaming`), a stream batch is only summed and stored
(`ingest_stream`); decisions run on the schedule (`scheduled`) and on an ALARM, single-flight per VPC under
the decision lease (`single_flight`).

Decisions and applies go through `floodgate.engine.enforcer.Enforcer` (budget, allowlist, caps, escalation,
ledger, deny log). This module never touches a NACL itself.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from floodgate.adapters.arming import Armed, Arming
from floodgate.adapters.dependencies import DependencyGuard, DependencyMemory
from floodgate.adapters.health import HealthRecords
from floodgate.adapters.notify import Notifier
from floodgate.adapters.window import LATE_DELIVERY_S, TrafficWindow, WindowWrite
from floodgate.core.detect import plan_denies
from floodgate.core.durations import format_duration
from floodgate.core.flowlog import (
    AWS_SERVICE,
    EMPTY,
    NODATA,
    NOT_INBOUND,
    SKIPDATA,
    FlowLogParser,
    TimeBounds,
)
from floodgate.core.model import DenyPlan, ParseStats, PlannedDeny
from floodgate.core.records import EventKind, Evidence, LogEvent, Origin, OriginKind
from floodgate.core.scanning import ReferenceScanner, block_scanner, summarise_lines
from floodgate.core.text import shown
from floodgate.core.window import merge_batches, rate_window_s, reject_rates
from floodgate.engine.enforcer import Enforcer
from floodgate.engine.leases import Leases
from floodgate.engine.results import NaclBusy
from floodgate.observability import METRIC
from floodgate.services.capacity_hold import CapacityHold
from floodgate.services.events import (
    AlarmState,
    AlarmStateChange,
    ControlMessage,
    DetectorEvent,
    FlowLogDelivery,
    Home,
    ManualRequest,
    ScheduledDecision,
    StreamBatch,
)
from floodgate.services.manual import ManualResponse, run_manual
from floodgate.services.records_json import event_json
from floodgate.services.reports import armed_json, event_metrics, event_tally
from floodgate.services.streaming import (
    ALARM_DECISION_LEASE_S,
    DECISION_LEASE_PREFIX,
    STATE_BUDGET_CHARS,
    ScheduleReport,
    StreamReport,
    open_state,
    state_chars,
    state_of,
    window_shard,
)
from floodgate.services.wiring import Wiring, detection_config
from floodgate.settings import ENV, Settings

if TYPE_CHECKING:
    from floodgate.core.fastscan import FastScanner

_log = logging.getLogger(__name__)

DECISION_PACE_S = 20.0
REFUSAL_REPEAT_S = 600  # a refusal of the same CIDR is logged again after this long, not at every decision
# Records a healthy flow log produces and Floodgate rightly leaves out; any other skip reason is damage.
_ROUTINE_SKIPS = frozenset({EMPTY, NODATA, SKIPDATA, NOT_INBOUND, AWS_SERVICE})


class DecisionFailed(Exception):
    """A decision raised: recorded and announced, and raised on so that the invocation fails (and is retried
    by Lambda, then kept in the failure queue) rather than pass for a success."""

    def __init__(self, origin: Origin, cause: BaseException) -> None:
        super().__init__(f"decision ({origin}) failed: {type(cause).__name__}: {cause}")
        self.origin = origin


@dataclass(frozen=True, slots=True)
class DecisionReport:
    """One decision on the window: the plan, and what the engine did with it."""

    origin: Origin
    dry_run: bool
    plan: DenyPlan
    events: tuple[LogEvent, ...]
    latency_ms: float  # from the event's arrival to the denies being written
    failures: tuple[tuple[str, str], ...] = ()  # (NACL id, why) of NACLs the apply failed on
    problems: tuple[str, ...] = ()  # NACLs left out as unfit, with the fix

    def metric_values(self) -> dict[str, float]:
        return {
            **event_metrics(self.events),
            METRIC.DECISION_LATENCY_MS: self.latency_ms,
            METRIC.INBOUND_PPS: self.plan.total_pps,
            METRIC.NACL_FAILURES: float(len(self.failures)),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "origin": str(self.origin),
            "dry_run": self.dry_run,
            "verdict": str(self.plan.verdict),
            "window_s": self.plan.window_s,
            "total_pps": round(self.plan.total_pps, 1),
            "total_bps": round(self.plan.total_bps, 1),
            "planned": [_planned_dict(deny) for deny in self.plan.denies],
            "refused": [_planned_dict(deny) for deny in self.plan.refused],
            "tally": event_tally(self.events),
            "events": [event_json(event) for event in self.events],
            "latency_ms": round(self.latency_ms, 1),
            "failed": dict(self.failures),
            "problems": list(self.problems),
        }


@dataclass(frozen=True, slots=True)
class IngestReport:
    """One subscription delivery: what was parsed and stored, and the decision it triggered, if any."""

    log_stream: str
    stats: ParseStats
    window: WindowWrite
    decision: DecisionReport | None
    why_no_decision: str | None
    ingest_lag_s: float | None = None  # stored - the latest record end of the batch (None: nothing stored)
    decision_age_s: float | None = None  # armed: since the last decision completed, or the arming

    @property
    def poisoned(self) -> bool:
        """Nothing usable and something damaged: a wrong flow-log format, or garbage."""
        damaged = set(self.stats.skipped) - _ROUTINE_SKIPS
        return self.stats.parsed == 0 and bool(damaged)

    def metric_values(self) -> dict[str, float]:
        values = {
            METRIC.RECORDS_PARSED: float(self.stats.parsed),
            METRIC.RECORDS_SKIPPED: float(self.stats.total_skipped),
            METRIC.WINDOW_WRITES: float(self.window.written),
        }
        if self.ingest_lag_s is not None:
            values[METRIC.INGEST_LAG_S] = self.ingest_lag_s
        if self.decision_age_s is not None:
            values[METRIC.DECISION_AGE_S] = self.decision_age_s
        return {**values, **(self.decision.metric_values() if self.decision else {})}

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "flow-logs",
            "log_stream": self.log_stream,
            "parsed": self.stats.parsed,
            "skipped": dict(self.stats.skipped),
            "window_parts": self.window.parts,
            "window_writes": self.window.written,
            "decision": self.decision.as_dict() if self.decision else None,
            "why_no_decision": self.why_no_decision,
            "ingest_lag_s": None if self.ingest_lag_s is None else round(self.ingest_lag_s, 1),
            "decision_age_s": None if self.decision_age_s is None else round(self.decision_age_s, 1),
        }


@dataclass(frozen=True, slots=True)
class AlarmReport:
    alarm_name: str
    state: AlarmState
    armed: Armed | None  # the arming in force after this event
    decision: DecisionReport | None
    capacity: tuple[LogEvent, ...] = ()  # HOLD / RELEASE events of the capacity hold
    refused: str | None = None  # why this state change was ignored, when it was

    def metric_values(self) -> dict[str, float]:
        return self.decision.metric_values() if self.decision else {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "alarm",
            "alarm": self.alarm_name,
            "state": str(self.state),
            "armed": armed_json(self.armed),
            "decision": self.decision.as_dict() if self.decision else None,
            "capacity": [event_json(event) for event in self.capacity],
            "refused": self.refused,
        }


@dataclass(frozen=True, slots=True)
class ControlReport:
    """A CloudWatch Logs reachability check: acknowledged, nothing done."""

    log_group: str

    def metric_values(self) -> dict[str, float]:
        return {}

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "control-message", "log_group": self.log_group}


DetectorReport = IngestReport | AlarmReport | ControlReport | ManualResponse | StreamReport | ScheduleReport


class DetectionService:
    """Everything the detector does. `clock` is wall time (epoch seconds) for every decision and record;
    `stopwatch` measures latency. Both are injectable for tests and benchmarks."""

    def __init__(
        self,
        settings: Settings,
        *,
        enforcer: Enforcer,
        window: TrafficWindow,
        arming: Arming,
        notifier: Notifier,
        health: HealthRecords,
        holds: CapacityHold | None = None,
        dependencies: DependencyMemory,
        clock: Callable[[], float] = time.time,
        stopwatch: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.enforcer = enforcer
        self.window = window
        self.arming = arming
        self.notifier = notifier
        self.health = health
        self.holds = holds
        self.dependencies = dependencies
        self._refusals_logged: dict[str, float] = {}
        self.detection = detection_config(settings, enforcer.config.policy)
        self.parser = FlowLogParser(settings.flow_log_format, settings.vpc_cidrs)
        self._clock = clock
        self._stopwatch = stopwatch

    @classmethod
    def from_settings(
        cls, settings: Settings, wiring: Wiring | None = None, *, actor: str = "floodgate-detector"
    ) -> DetectionService:
        """The production wiring (`services.wiring`): default AWS clients unless `wiring` names others."""
        wiring = wiring or Wiring()
        settings = wiring.known_vpc(settings)
        parts = wiring.parts(settings, actor=actor)
        return cls(
            settings,
            enforcer=parts.enforcer,
            window=parts.window,
            arming=parts.arming,
            notifier=parts.notifier,
            health=parts.health,
            holds=parts.holds,
            dependencies=DependencyMemory(settings.state_table, parts.dynamodb, retrier=wiring.retrier),
            clock=wiring.clock,
        )

    @functools.cached_property
    def scanner(self) -> ReferenceScanner | FastScanner:
        """Built on the first delivery, not at start-up: numpy's import then weighs on no alarm's latency."""
        return block_scanner(self.parser)

    # -- events ------------------------------------------------------------------------------------------

    def handle(self, event: DetectorEvent, *, home: Home | None = None) -> DetectorReport:
        """The one entry point of the handler: each kind of event to its operation. `home` is the function's
        account and region, which an alarm must share to arm it. A run that fails releases any capacity
        hold: Floodgate cannot vouch for holding capacity it is not acting on."""
        try:
            return self._dispatch(event, home)
        except Exception as exc:
            if self.holds is not None:
                try:
                    cause = exc.__cause__ if isinstance(exc, DecisionFailed) and exc.__cause__ else exc
                    self.holds.release(f"Floodgate's run failed ({type(cause).__name__}: {cause})"[:256])
                except Exception:
                    _log.exception("releasing the capacity hold after a failed run failed too")
            raise

    def _dispatch(self, event: DetectorEvent, home: Home | None) -> DetectorReport:
        match event:
            case FlowLogDelivery():
                return self.ingest(event)
            case AlarmStateChange():
                return self.on_alarm(event, home=home)
            case ManualRequest():
                return self.manual(event.payload)
            case ControlMessage():
                return ControlReport(event.log_group)
            case StreamBatch():
                return self.ingest_stream(event)
            case ScheduledDecision():
                return self.scheduled(event)

    def manual(self, payload: Mapping[str, Any]) -> ManualResponse:
        return run_manual(
            payload,
            settings=self.settings,
            enforcer=self.enforcer,
            detector=self,
            notifier=self.notifier,
            dependencies=DependencyGuard(self.dependencies, self._clock),
        )

    def ingest(self, delivery: FlowLogDelivery) -> IngestReport:
        """Store the batch in the window, then decide when enforcement is armed or always on."""
        received = self._stopwatch()
        now = self._clock()
        bounds = TimeBounds(
            oldest_end=math.floor(now - self.settings.window_s - LATE_DELIVERY_S),
            newest_start=math.ceil(now + self.settings.clock_skew_s),
        )
        summary = self.window.new_summary()
        batch = summarise_lines(self.scanner, delivery.messages, summary, bounds)
        if batch.dependencies:
            self.dependencies.remember(batch.dependencies, now=now)
        written = WindowWrite(parts=0, written=0)
        lag: float | None = None
        if batch.stats.parsed:  # every parsed record belongs to a source
            stored_at = self._clock()  # after parsing: the stamp that tells settled deliveries apart
            written = self.window.add(delivery.delivery_id, summary, now=stored_at)
            self.window.compact(now=stored_at)
            if summary.last_end is not None:
                lag = max(0.0, stored_at - summary.last_end)
                self.health.stored(summary.last_end, now=stored_at)
        report = IngestReport(delivery.log_stream, batch.stats, written, None, None, ingest_lag_s=lag)
        if report.poisoned:
            # Retrying cannot mend these records; the error log and RecordsSkipped are how anyone hears.
            _log.error(
                "no usable flow-log records among %d from %s (skipped: %s); "
                "does %s match the flow log's format?",
                len(delivery.messages),
                delivery.stream_path,
                batch.stats.skipped,
                ENV.FLOW_LOG_FORMAT,
            )
        armings = self._armings(now)
        armed = next(iter(armings), None)
        if armed is not None:
            origin, min_pps = Origin.alarm(armed.alarm_name), None
        elif self.settings.always_pps is not None:
            origin, min_pps = Origin.automatic(), self.settings.always_pps
        else:
            return dataclasses.replace(report, why_no_decision="not armed and no always threshold")
        if not self.arming.claim_decision(now=now, interval_s=DECISION_PACE_S):
            return dataclasses.replace(
                report, why_no_decision=f"decided less than {DECISION_PACE_S:.0f}s ago"
            )
        if armings:
            # Armed since the earliest arming in force; a decision completed since then restarts the count.
            since = max(armings[-1].armed_at, self.health.read().completed_at or 0.0)
            report = dataclasses.replace(report, decision_age_s=max(0.0, now - since))
        decision = self.decide(origin=origin, min_pps=min_pps, received=received)
        return dataclasses.replace(report, decision=decision)

    def ingest_stream(self, batch: StreamBatch) -> StreamReport:
        """Kinesis ingest: add the batch's deliveries to the tumbling window's state; store the state in the
        traffic window at the window's last invocation, or when it outgrows STATE_BUDGET_CHARS. Never
        decides (`scheduled` does)."""
        now = self._clock()
        bounds = TimeBounds(
            oldest_end=math.floor(now - self.settings.window_s - LATE_DELIVERY_S),
            newest_start=math.ceil(now + self.settings.clock_skew_s),
        )
        held = open_state(batch.state)
        summary = self.window.new_summary()
        if held.digest is not None:
            merge_batches(summary, [held.digest])
        stats = ParseStats()
        unreadable: list[tuple[str, str]] = []
        for record in batch.records:
            delivery = record.delivery
            if not isinstance(delivery, FlowLogDelivery):
                if record.problem is not None:
                    unreadable.append((record.sequence_number, record.problem))
                    _log.error(
                        "stream record %s of %s holds no flow-log delivery: %s",
                        record.sequence_number,
                        batch.shard_id,
                        record.problem,
                    )
                continue
            sources = summarise_lines(self.scanner, delivery.messages, summary, bounds)
            stats.merge(sources.stats)
            if sources.dependencies:
                self.dependencies.remember(sources.dependencies, now=now)
        sequences = [record.sequence_number for record in batch.records]
        first = held.first or (sequences[0] if sequences else "")
        last = sequences[-1] if sequences else (held.last or "")
        state = state_of(summary, first, last) if summary.stats.parsed else {}
        stored = None
        if state and (batch.final or state_chars(state) > STATE_BUDGET_CHARS):
            shard = window_shard(batch.shard_id, self.window.shards)
            stored_at = self._clock()
            stored = self.window.add(f"{batch.shard_id}#{first}#{last}", summary, now=stored_at, shard=shard)
            state = {}
            try:
                self.window.compact(now=stored_at, shard=shard)
            except Exception:
                # Stored is stored: failing now would have the mapping retry (and bisect) records whose sum
                # is already in the window. The next writer or decision compacts instead.
                _log.warning(
                    "compacting window shard %d failed; left to the next writer", shard, exc_info=True
                )
        return StreamReport(stats=stats, unreadable=tuple(unreadable), state=state, stored=stored)

    def scheduled(self, tick: ScheduledDecision) -> ScheduleReport:
        """The decision schedule's tick (kinesis ingest): decide when armed or always on, unless another
        decision on this VPC is running."""
        now = self._clock()
        armed = next(iter(self._armings(now)), None)
        if armed is not None:
            origin, min_pps = Origin.alarm(armed.alarm_name), None
        elif self.settings.always_pps is not None:
            origin, min_pps = Origin.automatic(), self.settings.always_pps
        else:
            return ScheduleReport(None, "not armed and no always threshold")
        decision = self.single_flight(origin=origin, min_pps=min_pps, lease_s=tick.lease_s)
        if decision is None:
            return ScheduleReport(None, "another decision on this VPC is running")
        return ScheduleReport(decision, None)

    def single_flight(
        self,
        *,
        origin: Origin,
        min_pps: float | None = None,
        lease_s: float,
        received: float | None = None,
    ) -> DecisionReport | None:
        """A decision under the VPC's decision lease, taken without waiting: None when another holds it.
        The lease lasts `lease_s` (what the invocation has left), so a holder that dies frees it."""
        # No NACL call runs under this lease itself (the enforcer takes each NACL's own): no call budget.
        leases = Leases(
            self.enforcer.ledger,
            actor=self.enforcer.actor,
            lease_s=lease_s,
            wait_s=0.0,
            now=self._clock,
            call_budget_s=0.0,
        )
        try:
            with leases.held(self.decision_lease):
                return self.decide(origin=origin, min_pps=min_pps, received=received)
        except NaclBusy:
            _log.info("%s is held elsewhere: this decision is left to its holder", self.decision_lease)
            return None

    @property
    def decision_lease(self) -> str:
        """The lease that makes decisions single-flight: one per protected VPC (or set of NACLs)."""
        return DECISION_LEASE_PREFIX + (self.settings.vpc_id or ",".join(sorted(self.settings.nacl_ids)))

    def on_alarm(self, change: AlarmStateChange, *, home: Home | None = None) -> AlarmReport:
        """ALARM arms and decides at once; OK disarms; INSUFFICIENT_DATA leaves things as they are. A state
        change of an alarm this deployment does not watch, or from the wrong time, changes nothing."""
        received = self._stopwatch()
        now = self._clock()
        refused = self.alarm_refusal(change, now=now, home=home)
        if refused is not None:
            _log.warning("ignored %s state change: %s", change.state, refused)
            return AlarmReport(
                change.alarm_name, change.state, next(iter(self._armings(now)), None), None, refused=refused
            )
        if change.state is AlarmState.ALARM:
            armed = self.arming.arm(
                change.alarm_name,
                now=now,
                until=now + self.settings.arm_ttl_s,
                reason=change.reason,
                changed_at=change.changed_at,
            )
            if armed is None:
                _log.warning("ignored a stale ALARM from %s: its state has changed since", change.alarm_name)
                return AlarmReport(
                    change.alarm_name, change.state, next(iter(self._armings(now)), None), None
                )
            # How late the state change reached us is part of the alarm-to-deny time on-call sees.
            lag = f"{now - change.changed_at:.1f}s" if change.changed_at is not None else "unknown"
            _log.info(
                "armed by %s (%s -> ALARM, by %s, delivered after %s) until %.0f: %s",
                change.alarm_name,
                change.previous_state or "?",
                change.shape,
                lag,
                armed.armed_until,
                change.reason,
            )
            held = self.holds.place(change.alarm_name, reason=change.reason) if self.holds else ()
            if self.settings.ingest == "kinesis":  # decisions are single-flight on this path
                decision = self.single_flight(
                    origin=Origin.alarm(change.alarm_name), lease_s=ALARM_DECISION_LEASE_S, received=received
                )
            else:
                decision = self.decide(origin=Origin.alarm(change.alarm_name), received=received)
            return AlarmReport(change.alarm_name, change.state, armed, decision, held)
        released: tuple[LogEvent, ...] = ()
        if change.state is AlarmState.OK and self.arming.disarm(
            change.alarm_name, now=now, changed_at=change.changed_at
        ):
            _log.info("disarmed by %s; denies in force stay until they expire", change.alarm_name)
        current = next(iter(self._armings(now)), None)
        if change.state is AlarmState.OK and current is None and self.holds is not None:
            released = self.holds.release(f"{change.alarm_name} is OK")
        return AlarmReport(change.alarm_name, change.state, current, None, released)

    def release_hold(self, *, reason: str, actor: str) -> tuple[LogEvent, ...]:
        """A person's `release`: end every capacity hold now."""
        if self.holds is None:
            return ()
        return self.holds.release(f"released by hand: {reason}", actor=actor)

    def alarm_refusal(self, change: AlarmStateChange, *, now: float, home: Home | None) -> str | None:
        """Why `change` may not arm or disarm anything, or None when it may."""
        name = shown(change.alarm_name, 80)
        if change.alarm_name not in self.settings.alarm_names:
            watched = ", ".join(sorted(self.settings.alarm_names)) or "none"
            return (
                f"alarm {name} is not one this deployment watches ({watched}; the early-warning alarm and "
                f"existingAlarmNames, as {ENV.ALARM_NAMES})"
            )
        if home is not None and (change.account, change.region) != (home.account, home.region):
            return (
                f"alarm {name} is of account {change.account or '?'} in {change.region or '?'}; "
                f"this function runs in account {home.account}, {home.region}"
            )
        if change.changed_at is not None:
            if change.changed_at > now + self.settings.clock_skew_s:
                ahead = (
                    format_duration(change.changed_at - now) if change.changed_at - now < 10**9 else "years"
                )
                return f"alarm {name} changed state {ahead} in the future: a wrong clock, or not AWS"
            if change.changed_at < now - self.settings.arm_ttl_s:
                return (
                    f"alarm {name} changed state {format_duration(now - change.changed_at)} ago, longer than "
                    f"the arming time ({format_duration(self.settings.arm_ttl_s)}, armTtl / {ENV.ARM_TTL})"
                )
        return None

    # -- decisions ---------------------------------------------------------------------------------------

    def analyze(self, *, dry_run: bool, actor: str) -> DecisionReport:
        """A decision asked for by a person: on the window now, whatever the armed state."""
        # Automatic in kind (the denies rank by their evidence, unlike a manual block), named for the log.
        return self.decide(origin=Origin(OriginKind.AUTOMATIC, actor), dry_run=dry_run)

    def armings(self) -> tuple[Armed, ...]:
        return self._armings(self._clock())

    def _armings(self, now: float) -> tuple[Armed, ...]:
        """Armings in force by watched alarms (one recorded before the alarm list changed does not count)."""
        return tuple(a for a in self.arming.in_force(now=now) if a.alarm_name in self.settings.alarm_names)

    def decide(
        self,
        *,
        origin: Origin,
        dry_run: bool | None = None,
        min_pps: float | None = None,
        received: float | None = None,
    ) -> DecisionReport:
        """Plan on the window and apply the plan. `min_pps` raises the rate floor (the always threshold).

        An automatic decision (`dry_run` None: as the deployment is configured) has its outcome recorded
        for `status` and DecisionAgeS; its failure is also announced (at most once per
        FAILURE_NOTICE_EVERY_S) and raised as DecisionFailed. A person's analyze (`dry_run` given) answers
        that person and leaves the record alone: a dry run must not pass for the armed deployment deciding."""
        if dry_run is not None:
            return self._decide(origin=origin, dry_run=dry_run, min_pps=min_pps, received=received)
        try:
            report = self._decide(origin=origin, dry_run=dry_run, min_pps=min_pps, received=received)
        except Exception as exc:
            self._decision_failed(origin, exc)
            raise DecisionFailed(origin, exc) from exc
        tally = ", ".join(f"{count} {kind}" for kind, count in event_tally(report.events).items())
        outcome = f"{report.plan.verdict}, {len(report.plan.denies)} planned: {tally or 'nothing to change'}"
        try:
            self.health.decided(at=self._clock(), ok=True, outcome=outcome)
        except Exception:
            # The decision is made and its denies are in force: failing now would only repeat it. The error
            # log says status is out of date; the next decision records again.
            _log.exception("recording the completed decision for status failed")
        return report

    def _decision_failed(self, origin: Origin, exc: Exception) -> None:
        """Record and announce a failed decision. Neither may hide the failure itself: their own failures
        are logged, and the caller raises on."""
        now = self._clock()
        why = f"{type(exc).__name__}: {exc}"
        _log.error("decision (%s) failed: %s", origin, why, exc_info=exc)
        try:
            self.health.decided(at=now, ok=False, outcome=why)
            announce = self.health.claim_failure_notice(now=now)
        except Exception:
            _log.exception("recording the failed decision for status failed too")
            announce = True  # better a repeated notice than none
        if announce:
            self.notifier.publish_failure(
                f"decision ({origin}) failed: {why}",
                "Floodgate's decision on the traffic window did not complete: its denies may be missing. "
                "Lambda retries the delivery; what still fails lands in the failure queue: see "
                "`floodgate status`, then `floodgate replay` once the cause is mended.",
            )

    def _decide(
        self,
        *,
        origin: Origin,
        dry_run: bool | None,
        min_pps: float | None,
        received: float | None,
    ) -> DecisionReport:
        started = self._stopwatch() if received is None else received
        now = self._clock()
        summary = self.window.read(now=now)
        summary.add_dependencies(self.dependencies.recall(now=now))
        span = rate_window_s(summary, self.settings.window_s)
        config = dataclasses.replace(
            self.detection, window_s=span, min_pps=max(self.detection.min_pps, min_pps or 0.0)
        )
        plan = plan_denies(summary, config)
        events: tuple[LogEvent, ...] = ()
        failures: tuple[tuple[str, str], ...] = ()
        problems: tuple[str, ...] = ()
        effective_dry_run = self.settings.dry_run if dry_run is None else dry_run
        if plan.denies:
            result = self.enforcer.apply(
                plan, origin=origin, reject_pps=reject_rates(summary, span), dry_run=effective_dry_run
            )
            events, failures, problems = result.events, result.failures, result.problems
            if not result.dry_run:
                self.notifier.publish(events, context=str(origin))
        if self.holds is not None:
            events += self.holds.review(
                plan, reject_pps=summary.reject_packets / span, latest_record_end=summary.last_end
            )
        refusals = self._log_refusals(plan.refused, origin=origin, dry_run=effective_dry_run, now=now)
        if refusals and not effective_dry_run:
            self.notifier.publish_refusals(refusals, context=str(origin))
        events += refusals
        latency_ms = (self._stopwatch() - started) * 1000
        report = DecisionReport(origin, effective_dry_run, plan, events, latency_ms, failures, problems)
        _log.info(
            "decision (%s): %s, %d planned, %s in %.0f ms",
            origin,
            plan.verdict,
            len(plan.denies),
            event_tally(events) or "nothing to change",
            report.latency_ms,
        )
        return report

    def _log_refusals(
        self, refused: tuple[PlannedDeny, ...], *, origin: Origin, dry_run: bool, now: float
    ) -> tuple[LogEvent, ...]:
        """REFUSED log events for planned denies of what the VPC depends on (DRYRUN in a dry run); the same
        CIDR is logged again only after REFUSAL_REPEAT_S, not at every decision while the flood lasts."""
        events: list[LogEvent] = []
        for deny in refused:
            if now - self._refusals_logged.get(deny.cidr, -REFUSAL_REPEAT_S) < REFUSAL_REPEAT_S:
                continue
            self._refusals_logged[deny.cidr] = now
            evidence = Evidence(deny.pps, deny.bps, deny.share, deny.members)
            kind, would = (EventKind.DRYRUN, EventKind.REFUSED) if dry_run else (EventKind.REFUSED, None)
            events.append(
                LogEvent(
                    kind,
                    now,
                    deny.cidr,
                    deny.reason,
                    self.enforcer.actor,
                    origin=origin,
                    evidence=evidence,
                    would=would,
                )
            )
        if events:
            self.enforcer.ledger.append(events)
        return tuple(events)


def _planned_dict(deny: PlannedDeny) -> dict[str, Any]:
    return {
        "cidr": deny.cidr,
        "pps": round(deny.pps, 1),
        "bps": round(deny.bps, 1),
        "share": round(deny.share, 4),
        "members": deny.members,
        "reason": deny.reason,
    }
