"""The security and member stacks (infra.estate), synthesized offline with cdk-nag (Validations) on; the
default single-account deployment stays exactly what it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks
from cfnlint.api import lint_file

from floodgate.observability import MEMBER_EXPIRY_HANDLER, MEMBER_HANDLER, OUTPUT, SECURITY_HANDLER
from floodgate.services.bus import (
    decision_route,
    member_inbound,
    member_outbound,
    security_alarms,
    security_inbound,
)
from floodgate.services.estate import FLOW_LOG_GROUP_ENV, FLOW_LOG_ROLE_ENV
from infra.app import build_app, build_deployment
from infra.settings import FloodgateSettings, SettingsError
from tests.infra.test_stack import BASE

pytestmark = pytest.mark.xdist_group(name="infra-synth")

SECURITY, MEMBER_A, MEMBER_B = "111111111111", "222222222222", "333333333333"
OUS = ["ou-ab12-cdef3456", "ou-ab12-99990000"]
ESTATE: dict[str, Any] = {
    "organizationId": "o-abcdefghij",
    "memberOus": OUS,
    "memberAccounts": [MEMBER_A, MEMBER_B],
    "securityAccount": SECURITY,
    "memberCodeBucket": "floodgate-code-example",
    "naclIds": [],
    "vpcId": "",
    "vpcCidrs": [],
}


def _synth(mode: str, outdir: Path) -> tuple[Stack, dict[str, Any]]:
    app, stack = build_deployment({**ESTATE, "mode": mode}, outdir=outdir, use_cdk_json=False)
    app.synth()  # cdk-nag runs here: an unacknowledged finding raises
    report = AwsSolutionsChecks().validate_scope(stack)
    assert report.success, [v.rule_name for v in report.violations]
    return stack, dict(Template.from_stack(stack).to_json())


@pytest.fixture(scope="module")
def security(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _synth("security", tmp_path_factory.mktemp("cdk-security"))[1]


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _synth("member", tmp_path_factory.mktemp("cdk-member"))[1]


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def _pattern(rule: dict[str, Any]) -> dict[str, Any]:
    """The rule's event pattern ({} for a schedule)."""
    return dict(rule["Properties"].get("EventPattern", {}))


def test_the_bus_admits_only_listed_accounts_of_the_organization(security: dict[str, Any]) -> None:
    (policy,) = _of_type(security, "AWS::Events::EventBusPolicy").values()
    statement = policy["Properties"]["Statement"]
    assert statement["Action"] == "events:PutEvents"
    assert statement["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij", "aws:PrincipalAccount": [MEMBER_A, MEMBER_B]}
    }
    (bus,) = _of_type(security, "AWS::Events::EventBus").values()
    assert bus["Properties"]["Name"] == "floodgate-estate"


def test_each_members_decisions_go_to_that_member_alone(security: dict[str, Any]) -> None:
    rules = _of_type(security, "AWS::Events::Rule").values()
    routes = {}
    for rule in rules:
        pattern = _pattern(rule)
        if pattern.get("detail-type") == ["Floodgate Decision"]:
            (target,) = rule["Properties"]["Targets"]
            routes[json.dumps(pattern, sort_keys=True)] = json.dumps(target["Arn"])
    assert set(routes) == {json.dumps(decision_route(a), sort_keys=True) for a in (MEMBER_A, MEMBER_B)}
    for account in (MEMBER_A, MEMBER_B):
        arn = routes[json.dumps(decision_route(account), sort_keys=True)]
        assert f":{account}:event-bus/default" in arn
    inbound = [r for r in rules if _pattern(r) == security_inbound()]
    assert len(inbound) == 1
    (target,) = inbound[0]["Properties"]["Targets"]
    assert "DetectionInbox" in json.dumps(target["Arn"])  # outcomes: the estate's record, not detection


