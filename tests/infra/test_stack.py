"""The Floodgate stack: what it grants, what triggers the functions, what they are told, what it outputs.

Synth is slow (jsii), so each configuration is synthesized once per module.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy
import pytest
from aws_cdk import App
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks
from cfnlint.api import lint_file

from floodgate.core.flowlog import DEFAULT_FORMAT, STACK_FORMAT, FlowLogFormat
from floodgate.observability import DETECTOR_HANDLER, EXPIRER_HANDLER, OUTPUT
from floodgate.settings import ENV, Settings
from floodgate.settings_table import BY_ENV
from floodgate.tables import LOG_BY_CIDR_INDEX, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE
from infra.app import build_app
from infra.enforcement import STATE_TABLE_ACTIONS
from infra.manual import RUNBOOKS, payload_template
from infra.nag import acknowledge
from infra.settings import FloodgateSettings, SettingsError
from infra.stack import FloodgateStack

REPO = Path(__file__).resolve().parents[2]
NACLS = ["acl-0a1b2c3d4e5f60718", "acl-0fedcba9876543210"]
VPC = "vpc-0a1b2c3d4e5f60718"  # not cdk.json's placeholder, which synth refuses
BASE: dict[str, Any] = {
    "naclIds": NACLS,
    "vpcId": VPC,
    "vpcCidrs": ["10.0.0.0/16"],
    "alarmDimensions": {"AutoScalingGroupName": "web-asg"},
}
# The other shape: the whole VPC is the target, an existing flow-log group, user alarms, direct alarm action.
VARIANT: dict[str, Any] = {
    "stackName": "FloodgateVpc",
    "naclIds": [],
    "vpcId": VPC,
    "vpcCidrs": "10.0.0.0/16,10.1.0.0/16",
    "flowLogGroupName": "/vpc/flow-logs/prod",
    "flowLogFormat": "${version} ${interface-id} ${pkt-srcaddr} ${dstaddr} ${packets} ${bytes} ${start} "
    "${end} "
    "${action} ${log-status} ${flow-direction}",
    "existingAlarmNames": "alb-requests-high,nlb-packets-high",
    "alarmLambdaAction": "true",
    "alarmNamespace": "AWS/ApplicationELB",
    "alarmMetricName": "RequestCount",
    "alarmDimensions": "LoadBalancer=app/web/0123456789abcdef",
    "alarmThreshold": "20000",
    "scaleOutThreshold": "50000",
    "detectorReservedConcurrency": "",
    "expirerSchedule": "2m",
    "alertEmails": ["oncall@example.com"],
    "tableRemovalPolicy": "destroy",
    "scaleOutHold": "true",
    "scaleOutHoldGroups": "web-asg,api-asg",
    "scaleOutHoldMax": "5m",
}
# Keep this module on one xdist worker: its fixtures synthesize once per worker that runs any of its tests.
pytestmark = pytest.mark.xdist_group(name="infra-synth")
SAMPLE_TOKENS = {
    "state": "floodgate-state",
    "window": "floodgate-window",
    "log": "floodgate-log",
    "topic": "arn:aws:sns:eu-west-1:1:t",
}


class Synth:
    def __init__(self, app: App, stack: FloodgateStack, outdir: Path) -> None:
        self.app = app
        self.stack = stack
        self.outdir = outdir
        self.assembly = app.synth()  # runs cdk-nag (Validations): any unacknowledged finding raises here
        self.template = Template.from_stack(stack)
        self.json: dict[str, Any] = dict(self.template.to_json())
        self.template_path = outdir / f"{stack.artifact_id}.template.json"

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == kind}

    def one(self, kind: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(kind)
        assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
        return next(iter(found.items()))

    def logical_id(self, kind: str, path_part: str) -> str:
        matches = [k for k in self.resources(kind) if path_part in k]
        assert len(matches) == 1, (kind, path_part, matches)
        return matches[0]

    def function(self, name: str) -> tuple[str, dict[str, Any]]:
        logical = self.logical_id("AWS::Lambda::Function", name)
        return logical, self.json["Resources"][logical]["Properties"]

    def role_statements(self, function_name: str) -> list[dict[str, Any]]:
        _, props = self.function(function_name)
        role = props["Role"]["Fn::GetAtt"][0]
        out: list[dict[str, Any]] = []
        for policy in self.resources("AWS::IAM::Policy").values():
            if {"Ref": role} in policy["Properties"]["Roles"]:
                out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
        return out


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk-base")
    app, stack = build_app(BASE, outdir=outdir, use_cdk_json=False)
    return Synth(app, stack, outdir)


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk-variant")
    app, stack = build_app(VARIANT, outdir=outdir, use_cdk_json=False)
    return Synth(app, stack, outdir)


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def _nacl_arn(nacl: str) -> dict[str, Any]:
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":ec2:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":network-acl/{nacl}",
            ],
        ]
    }


def _replace_tokens(env: dict[str, Any], synth: Synth) -> dict[str, str]:
    """Tokens (Ref to tables / topic) -> sample values, as the deployed functions would see them."""
    refs = {
        synth.logical_id("AWS::DynamoDB::Table", "StateTable"): SAMPLE_TOKENS["state"],
        synth.logical_id("AWS::DynamoDB::Table", "WindowTable"): SAMPLE_TOKENS["window"],
        synth.logical_id("AWS::DynamoDB::Table", "LogTable"): SAMPLE_TOKENS["log"],
        synth.logical_id("AWS::SNS::Topic", "Topic"): SAMPLE_TOKENS["topic"],
    }
    out: dict[str, str] = {}
    for key, value in env.items():
        if isinstance(value, dict):
            assert set(value) == {"Ref"}, (key, value)
            out[key] = refs[value["Ref"]]
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------- IAM


@pytest.mark.parametrize("name", ["Detector", "Expirer"])
def test_nacl_entry_actions_only_on_the_configured_nacls(base: Synth, name: str) -> None:
    statements = base.role_statements(name)
    ec2 = [s for s in statements if any(a.startswith("ec2:") for a in _actions(s))]
    mutating = [s for s in ec2 if "ec2:DescribeNetworkAcls" not in _actions(s)]
    assert len(mutating) == 1
    assert sorted(_actions(mutating[0])) == sorted(
        ["ec2:CreateNetworkAclEntry", "ec2:ReplaceNetworkAclEntry", "ec2:DeleteNetworkAclEntry"]
    )
    assert _resources(mutating[0]) == [_nacl_arn(n) for n in NACLS]
    assert "Condition" not in mutating[0]
    describe = [s for s in ec2 if "ec2:DescribeNetworkAcls" in _actions(s)]
    assert [(_actions(s), s["Resource"]) for s in describe] == [
        (["ec2:DescribeNetworkAcls", "ec2:DescribeVpcs"], "*")
    ]


@pytest.mark.parametrize("name", ["Detector", "Expirer"])
def test_vpc_target_conditions_nacl_actions_on_the_vpc(variant: Synth, name: str) -> None:
    mutating = [s for s in variant.role_statements(name) if "ec2:CreateNetworkAclEntry" in _actions(s)]
    assert len(mutating) == 1
    assert _resources(mutating[0]) == [_nacl_arn("*")]
    condition = mutating[0]["Condition"]["ArnEquals"]["ec2:Vpc"]
    assert condition["Fn::Join"][1][-1] == f":vpc/{VPC}"


def test_no_wildcard_actions_and_star_resource_only_for_describe(base: Synth, variant: Synth) -> None:
    for synth in (base, variant):
        for kind in ("AWS::IAM::Policy", "AWS::IAM::Role"):
            for logical, resource in synth.resources(kind).items():
                props = resource["Properties"]
                documents = [props.get("PolicyDocument")] + [
                    p["PolicyDocument"] for p in props.get("Policies", [])
                ]
                for document in filter(None, documents):
                    for statement in document["Statement"]:
                        for action in _actions(statement):
                            assert "*" not in action, (logical, action)
                        if "*" in _resources(statement):
                            # Describe and the X-Ray calls of active tracing have no resource-level scope.
                            assert _actions(statement) in (
                                ["ec2:DescribeNetworkAcls", "ec2:DescribeVpcs"],
                                ["autoscaling:DescribeAutoScalingGroups"],
                                ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                            ), (logical, statement)


@pytest.mark.parametrize("name", ["Detector", "Expirer"])
def test_capacity_hold_acts_only_on_the_named_groups(base: Synth, variant: Synth, name: str) -> None:
    assert not [
        s for s in base.role_statements(name) if any(a.startswith("autoscaling:") for a in _actions(s))
    ]
    statements = [s for s in variant.role_statements(name) if "autoscaling:SuspendProcesses" in _actions(s)]
    assert len(statements) == 1
    assert sorted(_actions(statements[0])) == ["autoscaling:ResumeProcesses", "autoscaling:SuspendProcesses"]
    names = [r["Fn::Join"][1][-1] for r in _resources(statements[0])]
    assert names == [
        ":autoScalingGroup:*:autoScalingGroupName/web-asg",
        ":autoScalingGroup:*:autoScalingGroupName/api-asg",
    ]
    _, props = variant.function(name)
    environment = props["Environment"]["Variables"]
    assert (environment["FLOODGATE_HOLD_GROUPS"], environment["FLOODGATE_HOLD_MAX"]) == (
        "web-asg,api-asg",
        "5m",
    )
    _, base_props = base.function(name)
    assert base_props["Environment"]["Variables"]["FLOODGATE_HOLD_GROUPS"] == ""


@pytest.mark.parametrize("name", ["Detector", "Expirer"])
def test_tables_and_topic_by_grants(base: Synth, name: str) -> None:
    statements = base.role_statements(name)
    state = base.logical_id("AWS::DynamoDB::Table", "StateTable")
    window = base.logical_id("AWS::DynamoDB::Table", "WindowTable")
    log = base.logical_id("AWS::DynamoDB::Table", "LogTable")
    granted: set[str] = set()
    for statement in statements:
        if any(a.startswith("dynamodb:") for a in _actions(statement)):
            for resource in _resources(statement):
                if isinstance(resource, dict) and "Fn::GetAtt" in resource:
                    granted.add(resource["Fn::GetAtt"][0])
            for resource in _resources(statement):
                assert not str(resource).endswith("/index/*"), "the functions never read an index"
            actions = set(_actions(statement))
            assert actions in ({"dynamodb:BatchWriteItem"}, set(STATE_TABLE_ACTIONS)), actions
    assert granted == {state, window, log}
    topic = base.logical_id("AWS::SNS::Topic", "Topic")
    key = base.logical_id("AWS::KMS::Key", "Key")
    assert {"Action": "sns:Publish", "Effect": "Allow", "Resource": {"Ref": topic}} in statements
    assert {
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Effect": "Allow",
        "Resource": {"Fn::GetAtt": [key, "Arn"]},
    } in statements


def test_runbook_role_may_only_invoke_the_detector(base: Synth) -> None:
    detector, _ = base.function("Detector")
    role = base.logical_id("AWS::IAM::Role", "AutomationRole")
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in base.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    ]
    assert policies == [
        [
            {
                "Action": "lambda:InvokeFunction",
                "Effect": "Allow",
                "Resource": {"Fn::GetAtt": [detector, "Arn"]},
            }
        ]
    ]
    trust = base.json["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "ssm.amazonaws.com"}
    assert "aws:SourceAccount" in trust["Condition"]["StringEquals"]


# ---------------------------------------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("name", "handler", "concurrency"),
    [
        ("Detector", DETECTOR_HANDLER, 2),
        ("Expirer", EXPIRER_HANDLER, 1),
    ],
)
def test_functions_runtime_code_and_failure_handling(
    base: Synth, name: str, handler: str, concurrency: int
) -> None:
    logical, props = base.function(name)
    assert props["Handler"] == handler
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["ReservedConcurrentExecutions"] == concurrency
    layer = json.dumps(props["Layers"])
    assert ":017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-arm64:" in layer
    assert '"Ref": "AWS::Region"' in layer  # built from the region, no lookup
    assert props["LoggingConfig"]["LogGroup"]["Ref"] in base.resources("AWS::Logs::LogGroup")
    queue = base.logical_id("AWS::SQS::Queue", "FailedInvocations")
    base.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": logical},
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [queue, "Arn"]}}},
        },
    )


def _zip_assets(base: Synth) -> dict[str, Path]:
    """The staged directory of each zip asset, by the path of the construct that uses it."""
    assets = json.loads((base.outdir / f"{base.stack.artifact_id}.assets.json").read_text())
    zips = [a for a in assets["files"].values() if a["source"].get("packaging") == "zip"]
    return {a["displayName"]: base.outdir / a["source"]["path"] for a in zips}


def test_function_code_is_the_functions_directory_without_debris(base: Synth) -> None:
    code = [path for name, path in _zip_assets(base).items() if name != "Enforcement/Numpy/Code"]
    assert len(code) == 1  # both functions share one asset
    staged = code[0]
    assert (staged / "floodgate" / "settings.py").is_file()
    names = {p.name for p in staged.rglob("*")}
    assert "__pycache__" not in names
    assert not any(n.endswith(".egg-info") for n in names)
    # The block scanner's C extension is built for the machine that installs (functions/ holds it after
    # `make install`): an arm64 Lambda must never be handed it, nor its source.
    assert not any(n.startswith("_blockscan") for n in names)


def test_detector_scans_with_numpy_for_arm64_python313_from_its_layer(base: Synth) -> None:
    layers = base.resources("AWS::Lambda::LayerVersion")
    assert len(layers) == 1
    ((layer_id, layer),) = layers.items()
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    # Only the detector parses flow logs: the expirer loads no numpy.
    assert {"Ref": layer_id} in base.function("Detector")[1]["Layers"]
    assert {"Ref": layer_id} not in base.function("Expirer")[1]["Layers"]
    staged = _zip_assets(base)["Enforcement/Numpy/Code"]
    # Lambda adds the layer's python/ to sys.path; numpy's compiled core must be the arm64 CPython 3.13 build.
    cores = [p.name for p in (staged / "python" / "numpy" / "_core").glob("_multiarray_umath*.so")]
    assert cores == ["_multiarray_umath.cpython-313-aarch64-linux-gnu.so"]
    # The version the tests run with (pyproject's dev extra and the Makefile pin the same one).
    assert (staged / "python" / f"numpy-{numpy.__version__}.dist-info").is_dir()
    assert not list(staged.rglob("tests"))  # pruned: 52 MB unzipped instead of 69


def test_failure_queue_is_encrypted_and_tls_only(base: Synth) -> None:
    _, queue = base.one("AWS::SQS::Queue")
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    _, policy = base.one("AWS::SQS::QueuePolicy")
    assert '"aws:SecureTransport": "false"' in json.dumps(policy)


def test_log_retention(base: Synth) -> None:
    retentions = sorted(
        g["Properties"]["RetentionInDays"] for g in base.resources("AWS::Logs::LogGroup").values()
    )
    assert retentions == [7, 30, 30]  # flow logs 7 days, the two functions 30


# ---------------------------------------------------------------------------------------------- environment


def _env_names() -> set[str]:
    return set(BY_ENV)


@pytest.mark.parametrize("synth_name", ["base", "variant"])
@pytest.mark.parametrize("name", ["Detector", "Expirer"])
def test_environment_is_exactly_the_handlers_contract(
    request: pytest.FixtureRequest, synth_name: str, name: str
) -> None:
    synth: Synth = request.getfixturevalue(synth_name)
    _, props = synth.function(name)
    env = props["Environment"]["Variables"]
    assert set(env) == _env_names()
    settings = Settings.from_env(_replace_tokens(env, synth))
    assert settings.state_table == SAMPLE_TOKENS["state"]
    assert settings.log_table == SAMPLE_TOKENS["log"]
    assert settings.topic_arn == SAMPLE_TOKENS["topic"]
    if synth_name == "base":
        assert settings.nacl_ids == tuple(NACLS)
        assert settings.vpc_id is None
        assert settings.flow_log_format.text == STACK_FORMAT
        assert (settings.budget, settings.rule_start, settings.min_pps) == (10, 100, 5000.0)
    else:
        assert settings.nacl_ids == ()
        assert settings.vpc_id == VPC
        assert settings.vpc_cidrs == ("10.0.0.0/16", "10.1.0.0/16")
        assert "flow-direction" in settings.flow_log_format.fields


def test_both_functions_get_the_same_environment(base: Synth) -> None:
    assert base.function("Detector")[1]["Environment"] == base.function("Expirer")[1]["Environment"]


# ---------------------------------------------------------------------------------------------- tables


@pytest.mark.parametrize("name", ["StateTable", "LogTable"])
def test_tables_ttl_pitr_on_demand(base: Synth, name: str) -> None:
    logical = base.logical_id("AWS::DynamoDB::Table", name)
    resource = base.json["Resources"][logical]
    props = resource["Properties"]
    assert props["KeySchema"] == [
        {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
    ]
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert resource["DeletionPolicy"] == "Retain"


def test_window_table_is_transient_and_named_to_the_functions(base: Synth) -> None:
    """The window's items live hours: no point-in-time recovery, deleted with the stack even when the
    ledger's tables are retained; both functions are told its name."""
    logical = base.logical_id("AWS::DynamoDB::Table", "WindowTable")
    resource = base.json["Resources"][logical]
    props = resource["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": False}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert resource["DeletionPolicy"] == "Delete"
    state = base.json["Resources"][base.logical_id("AWS::DynamoDB::Table", "StateTable")]
    assert state["DeletionPolicy"] == "Retain"
    for name in ("Detector", "Expirer"):
        assert base.function(name)[1]["Environment"]["Variables"][ENV.WINDOW_TABLE] == {"Ref": logical}


