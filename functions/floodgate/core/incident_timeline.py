"""One incident's timeline: does the first deny land before the first scale-out, and what does it save?

A model, not a measurement. Pure: no I/O. Times are seconds after the flood starts. The rules, each one
checkable by hand against AWS's documented delays (docs: ../shared/docs/aws-facts.md, README "Ahead of
autoscaling"):

1. The flood starts at t = 0, at the start of a metric period and of a flow-log aggregation interval, at a
   steady rate, and lasts `flood_s`.
2. Flow logs: the first record of the flood closes at the end of its aggregation interval (`aggregation_s`,
   60 s for the flow log the stack creates) and reaches the detector `delivery_s` later (CloudWatch Logs
   delivery is best effort, typically about 5 minutes: a range, so the model is run over a range).
3. The early alarm goes to ALARM when `alarm_datapoints` periods of `alarm_period_s` have breached, plus
   `metric_lag_s` (the time CloudWatch takes to have a period's datapoint; the same for every alarm on the
   metric). Its state change reaches the detector `alarm_event_s` later (EventBridge); arming decides at
   once, on whatever the flow logs have delivered so far.
4. The first deny: once armed, the first flood batch is decided as it arrives (`batch_processing_s`); a
   batch that arrived before the arming is decided by the arming itself (`alarm_processing_s`). With an
   `always_pps` at or below the flood's rate no arming is needed.
5. The target-tracking scale-out alarm needs `scale_out_datapoints` breaching periods of
   `scale_out_period_s`; a period counts as breaching when any of it saw undenied flood (conservative:
   the deny has to land before the last of those periods starts to stop the scale-out). It fires at the end
   of that period (plus `metric_lag_s`) and launches `extra_instances`; they serve after `launch_s` +
   `warmup_s`, and stay until `scale_in_s` after the metric comes down (the deny, or the flood's end).
6. Capacity hold (opt-in): placed at arming. While it holds, a scale-out changes nothing. It is released
   when the early alarm goes OK (the first whole period after the deny, plus the metric lag) or after
   `hold_max_s`; released at `hold_max_s`, the scale-out follows at once (conservative: its alarm may
   still be in ALARM).
7. Instance-minutes are those of the extra instances, from the scale-out to their scale-in.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

# Floodgate's own processing, from the README's measured figures (p99, make bench): an alarm event to the
# denies written, and a 10,000-record batch through the detector plus a 10-entry apply.
ALARM_PROCESSING_S = 0.351
BATCH_PROCESSING_S = 0.169 + 0.567


@dataclass(frozen=True, slots=True)
class Deployment:
    """What the deployment's settings fix (stack defaults unless said otherwise)."""

    aggregation_s: float = 60.0  # flow-log aggregation interval (the stack creates a 60 s flow log)
    alarm_period_s: float = 60.0  # alarmPeriodSeconds
    alarm_datapoints: int = 1  # alarmDatapointsToAlarm
    scale_out_period_s: float = 60.0  # the scale-out alarm's period
    scale_out_datapoints: int = 3  # scaleOutEvaluationPeriods
    always_pps: float | None = None  # alwaysPps
    hold: bool = False  # scaleOutHold
    hold_max_s: float = 600.0  # scaleOutHoldMax


@dataclass(frozen=True, slots=True)
class Conditions:
    """AWS's delays, Floodgate's processing and the incident itself."""

    delivery_s: float = 300.0  # flow-log delivery to CloudWatch Logs and the subscription
    metric_lag_s: float = 0.0  # period end to its datapoint being evaluated
    alarm_event_s: float = 5.0  # alarm state change to the detector (EventBridge)
    alarm_processing_s: float = ALARM_PROCESSING_S
    batch_processing_s: float = BATCH_PROCESSING_S
    launch_s: float = 120.0  # scale-out to the instance running
    warmup_s: float = 300.0  # the policy's instance warm-up
    scale_in_s: float = 900.0  # target tracking's scale-in alarm: 15 datapoints of 1 minute
    flood_s: float = 1800.0
    flood_pps: float = 50_000.0
    extra_instances: int = 4  # what the scale-out adds


@dataclass(frozen=True, slots=True)
class Timeline:
    """One incident, for one value of the delivery delay."""

    delivery_s: float
    first_batch_s: float  # the first flood records reach the detector
    early_alarm_s: float  # the early alarm goes to ALARM
    armed_s: float | None  # the detector is armed (None: not needed, always_pps covers the flood)
    first_deny_s: float
    hold_s: float | None  # the capacity hold is placed
    hold_released_s: float | None
    hold_release_reason: str | None
    scale_out_unchecked_s: float | None  # the scale-out without Floodgate (None: the flood is too short)
    scale_out_s: float | None  # the scale-out with Floodgate (None: avoided)
    in_service_s: float | None  # the scale-out's instances serve
    instance_minutes_without: float
    instance_minutes_with: float

    @property
    def deny_first(self) -> bool:
        """The first deny lands before the scale-out alarm would fire."""
        return self.scale_out_unchecked_s is None or self.first_deny_s < self.scale_out_unchecked_s

    @property
    def saved_instance_minutes(self) -> float:
        return self.instance_minutes_without - self.instance_minutes_with