def test_members_alarms_on_the_security_bus_go_to_the_security_detector(security: dict[str, Any]) -> None:
    (detector_id, detector) = next(
        (k, f)
        for k, f in _of_type(security, "AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == SECURITY_HANDLER
    )
    (bus_id,) = _of_type(security, "AWS::Events::EventBus")
    (rule,) = [
        r for r in _of_type(security, "AWS::Events::Rule").values() if _pattern(r) == security_alarms()
    ]
    assert rule["Properties"]["EventBusName"] == {"Ref": bus_id}
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [detector_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    # The bus may invoke the detector; the detector knows what the members' Floodgate alarms are called
    # (the same prefix the members' rules forward by).
    permissions = _of_type(security, "AWS::Lambda::Permission").values()
    assert any(
        p["Properties"]["Principal"] == "events.amazonaws.com"
        and p["Properties"]["FunctionName"] == {"Fn::GetAtt": [detector_id, "Arn"]}
        for p in permissions
    )
    variables = detector["Properties"]["Environment"]["Variables"]
    assert variables["FLOODGATE_MEMBER_ALARM_PREFIX"] == "Floodgate-"
    assert json.loads(variables["FLOODGATE_ALARM_NAMES"]) == []


def test_the_stack_set_deploys_members_by_ou_service_managed(security: dict[str, Any]) -> None:
    (stack_set,) = _of_type(security, "AWS::CloudFormation::StackSet").values()
    props = stack_set["Properties"]
    assert props["PermissionModel"] == "SERVICE_MANAGED"
    assert props["AutoDeployment"] == {"Enabled": True, "RetainStacksOnAccountRemoval": False}
    (group,) = props["StackInstancesGroup"]
    assert group["DeploymentTargets"] == {"OrganizationalUnitIds": OUS}
    assert {p["ParameterKey"]: p["ParameterValue"] for p in props["Parameters"]} == {
        "MemberCodeBucket": "floodgate-code-example",
        "MemberCodeKey": "floodgate/functions.zip",
    }
    body = json.loads(props["TemplateBody"])
    assert set(body["Parameters"]) == {"MemberCodeBucket", "MemberCodeKey"}  # no bootstrap version to check
    handlers = {f["Properties"]["Handler"] for f in _of_type(body, "AWS::Lambda::Function").values()}
    assert handlers == {MEMBER_HANDLER, MEMBER_EXPIRY_HANDLER}


def test_a_member_admits_the_security_account_alone_and_forwards_only_floodgates_events(
    member: dict[str, Any],
) -> None:
    (policy,) = _of_type(member, "AWS::Events::EventBusPolicy").values()
    statement = policy["Properties"]["Statement"]
    assert statement["Principal"]["AWS"]["Fn::Join"][1][2] == f":iam::{SECURITY}:root"
    rules = list(_of_type(member, "AWS::Events::Rule").values())
    patterns = [_pattern(r) for r in rules]
    assert member_inbound() in patterns
    assert all(p in patterns for p in member_outbound([], "Floodgate-"))
    for rule in rules:
        if _pattern(rule) in member_outbound([], "Floodgate-"):
            (target,) = rule["Properties"]["Targets"]
            assert f":{SECURITY}:event-bus/floodgate-estate" in json.dumps(target["Arn"])


def test_member_functions_run_in_member_mode_with_the_estate_settings(member: dict[str, Any]) -> None:
    for function in _of_type(member, "AWS::Lambda::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["FLOODGATE_MODE"] == "member"
        assert variables["FLOODGATE_SECURITY_ACCOUNT"] == SECURITY
        assert variables["FLOODGATE_VPC_ID"] == ""  # found by tag at run time


def test_the_reader_role_is_assumed_by_the_security_account_and_only_reads(member: dict[str, Any]) -> None:
    roles = _of_type(member, "AWS::IAM::Role")
    (reader_id,) = [k for k, r in roles.items() if r["Properties"].get("RoleName") == "FloodgateEstateReader"]
    trust = json.dumps(roles[reader_id]["Properties"]["AssumeRolePolicyDocument"])
    assert f":iam::{SECURITY}:root" in trust
    actions = [
        action
        for policy in _of_type(member, "AWS::IAM::Policy").values()
        if {"Ref": reader_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    ]
    assert actions and all(
        a.split(":")[1].startswith(("Get", "Query", "BatchGet", "Describe")) for a in actions
    )
    assert OUTPUT.DETECTOR_FUNCTION in member["Outputs"] and OUTPUT.STATE_TABLE in member["Outputs"]


def _statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in _of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    return {
        action
        for statement in statements
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }


def test_the_members_flow_logs_reach_the_security_detector_through_the_destination_and_stream(
    security: dict[str, Any],
) -> None:
    (destination,) = _of_type(security, "AWS::Logs::Destination").values()
    # The policy is JSON joined with the partition and region: its head names who may subscribe.
    head = destination["Properties"]["DestinationPolicy"]["Fn::Join"][1][0]
    assert (
        f'"Principal": {{"AWS": ["{MEMBER_A}", "{MEMBER_B}"]}}, "Action": "logs:PutSubscriptionFilter"'
        in head
    )
    (stream_id,) = _of_type(security, "AWS::Kinesis::Stream")
    assert destination["Properties"]["TargetArn"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    roles = _of_type(security, "AWS::IAM::Role")
    (delivery_id,) = [k for k in roles if "DestinationRole" in k]
    trust = json.dumps(roles[delivery_id]["Properties"]["AssumeRolePolicyDocument"])
    assert f":logs:*:{MEMBER_A}:*" in trust and f":logs:*:{MEMBER_B}:*" in trust
    (detector_id, detector) = next(
        (k, f)
        for k, f in _of_type(security, "AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == SECURITY_HANDLER
    )
    variables = detector["Properties"]["Environment"]["Variables"]
    assert variables["FLOODGATE_MODE"] == "security"
    assert variables["FLOODGATE_MEMBER_ACCOUNTS"] == f"{MEMBER_A},{MEMBER_B}"
    (mapping,) = _of_type(security, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["FunctionName"] == {"Ref": detector_id}
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    schedules = [
        r for r in _of_type(security, "AWS::Events::Rule").values() if "ScheduleExpression" in r["Properties"]
    ]
    assert any(
        t["Arn"] == {"Fn::GetAtt": [detector_id, "Arn"]}
        for r in schedules
        for t in r["Properties"]["Targets"]
    )
    assert "FlowLogDestinationArn" in security["Outputs"]


def test_the_security_detector_publishes_and_reads_members_but_writes_no_nacl(
    security: dict[str, Any],
) -> None:
    (detector,) = [
        f
        for f in _of_type(security, "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == SECURITY_HANDLER
    ]
    role_id = detector["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = _statements(security, role_id)
    actions = _actions(statements)
    assert "events:PutEvents" in actions and "sts:AssumeRole" in actions
    assert not any(a.startswith("ec2:") for a in actions)
    (assume,) = [s for s in statements if s["Action"] == "sts:AssumeRole"]
    for account, resource in zip([MEMBER_A, MEMBER_B], assume["Resource"], strict=True):
        assert f":iam::{account}:role/FloodgateEstateReader" in json.dumps(resource)


def test_a_member_subscribes_its_flow_logs_to_the_security_destination_and_its_expirer_creates_the_flow_log(
    member: dict[str, Any],
) -> None:
    (subscription,) = _of_type(member, "AWS::Logs::SubscriptionFilter").values()
    target = json.dumps(subscription["Properties"]["DestinationArn"])
    assert f":{SECURITY}:destination:Floodgate-flow-logs" in target
    groups = _of_type(member, "AWS::Logs::LogGroup")
    group_id = subscription["Properties"]["LogGroupName"]["Ref"]
    assert group_id in groups
    functions = _of_type(member, "AWS::Lambda::Function").values()
    (expirer,) = [f for f in functions if f["Properties"]["Handler"] == MEMBER_EXPIRY_HANDLER]
    variables = expirer["Properties"]["Environment"]["Variables"]
    assert variables[FLOW_LOG_GROUP_ENV] == {"Ref": group_id}
    delivery_id = variables[FLOW_LOG_ROLE_ENV]["Fn::GetAtt"][0]
    trust = _of_type(member, "AWS::IAM::Role")[delivery_id]["Properties"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    statements = _statements(member, expirer["Properties"]["Role"]["Fn::GetAtt"][0])
    assert {"ec2:CreateFlowLogs", "ec2:DescribeFlowLogs"} <= _actions(statements)
    (pass_role,) = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert pass_role["Resource"] == {"Fn::GetAtt": [delivery_id, "Arn"]}


@pytest.mark.parametrize("mode", ["security", "member"])
def test_cfn_lint_clean(mode: str, tmp_path: Path) -> None:
    app, stack = build_deployment({**ESTATE, "mode": mode}, outdir=tmp_path, use_cdk_json=False, nag=False)
    assembly = app.synth()
    path = Path(assembly.get_stack_artifact(stack.artifact_id).template_full_path)
    assert [str(m) for m in lint_file(path)] == []


def test_the_default_deployment_is_the_single_account_stack_unchanged(tmp_path: Path) -> None:
    _app, single = build_app(BASE, outdir=tmp_path / "a", use_cdk_json=False, nag=False)
    _app2, chosen = build_deployment(BASE, outdir=tmp_path / "b", use_cdk_json=False, nag=False)
    assert Template.from_stack(chosen).to_json() == Template.from_stack(single).to_json()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"mode": "security", "organizationId": ""}, "organizationId: required in security mode"),
        ({"mode": "security", "memberOus": []}, "memberOus: required in security mode"),
        ({"mode": "security", "memberOus": ["ou-x"]}, "memberOus: 'ou-x' is not an organizational unit"),
        ({"mode": "security", "memberAccounts": [SECURITY]}, "it cannot also be a member"),
        ({"mode": "security", "memberCodeBucket": ""}, "memberCodeBucket: required in security mode"),
        ({"mode": "member", "securityAccount": ""}, "securityAccount: required in member mode"),
        ({"mode": "member", "memberAccounts": ["1234"]}, "memberAccounts: '1234' is not a 12-digit"),
        ({"mode": "several"}, "mode: 'several' is not one of single, security, member"),
    ],
)
def test_estate_settings_errors_name_the_key(override: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        FloodgateSettings.from_mapping({**ESTATE, **override})
    assert message in str(caught.value)