def test_log_table_has_the_by_cidr_index(base: Synth) -> None:
    props = base.json["Resources"][base.logical_id("AWS::DynamoDB::Table", "LogTable")]["Properties"]
    assert props["GlobalSecondaryIndexes"] == [
        {
            "IndexName": LOG_BY_CIDR_INDEX,
            "KeySchema": [
                {"AttributeName": "cidr", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ]


def test_destroy_removal_policy_variant(variant: Synth) -> None:
    for table in variant.resources("AWS::DynamoDB::Table").values():
        assert table["DeletionPolicy"] == "Delete"


# ---------------------------------------------------------------------------------------------- triggers


def test_flow_log_into_group_with_subscription_to_detector(base: Synth) -> None:
    group = base.logical_id("AWS::Logs::LogGroup", "FlowLogIngestGroup")
    detector, _ = base.function("Detector")
    _, flow_log = base.one("AWS::EC2::FlowLog")
    props = flow_log["Properties"]
    assert props["ResourceId"] == VPC
    assert props["ResourceType"] == "VPC"
    assert props["TrafficType"] == "ALL"
    assert props["MaxAggregationInterval"] == 60
    assert props["LogGroupName"] == {"Ref": group}
    # The stack's own flow log records what detection needs beyond version 2, and the functions read it so.
    assert props["LogFormat"] == STACK_FORMAT
    for field in ("flow-direction", "tcp-flags", "pkt-srcaddr", "pkt-src-aws-service", "protocol"):
        assert f"${{{field}}}" in props["LogFormat"]
    _, subscription = base.one("AWS::Logs::SubscriptionFilter")
    assert subscription["Properties"] == {
        "DestinationArn": {"Fn::GetAtt": [detector, "Arn"]},
        "FilterPattern": "",
        "LogGroupName": {"Ref": group},
    }
    base.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Principal": "logs.amazonaws.com", "SourceArn": {"Fn::GetAtt": [group, "Arn"]}},
    )


def test_existing_log_group_is_subscribed_and_no_flow_log_is_created(variant: Synth) -> None:
    assert variant.resources("AWS::EC2::FlowLog") == {}
    _, subscription = variant.one("AWS::Logs::SubscriptionFilter")
    assert subscription["Properties"]["LogGroupName"] == "/vpc/flow-logs/prod"


def test_a_log_group_brought_by_the_user_is_read_in_the_default_format(tmp_path: Path) -> None:
    context = {**BASE, "flowLogGroupName": "/vpc/flow-logs/prod"}
    assert (
        FloodgateSettings.from_mapping(context).flow_logs.format == FlowLogFormat.parse(DEFAULT_FORMAT).text
    )


def test_custom_flow_log_format_is_set_on_the_flow_log(tmp_path: Path) -> None:
    context = {**BASE, "flowLogFormat": VARIANT["flowLogFormat"]}
    _app, stack = build_app(context, outdir=tmp_path, use_cdk_json=False, nag=False)
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::EC2::FlowLog", {"LogFormat": VARIANT["flowLogFormat"]})


def test_alarm_state_changes_routed_to_the_detector(base: Synth, variant: Synth) -> None:
    for synth, names in (
        (base, ["Floodgate-early-warning"]),
        (variant, ["FloodgateVpc-early-warning", "alb-requests-high", "nlb-packets-high"]),
    ):
        detector, _ = synth.function("Detector")
        rule = synth.json["Resources"][synth.logical_id("AWS::Events::Rule", "StateChanges")]["Properties"]
        assert rule["EventPattern"] == {
            "source": ["aws.cloudwatch"],
            "detail-type": ["CloudWatch Alarm State Change"],
            "detail": {"alarmName": names},
        }
        assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": [detector, "Arn"]}]
        # The detector arms only for these: the same names, passed as its environment.
        env = synth.function("Detector")[1]["Environment"]["Variables"]
        assert json.loads(env["FLOODGATE_ALARM_NAMES"]) == names


def test_early_alarm_threshold_and_evaluation(base: Synth) -> None:
    base.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": "Floodgate-early-warning",
            "Namespace": "AWS/EC2",
            "MetricName": "NetworkPacketsIn",
            "Statistic": "Sum",
            "Period": 60,
            "Threshold": 300000,
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1,
            "ComparisonOperator": "GreaterThanThreshold",
            "AlarmActions": Match.absent(),
        },
    )


