"""Typed deployment settings of the Floodgate stack, read from CDK context and validated at synth.

The keys, their defaults, bounds and meanings are the rows of `floodgate.settings_table` that have a key
(cdk.json carries the same values, plus placeholder targets that are refused); `-c key=value` overrides
any of them. Values may come as JSON types (cdk.json) or as strings (`-c`), so the reader accepts both:
lists as JSON lists or comma-separated text, booleans as true/false, numbers as text.

Errors name the context key and the bad value, and all errors of one synth are reported together.
Every row with a variable ends up in the functions' environment (`runtime_environment`), which is checked
against `floodgate.settings.Settings.from_env` -- the handlers' own validation -- before anything is
synthesized.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias, cast

from floodgate.core.durations import parse_duration
from floodgate.core.flowlog import DEFAULT_FORMAT, STACK_FORMAT, FlowLogFormat
from floodgate.core.networks import InvalidCidr, parse_network
from floodgate.settings import ENV, NACL_ID, ConfigError, Settings
from floodgate.settings_table import BY_KEY, SETTINGS, Kind, Setting

# A context value once read: what the row's kind reads to.
Value: TypeAlias = str | int | float | bool | tuple[str, ...] | tuple[tuple[str, str], ...] | None


class SettingsError(ValueError):
    """One or more context values are missing or invalid; the message names every offending key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid Floodgate context ({len(self.problems)} problem(s)):\n{lines}")


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

ALARM_PERIODS = (10, 20, 30)  # or any multiple of 60
# The dimensions that name what Floodgate protects, for the namespaces an early alarm usually watches.
TARGET_DIMENSIONS: dict[str, frozenset[str]] = {
    "AWS/EC2": frozenset({"AutoScalingGroupName", "InstanceId"}),
    "AWS/ApplicationELB": frozenset({"LoadBalancer"}),
    "AWS/NetworkELB": frozenset({"LoadBalancer"}),
}
_ALARM_NAME = re.compile(r"[^\x00-\x1f]{1,255}")
_GROUP_NAME = re.compile(r"[^\x00-\x1f*]{1,255}")  # no wildcard: the IAM statement names each group
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_ACCOUNT = re.compile(r"\d{12}")
_OU = re.compile(r"ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}|r-[0-9a-z]{4,32}")


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
class HoldSettings:
    groups: tuple[str, ...]  # empty: the capacity hold is off
    max: str


@dataclass(frozen=True, slots=True)
class FunctionSettings:
    memory_mb: int
    timeout_s: int
    reserved_concurrency: int | None


@dataclass(frozen=True, slots=True)
class EstateSettings:
    """Many accounts: who decides (the security account, its bus and organization) and who enforces."""

    mode: str  # single | security | member
    organization_id: str | None
    member_ous: tuple[str, ...]
    member_accounts: tuple[str, ...]
    security_account: str | None
    security_bus: str
    reader_role: str
    code_bucket: str | None
    code_key: str


