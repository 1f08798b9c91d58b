"""`floodgate timeline`: for a deployment's settings, when the first deny lands against when the first
scale-out fires, over a range of flow-log delivery delays, and the instance-minutes each way.

Offline: the model is `floodgate.core.incident_timeline`; the settings come from the flags, or from a
cdk.json's context (`--cdk-json`) with the flags on top.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from floodgate.cli.errors import CliError
from floodgate.core.durations import format_duration, parse_duration
from floodgate.core.incident_timeline import (
    Conditions,
    Deployment,
    Distribution,
    Timeline,
    delivery_range,
    distribution,
)

# cdk.json context key -> Deployment field, and how to read it.
CONTEXT_KEYS: dict[str, tuple[str, Any]] = {
    "alarmPeriodSeconds": ("alarm_period_s", float),
    "alarmDatapointsToAlarm": ("alarm_datapoints", int),
    "scaleOutEvaluationPeriods": ("scale_out_datapoints", int),
    "alwaysPps": ("always_pps", float),
    "scaleOutHold": ("hold", lambda v: v if isinstance(v, bool) else str(v).lower() == "true"),
    "scaleOutHoldMax": ("hold_max_s", lambda v: float(parse_duration(str(v)))),
}


def _duration(text: str) -> float:
    if text.strip() in ("0", "0s"):
        return 0.0
    try:
        return float(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _range(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("..")
    if not sep:
        raise argparse.ArgumentTypeError(f"not a range: {text!r} (use e.g. 1m..10m)")
    return _duration(low), _duration(high)


def _positive(kind: type[int] | type[float]) -> Any:
    def read(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return read


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "timeline",
        help="model an incident: first deny vs first scale-out, instance-minutes",
        description=(
            "Model one incident for a deployment's settings: when the first deny lands and when the first "
            "scale-out fires, over a range of flow-log delivery delays, and the extra instance-minutes "
            "with and without Floodgate."
        ),
    )
    parser.add_argument("--cdk-json", type=Path, help="read the deployment's settings from this cdk.json")
    stack = parser.add_argument_group("deployment (defaults: the stack's)")
    stack.add_argument("--alarm-period", type=_duration, help="alarmPeriodSeconds (60s)")
    stack.add_argument("--alarm-datapoints", type=_positive(int), help="alarmDatapointsToAlarm (1)")
    stack.add_argument("--scale-out-periods", type=_positive(int), help="scaleOutEvaluationPeriods (3)")
    stack.add_argument("--always-pps", type=_positive(float), help="alwaysPps (off)")
    stack.add_argument("--hold", action=argparse.BooleanOptionalAction, help="scaleOutHold (off)")
    stack.add_argument("--hold-max", type=_duration, help="scaleOutHoldMax (10m)")
    stack.add_argument("--aggregation", type=_duration, help="flow-log aggregation interval (60s)")
    aws = parser.add_argument_group("AWS and the incident")
    aws.add_argument("--delivery", type=_range, default=(60.0, 600.0), help="delivery delay range (1m..10m)")
    aws.add_argument("--step", type=_duration, default=60.0, help="step through the range (1m)")
    aws.add_argument("--metric-lag", type=_duration, default=0.0, help="period end to datapoint (0s)")
    aws.add_argument("--alarm-event", type=_duration, default=5.0, help="alarm to detector (5s)")
    aws.add_argument("--launch", type=_duration, default=120.0, help="scale-out to running (2m)")
    aws.add_argument("--warmup", type=_duration, default=300.0, help="instance warm-up (5m)")
    aws.add_argument("--scale-in", type=_duration, default=900.0, help="relief to scale-in (15m)")
    aws.add_argument("--flood", type=_duration, default=1800.0, help="how long the flood lasts (30m)")
    aws.add_argument("--flood-pps", type=_positive(float), default=50_000.0, help="flood rate (50000)")
    aws.add_argument("--extra-instances", type=_positive(int), default=4, help="added by the scale-out (4)")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    parser.set_defaults(run=run)


def deployment_from(args: argparse.Namespace) -> Deployment:
    deployment = Deployment()
    if args.cdk_json is not None:
        deployment = replace(deployment, **_context_fields(args.cdk_json))
    flags = {
        "alarm_period_s": args.alarm_period,
        "alarm_datapoints": args.alarm_datapoints,
        "scale_out_datapoints": args.scale_out_periods,
        "always_pps": args.always_pps,
        "hold": args.hold,
        "hold_max_s": args.hold_max,
        "aggregation_s": args.aggregation,
    }
    return replace(deployment, **{name: value for name, value in flags.items() if value is not None})


def _context_fields(path: Path) -> dict[str, Any]:
    try:
        context = json.loads(path.read_text())["context"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"--cdk-json {path}: not a readable cdk.json with a context ({exc})") from None
    fields: dict[str, Any] = {}
    for key, (name, read) in CONTEXT_KEYS.items():
        value = context.get(key)
        if value is None or value == "":
            continue
        try:
            fields[name] = read(value)
        except (TypeError, ValueError) as exc:
            raise CliError(f"--cdk-json {path}: {key}={value!r}: {exc}") from None
    return fields


def run(args: argparse.Namespace) -> int:
    deployment = deployment_from(args)
    conditions = Conditions(
        metric_lag_s=args.metric_lag,
        alarm_event_s=args.alarm_event,
        launch_s=args.launch,
        warmup_s=args.warmup,
        scale_in_s=args.scale_in,
        flood_s=args.flood,
        flood_pps=args.flood_pps,
        extra_instances=args.extra_instances,
    )
    try:
        low, high = args.delivery
        delays = delivery_range(low, high, args.step)
    except ValueError as exc:
        raise CliError(f"--delivery/--step: {exc}") from None
    result = distribution(deployment, conditions, delays)
    if args.json:
        print(json.dumps(as_json(deployment, conditions, result), indent=2))
    else:
        print(render(deployment, conditions, result))
    return 0


def as_json(deployment: Deployment, conditions: Conditions, result: Distribution) -> dict[str, Any]:
    return {
        "deployment": asdict(deployment),
        "conditions": {k: v for k, v in asdict(conditions).items() if k != "delivery_s"},
        "deny_first_share": result.deny_first_share,
        "scale_out_avoided_share": result.scale_out_avoided_share,
        "timelines": [
            {**asdict(t), "deny_first": t.deny_first, "saved_instance_minutes": t.saved_instance_minutes}
            for t in result.timelines
        ],
    }


def _at(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.0f}s"


def _hold(t: Timeline) -> str:
    if t.hold_s is None or t.hold_released_s is None:
        return "—"
    return f"{t.hold_s:.0f}s→{t.hold_released_s:.0f}s ({t.hold_release_reason})"


def render(deployment: Deployment, conditions: Conditions, result: Distribution) -> str:
    from floodgate.cli.render import table  # noqa: PLC0415 - keeps the model import-light

    d, c = deployment, conditions
    always = "off" if d.always_pps is None else f"{d.always_pps:g} pps"
    hold = f"on, max {format_duration(d.hold_max_s)}" if d.hold else "off"
    lines = [
        f"Deployment: early alarm {d.alarm_datapoints} x {d.alarm_period_s:g}s; scale-out "
        f"{d.scale_out_datapoints} x {d.scale_out_period_s:g}s; flow-log aggregation {d.aggregation_s:g}s; "
        f"alwaysPps {always}; scaleOutHold {hold}",
        f"Incident: {c.flood_pps:g} pps for {format_duration(c.flood_s)}; metric lag {c.metric_lag_s:g}s, "
        f"alarm→detector {c.alarm_event_s:g}s, processing {c.alarm_processing_s:.2f}s (alarm) / "
        f"{c.batch_processing_s:.2f}s (batch); scale-out adds {c.extra_instances}, launch "
        f"{format_duration(c.launch_s)} + warm-up {format_duration(c.warmup_s)}, scale-in "
        f"{format_duration(c.scale_in_s)} after relief",
        "Times in seconds after the flood starts.",
        "",
    ]
    rows = [
        (
            format_duration(t.delivery_s),
            _at(t.first_batch_s),
            _at(t.early_alarm_s),
            _at(t.first_deny_s),
            _at(t.scale_out_unchecked_s),
            "yes" if t.deny_first else "no",
            _hold(t),
            _at(t.scale_out_s),
            f"{t.instance_minutes_without:.0f}",
            f"{t.instance_minutes_with:.0f}",
            f"{t.saved_instance_minutes:.0f}",
        )
        for t in result.timelines
    ]
    headers = (
        "delivery",
        "records in",
        "early alarm",
        "first deny",
        "scale-out",
        "deny first",
        "hold",
        "scale-out w/ FG",
        "inst-min w/o",
        "w/ FG",
        "saved",
    )
    lines.append(table(headers, rows, right=(1, 2, 3, 4, 7, 8, 9, 10)))
    low, mid, high = result.first_deny_s()
    s_low, s_mid, s_high = result.saved_instance_minutes()
    lines += [
        "",
        f"first deny: {low:.0f}s / {mid:.0f}s / {high:.0f}s (min / median / max over the delivery range)",
        f"deny before the scale-out fires: {result.deny_first_share:.0%} of the range; scale-out avoided: "
        f"{result.scale_out_avoided_share:.0%}",
        f"instance-minutes saved: {s_low:.0f} / {s_mid:.0f} / {s_high:.0f}",
    ]
    return "\n".join(lines)
