"""The stack with `ingest: "kinesis"`: stream, logs destination, mapping, schedule and iterator-age alarm,
synthesized offline with the AwsSolutions checks (any unacknowledged finding fails the synth)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from floodgate.settings import Settings
from infra.app import build_app
from infra.kinesis_ingest import ITERATOR_AGE_ALARM_MS
from infra.settings import FloodgateSettings

VPC = "vpc-0a1b2c3d4e5f60718"
KINESIS: dict[str, Any] = {
    "naclIds": ["acl-0a1b2c3d4e5f60718"],
    "vpcId": VPC,
    "vpcCidrs": ["10.0.0.0/16"],
    "alarmDimensions": {"AutoScalingGroupName": "web-asg"},
    "ingest": "kinesis",
    "kinesisShards": 4,
    "kinesisBatchSize": 500,
    "kinesisBatchWindow": "10s",
    "kinesisTumblingWindow": "1m",
    "kinesisParallelization": 3,
    "kinesisMaxRecordAge": "2h",
    "decisionSchedule": "2m",
    "windowShards": 4,
    "detectorReservedConcurrency": 13,
}
pytestmark = pytest.mark.xdist_group(name="infra-synth")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    outdir: Path = tmp_path_factory.mktemp("cdk-kinesis")
    app, stack = build_app(KINESIS, outdir=outdir, use_cdk_json=False)
    app.synth()  # cdk-nag runs here (Validations): an unacknowledged finding raises
    return dict(Template.from_stack(stack).to_json())


def _of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _one(template: dict[str, Any], kind: str, part: str = "") -> tuple[str, dict[str, Any]]:
    found = [(k, v["Properties"]) for k, v in _of(template, kind).items() if part in k]
    assert len(found) == 1, (kind, part, [k for k, _ in found])
    return found[0]


def test_the_mapping_reads_the_stream_with_the_settings(template: dict[str, Any]) -> None:
    stream_id, stream = _one(template, "AWS::Kinesis::Stream")
    assert stream["ShardCount"] == 4 and stream["RetentionPeriodHours"] == 24
    key_id = stream["StreamEncryption"]["KeyId"]["Fn::GetAtt"][0]
    assert stream["StreamEncryption"]["EncryptionType"] == "KMS"
    assert template["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    _, mapping = _one(template, "AWS::Lambda::EventSourceMapping")
    detector_id, _ = _one(template, "AWS::Lambda::Function", "Detector")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    assert mapping["FunctionName"] == {"Ref": detector_id}
    assert {
        k: v for k, v in mapping.items() if k not in {"EventSourceArn", "FunctionName", "DestinationConfig"}
    } == {
        "BatchSize": 500,
        "MaximumBatchingWindowInSeconds": 10,
        "TumblingWindowInSeconds": 60,
        "ParallelizationFactor": 3,
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": 3,
        "MaximumRecordAgeInSeconds": 7200,
        "StartingPosition": "TRIM_HORIZON",
    }
    queue_id, queue = _one(template, "AWS::SQS::Queue", "StreamFailures")
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [queue_id, "Arn"]}}}
    assert queue["SqsManagedSseEnabled"] is True


def test_flow_logs_go_to_the_stream_through_the_destination_not_to_the_detector(
    template: dict[str, Any],
) -> None:
    destination_id, destination = _one(template, "AWS::Logs::Destination")
    stream_id, _ = _one(template, "AWS::Kinesis::Stream")
    assert destination["TargetArn"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    _, subscription = _one(template, "AWS::Logs::SubscriptionFilter")
    assert subscription["DestinationArn"] == {"Fn::GetAtt": [destination_id, "Arn"]}
    # No permission for CloudWatch Logs to invoke the detector: nothing subscribes it directly.
    principals = [p["Properties"]["Principal"] for p in _of(template, "AWS::Lambda::Permission").values()]
    assert not any("logs" in json.dumps(principal) for principal in principals)
    role_id = destination["RoleArn"]["Fn::GetAtt"][0]
    trust = template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "logs.amazonaws.com"}]
    assert "aws:SourceArn" in json.dumps(trust[0]["Condition"])
    statements = [
        statement
        for policy in _of(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert sorted(json.dumps(s["Action"]) for s in statements) == [
        '"kinesis:PutRecord"',
        '"kms:GenerateDataKey"',
    ]


def test_decisions_run_on_their_own_schedule(template: dict[str, Any]) -> None:
    detector_id, function = _one(template, "AWS::Lambda::Function", "Detector")
    _, rule = _one(template, "AWS::Events::Rule", "DecisionSchedule")
    assert rule["ScheduleExpression"] == "rate(2 minutes)"
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": [detector_id, "Arn"]}]
    environment = function["Environment"]["Variables"]
    assert (environment["FLOODGATE_INGEST"], environment["FLOODGATE_WINDOW_SHARDS"]) == ("kinesis", "4")
    runtime = Settings.from_env({k: v if isinstance(v, str) else "x" for k, v in environment.items()})
    assert (runtime.ingest, runtime.window_shards) == ("kinesis", 4)


def test_the_detector_replays_the_failed_ranges_itself(template: dict[str, Any]) -> None:
    """The mapping's on-failure queue is named to the detector, which may take messages off it and read the
    stream back (the mapping's own grant); nothing else changes hands."""
    _, function = _one(template, "AWS::Lambda::Function", "Detector")
    queue_id, _ = _one(template, "AWS::SQS::Queue", "StreamFailures")
    stream_id, _ = _one(template, "AWS::Kinesis::Stream")
    assert function["Environment"]["Variables"]["FLOODGATE_STREAM_FAILURES"] == {"Ref": queue_id}
    role_id = function["Role"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in _of(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]

    def actions_on(resource: dict[str, Any]) -> set[str]:
        found: set[str] = set()
        for statement in statements:
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            if resource in resources:
                actions = statement["Action"]
                found.update(actions if isinstance(actions, list) else [actions])
        return found

    on_queue = actions_on({"Fn::GetAtt": [queue_id, "Arn"]})
    assert {"sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"} <= on_queue
    assert {"kinesis:GetShardIterator", "kinesis:GetRecords"} <= actions_on(
        {"Fn::GetAtt": [stream_id, "Arn"]}
    )


def test_overload_shows_as_iterator_age_on_the_on_call_topic(template: dict[str, Any]) -> None:
    _, alarm = _one(template, "AWS::CloudWatch::Alarm", "IteratorAge")
    detector_id, _ = _one(template, "AWS::Lambda::Function", "Detector")
    topic_id, _ = _one(template, "AWS::SNS::Topic")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "AWS/Lambda",
        "IteratorAge",
        "Maximum",
    )
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": detector_id}}]
    assert alarm["Threshold"] == ITERATOR_AGE_ALARM_MS
    assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": topic_id}]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"detectorReservedConcurrency": 12}, "detectorReservedConcurrency=12: kinesis ingest runs up to"),
        ({"kinesisBatchWindow": "6m"}, "kinesisBatchWindow: at most 5m"),
        ({"kinesisTumblingWindow": "20m"}, "kinesisTumblingWindow: 1s to 15m"),
        ({"decisionSchedule": "90s"}, "decisionSchedule: use whole minutes"),
    ],
)
def test_settings_the_service_would_refuse_fail_the_synth(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_app(KINESIS | override, use_cdk_json=False, nag=False)


def test_ingest_defaults_to_the_subscription() -> None:
    settings = FloodgateSettings.from_mapping({k: v for k, v in KINESIS.items() if k != "ingest"})
    assert settings.values["ingest"] == "subscription"
