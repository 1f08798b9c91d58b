"""Many accounts: the security account's stack (the estate bus, its routes, the members' StackSet) and the
member stack the StackSet deploys into every account of the member OUs.

What runs where, and what may cross an account boundary:
- security account: the event bus. Its resource policy lets only accounts of the organization that are
  listed in memberAccounts put events on it. Decisions for a member are routed to that member's default
  bus, one rule per member, so no member ever receives another's deny plan; members' Floodgate alarms go to
  the security detector (each arms that member's decisions alone), the outcome of each decision to the
  detection inbox. The StackSet deploys the member template by OU, service-managed, with automatic
  deployment to accounts that join the OUs.
- member account: its own ledger and deny log, the enforcer that applies decisions to the one VPC tagged
  memberVpcTag with the account's own EC2 budget, the expirer over that VPC, the rules that forward its
  alarms and outcomes to the security bus, a default-bus policy that admits the security account alone,
  and a read-only role the security account assumes for `floodgate status --all`.

The bus contract itself (detail types, routes, validation) is `floodgate.services.bus`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from aws_cdk import (
    App,
    Aws,
    BootstraplessSynthesizer,
    CfnOutput,
    CfnParameter,
    CfnResource,
    Duration,
    Environment,
    RemovalPolicy,
    Stack,
    StackSynthesizer,
)
from aws_cdk import aws_cloudformation as cloudformation
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from floodgate.observability import (
    MEMBER_ACCOUNTS_OUTPUT,
    MEMBER_EXPIRY_HANDLER,
    MEMBER_HANDLER,
    MEMBER_STACK_SET,
    OUTPUT,
    SECURITY_HANDLER,
)
from floodgate.services.bus import (
    DEFAULT_BUS,
    decision_route,
    member_inbound,
    member_outbound,
    security_alarms,
    security_inbound,
)
from floodgate.services.estate import FLOW_LOG_GROUP_ENV, FLOW_LOG_ROLE_ENV
from floodgate.settings import ENV
from floodgate.tables import (
    LOG_BY_CIDR_INDEX,
)
from infra.enforcement import (
    ASSET_EXCLUDE,
    FUNCTIONS_DIR,
    NACL_ENTRY_ACTIONS,
    STATE_TABLE_ACTIONS,
    function_role,
    numpy_layer,
    powertools_layer_arn,
    retention,
)
from infra.kinesis_ingest import KinesisIngest, subscribe_to_destination
from infra.nag import acknowledge, enable_checks, logical_id
from infra.notifications import Notifications
from infra.settings import FloodgateSettings, FunctionSettings
from infra.storage import dead_letter_queue, ledger_tables, window_table

# The members' StackSet rolls out to at most a quarter of the accounts at once and stops at 10% failures.
MAX_CONCURRENT_PERCENTAGE = 25
FAILURE_TOLERANCE_PERCENTAGE = 10
MAX_TEMPLATE_BODY = 51_200  # CloudFormation's TemplateBody limit
FLOW_LOG_DESTINATION_OUTPUT = "FlowLogDestinationArn"


def _pattern(pattern: Mapping[str, Any]) -> events.EventPattern:
    return events.EventPattern(
        source=pattern.get("source"), detail_type=pattern.get("detail-type"), detail=pattern.get("detail")
    )


def _environment(settings: FloodgateSettings) -> Environment | None:
    if settings.account and settings.region:
        return Environment(account=settings.account, region=settings.region)
    return None


class SecurityStack(Stack):
    """The security account's side: bus, bus policy, routes, detection inbox, and the members' StackSet."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: FloodgateSettings) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=settings.stack_name,
            env=_environment(settings),
            description="Floodgate security account: the estate bus and the member accounts' StackSet",
            analytics_reporting=False,
        )
        estate = settings.estate
        assert (
            estate.organization_id is not None and estate.code_bucket is not None
        )  # checked by the settings
        self.bus = events.EventBus(self, "Bus", event_bus_name=estate.security_bus)
        self.bus.add_to_resource_policy(
            iam.PolicyStatement(
                sid="MembersOfTheOrganizationPut",
                principals=[iam.AnyPrincipal()],
                actions=["events:PutEvents"],
                resources=[self.bus.event_bus_arn],
                conditions={
                    "StringEquals": {
                        "aws:PrincipalOrgID": estate.organization_id,
                        "aws:PrincipalAccount": list(estate.member_accounts),
                    }
                },
            )
        )
        self.inbox = self._detection_inbox()
        events.Rule(
            self,
            "FromMembers",
            description="Floodgate: members' decision outcomes, to the estate's record",
            event_bus=self.bus,
            event_pattern=_pattern(security_inbound()),
            targets=[targets.SqsQueue(self.inbox)],
        )
        for account in estate.member_accounts:
            member_bus = events.EventBus.from_event_bus_arn(
                self,
                f"DefaultBusOf{account}",
                f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{account}:event-bus/{DEFAULT_BUS}",
            )
            events.Rule(
                self,
                f"DecisionsFor{account}",
                description=f"Floodgate: decisions for member {account}, to its default bus only",
                event_bus=self.bus,
                event_pattern=_pattern(decision_route(account)),
                targets=[targets.EventBus(member_bus)],
            )
        self._detector(settings)
        # Members' alarms arm their own decisions: the detector checks the sender and the alarm's name.
        events.Rule(
            self,
            "MemberAlarms",
            description="Floodgate: members' alarm state changes, to the security detector (arming)",
            event_bus=self.bus,
            event_pattern=_pattern(security_alarms()),
            targets=[
                targets.LambdaFunction(
                    self.detector,
                    retry_attempts=settings.async_retry_attempts,
                    max_event_age=Duration.seconds(settings.async_max_event_age_s),
                )
            ],
        )
        self.member_template = member_template(settings)
        self.stack_set = self._stack_set(settings, self.member_template)
        CfnOutput(self, "BusArn", value=self.bus.event_bus_arn)
        CfnOutput(self, FLOW_LOG_DESTINATION_OUTPUT, value=self.ingest.destination_arn)
        CfnOutput(self, OUTPUT.STATE_TABLE, value=self.state_table.table_name)
        CfnOutput(self, OUTPUT.LOG_TABLE, value=self.log_table.table_name)
        CfnOutput(self, OUTPUT.DETECTOR_FUNCTION, value=self.detector.function_name)
        CfnOutput(self, "DetectionInboxUrl", value=self.inbox.queue_url)
        CfnOutput(self, MEMBER_ACCOUNTS_OUTPUT, value=",".join(estate.member_accounts))
        CfnOutput(self, "MemberStackSet", value=MEMBER_STACK_SET.format(settings.stack_name))

    def _detector(self, settings: FloodgateSettings) -> None:
        """The estate's detector: members' flow logs through the logs destination into the stream, read by
        the security detector, which publishes each member's decisions on the bus; it holds no NACL right."""
        estate = settings.estate
        # The stream's lanes (shards x parallelization) plus the schedule run at once: a reservation below
        # that (the single-account default is sized for subscription ingest) is raised to it.
        lanes = int(str(settings.values["kinesisShards"])) * int(
            str(settings.values["kinesisParallelization"])
        )
        reserved = settings.detector.reserved_concurrency
        settings = dataclasses.replace(
            settings,
            detector=dataclasses.replace(
                settings.detector, reserved_concurrency=None if reserved is None else max(reserved, lanes + 1)
            ),
        )
        # The STATE table holds decision leases and armings, the WINDOW table the members' windows.
        self.state_table, self.log_table = ledger_tables(self, retain=settings.retain_tables)
        self.window_table = window_table(self)
        self.notifications = Notifications(self, "Notifications", emails=settings.alert_emails)
        environment = settings.runtime_environment(
            state_table=self.state_table.table_name,
            log_table=self.log_table.table_name,
            topic_arn=self.notifications.topic.topic_arn,
            window_table=self.window_table.table_name,
        )
        environment[ENV.MODE] = "security"
        environment[ENV.VPC_ID] = ""
        log_group, role = function_role(
            self,
            "Detector",
            log_retention_days=settings.function_log_retention_days,
            description="Floodgate security detector",
        )
        self.detector = lambda_.Function(
            self,
            "Detector",
            description="Floodgate security detector: members' flow logs -> decisions on the estate bus",
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler=SECURITY_HANDLER,
            code=lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=ASSET_EXCLUDE),
            layers=[
                lambda_.LayerVersion.from_layer_version_arn(
                    self, "Powertools", powertools_layer_arn(settings.powertools_layer_version)
                ),
                numpy_layer(self),
            ],
            environment=environment,
            memory_size=settings.detector.memory_mb,
            timeout=Duration.seconds(settings.detector.timeout_s),
            reserved_concurrent_executions=settings.detector.reserved_concurrency,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
        )
        policy = role.node.try_find_child("DefaultPolicy")
        cfn_function = self.detector.node.default_child
        if isinstance(policy, iam.Policy) and isinstance(cfn_function, CfnResource):
            cfn_function.add_override("DependsOn", [logical_id(policy)])
        iam.Grant.add_to_principal(
            grantee=self.detector,
            actions=list(STATE_TABLE_ACTIONS),
            resource_arns=[self.state_table.table_arn, self.window_table.table_arn],
        )
        iam.Grant.add_to_principal(
            grantee=self.detector,
            actions=["dynamodb:BatchWriteItem"],
            resource_arns=[self.log_table.table_arn],
        )
        self.bus.grant_put_events_to(self.detector)
        self.notifications.grant_publish(self.detector)  # a lost stream range is announced
        self.detector.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadMembersVpcs",
                actions=["sts:AssumeRole"],
                resources=[
                    f"arn:{Aws.PARTITION}:iam::{account}:role/{estate.reader_role}"
                    for account in estate.member_accounts
                ],
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "The X-Ray PutTraceSegments/PutTelemetryRecords actions active tracing adds support no "
            "resource-level permissions. The security detector holds no EC2 right at all: members write "
            "their own NACLs.",
        )
        acknowledge(
            self.detector,
            "AwsSolutions-L1",
            "The runtime is pinned to python3.13 on purpose: the public Powertools v3 layer used here is "
            "published per Python version (python313-arm64), and the handlers are tested on 3.13.",
        )
        self.ingest = KinesisIngest(
            self,
            "KinesisIngest",
            settings=settings,
            detector=self.detector,
            notifications=self.notifications,
            source_accounts=estate.member_accounts,
        )

    def _detection_inbox(self) -> sqs.Queue:
        inbox = sqs.Queue(
            self,
            "DetectionInbox",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(4),
        )
        acknowledge(
            inbox,
            "AwsSolutions-SQS3",
            "The detection inbox only buffers members' decision outcomes for the security "
            "account's consumer; a message that cannot be handled is one member's report, kept here until "
            "read, and a second queue would only move it.",
        )
        return inbox

    def _stack_set(self, settings: FloodgateSettings, template: dict[str, Any]) -> cloudformation.CfnStackSet:
        estate = settings.estate
        body = json.dumps(template, separators=(",", ":"))
        if len(body) > MAX_TEMPLATE_BODY:
            raise ValueError(f"the member template is {len(body)} bytes, over the {MAX_TEMPLATE_BODY} limit")
        code_parameters = [p for p in template.get("Parameters", {}) if p.startswith("MemberCode")]
        values = {"Bucket": estate.code_bucket, "Key": estate.code_key}
        return cloudformation.CfnStackSet(
            self,
            "Members",
            stack_set_name=MEMBER_STACK_SET.format(settings.stack_name),
            description="Floodgate member: enforces the security account's decisions in this account",
            permission_model="SERVICE_MANAGED",
            auto_deployment=cloudformation.CfnStackSet.AutoDeploymentProperty(
                enabled=True, retain_stacks_on_account_removal=False
            ),
            # The security account deploys as the organization's delegated StackSets administrator.
            call_as="DELEGATED_ADMIN",
            capabilities=["CAPABILITY_NAMED_IAM"],
            managed_execution={"Active": True},
            operation_preferences=cloudformation.CfnStackSet.OperationPreferencesProperty(
                max_concurrent_percentage=MAX_CONCURRENT_PERCENTAGE,
                failure_tolerance_percentage=FAILURE_TOLERANCE_PERCENTAGE,
                region_concurrency_type="PARALLEL",
            ),
            parameters=[
                cloudformation.CfnStackSet.ParameterProperty(
                    parameter_key=name,
                    parameter_value=next(v for suffix, v in values.items() if name.endswith(suffix) and v),
                )
                for name in code_parameters
            ],
            stack_instances_group=[
                cloudformation.CfnStackSet.StackInstancesProperty(
                    deployment_targets=cloudformation.CfnStackSet.DeploymentTargetsProperty(
                        organizational_unit_ids=list(estate.member_ous)
                    ),
                    regions=[settings.region or Aws.REGION],
                )
            ],
            template_body=body,
        )