def test_direct_alarm_action_and_its_resource_policy(variant: Synth) -> None:
    detector, _ = variant.function("Detector")
    variant.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": "FloodgateVpc-early-warning",
            "Namespace": "AWS/ApplicationELB",
            "Dimensions": [{"Name": "LoadBalancer", "Value": "app/web/0123456789abcdef"}],
            "Threshold": 20000,
            "AlarmActions": [{"Fn::GetAtt": [detector, "Arn"]}],
        },
    )
    permission = [
        p["Properties"]
        for p in variant.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "lambda.alarms.cloudwatch.amazonaws.com"
    ]
    assert len(permission) == 1
    assert permission[0]["FunctionName"] == {"Fn::GetAtt": [detector, "Arn"]}
    assert json.dumps(permission[0]["SourceArn"]).endswith(':alarm:FloodgateVpc-early-warning"]]}')


def test_expirer_schedule(base: Synth, variant: Synth) -> None:
    for synth, rate in ((base, "rate(1 minute)"), (variant, "rate(2 minutes)")):
        expirer, _ = synth.function("Expirer")
        rule = synth.json["Resources"][synth.logical_id("AWS::Events::Rule", "ExpirerSchedule")]["Properties"]
        assert rule["ScheduleExpression"] == rate
        assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": [expirer, "Arn"]}]