@dataclass(frozen=True, slots=True)
class FloodgateSettings:
    values: Mapping[str, Value]  # every context key, read and validated
    stack_name: str
    account: str | None
    region: str | None
    powertools_layer_version: int
    retain_tables: bool
    nacl_ids: tuple[str, ...]
    vpc_id: str | None
    vpc_cidrs: tuple[str, ...]
    flow_logs: FlowLogSettings
    alarm: AlarmSettings
    hold: HoldSettings
    detector: FunctionSettings
    expirer: FunctionSettings
    expirer_schedule_minutes: int
    async_retry_attempts: int
    async_max_event_age_s: int
    function_log_retention_days: int
    alert_emails: tuple[str, ...]
    estate: EstateSettings

    @property
    def targets_vpc(self) -> bool:
        """True when every NACL of the VPC is the target (no NACL ids given)."""
        return not self.nacl_ids

    @property
    def early_alarm_name(self) -> str:
        return f"{self.stack_name}-early-warning"

    @property
    def member_alarm_prefix(self) -> str:
        """Estate: a member's alarms whose names start with this are its Floodgate deployment's (forwarded to
        the security bus, and arming there) when existingAlarmNames names none."""
        return f"{self.stack_name}-"

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
        # Cross-check with the handlers' own validation, so a stack never ships an environment they reject
        # (the security stack ships no function: its members' run in member mode).
        environment = settings.runtime_environment(
            state_table="state", log_table="log", topic_arn="arn:topic", window_table="window"
        )
        if settings.estate.mode == "security":
            environment[ENV.MODE] = "member"
        try:
            Settings.from_env(environment)
        except ConfigError as exc:
            raise SettingsError([f"the functions would reject this configuration: {exc}"]) from None
        return settings

    @classmethod
    def from_mapping(cls, context: Mapping[str, Any]) -> FloodgateSettings:
        return cls.from_context(context.get)

    @classmethod
    def _read(cls, r: _ContextReader) -> FloodgateSettings:
        """Every key by its row, then what no single row can check."""
        for key in BY_KEY:
            r.read(key)
        account, region = r.optional_text("account"), r.optional_text("region")
        if (account is None) != (region is None):
            r.problem("account and region: set both (fixed environment) or neither (environment-agnostic)")

        nacl_ids = r.strings("naclIds")
        for nacl_id in nacl_ids:
            if not NACL_ID.fullmatch(nacl_id):
                r.problem(f"naclIds: {nacl_id!r} is not a NACL id (acl- and 8 or 17 hex digits)")
        if len(set(nacl_ids)) != len(nacl_ids):
            r.problem("naclIds: an id appears twice")
        vpc_id = r.optional_text("vpcId")
        estate = cls._read_estate(r)
        if not nacl_ids and vpc_id is None and estate.mode == "single":
            r.problem("naclIds / vpcId: set the NACL ids to protect, or a vpcId to protect all its NACLs")
        vpc_cidrs = r.strings("vpcCidrs")

        cls._check_bans(r)
        # Security and member stacks deploy no flow-log ingest of their own (README: multi-account).
        flow_logs = cls._read_flow_logs(r, vpc_id, ingests=estate.mode == "single")

        schedule = r.optional_text("expirerSchedule")
        schedule_minutes = 1
        if schedule is not None:
            seconds = parse_duration(schedule)
            if seconds % 60:
                r.problem(f"expirerSchedule={schedule}: use whole minutes (EventBridge rates are per minute)")
            schedule_minutes = max(1, seconds // 60)
        max_age = r.optional_text("asyncMaxEventAge")
        max_age_s = parse_duration(max_age) if max_age else 3600
        if not 60 <= max_age_s <= 21600:
            r.problem(f"asyncMaxEventAge={max_age}: must be between 1m and 6h")
        emails = r.strings("alertEmails")
        for email in emails:
            if not _EMAIL.fullmatch(email):
                r.problem(f"alertEmails: {email!r} is not an email address")
        return cls(
            values=dict(r.values),
            stack_name=r.optional_text("stackName") or "Floodgate",
            account=account,
            region=region,
            powertools_layer_version=r.integer("powertoolsLayerVersion"),
            retain_tables=r.value("tableRemovalPolicy") == "retain",
            nacl_ids=nacl_ids,
            vpc_id=vpc_id,
            vpc_cidrs=vpc_cidrs,
            flow_logs=flow_logs,
            alarm=cls._read_alarm(r, single=estate.mode == "single"),
            hold=cls._read_hold(r),
            detector=r.function("detector"),
            expirer=r.function("expirer"),
            expirer_schedule_minutes=schedule_minutes,
            async_retry_attempts=r.integer("asyncRetryAttempts"),
            async_max_event_age_s=max_age_s,
            function_log_retention_days=r.integer("functionLogRetentionDays"),
            alert_emails=emails,
            estate=estate,
        )

    @staticmethod
    def _read_estate(r: _ContextReader) -> EstateSettings:
        mode = str(r.value("mode"))
        members = r.strings("memberAccounts")
        security = r.optional_text("securityAccount")
        organization = r.optional_text("organizationId")
        ous = r.strings("memberOus")
        for account in members:
            if not _ACCOUNT.fullmatch(account):
                r.problem(f"memberAccounts: {account!r} is not a 12-digit account id")
        for ou in ous:
            if not _OU.fullmatch(ou):
                r.problem(f"memberOus: {ou!r} is not an organizational unit (ou-…) or root (r-…) id")
        if mode != "single" and security is None:
            r.problem(f"securityAccount: required in {mode} mode (the account that decides)")
        if security is not None and security in members:
            r.problem(f"memberAccounts: {security} is the security account, it cannot also be a member")
        if mode == "security":
            if organization is None:
                r.problem("organizationId: required in security mode (who may put events on the bus)")
            if not ous:
                r.problem("memberOus: required in security mode (where the StackSet deploys members)")
            if not members:
                r.problem("memberAccounts: required in security mode (whose events the estate accepts)")
            if r.optional_text("memberCodeBucket") is None:
                r.problem("memberCodeBucket: required in security mode (where members' functions come from)")
        return EstateSettings(
            mode=mode,
            organization_id=organization,
            member_ous=ous,
            member_accounts=members,
            security_account=security,
            security_bus=r.optional_text("securityBus") or "floodgate-estate",
            reader_role=r.optional_text("estateReaderRole") or "FloodgateEstateReader",
            code_bucket=r.optional_text("memberCodeBucket"),
            code_key=r.optional_text("memberCodeKey") or "floodgate/functions.zip",
        )

    @staticmethod
    def _check_bans(r: _ContextReader) -> None:
        budget, quota, rule_start = r.integer("budget"), r.integer("naclQuota"), r.integer("ruleStart")
        if budget + 2 > quota:
            r.problem(
                f"budget={budget} does not fit naclQuota={quota}: the budget, the default rule and one "
                "spare must fit in the rules-per-NACL quota"
            )
        if rule_start + 2 * (budget + 1) - 1 > 32766:
            r.problem(f"ruleStart={rule_start}: the owned block of 2 x (budget+1) rules runs past rule 32766")
        base_ttl, max_ttl = r.optional_text("baseTtl"), r.optional_text("maxTtl")
        if base_ttl and max_ttl and parse_duration(max_ttl) < parse_duration(base_ttl):
            r.problem(f"maxTtl={max_ttl} must not be shorter than baseTtl={base_ttl}")

    @staticmethod
    def _read_flow_logs(r: _ContextReader, vpc_id: str | None, *, ingests: bool) -> FlowLogSettings:
        group_name = r.optional_text("flowLogGroupName")
        if group_name is None and vpc_id is None and ingests:
            r.problem(
                "flowLogGroupName / vpcId: set vpcId to create a flow log, or name an existing log group"
            )
        format_text = r.optional_text("flowLogFormat") or "default"
        is_default = format_text.strip().lower() == "default"
        # "default": the stack's own flow log records the v5 fields detection uses (direction, TCP flags,
        # original source, AWS service); a log group someone else fills has AWS's default (version 2).
        default_format = DEFAULT_FORMAT if group_name is not None else STACK_FORMAT
        try:
            flow_format = FlowLogFormat.parse(default_format if is_default else format_text).text
        except ValueError as exc:
            r.problem(f"flowLogFormat: {exc}")
            flow_format = DEFAULT_FORMAT
        return FlowLogSettings(
            existing_group_name=group_name,
            format=flow_format,
            is_default_format=flow_format == FlowLogFormat.parse(DEFAULT_FORMAT).text,
            retention_days=r.integer("flowLogRetentionDays"),
            filter_pattern=r.optional_text("flowLogFilterPattern") or "",
        )

    @staticmethod
    def _read_alarm(r: _ContextReader, *, single: bool) -> AlarmSettings:
        # The security and member stacks create no early alarm (README: multi-account deployment).
        enabled = r.flag("alarmEnabled") and single
        period = r.integer("alarmPeriodSeconds")
        if period not in ALARM_PERIODS and period % 60:
            r.problem(f"alarmPeriodSeconds={period}: use 10, 20, 30 or a multiple of 60")
        threshold = r.number("alarmThreshold")
        evaluation = r.integer("alarmEvaluationPeriods")
        datapoints = r.integer("alarmDatapointsToAlarm")
        if datapoints > evaluation:
            r.problem(f"alarmDatapointsToAlarm={datapoints} exceeds alarmEvaluationPeriods={evaluation}")
        scale_threshold = r.optional_number("scaleOutThreshold")
        scale_evaluation = r.integer("scaleOutEvaluationPeriods")
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
        if single and not enabled and not existing:
            r.problem("alarmEnabled=false and no existingAlarmNames: nothing would ever arm the detector")
        namespace = r.optional_text("alarmNamespace") or ""
        metric_name = r.optional_text("alarmMetricName") or ""
        if enabled and not (namespace and metric_name):
            r.problem("alarmNamespace and alarmMetricName are required when alarmEnabled is true")
        dimensions = cast(tuple[tuple[str, str], ...], r.value("alarmDimensions"))
        missing = alarm_target_problem(namespace, dimensions) if enabled and namespace else None
        if missing:
            r.problem(f"alarmDimensions: {missing}")
        lambda_action = r.flag("alarmLambdaAction")
        if lambda_action and not enabled and single:
            r.problem("alarmLambdaAction=true needs alarmEnabled=true (only our own alarm gets the action)")
        return AlarmSettings(
            enabled=enabled,
            namespace=namespace,
            metric_name=metric_name,
            dimensions=dimensions,
            statistic=str(r.value("alarmStatistic")),
            period_s=period,
            threshold=threshold,
            evaluation_periods=evaluation,
            datapoints_to_alarm=datapoints,
            scale_out_threshold=scale_threshold,
            scale_out_evaluation_periods=scale_evaluation,
            existing_alarm_names=existing,
            lambda_action=lambda_action,
        )

    @staticmethod
    def _read_hold(r: _ContextReader) -> HoldSettings:
        enabled = r.flag("scaleOutHold")
        groups = r.strings("scaleOutHoldGroups")
        for group in groups:
            if not _GROUP_NAME.fullmatch(group):
                r.problem(f"scaleOutHoldGroups: {group!r} is not an Auto Scaling group name")
        if enabled and not groups:
            r.problem("scaleOutHoldGroups: name the Auto Scaling groups to hold (scaleOutHold is true)")
        maximum = r.optional_text("scaleOutHoldMax") or "10m"
        if not 60 <= parse_duration(maximum) <= 3600:
            r.problem(f"scaleOutHoldMax={maximum}: must be between 1m and 1h")
        return HoldSettings(groups=groups if enabled else (), max=maximum)

    def runtime_environment(
        self, *, state_table: str, log_table: str, topic_arn: str, window_table: str = ""
    ) -> dict[str, str]:
        """The functions' environment: every variable of the table, all set (some empty). `window_table`:
        where a stack that detects keeps the traffic window (a member's functions keep none)."""
        environment = {
            row.env: _env_text(self.values[row.key])
            for row in SETTINGS
            if row.key is not None and row.env is not None
        }
        environment[ENV.VPC_ID] = (self.vpc_id or "") if self.targets_vpc else ""
        environment[ENV.FLOW_LOG_FORMAT] = self.flow_logs.format
        environment[ENV.HOLD_GROUPS] = ",".join(self.hold.groups)  # none while scaleOutHold is off
        environment[ENV.ALARM_NAMES] = json.dumps(list(self.watched_alarm_names))
        environment[ENV.STATE_TABLE] = state_table
        environment[ENV.WINDOW_TABLE] = window_table
        environment[ENV.LOG_TABLE] = log_table
        environment[ENV.TOPIC_ARN] = topic_arn
        environment[ENV.MEMBER_ALARM_PREFIX] = (
            self.member_alarm_prefix if self.estate.mode == "security" else ""
        )
        environment[ENV.STREAM_FAILURES] = ""  # the kinesis ingest sets it, once its queue exists
        return environment


def alarm_target_problem(namespace: str, dimensions: Sequence[tuple[str, str]]) -> str | None:
    """Why an alarm on this metric would never see data, or None. AWS publishes its load balancers' and
    instances' metrics per resource: without the resource's dimension there is no data (the dimensionless
    AWS/EC2 aggregate needs detailed monitoring on every instance), and an alarm without data never arms."""
    names = {name for name, _ in dimensions}
    wanted = TARGET_DIMENSIONS.get(namespace)
    if wanted is not None and not names & wanted:
        return (
            f"{namespace} metrics need the protected resource's dimension ({' or '.join(sorted(wanted))}), "
            "e.g. -c alarmDimensions=AutoScalingGroupName=web-asg; without it the early alarm never fires "
            "and never arms Floodgate"
        )
    if wanted is None and namespace.startswith("AWS/") and not names:
        return f"{namespace} metrics are published per resource: name the one Floodgate protects"
    return None


def _env_text(value: Value) -> str:
    """A context value as the environment reader reads it back."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


class _ContextReader:
    """Typed reads of context values by their rows; problems are collected, not raised one by one."""

    def __init__(self, get: Callable[[str], Any]) -> None:
        self._get = get
        self.problems: list[str] = []
        self.values: dict[str, Value] = {}

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def read(self, key: str) -> None:
        row = BY_KEY[key]  # a KeyError is a programming error, not a user one
        raw = self._get(key)
        raw = row.default if raw is None else raw
        value = self._parsers[row.kind](self, row, raw)
        if row.placeholder and row.example is not None:
            examples = row.example if isinstance(row.example, list) else [row.example]
            for item in value if isinstance(value, tuple) else (value,):
                if item in examples:
                    self.problem(
                        f"{key}: {item!r} is cdk.json's placeholder example, not a real id: "
                        f"set your own (-c {key}=…)"
                    )
        self.values[key] = value

    # Typed access to what `read` found; a wrong type here is a programming error, not a user one.
    def value(self, key: str) -> Value:
        return self.values[key]

    def optional_text(self, key: str) -> str | None:
        value = self.values[key]
        assert value is None or isinstance(value, str), key
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.values[key]
        assert isinstance(value, tuple) and all(isinstance(item, str) for item in value), key
        return cast(tuple[str, ...], value)

    def optional_integer(self, key: str) -> int | None:
        value = self.values[key]
        assert value is None or (isinstance(value, int) and not isinstance(value, bool)), key
        return value

    def integer(self, key: str) -> int:
        value = self.optional_integer(key)
        assert value is not None, key
        return value

    def optional_number(self, key: str) -> float | None:
        value = self.values[key]
        assert value is None or isinstance(value, float), key
        return value

    def number(self, key: str) -> float:
        value = self.optional_number(key)
        assert value is not None, key
        return value

    def flag(self, key: str) -> bool:
        value = self.values[key]
        assert isinstance(value, bool), key
        return value

    def function(self, name: str) -> FunctionSettings:
        return FunctionSettings(
            memory_mb=self.integer(f"{name}MemoryMb"),
            timeout_s=self.integer(f"{name}TimeoutSeconds"),
            reserved_concurrency=self.optional_integer(f"{name}ReservedConcurrency"),
        )

    # One parser per kind of row: (row, raw value) -> value, a problem noted for a bad one.
    def _text(self, row: Setting, value: Any) -> str | None:
        key = row.key
        if value is None:
            value = ""
        if not isinstance(value, str):
            self.problem(f"{key}: expected text, got {value!r}")
            return None
        text: str = value.strip()
        if not text:
            if not row.optional and row.pattern is not None:
                self.problem(f"{key} is required ({row.what})")
            return None
        if row.pattern is not None and not re.fullmatch(row.pattern, text):
            self.problem(f"{key}: {text!r} is not {row.what}")
            return None
        return text

    def _choice(self, row: Setting, value: Any) -> str:
        text = str(value).strip()
        for option in row.choices:
            if text.lower() == option.lower():
                return option
        self.problem(f"{row.key}: {value!r} is not one of {', '.join(row.choices)}")
        return row.choices[0]

    def _strings(self, row: Setting, value: Any) -> tuple[str, ...]:
        key = row.key
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

    def _cidrs(self, row: Setting, value: Any) -> tuple[str, ...]:
        out: list[str] = []
        for item in self._strings(row, value):
            try:
                out.append(str(parse_network(item)))
            except InvalidCidr as exc:
                self.problem(f"{row.key}: {exc}")
        # A member reads its VPC's blocks from EC2; the security account protects no VPC.
        estate = row.key == "vpcCidrs" and self._get("mode") in ("security", "member")
        if not out and not row.optional and not estate:
            self.problem(f"{row.key} is required: {row.meaning}")
        return tuple(out)

    def _finite(self, row: Setting, value: Any) -> float | None:
        key = row.key
        if value is None or (isinstance(value, str) and not value.strip()):
            if not row.optional:
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

    def _number(self, row: Setting, value: Any) -> float | None:
        low, high = float(row.low or 0.0), row.high
        number = self._finite(row, value)
        if number is None:
            return None if row.optional else low
        if number < low or (high is not None and number > high):
            bound = f"{low:g}..{high:g}" if high is not None else f">= {low:g}"
            self.problem(f"{row.key}: {number:g} is outside {bound}")
        return number

    def _int(self, row: Setting, value: Any) -> int | None:
        low, high = int(row.low or 0), int(row.high or 0)
        number = self._finite(row, value)
        if number is None:
            return None if row.optional else low
        if not number.is_integer():
            self.problem(f"{row.key}: expected a whole number, got {number:g}")
            return low
        whole = int(number)
        if not low <= whole <= high:
            self.problem(f"{row.key}: {whole} is outside {low}..{high}")
        return whole

    def _flag(self, row: Setting, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        self.problem(f"{row.key}: expected true or false, got {value!r}")
        return False

    def _duration(self, row: Setting, value: Any) -> str | None:
        text = str(value).strip()
        try:
            parse_duration(text)
        except ValueError as exc:
            self.problem(f"{row.key}: {exc}")
            return None
        return text

    def _retention(self, row: Setting, value: Any) -> int:
        days = self._int(row, value) or 0
        if days not in RETENTION_DAYS:
            allowed = ", ".join(str(d) for d in RETENTION_DAYS)
            self.problem(f"{row.key}: {days} is not a CloudWatch Logs retention ({allowed})")
            return 30
        return days

    def _dimensions(self, row: Setting, value: Any) -> tuple[tuple[str, str], ...]:
        key = row.key
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

    _parsers: ClassVar[dict[Kind, Callable[[_ContextReader, Setting, Any], Value]]] = {
        "text": _text,
        "format": _text,
        "choice": _choice,
        "strings": _strings,
        "cidrs": _cidrs,
        "int": _int,
        "number": _number,
        "flag": _flag,
        "duration": _duration,
        "retention": _retention,
        "dimensions": _dimensions,
    }
