"""The synth-time context reader, cdk.json and the README against the settings table (no synth)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from floodgate.core.flowlog import STACK_FORMAT
from floodgate.settings import ConfigError, Settings
from floodgate.settings_table import BY_ENV, BY_KEY, SETTINGS, Setting
from infra.app import CDK_JSON, cdk_json_context
from infra.docs import README, TABLE_HEAD, cdk_json_drift, readme_drift, readme_rows
from infra.settings import FloodgateSettings, SettingsError

TARGETS: dict[str, Any] = {
    "naclIds": ["acl-0a1b2c3d4e5f60718"],
    "vpcId": "vpc-0a1b2c3d4e5f60718",
    "vpcCidrs": ["10.0.0.0/16"],
    "alarmDimensions": {"AutoScalingGroupName": "web-asg"},  # the default AWS/EC2 alarm needs its target
}
BOTH_SIDES = [row for row in SETTINGS if row.key is not None and row.env is not None]
BOUNDED = [row for row in BOTH_SIDES if row.kind in ("int", "number")]


def _environment(context: dict[str, Any]) -> dict[str, str]:
    settings = FloodgateSettings.from_mapping(context)
    return settings.runtime_environment(state_table="s", log_table="l", topic_arn="")


# ------------------------------------------------------------------------------------- cdk.json, README


def test_cdk_json_is_written_from_the_table() -> None:
    document = json.loads(CDK_JSON.read_text(encoding="utf-8"))
    assert cdk_json_drift(document) == []
    assert document["app"].endswith("app.py")


def test_readme_table_is_written_from_the_table() -> None:
    assert readme_drift(README.read_text(encoding="utf-8")) == []


def test_cdk_json_drift_names_the_row() -> None:
    document = json.loads(CDK_JSON.read_text(encoding="utf-8"))
    document["context"]["budget"] = 11
    del document["context"]["window"]
    document["context"]["surplus"] = 1
    assert cdk_json_drift(document) == [
        "budget: cdk.json has 11, the table 10",
        "window: missing from cdk.json (the table: '5m')",
        "surplus: in cdk.json, not in the table",
    ]


def test_readme_drift_names_the_row() -> None:
    text = README.read_text(encoding="utf-8")
    line = next(line for line in readme_rows() if "`minShare`" in line)
    edited = text.replace(line, line.replace("0.01", "0.02"))
    drift = readme_drift(edited)
    assert len(drift) == 1
    assert drift[0].startswith("minShare: README has")
    assert readme_drift(text.replace(line + "\n", "")) == ["minShare: missing from the README"]


def test_readme_table_has_one_line_per_row_with_its_meaning() -> None:
    rows = readme_rows()
    assert len(rows) == len(SETTINGS)
    assert TABLE_HEAD[0].count("|") == rows[0].count("|")
    budget = next(line for line in rows if "`budget`" in line)
    assert "`FLOODGATE_BUDGET`" in budget and "integer 1..38" in budget and "`10`" in budget
    stack = next(line for line in rows if "`stackName`" in line)
    assert "— (synth only)" in stack
    state = next(line for line in rows if "`FLOODGATE_STATE_TABLE`" in line)
    assert "— (set by the stack)" in state and "(required)" in state
    vpc = next(line for line in rows if "`vpcId`" in line)
    assert '"vpc-0123456789abcdef0"` (placeholder, refused)' in vpc


# ---------------------------------------------------------------------------------------------- placeholders


def test_cdk_json_placeholders_are_refused_naming_the_key() -> None:
    with pytest.raises(SettingsError) as caught:
        FloodgateSettings.from_mapping(cdk_json_context())
    assert sorted(caught.value.problems) == [
        "naclIds: 'acl-0123456789abcdef0' is cdk.json's placeholder example, not a real id: "
        "set your own (-c naclIds=…)",
        "vpcId: 'vpc-0123456789abcdef0' is cdk.json's placeholder example, not a real id: "
        "set your own (-c vpcId=…)",
    ]


def test_a_placeholder_among_real_ids_is_refused() -> None:
    context = TARGETS | {"naclIds": "acl-0a1b2c3d4e5f60718,acl-0123456789abcdef0"}
    with pytest.raises(SettingsError, match=r"naclIds: 'acl-0123456789abcdef0' is cdk\.json's placeholder"):
        FloodgateSettings.from_mapping(context)


def test_cdk_json_with_real_targets_over_it_synthesizes_settings() -> None:
    """What the emulator deploy and `-c` do: real ids over cdk.json's placeholders."""
    settings = FloodgateSettings.from_mapping(cdk_json_context() | TARGETS)
    assert settings.nacl_ids == ("acl-0a1b2c3d4e5f60718",)
    assert settings.vpc_id == "vpc-0a1b2c3d4e5f60718"


