"""IAM for the opt-in capacity hold: suspend and resume scaling processes on the named groups only."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from infra.nag import acknowledge
from infra.settings import FloodgateSettings

HOLD_ACTIONS = ["autoscaling:SuspendProcesses", "autoscaling:ResumeProcesses"]


def group_arn(name: str) -> str:
    """A group's ARN pattern: its id (a UUID) is not known at synth, its name is."""
    return (
        f"arn:{Aws.PARTITION}:autoscaling:{Aws.REGION}:{Aws.ACCOUNT_ID}:autoScalingGroup:*:"
        f"autoScalingGroupName/{name}"
    )


def grant_capacity_hold(function: lambda_.Function, settings: FloodgateSettings) -> None:
    """Nothing when the hold is off."""
    if not settings.hold.groups:
        return
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="HoldTheNamedGroups",
            actions=HOLD_ACTIONS,
            resources=[group_arn(name) for name in settings.hold.groups],
        )
    )
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="DescribeGroups", actions=["autoscaling:DescribeAutoScalingGroups"], resources=["*"]
        )
    )
    assert function.role is not None
    for name in settings.hold.groups:
        acknowledge(
            function.role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:autoscaling:<AWS::Region>:<AWS::AccountId>:"
            f"autoScalingGroup:*:autoScalingGroupName/{name}]",
            "The group's id is a UUID unknown at synth; the statement names the group itself.",
        )
