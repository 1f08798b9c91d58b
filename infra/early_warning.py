"""Early warning: an alarm that fires before the scale-out policy's, routed to the detector.

State changes of our alarm and of any user-supplied alarm names reach the detector through an EventBridge
rule (detail-type "CloudWatch Alarm State Change"); optionally our alarm also invokes it directly.
"""

from __future__ import annotations

import jsii
from aws_cdk import Aws, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.settings import FloodgateSettings

ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"


class EarlyWarning(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FloodgateSettings,
        detector: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        spec = settings.alarm
        self.alarm: cloudwatch.Alarm | None = None
        self.alarm_ref: cloudwatch.IAlarm | None = None
        if spec.enabled:
            metric = cloudwatch.Metric(
                namespace=spec.namespace,
                metric_name=spec.metric_name,
                dimensions_map=dict(spec.dimensions),
                statistic=spec.statistic,
                period=Duration.seconds(spec.period_s),
            )
            self.alarm = cloudwatch.Alarm(
                self,
                "Alarm",
                alarm_name=settings.early_alarm_name,
                alarm_description=(
                    "Floodgate early warning: arms the detector before the scale-out policy reacts "
                    f"({spec.namespace} {spec.metric_name} {spec.statistic} > {spec.threshold:g} for "
                    f"{spec.datapoints_to_alarm} of {spec.evaluation_periods} x {spec.period_s}s)"
                ),
                metric=metric,
                threshold=spec.threshold,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=spec.evaluation_periods,
                datapoints_to_alarm=spec.datapoints_to_alarm,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            # The alarm's ARN from its (explicit) name: references to it need no GetAtt on the alarm.
            self.alarm_arn = (
                f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:"
                f"{settings.early_alarm_name}"
            )
            self.alarm_ref = cloudwatch.Alarm.from_alarm_arn(self, "AlarmRef", self.alarm_arn)
            if spec.lambda_action:
                # The resource policy for lambda.alarms.cloudwatch.amazonaws.com, scoped to this alarm.
                detector.add_permission(
                    "InvokedByEarlyAlarm",
                    principal=iam.ServicePrincipal("lambda.alarms.cloudwatch.amazonaws.com"),
                    action="lambda:InvokeFunction",
                    source_arn=self.alarm_arn,
                    source_account=Aws.ACCOUNT_ID,
                )
                self.alarm.add_alarm_action(_InvokeFunction(detector))

        self.rule = events.Rule(
            self,
            "StateChanges",
            description="Floodgate: alarm state changes that arm or disarm the detector",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=[ALARM_STATE_CHANGE],
                detail={"alarmName": list(settings.watched_alarm_names)},
            ),
            targets=[targets.LambdaFunction(detector, retry_attempts=settings.async_retry_attempts)],
        )


@jsii.implements(cloudwatch.IAlarmAction)
class _InvokeFunction:
    """Alarm action: invoke the function (EarlyWarning adds its permission, scoped to the alarm ARN)."""

    def __init__(self, function: lambda_.IFunction) -> None:
        self._function = function

    def bind(self, _scope: Construct, _alarm: cloudwatch.IAlarm) -> cloudwatch.AlarmActionConfig:
        return cloudwatch.AlarmActionConfig(alarm_action_arn=self._function.function_arn)