def test_reserved_concurrency_can_be_turned_off(variant: Synth) -> None:
    assert "ReservedConcurrentExecutions" not in variant.function("Detector")[1]


# ---------------------------------------------------------------------------------------------- runbooks


def test_runbooks_invoke_the_detector_with_the_manual_payload(base: Synth) -> None:
    detector, _ = base.function("Detector")
    documents = base.resources("AWS::SSM::Document")
    assert len(documents) == 3
    payloads = {}
    for document in documents.values():
        props = document["Properties"]
        assert props["DocumentType"] == "Automation"
        content = props["Content"]
        assert content["schemaVersion"] == "0.3"
        (step,) = content["mainSteps"]
        assert step["action"] == "aws:invokeLambdaFunction"
        assert step["inputs"]["FunctionName"] == {"Ref": detector}
        # Fill the form the way the console would and check the detector gets valid manual-action JSON.
        sample = {
            "Cidr": "203.0.113.7/32",
            "Ttl": "30m",
            "Reason": "flood on web",
            "Actor": "jo@example.com",
            "DryRun": "true",
        }
        text = step["inputs"]["Payload"]
        for name, spec in content["parameters"].items():
            if "allowedPattern" in spec:
                assert re.fullmatch(spec["allowedPattern"], sample[name]), name
            text = text.replace("{{ " + name + " }}", sample[name])
        payload = json.loads(text)
        payloads[payload["action"]] = payload
    assert payloads == {
        "block": {
            "action": "block",
            "cidr": "203.0.113.7/32",
            "ttl": "30m",
            "reason": "flood on web",
            "actor": "jo@example.com",
        },
        "unblock": {
            "action": "unblock",
            "cidr": "203.0.113.7/32",
            "reason": "flood on web",
            "actor": "jo@example.com",
        },
        "analyze": {"action": "analyze", "dry_run": True},
    }