class MemberStack(Stack):
    """One member account: ledger, enforcer, expirer, bus rules and the estate's read-only role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FloodgateSettings,
        synthesizer: StackSynthesizer | None = None,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=settings.stack_name,
            env=_environment(settings) if synthesizer is None else None,
            synthesizer=synthesizer,
            description="Floodgate member: enforces the security account's decisions in this account",
            analytics_reporting=False,
        )
        estate = settings.estate
        assert estate.security_account is not None  # checked by the settings
        self.state_table, self.log_table = ledger_tables(self, retain=settings.retain_tables)
        self.failures = dead_letter_queue(
            self,
            "FailedInvocations",
            holds="the member's functions: Lambda's on-failure destination and the decision rule's DLQ",
        )
        environment = settings.runtime_environment(
            state_table=self.state_table.table_name, log_table=self.log_table.table_name, topic_arn=""
        )
        environment[ENV.MODE] = "member"
        self.flow_logs, self.flow_log_delivery = self._flow_logs(settings, estate.security_account)
        # No asset: a StackSet cannot publish one into every member account. The zip comes from the bucket
        # the security account names (memberCodeBucket / memberCodeKey), as two template parameters.
        self.code = lambda_.Code.from_cfn_parameters(
            bucket_name_param=_parameter(self, "MemberCodeBucket", "S3 bucket of the functions zip"),
            object_key_param=_parameter(self, "MemberCodeKey", "S3 key of the functions zip"),
        )
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", powertools_layer_arn(settings.powertools_layer_version)
        )
        self.enforcer = self._function(
            "Enforcer",
            handler=MEMBER_HANDLER,
            what="decisions -> NACLs",
            settings=settings,
            config=settings.detector,
            environment=environment,
            layer=layer,
        )
        self.expirer = self._function(
            "Expirer",
            handler=MEMBER_EXPIRY_HANDLER,
            what="ends bans, keeps the tagged VPC's flow log",
            settings=settings,
            config=settings.expirer,
            environment={
                **environment,
                FLOW_LOG_GROUP_ENV: self.flow_logs.log_group_name,
                FLOW_LOG_ROLE_ENV: self.flow_log_delivery.role_arn,
            },
            layer=layer,
        )
        # The template cannot name the tagged VPC: the expirer creates its flow log at run time.
        self.expirer.add_to_role_policy(
            iam.PolicyStatement(
                sid="TheTaggedVpcsFlowLog",
                actions=["ec2:CreateFlowLogs", "ec2:DescribeFlowLogs", "logs:CreateLogDelivery"],
                resources=["*"],
            )
        )
        assert self.expirer.role is not None
        self.flow_log_delivery.grant_pass_role(self.expirer.role)
        self.enforcer.add_to_role_policy(
            iam.PolicyStatement(
                sid="OutcomesOnTheDefaultBus",
                actions=["events:PutEvents"],
                resources=[
                    f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:event-bus/{DEFAULT_BUS}"
                ],
            )
        )
        self._rules(settings, estate.security_account)
        self.reader = self._reader_role(settings, estate.security_account)
        outputs = {
            OUTPUT.STATE_TABLE: self.state_table.table_name,
            OUTPUT.LOG_TABLE: self.log_table.table_name,
            OUTPUT.DETECTOR_FUNCTION: self.enforcer.function_name,  # the CLI reads the settings from it
            OUTPUT.EXPIRER_FUNCTION: self.expirer.function_name,
            "EstateReaderRoleArn": self.reader.role_arn,
        }
        for key, value in outputs.items():
            CfnOutput(self, key, value=value)

    def _flow_logs(
        self, settings: FloodgateSettings, security_account: str
    ) -> tuple[logs.LogGroup, iam.Role]:
        """The group the tagged VPC's flow log delivers into, subscribed to the security account's logs
        destination (in front of its stream), and the role VPC Flow Logs writes with."""
        group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=retention(settings.flow_logs.retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "FlowLogDelivery",
            assumed_by=iam.ServicePrincipal(
                "vpc-flow-logs.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            description="Floodgate member: VPC Flow Logs delivery into the group the security account reads",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[group.log_group_arn],
            )
        )
        destination = (
            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{security_account}:destination:"
            f"{settings.stack_name}-flow-logs"
        )
        logs.SubscriptionFilter(
            self,
            "ToSecurityAccount",
            log_group=group,
            destination=subscribe_to_destination(destination),
            filter_pattern=(
                logs.FilterPattern.literal(settings.flow_logs.filter_pattern)
                if settings.flow_logs.filter_pattern
                else logs.FilterPattern.all_events()
            ),
        )
        return group, role

    def _rules(self, settings: FloodgateSettings, security_account: str) -> None:
        default_bus = events.EventBus.from_event_bus_name(self, "DefaultBus", DEFAULT_BUS)
        events.CfnEventBusPolicy(
            self,
            "SecurityAccountPuts",
            statement_id="FloodgateSecurityAccountPuts",
            event_bus_name=DEFAULT_BUS,
            statement={
                "Sid": "FloodgateSecurityAccountPuts",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{Aws.PARTITION}:iam::{security_account}:root"},
                "Action": "events:PutEvents",
                "Resource": default_bus.event_bus_arn,
            },
        )
        events.Rule(
            self,
            "Decisions",
            description="Floodgate: decisions from the security account, to the member enforcer",
            event_bus=default_bus,
            event_pattern=_pattern(member_inbound()),
            targets=[
                targets.LambdaFunction(
                    self.enforcer,
                    retry_attempts=settings.async_retry_attempts,
                    max_event_age=Duration.seconds(settings.async_max_event_age_s),
                    dead_letter_queue=self.failures,
                )
            ],
        )
        security_bus = events.EventBus.from_event_bus_arn(
            self,
            "SecurityBus",
            f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{security_account}:event-bus/{settings.estate.security_bus}",
        )
        for index, pattern in enumerate(
            member_outbound(settings.alarm.existing_alarm_names, settings.member_alarm_prefix)
        ):
            events.Rule(
                self,
                f"ToSecurity{index}",
                description="Floodgate: this member's outcomes and alarms, to the security bus",
                event_bus=default_bus,
                event_pattern=_pattern(pattern),
                targets=[targets.EventBus(security_bus)],
            )
        events.Rule(
            self,
            "ExpirerSchedule",
            description="Floodgate member: run the expirer",
            schedule=events.Schedule.rate(Duration.minutes(settings.expirer_schedule_minutes)),
            targets=[targets.LambdaFunction(self.expirer, retry_attempts=settings.async_retry_attempts)],
        )

    def _function(
        self,
        construct_id: str,
        *,
        handler: str,
        settings: FloodgateSettings,
        config: FunctionSettings,
        environment: dict[str, str],
        layer: lambda_.ILayerVersion,
        what: str,
    ) -> lambda_.Function:
        log_group, role = function_role(
            self,
            construct_id,
            log_retention_days=settings.function_log_retention_days,
            description=f"Floodgate member {construct_id.lower()}",
        )
        function = lambda_.Function(
            self,
            construct_id,
            description=f"Floodgate member {construct_id.lower()}: {what}",
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=self.code,
            layers=[layer],
            environment=environment,
            memory_size=config.memory_mb,
            timeout=Duration.seconds(config.timeout_s),
            reserved_concurrent_executions=config.reserved_concurrency,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            on_failure=destinations.SqsDestination(self.failures),
            retry_attempts=settings.async_retry_attempts,
            max_event_age=Duration.seconds(settings.async_max_event_age_s),
        )
        # As in infra.enforcement: the Role GetAtt orders the function after its role (cfn-lint W3005).
        policy = role.node.try_find_child("DefaultPolicy")
        cfn_function = function.node.default_child
        if isinstance(policy, iam.Policy) and isinstance(cfn_function, CfnResource):
            cfn_function.add_override("DependsOn", [logical_id(policy)])
        iam.Grant.add_to_principal(
            grantee=function, actions=list(STATE_TABLE_ACTIONS), resource_arns=[self.state_table.table_arn]
        )
        iam.Grant.add_to_principal(
            grantee=function, actions=["dynamodb:BatchWriteItem"], resource_arns=[self.log_table.table_arn]
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="NaclEntriesOfThisAccount",
                actions=NACL_ENTRY_ACTIONS,
                resources=[f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:network-acl/*"],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="FindTheTaggedVpc",
                actions=["ec2:DescribeNetworkAcls", "ec2:DescribeVpcs"],
                resources=["*"],
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "ec2:DescribeNetworkAcls and DescribeVpcs support no resource-level permissions, nor do the "
            "X-Ray PutTraceSegments/PutTelemetryRecords actions active tracing adds: they need Resource '*'.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:network-acl/*]",
            "A member's VPC is the one carrying the member tag, found at run time (one template serves every "
            "account of the OUs), so its id cannot be named here; the statement is limited to this account's "
            "and Region's network-acl resources and to the three entry actions.",
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            "The runtime is pinned to python3.13 on purpose: the public Powertools v3 layer used here is "
            "published per Python version (python313-arm64), and the handlers are tested on 3.13.",
        )
        return function

    def _reader_role(self, settings: FloodgateSettings, security_account: str) -> iam.Role:
        """What `floodgate status --all` in the security account may read here, and nothing else."""
        reader = iam.Role(
            self,
            "EstateReader",
            role_name=settings.estate.reader_role,
            assumed_by=iam.AccountPrincipal(security_account),
            description="Floodgate: read-only view of this member for the security account (status --all)",
            max_session_duration=Duration.hours(1),
        )
        reader.add_to_policy(
            iam.PolicyStatement(
                sid="LedgerAndDenyLog",
                actions=["dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"],
                resources=[
                    self.state_table.table_arn,
                    self.log_table.table_arn,
                    f"{self.log_table.table_arn}/index/{LOG_BY_CIDR_INDEX}",
                ],
            )
        )
        reader.add_to_policy(
            iam.PolicyStatement(
                sid="Deployment",
                actions=["lambda:GetFunctionConfiguration"],
                resources=[self.enforcer.function_arn],
            )
        )
        reader.add_to_policy(
            iam.PolicyStatement(
                sid="DescribeWithoutResourceLevelPermissions",
                actions=["ec2:DescribeNetworkAcls", "ec2:DescribeVpcs", "cloudformation:DescribeStacks"],
                resources=["*"],
            )
        )
        acknowledge(
            reader,
            "AwsSolutions-IAM5[Resource::*]",
            "ec2:DescribeNetworkAcls and DescribeVpcs support no resource-level permissions, and the "
            "StackSet names the member stack StackSet-<name>-<id>, so the reader finds it with "
            "cloudformation:DescribeStacks over the account; every action is read-only.",
        )
        return reader


def _parameter(scope: Construct, name: str, description: str) -> CfnParameter:
    return CfnParameter(scope, name, type="String", description=description)


def member_template(settings: FloodgateSettings, *, nag: bool = True) -> dict[str, Any]:
    """The member stack's CloudFormation template, as the StackSet deploys it: synthesized in an app of its
    own, without bootstrap parameters (member accounts are not bootstrapped), checked by cdk-nag there."""
    app = App(analytics_reporting=False)
    stack = MemberStack(app, "Member", settings=settings, synthesizer=BootstraplessSynthesizer())
    if nag:
        enable_checks(app)
    assembly = app.synth()
    template: dict[str, Any] = assembly.get_stack_artifact(stack.artifact_id).template
    return template
