"""The real synthesized stack, deployed into a moto server over HTTP, read back from the emulator."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import server
from emulator.deploy import DeployedStack, DeployError, Synthesized, deploy, deploy_synthesized
from emulator.network import DemoNetwork, create_demo_network, owned_rule_end
from floodgate.observability import DETECTOR_HANDLER, EXPIRER_HANDLER, OUTPUT
from floodgate.settings import Settings
from floodgate.settings_table import BY_ENV
from floodgate.tables import LOG_BY_CIDR_INDEX, TTL_ATTRIBUTE

# moto warns for each resource type its CloudFormation skips; the deploy helper fills those in and
# records them (DeployedStack.filled), which test_gaps_are_reported_not_hidden checks.
# One xdist worker for the module: the deployment fixture runs once per worker that runs any of its tests.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning"),
    pytest.mark.xdist_group(name="emulator-deploy"),
]


class World:
    def __init__(self, emulator: server.Emulator, network: DemoNetwork, stack: DeployedStack) -> None:
        self.emulator = emulator
        self.network = network
        self.stack = stack

    def client(self, service: str) -> Any:
        return server.client(self.emulator, service)

    def rules(self) -> list[dict[str, Any]]:
        """The EventBridge rules this stack deployed, read back by name: never "every rule in the
        account", which would include whatever else shares the emulator."""
        events = self.client("events")
        names = [
            self.stack.resources[logical_id]
            for logical_id, resource in self.stack.template["Resources"].items()
            if resource["Type"] == "AWS::Events::Rule"
        ]
        return [events.describe_rule(Name=name.split("/")[-1]) for name in names]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    emulator = server.start(set_environment=False)
    try:
        network = create_demo_network(server.client(emulator, "ec2"))
        stack = deploy(emulator, context=network.context(), outdir=tmp_path_factory.mktemp("cdk-deploy"))
        yield World(emulator, network, stack)
    finally:
        server.stop(emulator)


def test_demo_network(world: World) -> None:
    ec2 = world.client("ec2")
    (acl,) = ec2.describe_network_acls(NetworkAclIds=[world.network.nacl_id])["NetworkAcls"]
    assert acl["VpcId"] == world.network.vpc_id
    assert {a["SubnetId"] for a in acl["Associations"]} == set(world.network.subnet_ids)
    allow = [e for e in acl["Entries"] if e["RuleAction"] == "allow" and not e["Egress"]]
    assert [(e["RuleNumber"], e["CidrBlock"], e["Protocol"]) for e in allow] == [(200, "0.0.0.0/0", "-1")]
    assert world.network.allow_rule > owned_rule_end(100, 10) == 121
    (eni,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[world.network.eni_id])["NetworkInterfaces"]
    assert eni["PrivateIpAddress"] == world.network.instance_ip


def test_outputs(world: World) -> None:
    outputs = world.stack.outputs
    keys = {v for k, v in vars(OUTPUT).items() if not k.startswith("_") and isinstance(v, str)}
    assert keys <= set(outputs)
    assert outputs[OUTPUT.NACL_IDS] == world.network.nacl_id
    assert outputs[OUTPUT.VPC_ID] == world.network.vpc_id
    assert outputs[OUTPUT.TOPIC_ARN].startswith("arn:aws:sns:us-east-1:")


@pytest.mark.parametrize(
    ("output", "handler", "concurrency"),
    [
        (OUTPUT.DETECTOR_FUNCTION, DETECTOR_HANDLER, 2),
        (OUTPUT.EXPIRER_FUNCTION, EXPIRER_HANDLER, 1),
    ],
)
def test_functions_as_deployed(world: World, output: str, handler: str, concurrency: int) -> None:
    function = world.stack.function_for_output(output)
    assert function.handler == handler
    assert function.runtime == "python3.13"
    assert function.reserved_concurrency == concurrency
    assert set(function.environment) == set(BY_ENV)
    # What the handlers will read at cold start, exactly as the emulator holds it.
    settings = Settings.from_env(function.environment)
    assert settings.nacl_ids == (world.network.nacl_id,)
    assert settings.vpc_cidrs == ("10.0.0.0/16",)
    assert settings.state_table == world.stack.outputs[OUTPUT.STATE_TABLE]
    assert settings.log_table == world.stack.outputs[OUTPUT.LOG_TABLE]
    assert settings.topic_arn == world.stack.outputs[OUTPUT.TOPIC_ARN]
    # The code is the uploaded asset, and the read-back matches the emulator's own answer.
    live = world.client("lambda").get_function(FunctionName=function.name)
    assert live["Configuration"]["Handler"] == handler
    assert live["Configuration"]["CodeSize"] > 1000


@pytest.mark.parametrize("output", [OUTPUT.DETECTOR_FUNCTION, OUTPUT.EXPIRER_FUNCTION])
def test_failures_go_to_the_queue(world: World, output: str) -> None:
    function = world.stack.function_for_output(output)
    config = world.client("lambda").get_function_event_invoke_config(FunctionName=function.name)
    queue_url = world.stack.outputs["FailureQueueUrl"]
    queue_arn = world.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == queue_arn["Attributes"]["QueueArn"]
    assert config["MaximumRetryAttempts"] == 2


