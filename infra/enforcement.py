"""Enforcement: the detector and expirer functions, their tables, failure queue, schedule and permissions."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, CfnResource, Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from constructs import Construct

from floodgate.observability import DETECTOR_HANDLER, EXPIRER_HANDLER
from infra.capacity_hold import grant_capacity_hold
from infra.nag import acknowledge, logical_id
from infra.notifications import Notifications
from infra.settings import RETENTION_DAYS, FloodgateSettings, FunctionSettings
from infra.storage import dead_letter_queue, ledger_tables, window_table

# The Lambda asset: the `functions/` directory (the floodgate package), without build and cache debris, and
# without `analyze`'s C extension: built for this machine (x86_64, its Python), never for arm64 Python 3.13.
FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"
ASSET_EXCLUDE = [
    "**/__pycache__",
    "**/*.pyc",
    "*.egg-info",
    "**/*.egg-info",
    ".mypy_cache",
    ".pytest_cache",
    "**/*.so",
    "**/*.c",
]

# numpy for the detector's vectorised scanner, built for arm64 Python 3.13 by `make install` (the Makefile's
# LAMBDA_NUMPY: binary wheels, no Docker, fetched before synth so that synth stays offline). A layer of its
# own: it changes with numpy's version, not with every change of our code.
NUMPY_LAYER_DIR = FUNCTIONS_DIR.parent / "build" / "lambda-layers" / "numpy"

NACL_ENTRY_ACTIONS = ["ec2:CreateNetworkAclEntry", "ec2:ReplaceNetworkAclEntry", "ec2:DeleteNetworkAclEntry"]
POWERTOOLS_LAYER_ACCOUNT = "017000801446"  # the public Powertools for AWS Lambda (Python) layers


def numpy_layer(scope: Construct) -> lambda_.LayerVersion:
    """The layer that lets the detector scan deliveries with numpy (~0.4x the reference parser's CPU)."""
    if not (NUMPY_LAYER_DIR / "python" / "numpy").is_dir():
        raise FileNotFoundError(
            f"{NUMPY_LAYER_DIR} holds no numpy for the detector's layer: run `make install` (it fetches it)"
        )
    return lambda_.LayerVersion(
        scope,
        "Numpy",
        code=lambda_.Code.from_asset(str(NUMPY_LAYER_DIR), exclude=[".installed-stamp"]),
        compatible_runtimes=[lambda_.Runtime.PYTHON_3_13],
        compatible_architectures=[lambda_.Architecture.ARM_64],
        description="numpy for Floodgate's vectorised flow-log scanner (arm64, Python 3.13)",
    )


def retention(days: int) -> logs.RetentionDays:
    return getattr(logs.RetentionDays, RETENTION_DAYS[days])  # type: ignore[no-any-return]


def function_role(
    scope: Construct, construct_id: str, *, log_retention_days: int, description: str
) -> tuple[logs.LogGroup, iam.Role]:
    """A function's own log group and role: no AWSLambdaBasicExecutionRole managed policy, logging granted
    on this group only (`<id>Logs`, `<id>Role`)."""
    log_group = logs.LogGroup(
        scope,
        f"{construct_id}Logs",
        retention=retention(log_retention_days),
        removal_policy=RemovalPolicy.DESTROY,
    )
    role = iam.Role(
        scope,
        f"{construct_id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
        )
    )
    return log_group, role


def powertools_layer_arn(version: int) -> str:
    """Powertools v3 for python3.13 on arm64, in the stack's own region (a pseudo parameter: no lookup)."""
    return (
        f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{POWERTOOLS_LAYER_ACCOUNT}:layer:"
        f"AWSLambdaPowertoolsPythonV3-python313-arm64:{version}"
    )


def nacl_arn(nacl_id: str) -> str:
    return f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:network-acl/{nacl_id}"


STATE_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
)


