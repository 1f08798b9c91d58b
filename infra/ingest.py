"""Flow-log ingest: a VPC Flow Log (60 s aggregation) into a log group, or an existing group; both
subscribed to the detector, or (kinesis ingest) to the stream's logs destination (`infra.kinesis_ingest`)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as log_destinations
from constructs import Construct

from infra.enforcement import retention
from infra.settings import FloodgateSettings


class FlowLogIngest(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FloodgateSettings,
        detector: lambda_.IFunction,
        destination: logs.ILogSubscriptionDestination | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        flow = settings.flow_logs
        self.flow_log: ec2.CfnFlowLog | None = None
        if flow.existing_group_name is not None:
            self.log_group: logs.ILogGroup = logs.LogGroup.from_log_group_name(
                self, "ExistingGroup", flow.existing_group_name
            )
        else:
            assert settings.vpc_id is not None
            group = logs.LogGroup(
                self,
                "Group",
                retention=retention(flow.retention_days),
                removal_policy=RemovalPolicy.DESTROY,
            )
            self.log_group = group
            role = iam.Role(
                self,
                "DeliveryRole",
                assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com"),
                description="Floodgate: VPC Flow Logs delivery to the flow-log group",
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    resources=[group.log_group_arn],
                )
            )
            self.flow_log = ec2.CfnFlowLog(
                self,
                "FlowLog",
                resource_type="VPC",
                resource_id=settings.vpc_id,
                traffic_type="ALL",
                log_destination_type="cloud-watch-logs",
                log_group_name=group.log_group_name,
                deliver_logs_permission_arn=role.role_arn,
                max_aggregation_interval=60,
                log_format=None if flow.is_default_format else flow.format,
            )

        self.subscription = logs.SubscriptionFilter(
            self,
            "ToDetector",
            log_group=self.log_group,
            # The detector itself, or (kinesis ingest) the logs destination in front of the stream.
            destination=destination or log_destinations.LambdaDestination(detector),
            filter_pattern=(
                logs.FilterPattern.literal(flow.filter_pattern)
                if flow.filter_pattern
                else logs.FilterPattern.all_events()
            ),
        )
