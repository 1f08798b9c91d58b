"""Observability: the CloudWatch dashboard on the handlers' metrics, and operational alarms for on-call."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from floodgate.observability import METRIC, METRIC_NAMESPACE, SERVICE_NAME
from infra.notifications import Notifications

PERIOD = Duration.minutes(1)
# powertools Metrics adds the dimension service=<SERVICE_NAME> to every metric it emits.
SERVICE_DIMENSIONS = {"service": SERVICE_NAME}


# The expirer samples the denies' effect once per detection window (5 minutes by default): a finer period
# would draw those samples as isolated dots.
EFFECT_PERIOD = Duration.minutes(5)


def floodgate_metric(
    name: str, statistic: str = "Sum", label: str | None = None, period: Duration = PERIOD
) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=METRIC_NAMESPACE,
        metric_name=name,
        dimensions_map=SERVICE_DIMENSIONS,
        statistic=statistic,
        period=period,
        label=label or name,
    )


def denies_per_nacl() -> cloudwatch.MathExpression:
    """One line per NACL (the NaclId dimension), whatever NACLs the handlers find."""
    return cloudwatch.MathExpression(
        expression=(
            f'SEARCH(\'{{{METRIC_NAMESPACE},NaclId,service}} MetricName="{METRIC.DENIES_ACTIVE}" '
            f"service=\"{SERVICE_NAME}\"', 'Maximum', 60)"
        ),
        using_metrics={},
        label="Active denies",
        period=PERIOD,
    )


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        detector: lambda_.Function,
        expirer: lambda_.Function,
        failures: sqs.IQueue,
        notifications: Notifications,
        early_alarm: cloudwatch.IAlarm | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Active denies per NACL",
                left=[denies_per_nacl()],
                width=12,
                left_y_axis=cloudwatch.YAxisProps(min=0),
            ),
            cloudwatch.GraphWidget(
                title="Blocks, evictions, expiries",
                left=[
                    floodgate_metric(METRIC.BLOCKS),
                    floodgate_metric(METRIC.EXTENSIONS),
                    floodgate_metric(METRIC.EVICTIONS),
                    floodgate_metric(METRIC.EXPIRIES),
                    floodgate_metric(METRIC.UNBLOCKS),
                    floodgate_metric(METRIC.REFUSALS),
                ],
                width=12,
                stacked=False,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Flow-log records parsed / skipped",
                left=[floodgate_metric(METRIC.RECORDS_PARSED), floodgate_metric(METRIC.RECORDS_SKIPPED)],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Decision latency (ms)",
                left=[
                    floodgate_metric(METRIC.DECISION_LATENCY_MS, "p50", "p50"),
                    floodgate_metric(METRIC.DECISION_LATENCY_MS, "p99", "p99"),
                    floodgate_metric(METRIC.DECISION_LATENCY_MS, "Maximum", "max"),
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Functions: invocations and errors",
                left=[
                    detector.metric_invocations(period=PERIOD, label="detector invocations"),
                    expirer.metric_invocations(period=PERIOD, label="expirer invocations"),
                ],
                right=[
                    detector.metric_errors(period=PERIOD, label="detector errors"),
                    expirer.metric_errors(period=PERIOD, label="expirer errors"),
                    detector.metric_throttles(period=PERIOD, label="detector throttles"),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Window writes, repairs",
                left=[floodgate_metric(METRIC.WINDOW_WRITES), floodgate_metric(METRIC.REPAIRS)],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Effect of the denies: inbound pps, and denied sources' REJECT and ACCEPT pps",
                left=[
                    floodgate_metric(METRIC.INBOUND_PPS, "Maximum", "inbound", EFFECT_PERIOD),
                    floodgate_metric(METRIC.DENIED_REJECT_PPS, "Maximum", "denied, REJECTed", EFFECT_PERIOD),
                    floodgate_metric(
                        METRIC.DENIED_ACCEPT_PPS, "Maximum", "denied, still ACCEPTed", EFFECT_PERIOD
                    ),
                ],
                width=24,
                period=EFFECT_PERIOD,
                left_y_axis=cloudwatch.YAxisProps(min=0, label="packets/s"),
            )
        )
        if early_alarm is not None:
            self.dashboard.add_widgets(
                cloudwatch.AlarmWidget(title="Early warning", alarm=early_alarm, width=24)
            )

        # On-call hears about the machinery failing, not only about attacks.
        action = cw_actions.SnsAction(notifications.topic)
        self.alarms: list[cloudwatch.Alarm] = []
        for name, function in (("Detector", detector), ("Expirer", expirer)):
            alarm = function.metric_errors(period=Duration.minutes(5), statistic="Sum").create_alarm(
                self,
                f"{name}Errors",
                alarm_description=f"Floodgate {name.lower()} function errors",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(action)
            self.alarms.append(alarm)
        failed = failures.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5), statistic="Maximum"
        ).create_alarm(
            self,
            "FailedInvocations",
            alarm_description="Floodgate: asynchronous invocations failed and landed in the failure queue",
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        failed.add_alarm_action(action)
        self.alarms.append(failed)