@pytest.mark.parametrize("bad", ['x", "action": "unblock', "back\\slash"])
def test_runbook_reason_cannot_break_out_of_its_json_string(bad: str) -> None:
    block = next(r for r in RUNBOOKS if r.payload["action"] == "block")
    assert re.fullmatch(block.parameters["Reason"]["allowedPattern"], bad) is None
    assert json.loads(
        payload_template(block).replace("{{ Reason }}", "ok").replace("{{ ", "").replace(" }}", "")
    )


# ---------------------------------------------------------------------------------------------- outputs


def test_outputs_the_cli_reads(base: Synth, variant: Synth) -> None:
    keys = {v for k, v in vars(OUTPUT).items() if not k.startswith("_") and isinstance(v, str)}
    assert keys <= set(base.json["Outputs"])
    # An output with nothing to say is left out (CloudFormation refuses empty values); the CLI reads it as "".
    assert keys - set(variant.json["Outputs"]) <= {OUTPUT.NACL_IDS, OUTPUT.VPC_ID}
    for output in variant.json["Outputs"].values():
        assert output["Value"] != ""
    outputs = base.json["Outputs"]
    assert outputs[OUTPUT.NACL_IDS]["Value"] == ",".join(NACLS)
    assert outputs[OUTPUT.VPC_ID]["Value"] == VPC
    assert outputs[OUTPUT.DETECTOR_FUNCTION]["Value"] == {"Ref": base.function("Detector")[0]}
    assert outputs[OUTPUT.EXPIRER_FUNCTION]["Value"] == {"Ref": base.function("Expirer")[0]}
    assert outputs[OUTPUT.STATE_TABLE]["Value"] == {
        "Ref": base.logical_id("AWS::DynamoDB::Table", "StateTable")
    }
    assert outputs[OUTPUT.LOG_TABLE]["Value"] == {"Ref": base.logical_id("AWS::DynamoDB::Table", "LogTable")}
    assert outputs[OUTPUT.TOPIC_ARN]["Value"] == {"Ref": base.logical_id("AWS::SNS::Topic", "Topic")}
    assert OUTPUT.NACL_IDS not in variant.json["Outputs"]  # the VPC is the target: no NACL ids to name


