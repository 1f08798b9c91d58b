"""Typed deployment settings of the Floodgate stack, read from CDK context and validated at synth.

Every context key has a default in `DEFAULTS` (cdk.json carries the same values, plus example target ids);
`-c key=value` overrides any of them. Values may come as JSON types (cdk.json) or as strings (`-c`), so the
readers accept both: lists as JSON lists or comma-separated text, booleans as true/false, numbers as text.

Errors name the context key and the bad value, and all errors of one synth are reported together.
The detection knobs end up as the functions' environment (`runtime_environment`), which is checked against
`floodgate.settings.Settings.from_env` -- the handlers' own validation -- before anything is synthesized.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from floodgate.core.durations import parse_duration
from floodgate.core.flowlog import DEFAULT_FORMAT, STACK_FORMAT, FlowLogFormat
from floodgate.core.networks import InvalidCidr, parse_network
from floodgate.settings import ENV, NACL_ID, ConfigError, Settings


class SettingsError(ValueError):
    """One or more context values are missing or invalid; the message names every offending key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid Floodgate context ({len(self.problems)} problem(s)):\n{lines}")


# Context key -> default. The single source of the defaults; tests check cdk.json agrees.
DEFAULTS: dict[str, Any] = {
    # the stack
    "stackName": "Floodgate",
    "account": "",  # empty: environment-agnostic stack (pseudo parameters), no lookups either way
    "region": "",
    "powertoolsLayerVersion": 27,  # public layer AWSLambdaPowertoolsPythonV3-python313-arm64:<n>
    "tableRemovalPolicy": "retain",  # retain | destroy
    # what to protect: NACL ids, or every NACL of the VPC when naclIds is empty
    "naclIds": [],
    "vpcId": "",
    "vpcCidrs": [],
    "allowCidrs": [],
    # detection and enforcement knobs (passed to the functions)
    "ruleStart": 100,
    "budget": 10,
    "naclQuota": 20,
    "minPps": 5000,
    "minBps": 0,
    "minShare": 0.01,
    "alwaysPps": None,
    "maxPrefixV4": 16,
    "maxPrefixV6": 48,
    "baseTtl": "30m",
    "maxTtl": "24h",
    "ttlFactor": 2,
    "offenceMemory": "7d",
    "extendOnEvidence": True,
    "outboundMirror": False,
    "dryRun": False,
    "window": "5m",
    "armTtl": "30m",
    "logRetentionDays": 90,  # deny-log retention the handlers apply (TTL of log items)
    # flow-log ingest
    "flowLogGroupName": "",  # empty: create a flow log for vpcId; set: subscribe to this existing group
    "flowLogFormat": "default",  # "default": own flow log v5 STACK_FORMAT, group brought v2; or "${field} …"
    "flowLogRetentionDays": 7,
    "flowLogFilterPattern": "",  # subscription filter pattern; empty = every record
    # early-warning alarm
    "alarmEnabled": True,
    "alarmNamespace": "AWS/EC2",
    "alarmMetricName": "NetworkPacketsIn",
    "alarmDimensions": {},
    "alarmStatistic": "Sum",
    "alarmPeriodSeconds": 60,
    "alarmThreshold": 300000,
    "alarmEvaluationPeriods": 1,
    "alarmDatapointsToAlarm": 1,
    "scaleOutThreshold": None,  # the scale-out policy's threshold on the same metric, when known
    "scaleOutEvaluationPeriods": 3,
    "existingAlarmNames": [],
    "alarmLambdaAction": False,
    # functions
    "detectorMemoryMb": 512,
    "detectorTimeoutSeconds": 60,
    "detectorReservedConcurrency": 2,
    "expirerMemoryMb": 256,
    "expirerTimeoutSeconds": 60,
    "expirerReservedConcurrency": 1,
    "expirerSchedule": "1m",
    "asyncRetryAttempts": 2,
    "asyncMaxEventAge": "1h",
    "functionLogRetentionDays": 30,
    # notifications
    "alertEmails": [],
}

