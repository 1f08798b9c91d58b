"""Falling behind: alarms, to the on-call topic, for every way Floodgate can stop keeping up without failing
loudly on its own - so that it never fails open in silence.

- IngestLag: even the freshest delivery of five minutes was stored more than INGEST_LAG_ALARM_S after its
  latest record ended. Minimum, not Maximum: one ENI's late delivery is normal (flow logs are best effort),
  every delivery late is Floodgate (or the flow log) behind - and past 20 minutes a record is skipped as too
  old, so the window no longer sees the flood.
- DecisionAge: armed, no decision completed for DECISION_AGE_ALARM_S (decisions fail, or take too long).
- DecisionFailures: a decision raised (each one is also announced by the detector, at most every 10 min).
- AsyncEventAge: deliveries wait in Lambda's own queue (the detector is throttled at its reserved
  concurrency): they are not even being looked at.
- FailedInvocationsAge: a failed delivery has waited in the failure queue for an hour: nobody replayed it
  (the queue's depth alarm, in Observability, fires at the first one).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from floodgate.core.durations import format_duration
from floodgate.observability import DECISION_AGE_ALARM_S, INGEST_LAG_ALARM_S, METRIC, METRIC_NAMESPACE
from infra.notifications import Notifications
from infra.observability import PERIOD, SERVICE_DIMENSIONS

ASYNC_EVENT_AGE_ALARM_S = 300  # deliveries queued by Lambda this long: the detector is not keeping up
FAILURE_AGE_ALARM_S = 3600  # a failed delivery unreplayed this long


def _metric(name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
    """A handler metric as a plain metric alarm (no label: a label makes CDK write a metric-math alarm)."""
    return cloudwatch.Metric(
        namespace=METRIC_NAMESPACE,
        metric_name=name,
        dimensions_map=SERVICE_DIMENSIONS,
        statistic=statistic,
        period=period,
    )


class FallingBehind(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        detector: lambda_.Function,
        failures: sqs.IQueue,
        notifications: Notifications,
    ) -> None:
        super().__init__(scope, construct_id)
        five_minutes = Duration.minutes(5)
        over = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        at_least = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        watched: list[tuple[str, cloudwatch.Metric, float, cloudwatch.ComparisonOperator, str]] = [
            (
                "IngestLag",
                _metric(METRIC.INGEST_LAG_S, "Minimum", five_minutes),
                INGEST_LAG_ALARM_S,
                over,
                f"Floodgate is behind: flow logs stored over {format_duration(INGEST_LAG_ALARM_S)} after "
                "they ended are too old to count (floodgate status)",
            ),
            (
                "DecisionAge",
                _metric(METRIC.DECISION_AGE_S, "Maximum", PERIOD),
                DECISION_AGE_ALARM_S,
                over,
                f"Floodgate is armed and no decision completed for {format_duration(DECISION_AGE_ALARM_S)} "
                "(floodgate status)",
            ),
            (
                "DecisionFailures",
                _metric(METRIC.DECISION_FAILURES, "Sum", five_minutes),
                1,
                at_least,
                "Floodgate decisions failed: no deny was written by them (floodgate status, then "
                "floodgate replay)",
            ),
            (
                "AsyncEventAge",
                detector.metric("AsyncEventAge", statistic="Maximum", period=Duration.minutes(1)),
                ASYNC_EVENT_AGE_ALARM_S * 1000,  # milliseconds
                over,
                f"Floodgate deliveries wait over {format_duration(ASYNC_EVENT_AGE_ALARM_S)} in Lambda's "
                "queue: the detector is throttled",
            ),
            (
                "FailedInvocationsAge",
                failures.metric_approximate_age_of_oldest_message(period=five_minutes, statistic="Maximum"),
                FAILURE_AGE_ALARM_S,
                over,
                f"Failed Floodgate deliveries have waited over {format_duration(FAILURE_AGE_ALARM_S)}: run "
                "floodgate replay",
            ),
        ]
        action = cw_actions.SnsAction(notifications.topic)
        self.alarms: list[cloudwatch.Alarm] = []
        for construct, metric, threshold, comparison, description in watched:
            alarm = metric.create_alarm(
                self,
                construct,
                alarm_description=description,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=comparison,
                # No data: no deliveries (a quiet VPC), not armed, an empty queue - none is falling behind.
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(action)
            self.alarms.append(alarm)
