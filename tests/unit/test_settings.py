"""The settings table and the cold-start reader that works from it (pure: no AWS, no CDK)."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from floodgate.settings import ENV, ConfigError, Settings, attribute
from floodgate.settings_table import BY_ENV, BY_KEY, ENV_PREFIX, SETTINGS, cdk_context

MINIMAL = {
    "FLOODGATE_NACL_IDS": "acl-0a1b2c3d4e5f60718",
    "FLOODGATE_VPC_CIDRS": "10.0.0.0/16",
    "FLOODGATE_STATE_TABLE": "state",
    "FLOODGATE_LOG_TABLE": "log",
}
RUNTIME_KINDS = {"text", "choice", "strings", "names", "cidrs", "int", "number", "duration", "flag", "format"}


# ---------------------------------------------------------------------------------------------- the table


def test_every_row_is_named_once_and_says_what_it_means() -> None:
    keys = [row.key for row in SETTINGS if row.key is not None]
    variables = [row.env for row in SETTINGS if row.env is not None]
    assert len(keys) == len(set(keys)) == len(BY_KEY)
    assert len(variables) == len(set(variables)) == len(BY_ENV)
    for row in SETTINGS:
        assert row.key is not None or row.env is not None
        assert row.env is None or re.fullmatch(r"FLOODGATE_[A-Z0-9_]+", row.env), row
        assert row.key is None or re.fullmatch(r"[a-z][A-Za-z0-9]+", row.key), row
        assert row.meaning and "\n" not in row.meaning and len(row.meaning) <= 100, row
        assert "|" not in row.meaning and row.area, row


def test_bounds_and_choices_are_coherent_and_hold_the_defaults() -> None:
    for row in SETTINGS:
        if row.kind in ("int", "number", "retention"):
            assert row.low is not None, row
        if row.kind in ("int", "retention"):
            assert row.high is not None and row.low is not None and row.low <= row.high, row
        if isinstance(row.default, int | float) and not isinstance(row.default, bool):
            assert row.low is not None and row.low <= row.default, row
            assert row.high is None or row.default <= row.high, row
        if row.kind == "choice":
            assert row.default in row.choices, row
        if row.kind != "choice":
            assert not row.choices, row
        if row.placeholder:
            assert row.example is not None, row


def test_rows_of_the_functions_use_kinds_the_environment_reader_reads() -> None:
    assert {row.kind for row in BY_ENV.values()} <= RUNTIME_KINDS


def test_one_side_only_rows_say_so() -> None:
    set_by_the_stack = {row.env for row in SETTINGS if row.key is None}
    assert set_by_the_stack == {
        "FLOODGATE_STATE_TABLE",
        "FLOODGATE_WINDOW_TABLE",
        "FLOODGATE_LOG_TABLE",
        "FLOODGATE_TOPIC_ARN",
        "FLOODGATE_ALARM_NAMES",
        "FLOODGATE_MEMBER_ALARM_PREFIX",
        "FLOODGATE_STREAM_FAILURES",
    }
    synth_only = {row.key for row in SETTINGS if row.env is None}
    assert {"stackName", "powertoolsLayerVersion", "alarmThreshold", "alertEmails"} <= synth_only
    assert "budget" not in synth_only


def test_cdk_context_is_the_defaults_with_the_examples() -> None:
    context = cdk_context()
    assert set(context) == set(BY_KEY)
    assert context["budget"] == 10
    assert context["window"] == "5m"
    assert context["clockSkew"] == "5m"
    assert context["naclIds"] == ["acl-0123456789abcdef0"]
    assert context["vpcId"] == "vpc-0123456789abcdef0"
    assert context["vpcCidrs"] == ["10.0.0.0/16"]
    assert context["alwaysPps"] is None


# ---------------------------------------------------------------------------------------------- the reader


def test_settings_has_one_field_per_variable() -> None:
    assert {f.name for f in fields(Settings)} == {attribute(row) for row in BY_ENV.values()}
    assert attribute(BY_ENV["FLOODGATE_BASE_TTL"]) == "base_ttl_s"
    assert attribute(BY_ENV["FLOODGATE_MIN_SHARE"]) == "min_share"


def test_env_names_the_variables_of_the_table() -> None:
    assert ENV.BUDGET == "FLOODGATE_BUDGET"
    assert ENV.WINDOW == "FLOODGATE_WINDOW"
    assert ENV.CLOCK_SKEW == "FLOODGATE_CLOCK_SKEW"
    assert ENV_PREFIX + "TOPIC_ARN" == ENV.TOPIC_ARN
    with pytest.raises(AttributeError, match="FLOODGATE_NO_SUCH_KNOB"):
        _ = ENV.NO_SUCH_KNOB


def test_absent_variables_take_the_documented_defaults() -> None:
    settings = Settings.from_env(MINIMAL)
    assert (settings.rule_start, settings.budget, settings.nacl_quota) == (100, 10, 20)
    assert (settings.min_pps, settings.min_bps, settings.min_share) == (5000.0, 0.0, 0.01)
    assert settings.always_pps is None
    assert (settings.max_prefix_v4, settings.max_prefix_v6) == (16, 48)
    assert (settings.base_ttl_s, settings.max_ttl_s, settings.ttl_factor) == (1800, 86400, 2.0)
    assert settings.offence_memory_s == 7 * 86400
    assert (settings.extend_on_evidence, settings.outbound_mirror, settings.dry_run) == (True, False, False)
    assert (settings.window_s, settings.arm_ttl_s, settings.clock_skew_s) == (300, 1800, 300)
    assert settings.log_retention_days == 90
    assert settings.flow_log_format.fields[:4] == ("version", "account-id", "interface-id", "srcaddr")
    assert settings.vpc_id is None and settings.topic_arn is None and settings.allow_cidrs == ()
    assert (settings.ingest, settings.window_shards) == ("subscription", 1)


def test_set_variables_are_read_by_their_kind() -> None:
    settings = Settings.from_env(
        MINIMAL
        | {
            "FLOODGATE_NACL_IDS": " acl-0a1b2c3d4e5f60718 , acl-0fedcba9876543210 ",
            "FLOODGATE_VPC_CIDRS": "10.0.0.0/16,2001:db8::/56",
            "FLOODGATE_ALWAYS_PPS": "20000",
            "FLOODGATE_MIN_SHARE": "0.2",
            "FLOODGATE_WINDOW": "2m",
            "FLOODGATE_CLOCK_SKEW": "90s",
            "FLOODGATE_EXTEND_ON_EVIDENCE": "",
            "FLOODGATE_DRY_RUN": "yes",
            "FLOODGATE_FLOW_LOG_FORMAT": "default",
            "FLOODGATE_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:t",
            "FLOODGATE_INGEST": " kinesis ",
            "FLOODGATE_WINDOW_SHARDS": "4",
        }
    )
    assert (settings.ingest, settings.window_shards) == ("kinesis", 4)
    assert settings.nacl_ids == ("acl-0a1b2c3d4e5f60718", "acl-0fedcba9876543210")
    assert settings.vpc_cidrs == ("10.0.0.0/16", "2001:db8::/56")
    assert (settings.always_pps, settings.min_share, settings.window_s) == (20000.0, 0.2, 120)
    assert settings.clock_skew_s == 90
    assert (settings.extend_on_evidence, settings.dry_run) == (False, True)
    assert settings.topic_arn == "arn:aws:sns:eu-west-1:123456789012:t"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"FLOODGATE_BUDGET": "99"}, "FLOODGATE_BUDGET: 99 is outside 1..38"),
        (
            {"FLOODGATE_INGEST": "firehose"},
            "FLOODGATE_INGEST: 'firehose' is not one of subscription, kinesis",
        ),
        ({"FLOODGATE_WINDOW_SHARDS": "0"}, "FLOODGATE_WINDOW_SHARDS: 0 is outside 1..16"),
        ({"FLOODGATE_RULE_START": "x"}, "FLOODGATE_RULE_START: expected an integer, got 'x'"),
        ({"FLOODGATE_MIN_SHARE": "2"}, "FLOODGATE_MIN_SHARE: 2 is outside 0.0001..1.0"),
        ({"FLOODGATE_MIN_PPS": "-1"}, "FLOODGATE_MIN_PPS: -1 is outside >= 0.0"),
        ({"FLOODGATE_MIN_PPS": "nan"}, "FLOODGATE_MIN_PPS: nan is outside >= 0.0"),
        ({"FLOODGATE_ALWAYS_PPS": "lots"}, "FLOODGATE_ALWAYS_PPS: expected a number, got 'lots'"),
        ({"FLOODGATE_WINDOW": "soon"}, "FLOODGATE_WINDOW: not a duration: 'soon'"),
        ({"FLOODGATE_ARM_TTL": "0s"}, "FLOODGATE_ARM_TTL: duration must be positive"),
        ({"FLOODGATE_CLOCK_SKEW": "soon"}, "FLOODGATE_CLOCK_SKEW: not a duration"),
        ({"FLOODGATE_DRY_RUN": "maybe"}, "FLOODGATE_DRY_RUN: expected true or false, got 'maybe'"),
        ({"FLOODGATE_VPC_ID": "vpc-x"}, "FLOODGATE_VPC_ID: 'vpc-x' is not a VPC id (vpc-…)"),
        ({"FLOODGATE_NACL_IDS": "acl-1"}, "FLOODGATE_NACL_IDS: 'acl-1' is not a NACL id (acl-…)"),
        ({"FLOODGATE_NACL_IDS": ""}, "set FLOODGATE_NACL_IDS or FLOODGATE_VPC_ID"),
        ({"FLOODGATE_STATE_TABLE": " "}, "FLOODGATE_STATE_TABLE is required"),
        ({"FLOODGATE_VPC_CIDRS": ""}, "FLOODGATE_VPC_CIDRS is required (comma-separated CIDRs)"),
        ({"FLOODGATE_ALLOW_CIDRS": "10.0.0.1/8"}, "FLOODGATE_ALLOW_CIDRS: invalid CIDR"),
        ({"FLOODGATE_FLOW_LOG_FORMAT": "${srcaddr}"}, "FLOODGATE_FLOW_LOG_FORMAT: format lacks field(s)"),
        ({"FLOODGATE_BUDGET": "19"}, "FLOODGATE_BUDGET=19 leaves no room under FLOODGATE_NACL_QUOTA=20"),
        (
            {"FLOODGATE_RULE_START": "32760"},
            "FLOODGATE_RULE_START=32760: the owned block runs past rule 32766",
        ),
        ({"FLOODGATE_BASE_TTL": "2d"}, "FLOODGATE_MAX_TTL must not be shorter than FLOODGATE_BASE_TTL"),
    ],
)
def test_a_bad_variable_is_named_with_its_value(override: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(MINIMAL | override)
    assert str(caught.value).startswith(message)


MEMBER = {"FLOODGATE_MODE": "member", "FLOODGATE_STATE_TABLE": "state", "FLOODGATE_LOG_TABLE": "log"}


def test_a_member_needs_no_target_nor_cidrs_but_the_security_account() -> None:
    with pytest.raises(ConfigError, match=r"^FLOODGATE_SECURITY_ACCOUNT is required in member mode"):
        Settings.from_env(MEMBER)
    settings = Settings.from_env({**MEMBER, "FLOODGATE_SECURITY_ACCOUNT": "111111111111"})
    assert (settings.is_member, settings.vpc_id, settings.nacl_ids, settings.vpc_cidrs) == (
        True,
        None,
        (),
        (),
    )
    assert (settings.security_bus, settings.member_vpc_tag) == ("floodgate-estate", "floodgate:protect")
    with pytest.raises(
        ConfigError, match=r"^FLOODGATE_MODE: 'several' is not one of single, security, member"
    ):
        Settings.from_env({**MINIMAL, "FLOODGATE_MODE": "several"})
    with pytest.raises(ConfigError, match=r"^set FLOODGATE_NACL_IDS or FLOODGATE_VPC_ID"):
        Settings.from_env({**MEMBER, "FLOODGATE_MODE": "single", "FLOODGATE_VPC_CIDRS": "10.0.0.0/16"})
