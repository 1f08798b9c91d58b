"""The Floodgate stack: one construct per concern, composed here, with the outputs the CLI reads."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from floodgate.observability import OUTPUT
from infra.early_warning import EarlyWarning
from infra.enforcement import Enforcement
from infra.falling_behind import FallingBehind
from infra.ingest import FlowLogIngest
from infra.kinesis_ingest import KinesisIngest, subscribe_to_destination
from infra.manual import ManualTrigger
from infra.notifications import Notifications
from infra.observability import Observability
from infra.settings import FloodgateSettings

# Outputs beyond the CLI's contract (floodgate.observability.OUTPUT): for the demo and for people.
EXTRA_OUTPUT_EARLY_ALARM = "EarlyAlarmName"
EXTRA_OUTPUT_WATCHED_ALARMS = "WatchedAlarmNames"
EXTRA_OUTPUT_FLOW_LOG_GROUP = "FlowLogGroupName"
EXTRA_OUTPUT_STREAM = "FlowLogStreamName"  # kinesis ingest only
EXTRA_OUTPUT_DASHBOARD = "DashboardName"
EXTRA_OUTPUT_RUNBOOK = "{}Name"  # BlockRunbookName, UnblockRunbookName, AnalyzeRunbookName


class FloodgateStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: FloodgateSettings) -> None:
        env = (
            Environment(account=settings.account, region=settings.region)
            if settings.account and settings.region
            else None
        )
        super().__init__(
            scope,
            construct_id,
            stack_name=settings.stack_name,
            env=env,
            description="Floodgate: deny concentrated flood sources in VPC Network ACLs",
            analytics_reporting=False,
        )
        self.settings = settings
        self.notifications = Notifications(self, "Notifications", emails=settings.alert_emails)
        self.enforcement = Enforcement(
            self, "Enforcement", settings=settings, notifications=self.notifications
        )
        detector = self.enforcement.detector
        self.stream: KinesisIngest | None = None
        if settings.values["ingest"] == "kinesis":
            self.stream = KinesisIngest(
                self, "KinesisIngest", settings=settings, detector=detector, notifications=self.notifications
            )
        self.ingest = FlowLogIngest(
            self,
            "FlowLogIngest",
            settings=settings,
            detector=detector,
            destination=(subscribe_to_destination(self.stream.destination_arn) if self.stream else None),
        )
        self.early_warning = EarlyWarning(self, "EarlyWarning", settings=settings, detector=detector)
        self.manual = ManualTrigger(self, "ManualTrigger", detector=detector)
        self.observability = Observability(
            self,
            "Observability",
            detector=detector,
            expirer=self.enforcement.expirer,
            failures=self.enforcement.failures,
            notifications=self.notifications,
            early_alarm=self.early_warning.alarm_ref,
        )
        self.falling_behind = FallingBehind(
            self,
            "FallingBehind",
            detector=detector,
            failures=self.enforcement.failures,
            notifications=self.notifications,
        )
        self._outputs()

    def _outputs(self) -> None:
        s = self.settings
        e = self.enforcement
        outputs: dict[str, str] = {
            OUTPUT.STATE_TABLE: e.state_table.table_name,
            OUTPUT.LOG_TABLE: e.log_table.table_name,
            OUTPUT.DETECTOR_FUNCTION: e.detector.function_name,
            OUTPUT.EXPIRER_FUNCTION: e.expirer.function_name,
            OUTPUT.TOPIC_ARN: self.notifications.topic.topic_arn,
            OUTPUT.NACL_IDS: ",".join(s.nacl_ids),
            OUTPUT.VPC_ID: s.vpc_id or "",
            EXTRA_OUTPUT_WATCHED_ALARMS: ",".join(s.watched_alarm_names),
            EXTRA_OUTPUT_FLOW_LOG_GROUP: self.ingest.log_group.log_group_name,
            OUTPUT.FAILURE_QUEUE: e.failures.queue_url,
            EXTRA_OUTPUT_DASHBOARD: self.observability.dashboard.dashboard_name,
        }
        if self.stream is not None:
            outputs[EXTRA_OUTPUT_STREAM] = self.stream.stream.stream_name
        if self.early_warning.alarm is not None:
            outputs[EXTRA_OUTPUT_EARLY_ALARM] = s.early_alarm_name
        for construct_id, document in self.manual.documents.items():
            outputs[EXTRA_OUTPUT_RUNBOOK.format(construct_id)] = document.ref
        for key, value in outputs.items():
            if value:  # CloudFormation refuses an output with an empty value (no NACL ids in VPC mode)
                CfnOutput(self, key, value=value)