@pytest.mark.parametrize("output", [OUTPUT.STATE_TABLE, OUTPUT.LOG_TABLE])
def test_tables_with_ttl_and_pitr_filled_in(world: World, output: str) -> None:
    ddb = world.client("dynamodb")
    name = world.stack.outputs[output]
    ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE}
    backups = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    table = ddb.describe_table(TableName=name)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    if output == OUTPUT.LOG_TABLE:
        assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == [LOG_BY_CIDR_INDEX]


def test_flow_log_and_subscription_filter(world: World) -> None:
    group = world.stack.outputs["FlowLogGroupName"]
    (flow_log,) = world.client("ec2").describe_flow_logs(
        Filters=[{"Name": "resource-id", "Values": [world.network.vpc_id]}]
    )["FlowLogs"]
    assert flow_log["LogGroupName"] == group
    assert flow_log["MaxAggregationInterval"] == 60
    assert flow_log["TrafficType"] == "ALL"
    (subscription,) = world.client("logs").describe_subscription_filters(logGroupName=group)[
        "subscriptionFilters"
    ]
    detector = world.stack.function_for_output(OUTPUT.DETECTOR_FUNCTION)
    assert subscription["destinationArn"] == detector.arn
    assert subscription["filterPattern"] == ""
    (retention,) = world.client("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert retention["retentionInDays"] == 7


def test_alarm_rule_routes_state_changes_to_the_detector(world: World) -> None:
    events = world.client("events")
    detector = world.stack.function_for_output(OUTPUT.DETECTOR_FUNCTION)
    rules = {r["Name"]: r for r in world.rules()}
    patterns = {name: json.loads(r["EventPattern"]) for name, r in rules.items() if "EventPattern" in r}
    ((name, pattern),) = patterns.items()
    assert pattern == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": ["Floodgate-early-warning"]},
    }
    (target,) = events.list_targets_by_rule(Rule=name)["Targets"]
    assert target["Arn"] == detector.arn
    (alarm,) = world.client("cloudwatch").describe_alarms(AlarmNames=["Floodgate-early-warning"])[
        "MetricAlarms"
    ]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Threshold"]) == (
        "AWS/EC2",
        "NetworkPacketsIn",
        300000,
    )
    assert alarm["EvaluationPeriods"] == 1


def test_expirer_schedule(world: World) -> None:
    events = world.client("events")
    expirer = world.stack.function_for_output(OUTPUT.EXPIRER_FUNCTION)
    scheduled = [r for r in world.rules() if r.get("ScheduleExpression")]
    assert [r["ScheduleExpression"] for r in scheduled] == ["rate(1 minute)"]
    (target,) = events.list_targets_by_rule(Rule=scheduled[0]["Name"])["Targets"]
    assert target["Arn"] == expirer.arn


def test_runbooks_point_at_the_deployed_detector(world: World) -> None:
    ssm = world.client("ssm")
    detector = world.stack.function_for_output(OUTPUT.DETECTOR_FUNCTION)
    for key in ("BlockRunbookName", "UnblockRunbookName", "AnalyzeRunbookName"):
        document = ssm.get_document(Name=world.stack.outputs[key])
        assert document["DocumentType"] == "Automation"
        content = json.loads(document["Content"])
        assert content["mainSteps"][0]["inputs"]["FunctionName"] == detector.name


def test_gaps_are_reported_not_hidden(world: World) -> None:
    filled = {(g.resource_type, g.what.split(" ")[0]) for g in world.stack.filled}
    assert ("AWS::Logs::SubscriptionFilter", "resource") in filled
    assert ("AWS::DynamoDB::Table", "TimeToLiveSpecification") in filled
    assert ("AWS::CloudWatch::Alarm", "resource") in filled
    assert ("AWS::Lambda::EventInvokeConfig", "resource") in filled
    not_emulated = {(g.logical_id, g.what.split(" ")[0]) for g in world.stack.not_emulated}
    detector = world.stack.function_for_output(OUTPUT.DETECTOR_FUNCTION).logical_id
    assert (detector, "Layers") in not_emulated
    # Every template resource is accounted for: created by moto or filled in by the deploy helper.
    assert set(world.stack.template["Resources"]) <= set(world.stack.resources)


def test_a_resource_nobody_can_create_fails_the_deploy(world: World, tmp_path: Path) -> None:
    original = world.stack.synthesized
    template = {
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "Mystery": {"Type": "AWS::Mystery::Thing", "Properties": {}},
        }
    }
    outdir = tmp_path / "assembly"
    shutil.copytree(original.outdir, outdir)
    (outdir / original.template_path.name).write_text(json.dumps(template))
    tampered = Synthesized(
        outdir=outdir,
        stack_name="FloodgateTampered",
        template_path=outdir / original.template_path.name,
        assets_path=outdir / original.assets_path.name,
    )
    with pytest.raises(DeployError, match=r"skipped Mystery \(AWS::Mystery::Thing\)"):
        deploy_synthesized(world.emulator, tampered)
