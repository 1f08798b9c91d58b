"""The detector's domain: flow-log batches into the shared window, alarms arming enforcement, and decisions
made on the whole window through the enforcement engine.

- A batch is parsed, summarised within a bounded size and stored in the window. Then, when enforcement is
  armed (or an "always" threshold is configured), a decision runs on the whole window: at most one per
  `DECISION_PACE_S` across all invocations, since each decision already sees every stored batch.
- An ALARM arms enforcement for `arm_ttl` and decides at once; OK disarms (denies in force stay until they
  expire); INSUFFICIENT_DATA changes nothing - a flooded instance may well stop reporting its metric.
- Without an armed alarm, enforcement is off unless FLOODGATE_ALWAYS_PPS is set; then only sources above
  that rate are denied.

Decisions and applies go through `floodgate.enforcement.Enforcer` (budget, allowlist, caps, escalation,
ledger, deny log). This module never touches a NACL itself.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from floodgate.adapters.arming import Armed, Arming
from floodgate.adapters.ledger import LogEvent, Origin, OriginKind
from floodgate.adapters.notify import Notifier
from floodgate.adapters.window import TrafficWindow, WindowWrite
from floodgate.core.detect import plan_denies
from floodgate.core.flowlog import EMPTY, NODATA, NOT_INBOUND, SKIPDATA, FlowLogParser
from floodgate.core.model import DenyPlan, ParseStats, PlannedDeny
from floodgate.core.scanning import ReferenceScanner, block_scanner, summarise_lines
from floodgate.core.window import rate_window_s, reject_rates
from floodgate.enforcement import Enforcer
from floodgate.events import (
    AlarmState,
    AlarmStateChange,
    ControlMessage,
    DetectorEvent,
    FlowLogDelivery,
    ManualRequest,
)
from floodgate.manual import ManualResponse, run_manual
from floodgate.observability import METRIC
from floodgate.records_json import event_json
from floodgate.reports import armed_json, event_metrics, event_tally
from floodgate.settings import ENV, Settings
from floodgate.wiring import Wiring, detection_config

if TYPE_CHECKING:
    from floodgate.core.fastscan import FastScanner

_log = logging.getLogger(__name__)

DECISION_PACE_S = 20.0
# Records a healthy flow log produces and Floodgate rightly leaves out; any other skip reason is damage.
_ROUTINE_SKIPS = frozenset({EMPTY, NODATA, SKIPDATA, NOT_INBOUND})


@dataclass(frozen=True, slots=True)
class DecisionReport:
    """One decision on the window: the plan, and what the engine did with it."""

    origin: Origin
    dry_run: bool
    plan: DenyPlan
    events: tuple[LogEvent, ...]
    latency_ms: float  # from the event's arrival to the denies being written

    def metric_values(self) -> dict[str, float]:
        return {**event_metrics(self.events), METRIC.DECISION_LATENCY_MS: self.latency_ms}

    def as_dict(self) -> dict[str, Any]:
        return {
            "origin": str(self.origin),
            "dry_run": self.dry_run,
            "verdict": str(self.plan.verdict),
            "window_s": self.plan.window_s,
            "total_pps": round(self.plan.total_pps, 1),
            "total_bps": round(self.plan.total_bps, 1),
            "planned": [_planned_dict(deny) for deny in self.plan.denies],
            "tally": event_tally(self.events),
            "events": [event_json(event) for event in self.events],
            "latency_ms": round(self.latency_ms, 1),
        }


@dataclass(frozen=True, slots=True)
class IngestReport:
    """One subscription delivery: what was parsed and stored, and the decision it triggered, if any."""

    log_stream: str
    stats: ParseStats
    window: WindowWrite
    decision: DecisionReport | None
    why_no_decision: str | None

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
        return {**values, **(self.decision.metric_values() if self.decision else {})}

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "flow-logs",
            "log_stream": self.log_stream,
            "parsed": self.stats.parsed,
            "skipped": dict(self.stats.skipped),
            "window_parts": self.window.parts,
            "window_writes": self.window.written,
            "stale": self.window.stale,
            "decision": self.decision.as_dict() if self.decision else None,
            "why_no_decision": self.why_no_decision,
        }


@dataclass(frozen=True, slots=True)
class AlarmReport:
    alarm_name: str
    state: AlarmState
    armed: Armed | None  # the arming in force after this event
    decision: DecisionReport | None

    def metric_values(self) -> dict[str, float]:
        return self.decision.metric_values() if self.decision else {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "alarm",
            "alarm": self.alarm_name,
            "state": str(self.state),
            "armed": armed_json(self.armed),
            "decision": self.decision.as_dict() if self.decision else None,
        }


@dataclass(frozen=True, slots=True)
class ControlReport:
    """A CloudWatch Logs reachability check: acknowledged, nothing done."""

    log_group: str

    def metric_values(self) -> dict[str, float]:
        return {}

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "control-message", "log_group": self.log_group}


DetectorReport = IngestReport | AlarmReport | ControlReport | ManualResponse


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
        clock: Callable[[], float] = time.time,
        stopwatch: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.enforcer = enforcer
        self.window = window
        self.arming = arming
        self.notifier = notifier
        self.detection = detection_config(settings, enforcer.config.policy)
        self.parser = FlowLogParser(settings.flow_log_format, settings.vpc_cidrs)
        self._clock = clock
        self._stopwatch = stopwatch

    @classmethod
    def from_settings(
        cls, settings: Settings, wiring: Wiring | None = None, *, actor: str = "floodgate-detector"
    ) -> DetectionService:
        """The production wiring (`floodgate.wiring`): default AWS clients unless `wiring` names others."""
        wiring = wiring or Wiring()
        parts = wiring.parts(settings, actor=actor)
        return cls(
            settings,
            enforcer=parts.enforcer,
            window=parts.window,
            arming=Arming(settings.state_table, parts.dynamodb, retrier=wiring.retrier),
            notifier=parts.notifier,
            clock=wiring.clock,
        )

    @functools.cached_property
    def scanner(self) -> ReferenceScanner | FastScanner:
        """Built on the first delivery, not at start-up: numpy's import then weighs on no alarm's latency."""
        return block_scanner(self.parser)

    # -- events ------------------------------------------------------------------------------------------

    def handle(self, event: DetectorEvent) -> DetectorReport:
        """The one entry point of the handler: each kind of event to its operation."""
        match event:
            case FlowLogDelivery():
                return self.ingest(event)
            case AlarmStateChange():
                return self.on_alarm(event)
            case ManualRequest():
                return self.manual(event.payload)
            case ControlMessage():
                return ControlReport(event.log_group)

    def manual(self, payload: Mapping[str, Any]) -> ManualResponse:
        return run_manual(
            payload, settings=self.settings, enforcer=self.enforcer, detector=self, notifier=self.notifier
        )

    def ingest(self, delivery: FlowLogDelivery) -> IngestReport:
        """Store the batch in the window, then decide when enforcement is armed or always on."""
        received = self._stopwatch()
        now = self._clock()
        summary = self.window.new_summary()
        stats = summarise_lines(self.scanner, delivery.messages, summary)
        written = WindowWrite(parts=0, written=0)
        if stats.parsed:  # every parsed record belongs to a source
            written = self.window.add(delivery.delivery_id, delivery.latest_event_ms, summary, now=now)
        report = IngestReport(delivery.log_stream, stats, written, None, None)
        if report.poisoned:
            # Retrying cannot mend these records; the error log and RecordsSkipped are how anyone hears.
            _log.error(
                "no usable flow-log records among %d from %s (skipped: %s); "
                "does %s match the flow log's format?",
                len(delivery.messages),
                delivery.stream_path,
                stats.skipped,
                ENV.FLOW_LOG_FORMAT,
            )
        if written.stale:
            _log.warning("batch from %s is older than the window: not stored", delivery.stream_path)
        armed = self.arming.current(now=now)
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
        decision = self.decide(origin=origin, min_pps=min_pps, received=received)
        return dataclasses.replace(report, decision=decision)

    def on_alarm(self, change: AlarmStateChange) -> AlarmReport:
        """ALARM arms and decides at once; OK disarms; INSUFFICIENT_DATA leaves things as they are."""
        received = self._stopwatch()
        now = self._clock()
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
                return AlarmReport(change.alarm_name, change.state, self.arming.current(now=now), None)
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
            decision = self.decide(origin=Origin.alarm(change.alarm_name), received=received)
            return AlarmReport(change.alarm_name, change.state, armed, decision)
        if change.state is AlarmState.OK and self.arming.disarm(
            change.alarm_name, now=now, changed_at=change.changed_at
        ):
            _log.info("disarmed by %s; denies in force stay until they expire", change.alarm_name)
        return AlarmReport(change.alarm_name, change.state, self.arming.current(now=now), None)

    # -- decisions ---------------------------------------------------------------------------------------

    def analyze(self, *, dry_run: bool, actor: str) -> DecisionReport:
        """A decision asked for by a person: on the window now, whatever the armed state."""
        # Automatic in kind (the denies rank by their evidence, unlike a manual block), named for the log.
        return self.decide(origin=Origin(OriginKind.AUTOMATIC, actor), dry_run=dry_run)

    def armed(self) -> Armed | None:
        return self.arming.current(now=self._clock())

    def decide(
        self,
        *,
        origin: Origin,
        dry_run: bool | None = None,
        min_pps: float | None = None,
        received: float | None = None,
    ) -> DecisionReport:
        """Plan on the window and apply the plan. `min_pps` raises the rate floor (the always threshold)."""
        started = self._stopwatch() if received is None else received
        now = self._clock()
        summary = self.window.read(now=now)
        span = rate_window_s(summary, self.settings.window_s)
        config = dataclasses.replace(
            self.detection, window_s=span, min_pps=max(self.detection.min_pps, min_pps or 0.0)
        )
        plan = plan_denies(summary, config)
        events: tuple[LogEvent, ...] = ()
        effective_dry_run = self.settings.dry_run if dry_run is None else dry_run
        if plan.denies:
            result = self.enforcer.apply(
                plan, origin=origin, reject_pps=reject_rates(summary, span), dry_run=effective_dry_run
            )
            events = result.events
            if not result.dry_run:
                self.notifier.publish(events, context=str(origin))
        report = DecisionReport(origin, effective_dry_run, plan, events, (self._stopwatch() - started) * 1000)
        _log.info(
            "decision (%s): %s, %d planned, %s in %.0f ms",
            origin,
            plan.verdict,
            len(plan.denies),
            event_tally(events) or "nothing to change",
            report.latency_ms,
        )
        return report


def _planned_dict(deny: PlannedDeny) -> dict[str, Any]:
    return {
        "cidr": deny.cidr,
        "pps": round(deny.pps, 1),
        "bps": round(deny.bps, 1),
        "share": round(deny.share, 4),
        "members": deny.members,
        "reason": deny.reason,
    }
