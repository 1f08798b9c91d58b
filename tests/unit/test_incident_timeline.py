"""The incident timeline model, against figures worked out by hand from its stated rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from floodgate.cli.main import main
from floodgate.core.incident_timeline import (
    Conditions,
    Deployment,
    delivery_range,
    distribution,
    timeline,
)

# Round processing times keep the hand arithmetic readable.
ROUND = Conditions(alarm_event_s=5.0, alarm_processing_s=1.0, batch_processing_s=2.0)


def test_defaults_with_five_minute_delivery_lose_the_race_but_cut_the_extra_capacity_short() -> None:
    t = timeline(Deployment(), ROUND)
    # records: 60 s aggregation + 300 s delivery; alarm: 1 x 60 s, at the detector 5 s later.
    assert t.first_batch_s == 360
    assert t.early_alarm_s == 60
    assert t.armed_s == 65
    assert t.first_deny_s == 362  # armed long before: the batch is decided as it arrives (+2 s)
    assert t.scale_out_unchecked_s == 180  # 3 x 60 s
    assert not t.deny_first
    assert t.scale_out_s == 180
    assert t.in_service_s == 180 + 120 + 300
    # 4 extra instances from 180 s to relief + 15 min: 1800 + 900 - 180 = 2520 s without, 362 + 900 - 180
    # = 1082 s with.
    assert t.instance_minutes_without == pytest.approx(4 * 2520 / 60)
    assert t.instance_minutes_with == pytest.approx(4 * 1082 / 60)
    assert t.hold_s is None


def test_a_deny_before_the_last_scale_out_period_starts_avoids_the_scale_out() -> None:
    # 20 s delivery: records at 80 s, armed at 65 s, deny at 82 s < 120 s (the third period's start).
    t = timeline(Deployment(), Conditions(delivery_s=20.0, alarm_processing_s=1.0, batch_processing_s=2.0))
    assert t.first_deny_s == 82
    assert t.deny_first
    assert t.scale_out_s is None
    assert t.instance_minutes_with == 0


def test_a_deny_inside_the_last_period_still_counts_that_period_as_breaching() -> None:
    # 60 s delivery: deny at 122 s, after the third period began at 120 s: the scale-out fires at 180 s.
    t = timeline(Deployment(), Conditions(delivery_s=60.0, alarm_processing_s=1.0, batch_processing_s=2.0))
    assert t.first_deny_s == 122
    assert t.deny_first  # before the alarm fires ...
    assert t.scale_out_s == 180  # ... but too late to stop it


def test_records_that_arrive_before_the_arming_are_decided_by_the_arming() -> None:
    # 2-minute early alarm (2 x 60 s): ALARM at 120 s, detector at 125 s; records were in at 70 s.
    deployment = Deployment(alarm_datapoints=2)
    t = timeline(deployment, Conditions(delivery_s=10.0, alarm_processing_s=1.0, batch_processing_s=2.0))
    assert t.first_batch_s == 70
    assert t.first_deny_s == 126


def test_always_pps_below_the_flood_needs_no_arming() -> None:
    deployment = Deployment(alarm_datapoints=2, always_pps=10_000.0)
    t = timeline(deployment, Conditions(delivery_s=10.0, alarm_processing_s=1.0, batch_processing_s=2.0))
    assert t.armed_s is None
    assert t.first_deny_s == 72


def test_always_pps_above_the_flood_changes_nothing() -> None:
    deployment = Deployment(alarm_datapoints=2, always_pps=100_000.0)
    t = timeline(deployment, Conditions(delivery_s=10.0, alarm_processing_s=1.0, batch_processing_s=2.0))
    assert t.first_deny_s == 126


def test_the_hold_keeps_the_scale_out_away_until_the_early_alarm_goes_ok() -> None:
    t = timeline(Deployment(hold=True), ROUND)
    assert t.hold_s == 66  # armed at 65 s, the hold placed within the alarm's processing
    # deny at 362 s lies in the period 360-420 s; the first clean period is 420-480 s: OK at 480 s.
    assert t.hold_released_s == 480
    assert t.hold_release_reason == "early alarm OK"
    assert t.scale_out_s is None
    assert t.instance_minutes_with == 0
    assert t.saved_instance_minutes == pytest.approx(168)


def test_a_hold_that_runs_out_before_the_deny_lets_the_scale_out_through() -> None:
    # 10-minute delivery: deny at 662 s; OK would come at 720 s, after the hold's end at 66 + 600 = 666 s.
    t = timeline(
        Deployment(hold=True), Conditions(delivery_s=600.0, alarm_processing_s=1.0, batch_processing_s=2.0)
    )
    assert t.first_deny_s == 662
    assert t.hold_released_s == 666
    assert t.hold_release_reason == "hold max"
    assert t.scale_out_s == 666
    assert t.instance_minutes_with == pytest.approx(4 * (662 + 900 - 666) / 60)


def test_a_hold_placed_after_the_scale_out_changes_nothing() -> None:
    # Early alarm 4 x 60 s (after the 3 x 60 s scale-out): the hold comes too late.
    deployment = Deployment(hold=True, alarm_datapoints=4, scale_out_datapoints=3)
    t = timeline(deployment, ROUND)
    assert t.hold_s == 246
    assert t.scale_out_s == 180


def test_a_flood_shorter_than_the_scale_out_datapoints_costs_nothing_either_way() -> None:
    t = timeline(Deployment(), Conditions(flood_s=100.0))
    assert t.scale_out_unchecked_s is None
    assert t.instance_minutes_without == t.instance_minutes_with == 0


def test_the_delivery_range_includes_both_ends() -> None:
    assert delivery_range(60, 600, 60) == (60, 120, 180, 240, 300, 360, 420, 480, 540, 600)
    assert delivery_range(60, 150, 60) == (60, 120, 150)
    with pytest.raises(ValueError):
        delivery_range(600, 60, 60)


def test_the_distribution_of_the_defaults_over_one_to_ten_minutes() -> None:
    result = distribution(Deployment(), ROUND, delivery_range(60, 600, 60))
    # deny = 60 + d + 2: 122 s ... 662 s; before 180 s only for d = 60 s; never before 120 s.
    assert result.first_deny_s() == (122, 392, 662)
    assert result.deny_first_share == pytest.approx(0.1)
    assert result.scale_out_avoided_share == 0
    held = distribution(Deployment(hold=True), ROUND, delivery_range(60, 600, 60))
    # released on OK while (ceil((62 + d) / 60) + 1) x 60 <= 666, i.e. d <= 538 s: 60 … 480 s, 8 of 10.
    assert held.scale_out_avoided_share == pytest.approx(0.8)


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["timeline", "--json", *argv]) == 0
    parsed: dict[str, Any] = json.loads(capsys.readouterr().out)
    return parsed


def test_cli_defaults_print_the_stack_defaults_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    result = _run_cli(capsys, "--delivery", "5m..5m")
    (only,) = result["timelines"]
    # 60 s + 300 s + the measured batch p99 (0.169 + 0.567 s); the scale-out at 3 x 60 s.
    assert only["first_deny_s"] == pytest.approx(360.736)
    assert only["scale_out_s"] == 180
    assert only["instance_minutes_without"] == pytest.approx(4 * (1800 + 900 - 180) / 60)


def test_cli_reads_the_deployment_from_cdk_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cdk_json = tmp_path / "cdk.json"
    context = {"alarmPeriodSeconds": 30, "scaleOutHold": True, "scaleOutHoldMax": "5m"}
    cdk_json.write_text(json.dumps({"context": context}))
    result = _run_cli(capsys, "--cdk-json", str(cdk_json), "--delivery", "1m..1m")
    assert result["deployment"]["alarm_period_s"] == 30
    assert result["deployment"]["hold"] is True
    assert result["deployment"]["hold_max_s"] == 300
    (only,) = result["timelines"]
    assert only["hold_s"] == pytest.approx(
        30 + 5 + 0.351
    )  # ALARM at 30 s, +5 s to arrive, held within 0.351 s


def test_cli_refuses_a_backwards_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["timeline", "--delivery", "10m..1m"]) == 2
    assert "--delivery" in capsys.readouterr().err
