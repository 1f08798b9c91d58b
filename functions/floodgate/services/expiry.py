"""The expirer's domain, run every minute: end the bans that are over (or extend those whose source still
floods, seen as REJECT in the window), then put any drift between ledger and NACLs right.

A run with nothing due reads the held denies and the NACLs (the drift check) and writes nothing: a handful
of calls per NACL, counted in tests/integration/test_handlers.py. Once per window (the first run in each
`window_s` period) while a deny is in force, it also reads the window and records the effect of each inbound
deny: one EFFECT event per denied source in the deny log (`core.effect`), and the covered rates as metrics.

Two runs at once are safe: every change happens under the NACL's lease in the enforcement engine, and the
second run decides again from what the first one left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from floodgate.adapters.ledger import Ledger
from floodgate.adapters.notify import Notifier
from floodgate.adapters.window import TrafficWindow
from floodgate.core.decision import Drift, DriftKind
from floodgate.core.effect import TrafficPoint, effect_events, traffic_point
from floodgate.core.records import DenyRecord, LogEvent
from floodgate.core.slots import Direction
from floodgate.core.window import rate_window_s, reject_rate_of
from floodgate.engine.enforcer import Enforcer
from floodgate.observability import METRIC
from floodgate.services.capacity_hold import CapacityHold
from floodgate.services.reports import event_metrics, event_tally
from floodgate.services.wiring import Wiring
from floodgate.settings import Settings

_log = logging.getLogger(__name__)
EVIDENCE_AHEAD_S = 60.0  # how far past `now` a run gathers evidence for bans about to end
SCHEDULE_S = 60  # the expirer's schedule: the first run of each window period samples the denies' effect


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    due: tuple[str, ...]  # CIDRs whose ban was over when the run started
    events: tuple[LogEvent, ...]  # EXPIRE, EXTEND and REPAIR events written
    drift: tuple[Drift, ...]  # what the drift check found (foreign entries are reported, never touched)
    active: Mapping[str, int]  # denies in force per NACL after the run
    failures: tuple[tuple[str, str], ...] = ()  # (NACL id, why) of NACLs the run failed on; the rest went on
    effect: TrafficPoint | None = None  # the covered traffic, when this run sampled it

    def metric_values(self) -> dict[str, float]:
        values = {
            **event_metrics(self.events),
            METRIC.DENIES_ACTIVE: float(sum(self.active.values())),
            METRIC.NACL_FAILURES: float(len(self.failures)),
        }
        if self.effect is not None:
            values[METRIC.INBOUND_PPS] = self.effect.inbound_pps
            values[METRIC.DENIED_ACCEPT_PPS] = self.effect.covered_accept_pps
            values[METRIC.DENIED_REJECT_PPS] = self.effect.covered_reject_pps
        return values

    def as_dict(self) -> dict[str, Any]:
        return {
            "due": list(self.due),
            "tally": event_tally(self.events),
            "drift": [_drift_text(d) for d in self.drift],
            "active": dict(self.active),
            "failed": dict(self.failures),
        }


class ExpiryService:
    """One expirer run. `clock` is the wall time of every decision (injectable for tests)."""

    def __init__(
        self,
        settings: Settings,
        *,
        enforcer: Enforcer,
        window: TrafficWindow,
        notifier: Notifier,
        holds: CapacityHold | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.enforcer = enforcer
        self.window = window
        self.notifier = notifier
        self.holds = holds
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: Settings, wiring: Wiring | None = None, *, actor: str = "floodgate-expirer"
    ) -> ExpiryService:
        """The production wiring (`services.wiring`): default AWS clients unless `wiring` names others."""
        wiring = wiring or Wiring()
        settings = wiring.known_vpc(settings)
        parts = wiring.parts(settings, actor=actor)
        return cls(
            settings,
            enforcer=parts.enforcer,
            window=parts.window,
            notifier=parts.notifier,
            holds=parts.holds,
            clock=wiring.clock,
        )

    @property
    def ledger(self) -> Ledger:
        return self.enforcer.ledger

    def run(self) -> ExpiryReport:
        now = self._clock()
        held = self._held()
        due = tuple(sorted({d.cidr for records in held.values() for d in records if d.expired(now)}))
        events: list[LogEvent] = []
        failures: dict[str, str] = {}
        if due:
            # The engine reads the clock again, after any lease wait: bans falling due in the meantime need
            # their evidence too, so rates cover every ban ending within the next minute.
            soon = {d.cidr for records in held.values() for d in records if d.expired(now + EVIDENCE_AHEAD_S)}
            expired = self.enforcer.expire(reject_pps=self._reject_rates(tuple(sorted(soon)), now))
            events += expired.events
            failures.update(expired.failures)
        check = self.enforcer.reconcile(dry_run=True)
        failures.update(check.failures)
        if check.would_change or any(d.kind is not DriftKind.FOREIGN for d in check.drift):
            repaired = self.enforcer.reconcile()
            events += repaired.events
            failures.update(repaired.failures)
        for drift in check.drift:
            _log.warning("drift: %s", _drift_text(drift))
        if events:
            held = self._held()
            self.notifier.publish(events, context="expirer")
        active = {nacl_id: sum(1 for d in records if not d.expired(now)) for nacl_id, records in held.items()}
        if self.holds is not None:  # capacity holds past their maximum, or whose owner is gone
            events += self.holds.expire()
        for nacl_id, why in failures.items():
            _log.error("%s failed this run (the other NACLs went on): %s", nacl_id, why)
        return ExpiryReport(
            due,
            tuple(events),
            check.drift,
            active,
            tuple(sorted(failures.items())),
            self._sample_effect(held, now),
        )

    def _sample_effect(self, held: Mapping[str, list[DenyRecord]], now: float) -> TrafficPoint | None:
        """Once per window period, the traffic of every source denied inbound now, as EFFECT events: a
        log-only write of one item per source, never notified. A lost run only leaves a gap."""
        if now % self.settings.window_s >= SCHEDULE_S:
            return None
        cidrs = {
            d.cidr
            for records in held.values()
            for d in records
            if d.direction is Direction.INGRESS and not d.expired(now)
        }
        if not cidrs:
            return None
        summary = self.window.read(now=now)
        if not summary.total_packets:
            return None  # no flow logs in the window: no evidence either way, and 0 pps would say "gone"
        span = rate_window_s(summary, self.settings.window_s)
        samples = effect_events(summary, cidrs, span_s=span, at=now, actor=self.enforcer.actor)
        self.ledger.append(samples)
        return traffic_point(now, samples)

    def _reject_rates(self, cidrs: tuple[str, ...], now: float) -> dict[str, float]:
        """The evidence for extending a ban: the source's REJECT rate in the window (a denied source keeps
        sending and is logged as REJECT). Read only when a ban is over and evidence can extend it."""
        if not self.settings.extend_on_evidence:
            return {}
        summary = self.window.read(now=now)
        span = rate_window_s(summary, self.settings.window_s)
        return {cidr: reject_rate_of(summary, cidr, span) for cidr in cidrs}

    def _held(self) -> dict[str, list[DenyRecord]]:
        config = self.enforcer.config
        nacl_ids = config.nacl_ids
        if not nacl_ids:
            assert config.vpc_id is not None  # EnforcementConfig requires one target or the other
            nacl_ids = tuple(self.enforcer.gateway.describe_vpc(config.vpc_id))
        return {nacl_id: self.ledger.denies(nacl_id) for nacl_id in nacl_ids}


def _drift_text(drift: Drift) -> str:
    return (
        f"{drift.kind} in {drift.nacl_id} {drift.direction} rule {drift.rule} ({drift.cidr}): {drift.detail}"
    )