# CloudWatch Logs retention values, in days, and the CDK enum member for each.
RETENTION_DAYS: dict[int, str] = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}

STATISTICS = ("Sum", "Average", "Maximum", "Minimum", "SampleCount")
ALARM_PERIODS = (10, 20, 30)  # or any multiple of 60

_VPC_ID = re.compile(r"vpc-[0-9a-f]{8,17}")
_ACCOUNT = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
_STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,99}")
_LOG_GROUP = re.compile(r"[\w\-./#]{1,512}")
_ALARM_NAME = re.compile(r"[^\x00-\x1f]{1,255}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True, slots=True)
class DetectionSettings:
    """The knobs the handlers read from their environment (see floodgate.settings.ENV)."""

    rule_start: int
    budget: int
    nacl_quota: int
    min_pps: float
    min_bps: float
    min_share: float
    always_pps: float | None
    allow_cidrs: tuple[str, ...]
    max_prefix_v4: int
    max_prefix_v6: int
    base_ttl: str
    max_ttl: str
    ttl_factor: float
    offence_memory: str
    extend_on_evidence: bool
    outbound_mirror: bool
    dry_run: bool
    window: str
    arm_ttl: str
    log_retention_days: int


@dataclass(frozen=True, slots=True)
class FlowLogSettings:
    existing_group_name: str | None  # None: create a flow log for the VPC
    format: str  # always the explicit "${field} ..." form
    is_default_format: bool
    retention_days: int
    filter_pattern: str


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    enabled: bool
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: str
    period_s: int
    threshold: float
    evaluation_periods: int
    datapoints_to_alarm: int
    scale_out_threshold: float | None
    scale_out_evaluation_periods: int
    existing_alarm_names: tuple[str, ...]
    lambda_action: bool


@dataclass(frozen=True, slots=True)
class FunctionSettings:
    memory_mb: int
    timeout_s: int
    reserved_concurrency: int | None


@dataclass(frozen=True, slots=True)
class FloodgateSettings:
    stack_name: str
    account: str | None
    region: str | None
    powertools_layer_version: int
    retain_tables: bool
    nacl_ids: tuple[str, ...]
    vpc_id: str | None
    vpc_cidrs: tuple[str, ...]
    detection: DetectionSettings
    flow_logs: FlowLogSettings
    alarm: AlarmSettings
    detector: FunctionSettings
    expirer: FunctionSettings
    expirer_schedule_minutes: int
    async_retry_attempts: int
    async_max_event_age_s: int
    function_log_retention_days: int
    alert_emails: tuple[str, ...]

    @property
    def targets_vpc(self) -> bool:
        """True when every NACL of the VPC is the target (no NACL ids given)."""
        return not self.nacl_ids

    @property
    def early_alarm_name(self) -> str:
        return f"{self.stack_name}-early-warning"

    @property
    def watched_alarm_names(self) -> tuple[str, ...]:
        """Alarm names whose state changes reach the detector through EventBridge."""
        own = (self.early_alarm_name,) if self.alarm.enabled else ()
        return own + self.alarm.existing_alarm_names

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> FloodgateSettings:
        """Read and validate every key; `get` returns a context value or None (node.try_get_context)."""
        reader = _ContextReader(get)
        settings = cls._read(reader)
        if reader.problems:
            raise SettingsError(reader.problems)
        assert settings is not None
        # Cross-check with the handlers' own validation, so a stack never ships an environment they reject.
        try:
            Settings.from_env(
                settings.runtime_environment(state_table="state", log_table="log", topic_arn="arn:topic")
            )
        except ConfigError as exc:
            raise SettingsError([f"the functions would reject this configuration: {exc}"]) from None
        return settings

    @classmethod
    def from_mapping(cls, context: Mapping[str, Any]) -> FloodgateSettings:
        return cls.from_context(context.get)

    @classmethod
    def _read(cls, r: _ContextReader) -> FloodgateSettings | None:  # noqa: PLR0912, PLR0915 - one line per key
        stack_name = r.text("stackName", pattern=_STACK_NAME, what="a CloudFormation stack name")
        account = r.text("account", pattern=_ACCOUNT, what="a 12-digit account id", optional=True)
        region = r.text("region", pattern=_REGION, what="a region such as eu-west-1", optional=True)
        if (account is None) != (region is None):
            r.problem("account and region: set both (fixed environment) or neither (environment-agnostic)")
        layer_version = r.integer("powertoolsLayerVersion", low=1, high=10_000)
        removal = r.choice("tableRemovalPolicy", ("retain", "destroy"))

        nacl_ids = r.strings("naclIds")
        for nacl_id in nacl_ids:
            if not NACL_ID.fullmatch(nacl_id):
                r.problem(f"naclIds: {nacl_id!r} is not a NACL id (acl- and 8 or 17 hex digits)")
        if len(set(nacl_ids)) != len(nacl_ids):
            r.problem("naclIds: an id appears twice")
        vpc_id = r.text("vpcId", pattern=_VPC_ID, what="a VPC id (vpc-…)", optional=True)
        if not nacl_ids and vpc_id is None:
            r.problem("naclIds / vpcId: set the NACL ids to protect, or a vpcId to protect all its NACLs")
        vpc_cidrs = r.cidrs("vpcCidrs")
        if not vpc_cidrs:
            r.problem("vpcCidrs is required: the VPC's CIDR blocks (traffic to them is inbound)")
        allow_cidrs = r.cidrs("allowCidrs")

        budget = r.integer("budget", low=1, high=38)
        quota = r.integer("naclQuota", low=3, high=40)
        if budget + 2 > quota:
            r.problem(
                f"budget={budget} does not fit naclQuota={quota}: the budget, the default rule and one "
                "spare must fit in the rules-per-NACL quota"
            )
        rule_start = r.integer("ruleStart", low=1, high=32766)
        if rule_start + 2 * (budget + 1) - 1 > 32766:
            r.problem(f"ruleStart={rule_start}: the owned block of 2 x (budget+1) rules runs past rule 32766")
        base_ttl = r.duration("baseTtl")
        max_ttl = r.duration("maxTtl")
        if (
            base_ttl is not None
            and max_ttl is not None
            and parse_duration(max_ttl) < parse_duration(base_ttl)
        ):
            r.problem(f"maxTtl={max_ttl} must not be shorter than baseTtl={base_ttl}")
        always_pps = r.number("alwaysPps", low=1.0, optional=True)
        detection = DetectionSettings(
            rule_start=rule_start,
            budget=budget,
            nacl_quota=quota,
            min_pps=r.number("minPps", low=0.0) or 0.0,
            min_bps=r.number("minBps", low=0.0) or 0.0,
            min_share=r.number("minShare", low=0.0001, high=1.0) or 0.0,
            always_pps=always_pps,
            allow_cidrs=allow_cidrs,
            max_prefix_v4=r.integer("maxPrefixV4", low=8, high=32),
            max_prefix_v6=r.integer("maxPrefixV6", low=16, high=128),
            base_ttl=base_ttl or "",
            max_ttl=max_ttl or "",
            ttl_factor=r.number("ttlFactor", low=1.0, high=100.0) or 0.0,
            offence_memory=r.duration("offenceMemory") or "",
            extend_on_evidence=r.flag("extendOnEvidence"),
            outbound_mirror=r.flag("outboundMirror"),
            dry_run=r.flag("dryRun"),
            window=r.duration("window") or "",
            arm_ttl=r.duration("armTtl") or "",
            log_retention_days=r.integer("logRetentionDays", low=1, high=3650),
        )

        group_name = r.text("flowLogGroupName", pattern=_LOG_GROUP, what="a log group name", optional=True)
        if group_name is None and vpc_id is None:
            r.problem(
                "flowLogGroupName / vpcId: set vpcId to create a flow log, or name an existing log group"
            )
        format_text = r.text("flowLogFormat") or "default"
        is_default = format_text.strip().lower() == "default"
        # "default": the stack's own flow log records the v5 fields detection uses (direction, TCP flags,
        # original source, AWS service); a log group someone else fills has AWS's default (version 2).
        default_format = DEFAULT_FORMAT if group_name is not None else STACK_FORMAT
        try:
            flow_format = FlowLogFormat.parse(default_format if is_default else format_text).text
        except ValueError as exc:
            r.problem(f"flowLogFormat: {exc}")
            flow_format = DEFAULT_FORMAT
        flow_logs = FlowLogSettings(
            existing_group_name=group_name,
            format=flow_format,
            is_default_format=flow_format == FlowLogFormat.parse(DEFAULT_FORMAT).text,
            retention_days=r.retention("flowLogRetentionDays"),
            filter_pattern=r.text("flowLogFilterPattern", optional=True) or "",
        )

        alarm = cls._read_alarm(r)

        detector = FunctionSettings(
            memory_mb=r.integer("detectorMemoryMb", low=128, high=10240),
            timeout_s=r.integer("detectorTimeoutSeconds", low=1, high=900),
            reserved_concurrency=r.integer("detectorReservedConcurrency", low=1, high=1000, optional=True),
        )
        expirer = FunctionSettings(
            memory_mb=r.integer("expirerMemoryMb", low=128, high=10240),
            timeout_s=r.integer("expirerTimeoutSeconds", low=1, high=900),
            reserved_concurrency=r.integer("expirerReservedConcurrency", low=1, high=1000, optional=True),
        )
        schedule = r.duration("expirerSchedule")
        schedule_minutes = 1
        if schedule is not None:
            seconds = parse_duration(schedule)
            if seconds % 60:
                r.problem(f"expirerSchedule={schedule}: use whole minutes (EventBridge rates are per minute)")
            schedule_minutes = max(1, seconds // 60)
        max_age = r.duration("asyncMaxEventAge")
        max_age_s = parse_duration(max_age) if max_age else 3600
        if not 60 <= max_age_s <= 21600:
            r.problem(f"asyncMaxEventAge={max_age}: must be between 1m and 6h")
        emails = r.strings("alertEmails")
        for email in emails:
            if not _EMAIL.fullmatch(email):
                r.problem(f"alertEmails: {email!r} is not an email address")
        return cls(
            stack_name=stack_name or "Floodgate",
            account=account,
            region=region,
            powertools_layer_version=layer_version,
            retain_tables=removal == "retain",
            nacl_ids=nacl_ids,
            vpc_id=vpc_id,
            vpc_cidrs=vpc_cidrs,
            detection=detection,
            flow_logs=flow_logs,
            alarm=alarm,
            detector=detector,
            expirer=expirer,
            expirer_schedule_minutes=schedule_minutes,
            async_retry_attempts=r.integer("asyncRetryAttempts", low=0, high=2),
            async_max_event_age_s=max_age_s,
            function_log_retention_days=r.retention("functionLogRetentionDays"),
            alert_emails=emails,
        )

    @staticmethod
    def _read_alarm(r: _ContextReader) -> AlarmSettings:
        enabled = r.flag("alarmEnabled")
        period = r.integer("alarmPeriodSeconds", low=10, high=86400)
        if period not in ALARM_PERIODS and period % 60:
            r.problem(f"alarmPeriodSeconds={period}: use 10, 20, 30 or a multiple of 60")
        threshold = r.number("alarmThreshold", low=0.0) or 0.0
        evaluation = r.integer("alarmEvaluationPeriods", low=1, high=100)
        datapoints = r.integer("alarmDatapointsToAlarm", low=1, high=100)
        if datapoints > evaluation:
            r.problem(f"alarmDatapointsToAlarm={datapoints} exceeds alarmEvaluationPeriods={evaluation}")
        scale_threshold = r.number("scaleOutThreshold", low=0.0, optional=True)
        scale_evaluation = r.integer("scaleOutEvaluationPeriods", low=1, high=100)
        if enabled and scale_threshold is not None and threshold >= scale_threshold:
            r.problem(
                f"alarmThreshold={threshold:g} must be below scaleOutThreshold={scale_threshold:g}: "
                "the early warning has to fire before autoscaling does"
            )
        if enabled and evaluation > scale_evaluation:
            r.problem(
                f"alarmEvaluationPeriods={evaluation} must not exceed scaleOutEvaluationPeriods="
                f"{scale_evaluation}: the early warning has to fire before autoscaling does"
            )
        existing = r.strings("existingAlarmNames")
        for name in existing:
            if not _ALARM_NAME.fullmatch(name):
                r.problem(f"existingAlarmNames: {name!r} is not an alarm name")
        if not enabled and not existing:
            r.problem("alarmEnabled=false and no existingAlarmNames: nothing would ever arm the detector")
        namespace = r.text("alarmNamespace") or ""
        metric_name = r.text("alarmMetricName") or ""
        if enabled and not (namespace and metric_name):
            r.problem("alarmNamespace and alarmMetricName are required when alarmEnabled is true")
        lambda_action = r.flag("alarmLambdaAction")
        if lambda_action and not enabled:
            r.problem("alarmLambdaAction=true needs alarmEnabled=true (only our own alarm gets the action)")
        return AlarmSettings(
            enabled=enabled,
            namespace=namespace,
            metric_name=metric_name,
            dimensions=r.dimensions("alarmDimensions"),
            statistic=r.choice("alarmStatistic", STATISTICS),
            period_s=period,
            threshold=threshold,
            evaluation_periods=evaluation,
            datapoints_to_alarm=datapoints,
            scale_out_threshold=scale_threshold,
            scale_out_evaluation_periods=scale_evaluation,
            existing_alarm_names=existing,
            lambda_action=lambda_action,
        )

    def runtime_environment(self, *, state_table: str, log_table: str, topic_arn: str) -> dict[str, str]:
        """The functions' environment: exactly the names of floodgate.settings.ENV, all set (some empty)."""
        d = self.detection
        return {
            ENV.NACL_IDS: ",".join(self.nacl_ids),
            ENV.VPC_ID: (self.vpc_id or "") if self.targets_vpc else "",
            ENV.VPC_CIDRS: ",".join(self.vpc_cidrs),
            ENV.RULE_START: str(d.rule_start),
            ENV.BUDGET: str(d.budget),
            ENV.NACL_QUOTA: str(d.nacl_quota),
            ENV.MIN_PPS: _num(d.min_pps),
            ENV.MIN_BPS: _num(d.min_bps),
            ENV.MIN_SHARE: _num(d.min_share),
            ENV.ALWAYS_PPS: "" if d.always_pps is None else _num(d.always_pps),
            ENV.ALLOW_CIDRS: ",".join(d.allow_cidrs),
            ENV.MAX_PREFIX_V4: str(d.max_prefix_v4),
            ENV.MAX_PREFIX_V6: str(d.max_prefix_v6),
            ENV.BASE_TTL: d.base_ttl,
            ENV.MAX_TTL: d.max_ttl,
            ENV.TTL_FACTOR: _num(d.ttl_factor),
            ENV.OFFENCE_MEMORY: d.offence_memory,
            ENV.EXTEND_ON_EVIDENCE: _flag(d.extend_on_evidence),
            ENV.OUTBOUND_MIRROR: _flag(d.outbound_mirror),
            ENV.DRY_RUN: _flag(d.dry_run),
            ENV.FLOW_LOG_FORMAT: self.flow_logs.format,
            ENV.WINDOW: d.window,
            ENV.ARM_TTL: d.arm_ttl,
            ENV.LOG_RETENTION_DAYS: str(d.log_retention_days),
            ENV.STATE_TABLE: state_table,
            ENV.LOG_TABLE: log_table,
            ENV.TOPIC_ARN: topic_arn,
        }


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _flag(value: bool) -> str:
    return "true" if value else "false"


class _ContextReader:
    """Typed reads of context values with defaults; problems are collected, not raised one by one."""

    def __init__(self, get: Callable[[str], Any]) -> None:
        self._get = get
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def raw(self, key: str) -> Any:
        if key not in DEFAULTS:  # a programming error, not a user one
            raise KeyError(f"unknown context key {key!r}")
        value = self._get(key)
        return DEFAULTS[key] if value is None else value

    def text(
        self, key: str, *, pattern: re.Pattern[str] | None = None, what: str = "", optional: bool = False
    ) -> str | None:
        value = self.raw(key)
        if value is None:
            value = ""
        if not isinstance(value, str):
            self.problem(f"{key}: expected text, got {value!r}")
            return None
        value = value.strip()
        if not value:
            if not optional and pattern is not None:
                self.problem(f"{key} is required ({what})")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.problem(f"{key}: {value!r} is not {what}")
            return None
        return value

    def choice(self, key: str, options: Sequence[str]) -> str:
        value = self.raw(key)
        text = str(value).strip()
        for option in options:
            if text.lower() == option.lower():
                return option
        self.problem(f"{key}: {value!r} is not one of {', '.join(options)}")
        return options[0]

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None or value == "":
            return ()
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    self.problem(f"{key}: not a JSON list ({exc})")
                    return ()
            else:
                return tuple(item.strip() for item in text.split(",") if item.strip())
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return tuple(item.strip() for item in value if item.strip())
        self.problem(f"{key}: expected a list of strings or comma-separated text, got {value!r}")
        return ()

    def cidrs(self, key: str) -> tuple[str, ...]:
        out: list[str] = []
        for item in self.strings(key):
            try:
                out.append(str(parse_network(item)))
            except InvalidCidr as exc:
                self.problem(f"{key}: {exc}")
        return tuple(out)

    def _number(self, key: str, *, optional: bool) -> float | None:
        value = self.raw(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if not optional:
                self.problem(f"{key} is required (a number)")
            return None
        if isinstance(value, bool):
            self.problem(f"{key}: expected a number, got {value!r}")
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.problem(f"{key}: expected a number, got {value!r}")
            return None
        if not math.isfinite(number):
            self.problem(f"{key}: expected a finite number, got {value!r}")
            return None
        return number

    def number(
        self, key: str, *, low: float, high: float | None = None, optional: bool = False
    ) -> float | None:
        number = self._number(key, optional=optional)
        if number is None:
            return None
        if number < low or (high is not None and number > high):
            bound = f"{low:g}..{high:g}" if high is not None else f">= {low:g}"
            self.problem(f"{key}: {number:g} is outside {bound}")
        return number

    def integer(self, key: str, *, low: int, high: int, optional: bool = False) -> Any:
        number = self._number(key, optional=optional)
        if number is None:
            return None if optional else low
        if not number.is_integer():
            self.problem(f"{key}: expected a whole number, got {number:g}")
            return low
        whole = int(number)
        if not low <= whole <= high:
            self.problem(f"{key}: {whole} is outside {low}..{high}")
        return whole

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        self.problem(f"{key}: expected true or false, got {value!r}")
        return False

    def duration(self, key: str) -> str | None:
        value = self.raw(key)
        text = str(value).strip()
        try:
            parse_duration(text)
        except ValueError as exc:
            self.problem(f"{key}: {exc}")
            return None
        return text

    def retention(self, key: str) -> int:
        days = self.integer(key, low=1, high=3653)
        if days not in RETENTION_DAYS:
            allowed = ", ".join(str(d) for d in RETENTION_DAYS)
            self.problem(f"{key}: {days} is not a CloudWatch Logs retention ({allowed})")
            return 30
        return int(days)

    def dimensions(self, key: str) -> tuple[tuple[str, str], ...]:
        value = self.raw(key)
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return ()
            if text.startswith("{"):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    self.problem(f"{key}: not a JSON object ({exc})")
                    return ()
            else:
                pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
                if any(len(pair) != 2 for pair in pairs):
                    self.problem(f"{key}: expected Name=Value,Name=Value or a JSON object, got {text!r}")
                    return ()
                value = {name.strip(): val.strip() for name, val in pairs}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in value.items()
        ):
            self.problem(f"{key}: expected a mapping of dimension name to value, got {value!r}")
            return ()
        if len(value) > 30:
            self.problem(f"{key}: at most 30 dimensions")
        return tuple(sorted(value.items()))