class Enforcement(Construct):
    """Tables, functions and the expirer schedule; failed asynchronous invocations land in an SQS queue."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FloodgateSettings,
        notifications: Notifications,
    ) -> None:
        super().__init__(scope, construct_id)
        self.state_table, self.log_table = ledger_tables(self, retain=settings.retain_tables)
        self.window_table = window_table(self)
        self.failures = dead_letter_queue(
            self,
            "FailedInvocations",
            holds="the functions' asynchronous invocations: Lambda's on-failure destination",
        )

        self.layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", powertools_layer_arn(settings.powertools_layer_version)
        )
        # One asset for both functions: the same code, one upload.
        self.code = lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=ASSET_EXCLUDE)
        environment = settings.runtime_environment(
            state_table=self.state_table.table_name,
            log_table=self.log_table.table_name,
            topic_arn=notifications.topic.topic_arn,
            window_table=self.window_table.table_name,
        )
        self.detector = self._function(
            "Detector",
            handler=DETECTOR_HANDLER,
            description="Floodgate detector: flow logs, alarm changes and manual actions -> NACL denies",
            config=settings.detector,
            settings=settings,
            environment=environment,
            layers=[self.layer, numpy_layer(self)],
        )
        self.expirer = self._function(
            "Expirer",
            handler=EXPIRER_HANDLER,
            description="Floodgate expirer: removes NACL denies whose time is up",
            config=settings.expirer,
            settings=settings,
            environment=environment,
            layers=[self.layer],
        )
        for function in (self.detector, self.expirer):
            self._grant_nacl_entries(function, settings)
            grant_capacity_hold(function, settings)
            # Exactly what the adapters call, on the tables themselves (no index, no scan, no streams):
            # ledger, leases, offences and arming on STATE (transactions need the item actions and
            # ConditionCheckItem), the window on WINDOW; the functions only ever append to the deny log (the
            # CLI reads it). (Table.grant would add the log table's index ARNs too.)
            iam.Grant.add_to_principal(
                grantee=function,
                actions=list(STATE_TABLE_ACTIONS),
                resource_arns=[self.state_table.table_arn, self.window_table.table_arn],
            )
            iam.Grant.add_to_principal(
                grantee=function,
                actions=["dynamodb:BatchWriteItem"],
                resource_arns=[self.log_table.table_arn],
            )
            notifications.grant_publish(function)
            if function.role is not None:
                acknowledge(
                    function.role,
                    "AwsSolutions-IAM5[Resource::*]",
                    "ec2:DescribeNetworkAcls and DescribeVpcs support no resource-level permissions, nor do "
                    "the X-Ray PutTraceSegments/PutTelemetryRecords actions active tracing adds: they need "
                    "Resource '*'; nor does autoscaling:DescribeAutoScalingGroups (capacity hold only). "
                    "Every mutating EC2 action is scoped to the NACLs, every Auto Scaling one to the named "
                    "groups.",
                )

        self.schedule = events.Rule(
            self,
            "ExpirerSchedule",
            description="Floodgate: run the expirer",
            schedule=events.Schedule.rate(Duration.minutes(settings.expirer_schedule_minutes)),
            targets=[targets.LambdaFunction(self.expirer, retry_attempts=settings.async_retry_attempts)],
        )

    def _function(
        self,
        construct_id: str,
        *,
        handler: str,
        description: str,
        config: FunctionSettings,
        settings: FloodgateSettings,
        environment: dict[str, str],
        layers: list[lambda_.ILayerVersion],
    ) -> lambda_.Function:
        log_group, role = function_role(
            self,
            construct_id,
            log_retention_days=settings.function_log_retention_days,
            description=f"Floodgate {construct_id.lower()} function",
        )
        function = lambda_.Function(
            self,
            construct_id,
            description=description,
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=self.code,
            layers=layers,
            environment=environment,
            memory_size=config.memory_mb,
            timeout=Duration.seconds(config.timeout_s),
            reserved_concurrent_executions=config.reserved_concurrency,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,  # powertools Tracer in the handlers sends to X-Ray
            on_failure=destinations.SqsDestination(self.failures),
            retry_attempts=settings.async_retry_attempts,
            max_event_age=Duration.seconds(settings.async_max_event_age_s),
        )
        # CDK makes the function depend on its role and on the role's policy; the role is already a dependency
        # through the function's Role GetAtt (cfn-lint W3005), so keep only the policy in DependsOn.
        policy = role.node.try_find_child("DefaultPolicy")
        cfn_function = function.node.default_child
        if isinstance(policy, iam.Policy) and isinstance(cfn_function, CfnResource):
            cfn_function.add_override("DependsOn", [logical_id(policy)])
        acknowledge(
            function,
            "AwsSolutions-L1",
            "The runtime is pinned to python3.13 on purpose: the public Powertools v3 layer used here is "
            "published per Python version (python313-arm64), and the handlers are tested on 3.13.",
        )
        return function

    @staticmethod
    def _grant_nacl_entries(function: lambda_.Function, settings: FloodgateSettings) -> None:
        if settings.nacl_ids:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    sid="NaclEntriesOfTheProtectedNacls",
                    actions=NACL_ENTRY_ACTIONS,
                    resources=[nacl_arn(nacl_id) for nacl_id in settings.nacl_ids],
                )
            )
        else:
            assert settings.vpc_id is not None
            vpc_arn = f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:vpc/{settings.vpc_id}"
            function.add_to_role_policy(
                iam.PolicyStatement(
                    sid="NaclEntriesOfTheProtectedVpc",
                    actions=NACL_ENTRY_ACTIONS,
                    resources=[nacl_arn("*")],
                    conditions={"ArnEquals": {"ec2:Vpc": vpc_arn}},
                )
            )
            assert function.role is not None
            acknowledge(
                function.role,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:"
                "network-acl/*]",
                "The target is every NACL of one VPC (no NACL ids configured): the statement is limited to "
                "network-acl resources and conditioned on ec2:Vpc equal to that VPC's ARN.",
            )
        function.add_to_role_policy(
            # DescribeVpcs: at cold start both functions read the VPC's CIDR blocks (IPv4 and IPv6).
            iam.PolicyStatement(
                sid="DescribeNacls", actions=["ec2:DescribeNetworkAcls", "ec2:DescribeVpcs"], resources=["*"]
            )
        )
