"""The capacity hold (opt-in, FLOODGATE_HOLD_GROUPS): when an early alarm arms enforcement, hold the named
Auto Scaling groups at their capacity until the flow logs show whether the denies take the spike.

- placed at arming: each group's `AlarmNotification` is suspended (`adapters.autoscaling` says why that
  and not `MaxSize`), after its record is written, so that no crash leaves a hold nobody knows about;
- reviewed after every decision on the window (`core.capacity_hold.judge`): kept while the verdict is
  concentrated and the denies cover most of the spike, released at once when it is distributed or quiet;
- released on the alarm's OK, after FLOODGATE_HOLD_MAX, by hand (the `release` action), and when a run of
  the detector fails; the expirer releases holds past their maximum and holds whose owner is gone (no alarm
  arms enforcement any more: its OK was lost, or the run that handled it died).

Every hold and release is a deny-log event (HOLD, RELEASE; `cidr` is `asg:<group>`) with its reason, and an
SNS notice. Floodgate resumes only what it suspended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from floodgate.adapters.arming import Arming
from floodgate.adapters.autoscaling import GroupNotFound, ScalingGroups
from floodgate.adapters.holds import HoldRecord, HoldRecords
from floodgate.adapters.ledger import Ledger
from floodgate.adapters.notify import Notifier
from floodgate.core.capacity_hold import judge
from floodgate.core.durations import format_duration
from floodgate.core.model import DenyPlan
from floodgate.core.records import EventKind, LogEvent, Origin

_log = logging.getLogger(__name__)
GROUP_PREFIX = "asg:"  # how a group is named in the deny log's `cidr` field
HELD = "held at "  # how the reason of a HOLD that did hold its group begins (others say why not)


class CapacityHold:
    """Holds and releases `groups`. `clock` is wall time (injectable for tests)."""

    def __init__(
        self,
        groups: Sequence[str],
        *,
        max_s: float,
        records: HoldRecords,
        scaling: ScalingGroups,
        arming: Arming,
        ledger: Ledger,
        notifier: Notifier,
        actor: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.groups = tuple(groups)
        self.max_s = max_s
        self.records = records
        self.scaling = scaling
        self.arming = arming
        self.ledger = ledger
        self.notifier = notifier
        self.actor = actor
        self._clock = clock

    def place(self, owner: str, *, reason: str) -> tuple[LogEvent, ...]:
        """Hold every group not held yet, on behalf of the alarm `owner`."""
        now = self._clock()
        held = {record.group for record in self.records.in_force()}
        events: list[LogEvent] = []
        for group in self.groups:
            if group in held:
                continue
            try:
                state = self.scaling.state(group)
            except GroupNotFound:
                _log.error("capacity hold: no Auto Scaling group %r", group)
                why = "no such Auto Scaling group: not held"
                events.append(self._event(EventKind.HOLD, group, why, owner))
                continue
            if state.held:
                # Someone else suspended it: not ours to hold, nor ever to resume.
                why = "AlarmNotification was already suspended outside Floodgate: left as it is"
                events.append(self._event(EventKind.HOLD, group, why, owner))
                continue
            record = HoldRecord(group, now, now + self.max_s, owner, reason, True, state.desired)
            if not self.records.claim(record):
                continue  # a concurrent run placed it
            self.scaling.suspend(group)
            why = (
                f"{HELD}{state.desired} instance(s) for at most {format_duration(self.max_s)} "
                f"(scaling on alarms suspended): {reason}"
            )
            events.append(self._event(EventKind.HOLD, group, why, owner))
        return self._log(events, context=f"alarm:{owner}")

    def review(
        self, plan: DenyPlan, *, reject_pps: float, latest_record_end: float | None
    ) -> tuple[LogEvent, ...]:
        """Keep or release each hold in force on the decision just made."""
        events: list[LogEvent] = []
        for record in self.records.in_force():
            judgement = judge(
                plan, reject_pps=reject_pps, latest_record_end=latest_record_end, held_at=record.held_at
            )
            if judgement.keep:
                _log.info("capacity hold on %s kept: %s", record.group, judgement.reason)
            else:
                events += self._release(record, judgement.reason, actor=self.actor)
        return self._log(events, context="decision")

    def release(self, reason: str, *, actor: str | None = None) -> tuple[LogEvent, ...]:
        """Release every hold in force (OK, by hand, a failed run)."""
        events: list[LogEvent] = []
        for record in self.records.in_force():
            events += self._release(record, reason, actor=actor or self.actor)
        return self._log(events, context=actor or self.actor)

    def expire(self) -> tuple[LogEvent, ...]:
        """The expirer's part: release holds past their maximum, and holds whose owner is gone."""
        now = self._clock()
        records = self.records.in_force()
        if not records:
            return ()
        armed = self.arming.current(now=now) is not None
        events: list[LogEvent] = []
        for record in records:
            if now >= record.until:
                events += self._release(record, f"held for the maximum, {format_duration(self.max_s)}")
            elif not armed:
                why = f"no alarm arms enforcement any more (owner {record.owner} gone)"
                events += self._release(record, why)
        return self._log(events, context="expirer")

    def _release(self, record: HoldRecord, reason: str, *, actor: str | None = None) -> list[LogEvent]:
        if record.changed:
            try:
                self.scaling.resume(record.group)
            except GroupNotFound:
                reason += " (the group no longer exists)"
        if self.records.drop(record.group) is None:
            return []  # another run released it and logged it
        held = format_duration(max(0.0, self._clock() - record.held_at))
        return [self._event(EventKind.RELEASE, record.group, f"after {held}: {reason}", record.owner, actor)]

    def _event(
        self, kind: EventKind, group: str, reason: str, owner: str, actor: str | None = None
    ) -> LogEvent:
        return LogEvent(
            kind=kind,
            at=self._clock(),
            cidr=GROUP_PREFIX + group,
            reason=reason,
            actor=actor or self.actor,
            origin=Origin.alarm(owner),
        )

    def _log(self, events: list[LogEvent], *, context: str) -> tuple[LogEvent, ...]:
        if events:
            self.ledger.append(events)
            self.notifier.publish(events, context=context)
            for event in events:
                _log.warning("capacity %s %s: %s", event.kind, event.cidr, event.reason)
        return tuple(events)