def test_topic_encrypted_with_rotating_key(base: Synth) -> None:
    key = base.logical_id("AWS::KMS::Key", "Key")
    base.template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key, "Arn"]}})
    base.template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_dashboard_graphs_the_handlers_metrics(base: Synth) -> None:
    _, dashboard = base.one("AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in (
        "DeniesActive",
        "Blocks",
        "Evictions",
        "Expiries",
        "RecordsParsed",
        "RecordsSkipped",
        "DecisionLatencyMs",
    ):
        assert metric in body, metric
    assert "NaclId" in body
    assert "Floodgate" in body


def test_dashboard_graphs_the_effect_of_the_denies(base: Synth) -> None:
    _, dashboard = base.one("AWS::CloudWatch::Dashboard")
    body = "".join(str(part) for part in dashboard["Properties"]["DashboardBody"]["Fn::Join"][1])
    widget = next(
        w for w in json.loads(body)["widgets"] if "Effect of the denies" in w["properties"]["title"]
    )
    lines = {metric[1]: metric[-1] for metric in widget["properties"]["metrics"]}
    assert lines == {
        "InboundPps": {"label": "inbound", "stat": "Maximum"},
        "DeniedRejectPps": {"label": "denied, REJECTed", "stat": "Maximum"},
        "DeniedAcceptPps": {"label": "denied, still ACCEPTed", "stat": "Maximum"},
    }
    assert widget["properties"]["period"] == 300  # one expirer sample per 5-minute window
    assert all(metric[0] == "Floodgate" for metric in widget["properties"]["metrics"])