def timeline(deployment: Deployment, conditions: Conditions) -> Timeline:
    """The incident's timeline under the rules of the module's docstring."""
    d, c = deployment, conditions
    first_batch = d.aggregation_s + c.delivery_s
    early_alarm = d.alarm_datapoints * d.alarm_period_s + c.metric_lag_s
    alarm_reaches = early_alarm + c.alarm_event_s
    batch_decided = first_batch + c.batch_processing_s
    armed: float | None = alarm_reaches
    if d.always_pps is not None and c.flood_pps >= d.always_pps:
        first_deny, armed = batch_decided, None
    else:
        first_deny = max(batch_decided, alarm_reaches + c.alarm_processing_s)

    period = d.scale_out_period_s
    last_period_starts = (d.scale_out_datapoints - 1) * period
    fires_at = d.scale_out_datapoints * period + c.metric_lag_s
    unchecked = fires_at if c.flood_s > last_period_starts else None
    relief = min(first_deny, c.flood_s)  # when the metric comes down with Floodgate
    scale_out = fires_at if unchecked is not None and relief > last_period_starts else None

    hold = released = None
    reason = None
    if d.hold and armed is not None:
        hold = armed + c.alarm_processing_s
        alarm_ok = (math.ceil(relief / d.alarm_period_s) + 1) * d.alarm_period_s + c.metric_lag_s
        if alarm_ok <= hold + d.hold_max_s:
            released, reason = alarm_ok, "early alarm OK"
        else:
            released, reason = hold + d.hold_max_s, "hold max"
        if scale_out is not None and hold < scale_out:
            # Held: the scale-out waits for the release. Released on OK, the metric is down and nothing
            # follows; released at the hold's end, the scale-out alarm may still be in ALARM and acts.
            scale_out = released if reason == "hold max" else None

    without = _instance_minutes(unchecked, c.flood_s, c)
    with_floodgate = _instance_minutes(scale_out, relief, c)
    return Timeline(
        delivery_s=c.delivery_s,
        first_batch_s=first_batch,
        early_alarm_s=early_alarm,
        armed_s=armed,
        first_deny_s=first_deny,
        hold_s=hold,
        hold_released_s=released,
        hold_release_reason=reason,
        scale_out_unchecked_s=unchecked,
        scale_out_s=scale_out,
        in_service_s=None if scale_out is None else scale_out + c.launch_s + c.warmup_s,
        instance_minutes_without=without,
        instance_minutes_with=with_floodgate,
    )


def _instance_minutes(scale_out: float | None, relief: float, c: Conditions) -> float:
    if scale_out is None:
        return 0.0
    return c.extra_instances * max(0.0, relief + c.scale_in_s - scale_out) / 60


@dataclass(frozen=True, slots=True)
class Distribution:
    """The timeline over a range of delivery delays (each value equally likely)."""

    timelines: tuple[Timeline, ...]

    @property
    def deny_first_share(self) -> float:
        return sum(t.deny_first for t in self.timelines) / len(self.timelines)

    @property
    def scale_out_avoided_share(self) -> float:
        """Where a scale-out would have happened without Floodgate and does not with it."""
        return sum(
            t.scale_out_unchecked_s is not None and t.scale_out_s is None for t in self.timelines
        ) / len(self.timelines)

    def first_deny_s(self) -> tuple[float, float, float]:
        return _spread([t.first_deny_s for t in self.timelines])

    def instance_minutes_with(self) -> tuple[float, float, float]:
        return _spread([t.instance_minutes_with for t in self.timelines])

    def saved_instance_minutes(self) -> tuple[float, float, float]:
        return _spread([t.saved_instance_minutes for t in self.timelines])


def _spread(values: Sequence[float]) -> tuple[float, float, float]:
    """Minimum, median, maximum."""
    return min(values), statistics.median(values), max(values)


def delivery_range(low_s: float, high_s: float, step_s: float) -> tuple[float, ...]:
    """`low_s`, `low_s + step_s`, … up to and including `high_s`."""
    if not 0 <= low_s <= high_s or step_s <= 0:
        raise ValueError(f"not a delivery range: {low_s:g}..{high_s:g} by {step_s:g}")
    count = math.floor((high_s - low_s) / step_s + 1e-9) + 1
    values = [low_s + i * step_s for i in range(count)]
    return tuple(values) if values[-1] == high_s else (*values, high_s)


def distribution(deployment: Deployment, conditions: Conditions, delivery_s: Sequence[float]) -> Distribution:
    """The timeline for each delivery delay of the range."""
    if not delivery_s:
        raise ValueError("no delivery delay to model")
    return Distribution(tuple(timeline(deployment, replace(conditions, delivery_s=d)) for d in delivery_s))