# ------------------------------------------------------------------------------------ the readers agree


def test_context_defaults_pass_through_to_the_runtime_defaults() -> None:
    from_defaults = Settings.from_env(_environment(dict(TARGETS)))
    bare = Settings.from_env(
        {
            "FLOODGATE_NACL_IDS": "acl-0a1b2c3d4e5f60718",
            "FLOODGATE_VPC_CIDRS": "10.0.0.0/16",
            "FLOODGATE_STATE_TABLE": "s",
            "FLOODGATE_LOG_TABLE": "l",
            # set by the stack, not a default: the alarm the stack creates is the one that arms
            "FLOODGATE_ALARM_NAMES": '["Floodgate-early-warning"]',
            # and the v5 format of the flow log it creates (the variable's own default is AWS's v2)
            "FLOODGATE_FLOW_LOG_FORMAT": STACK_FORMAT,
        }
    )
    assert from_defaults == bare


def test_every_variable_of_the_table_is_in_the_environment() -> None:
    environment = _environment(dict(TARGETS))
    assert set(environment) == set(BY_ENV)
    assert environment["FLOODGATE_WINDOW"] == "5m"
    assert environment["FLOODGATE_CLOCK_SKEW"] == "5m"
    assert environment["FLOODGATE_MIN_SHARE"] == "0.01"
    assert environment["FLOODGATE_MIN_PPS"] == "5000"
    assert environment["FLOODGATE_ALWAYS_PPS"] == ""
    assert environment["FLOODGATE_EXTEND_ON_EVIDENCE"] == "true"
    assert environment["FLOODGATE_VPC_ID"] == ""  # NACL ids given: the VPC is not the target


def test_a_new_knob_reaches_the_functions() -> None:
    environment = _environment(TARGETS | {"clockSkew": "2m"})
    assert Settings.from_env(environment).clock_skew_s == 120
    with pytest.raises(SettingsError, match="clockSkew: not a duration: 'later'"):
        FloodgateSettings.from_mapping(TARGETS | {"clockSkew": "later"})


def _outside(row: Setting) -> float:
    assert row.high is not None or row.low is not None
    return row.high + 1 if row.high is not None else (row.low or 0) - 1


@pytest.mark.parametrize("row", BOUNDED, ids=lambda row: row.key)
def test_both_readers_refuse_the_same_out_of_bounds_value(row: Setting) -> None:
    assert row.key is not None and row.env is not None
    value = _outside(row)
    with pytest.raises(SettingsError) as at_synth:
        FloodgateSettings.from_mapping(TARGETS | {row.key: value})
    assert any(problem.startswith(f"{row.key}: ") for problem in at_synth.value.problems)
    environment = _environment(dict(TARGETS)) | {row.env: str(int(value))}
    with pytest.raises(ConfigError, match=f"^{row.env}: "):
        Settings.from_env(environment)


@pytest.mark.parametrize("row", BOUNDED, ids=lambda row: row.key)
def test_both_readers_accept_the_bounds(row: Setting) -> None:
    """A bound itself is no problem of its own row on either side (other rows may still object)."""
    assert row.key is not None and row.env is not None
    for bound in (row.low, row.high):
        if bound is None:
            continue
        try:
            FloodgateSettings.from_mapping(TARGETS | {row.key: str(bound)})
        except SettingsError as exc:
            assert not [p for p in exc.problems if p.startswith(f"{row.key}: ")]
        text = str(int(bound)) if row.kind == "int" else str(bound)
        try:
            Settings.from_env(_environment(dict(TARGETS)) | {row.env: text})
        except ConfigError as exc:
            assert not str(exc).startswith(f"{row.env}: ")


def test_cli_text_and_json_types_read_alike() -> None:
    as_json = TARGETS | {"budget": 5, "dryRun": True, "minShare": 0.2, "allowCidrs": ["192.0.2.0/24"]}
    as_text = {
        "naclIds": "acl-0a1b2c3d4e5f60718",
        "vpcId": "vpc-0a1b2c3d4e5f60718",
        "vpcCidrs": "10.0.0.0/16",
        "alarmDimensions": "AutoScalingGroupName=web-asg",
        "budget": "5",
        "dryRun": "true",
        "minShare": "0.2",
        "allowCidrs": "192.0.2.0/24",
    }
    assert FloodgateSettings.from_mapping(as_json).values == FloodgateSettings.from_mapping(as_text).values


def test_every_context_key_is_read() -> None:
    assert set(FloodgateSettings.from_mapping(TARGETS).values) == set(BY_KEY)