def test_falling_behind_alarms_reach_on_call(base: Synth) -> None:
    topic = {"Ref": base.logical_id("AWS::SNS::Topic", "Topic")}
    queue = base.logical_id("AWS::SQS::Queue", "FailedInvocations")
    detector = base.function("Detector")[0]
    alarms = {
        (p.get("Namespace"), p.get("MetricName")): p
        for p in (a["Properties"] for a in base.resources("AWS::CloudWatch::Alarm").values())
    }
    expected = {
        # (namespace, metric): (statistic, period, comparison, threshold)
        ("Floodgate", "IngestLagS"): ("Minimum", 300, "GreaterThanThreshold", 1200),
        ("Floodgate", "DecisionAgeS"): ("Maximum", 60, "GreaterThanThreshold", 300),
        ("Floodgate", "DecisionFailures"): ("Sum", 300, "GreaterThanOrEqualToThreshold", 1),
        ("AWS/Lambda", "AsyncEventAge"): ("Maximum", 60, "GreaterThanThreshold", 300_000),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"): ("Maximum", 300, "GreaterThanThreshold", 3600),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): (
            "Maximum",
            300,
            "GreaterThanOrEqualToThreshold",
            1,
        ),
    }
    for key, (statistic, period, comparison, threshold) in expected.items():
        alarm = alarms[key]
        assert (alarm["Statistic"], alarm["Period"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
            statistic,
            period,
            comparison,
            threshold,
        ), key
        assert alarm["AlarmActions"] == [topic], key
        assert alarm["TreatMissingData"] == "notBreaching", key
    assert alarms[("Floodgate", "IngestLagS")]["Dimensions"] == [{"Name": "service", "Value": "floodgate"}]
    assert alarms[("AWS/Lambda", "AsyncEventAge")]["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": detector}}
    ]
    for key in (
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ):
        assert alarms[key]["Dimensions"] == [
            {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}
        ], key


# ---------------------------------------------------------------------------------------------- checks


EXPECTED_ACKNOWLEDGEMENTS = {
    "AwsSolutions-SQS3",
    "AwsSolutions-DDB3",  # the window table: hours of evidence, nothing to recover
    "AwsSolutions-L1",
    "AwsSolutions-IAM5[Resource::*]",
}


def _acknowledgements(stack: FloodgateStack) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for construct in stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == "aws:cdk:acknowledged-rules":
                for rule, reason in entry.data.items():
                    found.setdefault(rule.removeprefix("Annotation::"), set()).add(reason)
    return found


