"""Streaming ingest (`ingest: "kinesis"`): flow logs into a Kinesis Data Stream through a CloudWatch Logs
destination, read by the detector through an event source mapping; decisions on their own schedule.

Why a stream and a destination, not the subscription to Lambda nor Firehose (README, "Kinesis ingest"):
- the subscription invokes the detector asynchronously once per delivery; past a few hundred deliveries a
  minute the invocations queue (reserved concurrency) and each one may also decide. The mapping reads in
  batches per shard, at a pace the shards set, and shows its backlog as IteratorAge;
- a logs *destination* (not a filter straight on the stream) is what other accounts' log groups subscribe
  to: the same stream serves a multi-account estate by adding accounts to its policy;
- Firehose buffers 60 s at least and delivers to storage, not to a function with a tumbling window: it adds
  a minute to every deny and offers no per-shard state.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Sequence

import jsii
from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from constructs import Construct

from floodgate.core.durations import parse_duration
from floodgate.settings import ENV
from infra.nag import acknowledge
from infra.notifications import Notifications
from infra.settings import FloodgateSettings
from infra.storage import dead_letter_queue

# The decision reads the last 5 minutes of arrivals: a backlog of 2 minutes already hides a good part of a
# flood from it. Past this, on-call hears that Floodgate is behind (and that denies lag the traffic).
ITERATOR_AGE_ALARM_MS = 120_000
# A failed batch is split in two and retried (bisect): a record that cannot be read is isolated in a few
# attempts, then its position goes to the failure queue; the shard moves on.
STREAM_RETRY_ATTEMPTS = 3
SCHEDULED_DECISION = {"source": "aws.events", "detail-type": "Scheduled Event"}


class KinesisSettings:
    """The mapping's and the stream's settings, read from the validated context values."""

    def __init__(self, settings: FloodgateSettings) -> None:
        values = settings.values
        self.shards = int(str(values["kinesisShards"]))
        self.batch_size = int(str(values["kinesisBatchSize"]))
        self.batch_window_s = parse_duration(str(values["kinesisBatchWindow"]))
        self.tumbling_window_s = parse_duration(str(values["kinesisTumblingWindow"]))
        self.parallelization = int(str(values["kinesisParallelization"]))
        self.max_record_age_s = parse_duration(str(values["kinesisMaxRecordAge"]))
        self.decision_minutes = max(1, parse_duration(str(values["decisionSchedule"])) // 60)
        self.decision_schedule_s = parse_duration(str(values["decisionSchedule"]))
        self.reserved_concurrency = settings.detector.reserved_concurrency

    def problems(self) -> list[str]:
        """What the service would refuse at deploy time, said at synth."""
        found = []
        if self.batch_window_s > 300:
            found.append("kinesisBatchWindow: at most 5m")
        if not 1 <= self.tumbling_window_s <= 900:
            found.append("kinesisTumblingWindow: 1s to 15m")
        if not 60 <= self.max_record_age_s <= 604800:
            found.append("kinesisMaxRecordAge: 1m to 7d")
        if self.decision_schedule_s % 60:
            found.append("decisionSchedule: use whole minutes (EventBridge rates are per minute)")
        lanes = self.shards * self.parallelization
        if self.reserved_concurrency is not None and self.reserved_concurrency < lanes + 1:
            found.append(
                f"detectorReservedConcurrency={self.reserved_concurrency}: kinesis ingest runs up to "
                f"kinesisShards x kinesisParallelization = {lanes} invocations at once, plus one for the "
                f"scheduled decision and alarms: set it to {lanes + 1} or more, or empty"
            )
        return found


class KinesisIngest(Construct):
    """The stream (own KMS key), the logs destination and its role, the mapping into the detector with its
    failure queue, the decision schedule and the IteratorAge alarm. `destination_arn` is what the flow-log
    group's subscription filter points to."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FloodgateSettings,
        detector: lambda_.Function,
        notifications: Notifications,
        source_accounts: Sequence[str] = (),
    ) -> None:
        """`source_accounts`: the accounts whose log groups may subscribe to the destination (a security
        account's members); none: this account alone."""
        super().__init__(scope, construct_id)
        senders = list(source_accounts) or [Aws.ACCOUNT_ID]
        config = KinesisSettings(settings)
        problems = config.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.config = config
        self.key = kms.Key(
            self,
            "Key",
            description="Floodgate: encrypts the flow-log stream",
            enable_key_rotation=True,
            pending_window=Duration.days(30),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.stream = kinesis.Stream(
            self,
            "Stream",
            shard_count=config.shards,
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=self.key,
            retention_period=Duration.hours(24),
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.stream,
            "AwsSolutions-KDS3",
            "The stream is encrypted with its own rotating customer-managed key (KinesisIngest/Key), not "
            "aws/kinesis; the rule reads the key's Fn::GetAtt as unknown.",
        )

        # CloudWatch Logs writes into the stream with this role, through the destination.
        self.role = iam.Role(
            self,
            "DestinationRole",
            # Only CloudWatch Logs acting for this account's log groups (confused deputy).
            assumed_by=iam.ServicePrincipal(
                "logs.amazonaws.com",
                conditions={
                    "StringLike": {
                        # Across accounts CloudWatch Logs names the sender's log group and this account.
                        "aws:SourceArn": [
                            f"arn:{Aws.PARTITION}:logs:*:{account}:*"
                            for account in [*senders, Aws.ACCOUNT_ID]
                        ]
                        if source_accounts
                        else f"arn:{Aws.PARTITION}:logs:*:{Aws.ACCOUNT_ID}:*"
                    }
                },
            ),
            description="Floodgate: CloudWatch Logs delivery of flow logs into the stream",
        )
        # What CloudWatch Logs does with the role, and no more (grant_write would add kms:ReEncrypt* and
        # kms:GenerateDataKey*, wildcards it does not use).
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["kinesis:PutRecord"], resources=[self.stream.stream_arn])
        )
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["kms:GenerateDataKey"], resources=[self.key.key_arn])
        )
        destination_name = f"{settings.stack_name}-flow-logs"
        self.destination = logs.CfnDestination(
            self,
            "Destination",
            destination_name=destination_name,
            role_arn=self.role.role_arn,
            target_arn=self.stream.stream_arn,
            destination_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "MembersSubscribe" if source_accounts else "ThisAccountSubscribes",
                            "Effect": "Allow",
                            "Principal": {"AWS": senders if source_accounts else Aws.ACCOUNT_ID},
                            "Action": "logs:PutSubscriptionFilter",
                            "Resource": f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
                            f"destination:{destination_name}",
                        }
                    ],
                }
            ),
        )
        # The destination checks, on creation, that it may put into the stream.
        policy = self.role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            self.destination.node.add_dependency(policy)
        self.destination_arn = self.destination.attr_arn

        self.failures = dead_letter_queue(
            self,
            "StreamFailures",
            holds="the stream mapping's on-failure destination: the shard and sequence range of a batch that "
            "could not be processed, the records staying in the stream",
        )
        self.source = event_sources.KinesisEventSource(
            self.stream,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=config.batch_size,
            max_batching_window=Duration.seconds(config.batch_window_s),
            tumbling_window=Duration.seconds(config.tumbling_window_s),
            parallelization_factor=config.parallelization,
            bisect_batch_on_error=True,
            retry_attempts=STREAM_RETRY_ATTEMPTS,
            max_record_age=Duration.seconds(config.max_record_age_s),
            on_failure=event_sources.SqsDlq(self.failures),
        )
        detector.add_event_source(self.source)
        # The detector replays these ranges itself on the decision schedule (services.stream_replay): it reads
        # the queue and the stream (the mapping's grant), and deletes a message once its range is stored.
        detector.add_environment(ENV.STREAM_FAILURES, self.failures.queue_url)
        self.failures.grant_consume_messages(detector)

        # Decisions run on this schedule, one at a time per VPC (the decision lease), not on ingest.
        self.schedule = events.Rule(
            self,
            "DecisionSchedule",
            description="Floodgate: the scheduled decision on the window (kinesis ingest)",
            schedule=events.Schedule.rate(Duration.minutes(config.decision_minutes)),
            targets=[targets.LambdaFunction(detector, retry_attempts=0)],
        )

        self.iterator_age = cloudwatch.Alarm(
            self,
            "IteratorAgeAlarm",
            alarm_description=(
                "Floodgate is behind the flow-log stream: decisions do not see the last minutes of traffic. "
                "Raise kinesisShards / kinesisParallelization, or the detector's memory."
            ),
            metric=cloudwatch.Metric(
                namespace="AWS/Lambda",
                metric_name="IteratorAge",
                dimensions_map={"FunctionName": detector.function_name},
                statistic="Maximum",
                period=Duration.minutes(1),
            ),
            threshold=ITERATOR_AGE_ALARM_MS,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        action = cw_actions.SnsAction(notifications.topic)
        self.iterator_age.add_alarm_action(action)
        self.iterator_age.add_ok_action(action)


@jsii.implements(logs.ILogSubscriptionDestination)
class DestinationSubscription:
    """A subscription filter's target given by ARN: the logs destination (CDK has no L2 for it)."""

    def __init__(self, arn: str) -> None:
        self.arn = arn

    def bind(
        self, scope: Construct, source_log_group: logs.ILogGroup
    ) -> logs.LogSubscriptionDestinationConfig:
        return logs.LogSubscriptionDestinationConfig(arn=self.arn)


def subscribe_to_destination(arn: str) -> logs.ILogSubscriptionDestination:
    return typing.cast(logs.ILogSubscriptionDestination, DestinationSubscription(arn))