def test_cdk_nag_clean_with_a_reason_for_every_acknowledgement(base: Synth, variant: Synth) -> None:
    for synth in (base, variant):
        report = AwsSolutionsChecks().validate_scope(synth.stack)
        assert report.success, [v.rule_name for v in report.violations]
        acknowledged = _acknowledgements(synth.stack)
        for rule, reasons in acknowledged.items():
            assert all(len(reason) >= 40 for reason in reasons), rule
        generic = {re.sub(r"\[Resource::<.*", "[table index]", r) for r in acknowledged}
        generic = {re.sub(r"autoScalingGroupName/[^\]]+", "autoScalingGroupName/NAME", r) for r in generic}
        assert generic <= EXPECTED_ACKNOWLEDGEMENTS | {"AwsSolutions-IAM5[table index]"} | {
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:network-acl/*]",
            # the capacity hold's named groups (their ids are unknown at synth)
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:autoscaling:<AWS::Region>:<AWS::AccountId>:"
            "autoScalingGroup:*:autoScalingGroupName/NAME]",
        }


def test_acknowledge_refuses_an_empty_reason(base: Synth) -> None:
    with pytest.raises(ValueError, match="real reason"):
        acknowledge(base.stack, "AwsSolutions-L1", "ok")


@pytest.mark.parametrize("synth_name", ["base", "variant"])
def test_cfn_lint_clean(request: pytest.FixtureRequest, synth_name: str) -> None:
    synth: Synth = request.getfixturevalue(synth_name)
    matches = lint_file(synth.template_path)
    assert [str(m) for m in matches] == []


# ---------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"budget": 0}, "budget: 0 is outside 1..38"),
        ({"budget": "many"}, "budget: expected a number"),
        ({"budget": 30, "naclQuota": 20}, "budget=30 does not fit naclQuota=20"),
        ({"naclIds": "acl-123,acl-0a1b2c3d4e5f60718"}, "naclIds: 'acl-123' is not a NACL id"),
        ({"vpcCidrs": []}, "vpcCidrs is required"),
        ({"vpcCidrs": "10.0.0.1/16"}, "vpcCidrs: invalid CIDR"),
        ({"naclIds": [], "vpcId": ""}, "set the NACL ids to protect, or a vpcId"),
        ({"vpcId": "vpc-nothex"}, "vpcId: 'vpc-nothex' is not a VPC id"),
        ({"ruleStart": 32760}, "runs past rule 32766"),
        ({"baseTtl": "2h", "maxTtl": "1h"}, "maxTtl=1h must not be shorter than baseTtl=2h"),
        ({"window": "soon"}, "window: not a duration"),
        ({"flowLogFormat": "${srcaddr} ${dstaddr}"}, "flowLogFormat: format lacks field(s)"),
        ({"flowLogRetentionDays": 10}, "flowLogRetentionDays: 10 is not a CloudWatch Logs retention"),
        ({"alarmThreshold": 60000, "scaleOutThreshold": 50000}, "must be below scaleOutThreshold=50000"),
        (
            {"alarmEvaluationPeriods": 5, "alarmDatapointsToAlarm": 1},
            "must not exceed scaleOutEvaluationPeriods",
        ),
        ({"alarmPeriodSeconds": 45}, "alarmPeriodSeconds=45: use 10, 20, 30 or a multiple of 60"),
        ({"alarmEnabled": False}, "nothing would ever arm the detector"),
        ({"alarmDimensions": "LoadBalancer"}, "alarmDimensions: expected Name=Value"),
        ({"alarmDimensions": {}}, "alarmDimensions: AWS/EC2 metrics need the protected resource's dimension"),
        (
            {"alarmNamespace": "AWS/NetworkELB", "alarmMetricName": "ProcessedPackets"},
            "alarmDimensions: AWS/NetworkELB metrics need the protected resource's dimension (LoadBalancer)",
        ),
        (
            {"alarmNamespace": "AWS/ApplicationELB", "alarmDimensions": "TargetGroup=targetgroup/web/0123"},
            "alarmDimensions: AWS/ApplicationELB metrics need the protected resource's dimension",
        ),
        ({"alarmNamespace": "AWS/Lambda", "alarmDimensions": ""}, "alarmDimensions: AWS/Lambda metrics are"),
        ({"expirerSchedule": "90s"}, "expirerSchedule=90s: use whole minutes"),
        ({"scaleOutHold": True}, "scaleOutHoldGroups: name the Auto Scaling groups to hold"),
        ({"scaleOutHold": True, "scaleOutHoldGroups": "web-*"}, "scaleOutHoldGroups: 'web-*' is not"),
        ({"scaleOutHoldMax": "2h"}, "scaleOutHoldMax=2h: must be between 1m and 1h"),
        ({"account": "123456789012"}, "set both (fixed environment) or neither"),
        ({"minShare": 2}, "minShare: 2 is outside 0.0001..1"),
        ({"extendOnEvidence": "maybe"}, "extendOnEvidence: expected true or false"),
        ({"alertEmails": "not-an-email"}, "alertEmails: 'not-an-email' is not an email address"),
        ({"tableRemovalPolicy": "snapshot"}, "tableRemovalPolicy: 'snapshot' is not one of retain, destroy"),
    ],
)
def test_settings_errors_name_the_key(override: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        FloodgateSettings.from_mapping({**BASE, **override})
    assert message in str(caught.value)


def test_settings_report_every_problem_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        FloodgateSettings.from_mapping({"budget": 0, "naclIds": "acl-1", "vpcCidrs": ""})
    assert len(caught.value.problems) >= 3


def test_settings_accept_cli_strings() -> None:
    settings = FloodgateSettings.from_mapping(
        {
            "naclIds": "acl-0a1b2c3d4e5f60718, acl-0fedcba9876543210",
            "flowLogGroupName": "/vpc/flow-logs",
            "vpcCidrs": '["10.0.0.0/16"]',
            "budget": "5",
            "dryRun": "true",
            "alarmDimensions": '{"InstanceId": "i-0123"}',
            "alwaysPps": "100000",
            "detectorReservedConcurrency": "",
            "account": "123456789012",
            "region": "eu-west-1",
        }
    )
    assert settings.nacl_ids == tuple(NACLS)
    assert settings.values["budget"] == 5
    assert settings.values["dryRun"] is True
    assert settings.alarm.dimensions == (("InstanceId", "i-0123"),)
    assert settings.values["alwaysPps"] == 100000.0
    assert settings.detector.reserved_concurrency is None
    assert (settings.account, settings.region) == ("123456789012", "eu-west-1")


def test_app_py_synthesizes_offline_and_reports_bad_context(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))} | {
        "CDK_OUTDIR": str(tmp_path),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    targets = {"naclIds": NACLS, "vpcId": VPC}  # cdk.json's placeholder targets are refused
    real = env | {"CDK_CONTEXT_JSON": json.dumps(targets)}
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=real, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "Floodgate.template.json").is_file()
    bad = env | {"CDK_CONTEXT_JSON": json.dumps({"budget": 99, "vpcCidrs": ""})}
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=bad, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "budget: 99 is outside 1..38" in done.stderr
    assert "vpcCidrs is required" in done.stderr
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "naclIds: 'acl-0123456789abcdef0' is cdk.json's placeholder example" in done.stderr
    assert "vpcId: 'vpc-0123456789abcdef0' is cdk.json's placeholder example" in done.stderr


def test_early_alarm_targets_that_can_fire_are_accepted() -> None:
    for override in (
        {"alarmDimensions": "InstanceId=i-0123456789abcdef0"},
        {"alarmNamespace": "AWS/NetworkELB", "alarmDimensions": "LoadBalancer=net/edge/0123456789abcdef"},
        {"alarmNamespace": "Shop/Frontend", "alarmDimensions": {}},  # a custom metric may have none
        {"alarmEnabled": False, "existingAlarmNames": "alb-requests-high", "alarmDimensions": {}},
    ):
        settings = FloodgateSettings.from_mapping({**BASE, **override})
        assert settings.alarm.namespace == override.get("alarmNamespace", "AWS/EC2")
