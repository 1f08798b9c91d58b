"""Everything you can configure in Floodgate, and what it means: one row per setting.

A row names the CDK context key (cdk.json, `-c key=value`), the functions' environment variable, the type,
the default, the bounds or choices, and one line of meaning. Both readers work from these rows: the
synth-time context reader (infra/settings.py, errors name the key) and the cold-start environment reader
(floodgate/settings.py, errors name the variable); so does the environment the stack gives the functions
(every row with both a key and a variable). A row without a variable is a deployment setting the functions
never see; a row without a key is set by the stack itself. cdk.json's context and the README's table are
written from here by `make docs`, and a test fails on any difference.

Adding a knob is one row here, plus the code that uses it (for a runtime knob: a field of
`floodgate.settings.Settings`, named after the variable, with `_s` for a duration in seconds).

Plain data: no CDK and no boto3.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, replace
from typing import Literal, TypeAlias

Json: TypeAlias = str | int | float | bool | list[str] | dict[str, str] | None

# text: one string (`pattern` and `what` name its form); choice: one of `choices`; strings: a list (JSON
# list or comma-separated text); cidrs: a list of CIDR blocks; int / number: within `low`..`high`;
# flag: true/false; duration: 90s, 30m, 2h, 7d; retention: CloudWatch Logs retention days;
# dimensions: Name=Value pairs or a JSON object; format: "default" or a "${field} ..." flow-log format;
# names: a JSON list of names that may hold commas (alarm names), set by the stack.
Kind: TypeAlias = Literal[
    "text",
    "choice",
    "strings",
    "cidrs",
    "int",
    "number",
    "flag",
    "duration",
    "retention",
    "dimensions",
    "format",
    "names",
]

ENV_PREFIX = "FLOODGATE_"


@dataclass(frozen=True, slots=True)
class Setting:
    key: str | None  # CDK context key; None: set by the stack itself, not configurable
    env: str | None  # environment variable of the functions; None: used at synth only
    kind: Kind
    default: Json  # the same on both sides; cdk.json carries it unless `example` is given
    _: KW_ONLY
    meaning: str  # one line, for the README
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # regular expression a text value must match in full
    what: str = ""  # what a text value is, for errors: "a VPC id (vpc-…)"
    optional: bool = False  # may be left empty (null, "") to mean none; a required list must not be empty
    example: Json = None  # cdk.json's value instead of the default
    placeholder: bool = False  # `example` is not real: refused at synth
    area: str = ""


def _area(name: str, *rows: Setting) -> tuple[Setting, ...]:
    return tuple(replace(row, area=name) for row in rows)


# One row per setting, grouped as the README shows them. Kept as a table by hand, not by the formatter.
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    *_area(
        "Stack",
        Setting("stackName", None, "text", "Floodgate", pattern="[A-Za-z][A-Za-z0-9-]{0,99}",
            what="a CloudFormation stack name",
            meaning="the CloudFormation stack; prefixes the early alarm's name"),
        Setting("account", None, "text", "", pattern=r"\d{12}", what="a 12-digit account id", optional=True,
            meaning="account to pin the stack to; empty (with region): environment-agnostic"),
        Setting("region", None, "text", "", pattern=r"[a-z]{2}(-[a-z]+)+-\d",
            what="a region such as eu-west-1", optional=True,
            meaning="region to pin the stack to; set both account and region, or neither"),
        Setting("powertoolsLayerVersion", None, "int", 27, low=1, high=10000,
            meaning="version of the public layer AWSLambdaPowertoolsPythonV3-python313-arm64"),
        Setting("tableRemovalPolicy", None, "choice", "retain", choices=("retain", "destroy"),
            meaning="what deleting the stack does to the two tables"),
    ),
    *_area(
        "Target",
        Setting("naclIds", "FLOODGATE_NACL_IDS", "strings", [], example=["acl-0123456789abcdef0"],
            placeholder=True,
            meaning="the NACLs to protect; empty: every NACL of vpcId"),
        Setting("vpcId", "FLOODGATE_VPC_ID", "text", "", pattern="vpc-[0-9a-f]{8,17}",
            what="a VPC id (vpc-…)", optional=True, example="vpc-0123456789abcdef0", placeholder=True,
            meaning="the VPC: its flow log feeds the detector"),
        Setting("vpcCidrs", "FLOODGATE_VPC_CIDRS", "cidrs", [], example=["10.0.0.0/16"],
            meaning="the VPC's CIDR blocks (traffic to them is inbound)"),
        Setting("allowCidrs", "FLOODGATE_ALLOW_CIDRS", "cidrs", [], optional=True,
            meaning="sources that are never denied"),
    ),
    *_area(
        "Detection",
        Setting("ruleStart", "FLOODGATE_RULE_START", "int", 100, low=1, high=32766,
            meaning="first rule number of the owned block of 2 × (budget + 1) rules"),
        Setting("budget", "FLOODGATE_BUDGET", "int", 10, low=1, high=38,
            meaning="deny entries per NACL, direction and address family"),
        Setting("naclQuota", "FLOODGATE_NACL_QUOTA", "int", 20, low=3, high=40,
            meaning="the account's rules per NACL, direction and family, default rule included"),
        Setting("minPps", "FLOODGATE_MIN_PPS", "number", 5000, low=0.0,
            meaning="a source below this packet rate is never denied"),
        Setting("minBps", "FLOODGATE_MIN_BPS", "number", 0, low=0.0,
            meaning="a source below this byte rate is never denied"),
        Setting("minShare", "FLOODGATE_MIN_SHARE", "number", 0.01, low=0.0001, high=1.0,
            meaning="smallest share of inbound packets a denied source has"),
        Setting("alwaysPps", "FLOODGATE_ALWAYS_PPS", "number", None, low=1.0, optional=True,
            meaning="above this rate a source is denied without an armed alarm; null: never"),
        Setting("maxPrefixV4", "FLOODGATE_MAX_PREFIX_V4", "int", 16, low=8, high=32,
            meaning="widest IPv4 prefix one deny entry may cover"),
        Setting("maxPrefixV6", "FLOODGATE_MAX_PREFIX_V6", "int", 48, low=16, high=128,
            meaning="widest IPv6 prefix one deny entry may cover"),
        Setting("window", "FLOODGATE_WINDOW", "duration", "5m",
            meaning="length of the sliding window rates are measured over"),
        Setting("clockSkew", "FLOODGATE_CLOCK_SKEW", "duration", "5m",
            meaning="how far in the future a record or alarm timestamp may be before it is refused"),
    ),
    *_area(
        "Bans",
        Setting("baseTtl", "FLOODGATE_BASE_TTL", "duration", "30m",
            meaning="length of a first ban"),
        Setting("maxTtl", "FLOODGATE_MAX_TTL", "duration", "24h",
            meaning="longest ban; no shorter than baseTtl"),
        Setting("ttlFactor", "FLOODGATE_TTL_FACTOR", "number", 2, low=1.0, high=100.0,
            meaning="each repeat offence multiplies the ban by this"),
        Setting("offenceMemory", "FLOODGATE_OFFENCE_MEMORY", "duration", "7d",
            meaning="how long a past offence counts toward a longer ban"),
        Setting("extendOnEvidence", "FLOODGATE_EXTEND_ON_EVIDENCE", "flag", True,
            meaning="a ban whose source still floods is extended"),
        Setting("outboundMirror", "FLOODGATE_OUTBOUND_MIRROR", "flag", False,
            meaning="also deny traffic to the source in the outbound rules"),
        Setting("dryRun", "FLOODGATE_DRY_RUN", "flag", False,
            meaning="plan and log denies, write no NACL entry"),
        Setting("armTtl", "FLOODGATE_ARM_TTL", "duration", "30m",
            meaning="an ALARM arms enforcement for at most this long without a refresh"),
        Setting("logRetentionDays", "FLOODGATE_LOG_RETENTION_DAYS", "int", 90, low=1, high=3650,
            meaning="days the deny log keeps an item (TTL)"),
    ),
    *_area(
        "Flow logs",
        Setting("flowLogGroupName", None, "text", "", pattern=r"[\w\-./#]{1,512}", what="a log group name",
            optional=True,
            meaning="existing flow-log group to subscribe; empty: create a 60 s flow log for vpcId"),
        Setting("flowLogFormat", "FLOODGATE_FLOW_LOG_FORMAT", "format", "default",
            meaning="\"default\" (v5 for the stack's own flow log, v2 for a brought group) or \"${f} ...\""),
        Setting("flowLogRetentionDays", None, "retention", 7, low=1, high=3653,
            meaning="days the flow-log group keeps records"),
        Setting("flowLogFilterPattern", None, "text", "", optional=True,
            meaning="subscription filter pattern; empty: every record"),
    ),
    *_area(
        "Kinesis ingest",
        Setting("ingest", "FLOODGATE_INGEST", "choice", "subscription", choices=("subscription", "kinesis"),
            meaning="flow logs to the detector directly, or through a Kinesis stream (big VPCs; see README)"),
        Setting("kinesisShards", None, "int", 2, low=1, high=500,
            meaning="shards of the flow-log stream (each takes 1 MB/s or 1,000 records/s in)"),
        Setting("kinesisBatchSize", None, "int", 100, low=1, high=10000,
            meaning="stream records (flow-log deliveries) per detector invocation, at most"),
        Setting("kinesisBatchWindow", None, "duration", "5s",
            meaning="longest the mapping gathers records before invoking: 0s to 5m"),
        Setting("kinesisTumblingWindow", None, "duration", "30s",
            meaning="a shard's deliveries are summed in the mapping's state this long, then stored: 1s-15m"),
        Setting("kinesisParallelization", None, "int", 2, low=1, high=10,
            meaning="concurrent detector invocations per shard"),
        Setting("kinesisMaxRecordAge", None, "duration", "1h",
            meaning="a record older than this goes to the failure queue unread: 1m to 7d"),
        Setting("decisionSchedule", None, "duration", "1m",
            meaning="kinesis ingest: how often the scheduled decision runs, in whole minutes"),
        Setting("windowShards", "FLOODGATE_WINDOW_SHARDS", "int", 1, low=1, high=16,
            meaning="partitions per minute of the traffic window; writers spread, decisions read all"),
    ),
    *_area(
        "Early alarm",
        Setting("alarmEnabled", None, "flag", True,
            meaning="create the early-warning alarm that arms the detector"),
        Setting("alarmNamespace", None, "text", "AWS/EC2",
            meaning="namespace of the metric the early alarm watches"),
        Setting("alarmMetricName", None, "text", "NetworkPacketsIn",
            meaning="the metric the early alarm watches"),
        Setting("alarmDimensions", None, "dimensions", {}, example={"AutoScalingGroupName": "web-asg"},
            meaning="dimensions of what you protect (required for AWS/* metrics): Name=Value,… or JSON"),
        Setting("alarmStatistic", None, "choice", "Sum",
            choices=("Sum", "Average", "Maximum", "Minimum", "SampleCount"),
            meaning="statistic of the early alarm"),
        Setting("alarmPeriodSeconds", None, "int", 60, low=10, high=86400,
            meaning="period of the early alarm: 10, 20, 30 or n × 60"),
        Setting("alarmThreshold", None, "number", 300000, low=0.0,
            meaning="threshold of the early alarm"),
        Setting("alarmEvaluationPeriods", None, "int", 1, low=1, high=100,
            meaning="evaluation periods of the early alarm"),
        Setting("alarmDatapointsToAlarm", None, "int", 1, low=1, high=100,
            meaning="datapoints to alarm, at most the evaluation periods"),
        Setting("scaleOutThreshold", None, "number", None, low=0.0, optional=True,
            meaning="the scale-out policy's threshold on the same metric; the early alarm must be below"),
        Setting("scaleOutEvaluationPeriods", None, "int", 3, low=1, high=100,
            meaning="the scale-out policy's evaluation periods; the early alarm must not need more"),
        Setting("existingAlarmNames", None, "strings", [],
            meaning="your own alarms whose ALARM also arms the detector"),
        Setting("alarmLambdaAction", None, "flag", False,
            meaning="the early alarm also invokes the detector directly"),
    ),
    *_area(
        "Capacity hold",
        Setting("scaleOutHold", None, "flag", False,
            meaning="hold the named Auto Scaling groups at their capacity while the evidence arrives"),
        Setting("scaleOutHoldGroups", "FLOODGATE_HOLD_GROUPS", "strings", [],
            meaning="the Auto Scaling groups to hold (required when scaleOutHold is true)"),
        Setting("scaleOutHoldMax", "FLOODGATE_HOLD_MAX", "duration", "10m",
            meaning="a hold ends after this long at the latest: 1m to 1h"),
    ),
    *_area(
        "Functions",
        Setting("detectorMemoryMb", None, "int", 512, low=128, high=10240,
            meaning="memory of the detector"),
        Setting("detectorTimeoutSeconds", None, "int", 60, low=1, high=900,
            meaning="timeout of the detector"),
        Setting("detectorReservedConcurrency", None, "int", 2, low=1, high=1000, optional=True,
            meaning="reserved concurrency of the detector; empty: none"),
        Setting("expirerMemoryMb", None, "int", 256, low=128, high=10240,
            meaning="memory of the expirer"),
        Setting("expirerTimeoutSeconds", None, "int", 60, low=1, high=900,
            meaning="timeout of the expirer"),
        Setting("expirerReservedConcurrency", None, "int", 1, low=1, high=1000, optional=True,
            meaning="reserved concurrency of the expirer; empty: none"),
        Setting("expirerSchedule", None, "duration", "1m",
            meaning="how often the expirer runs, in whole minutes"),
        Setting("asyncRetryAttempts", None, "int", 2, low=0, high=2,
            meaning="retries of a failed asynchronous invocation"),
        Setting("asyncMaxEventAge", None, "duration", "1h",
            meaning="oldest asynchronous event still run: 1m to 6h"),
        Setting("functionLogRetentionDays", None, "retention", 30, low=1, high=3653,
            meaning="days the functions' log groups keep logs"),
    ),
    *_area(
        "Notifications",
        Setting("alertEmails", None, "strings", [],
            meaning="addresses subscribed to the notification topic"),
    ),
    *_area(
        "Estate (many accounts)",
        Setting("mode", "FLOODGATE_MODE", "choice", "single", choices=("single", "security", "member"),
            meaning="single: one account; security: the estate's bus and StackSet; member: enforces "
            "decisions"),
        Setting("organizationId", None, "text", "", pattern="o-[a-z0-9]{10,32}",
            what="an organization id (o-…)", optional=True,
            meaning="security: the AWS Organization whose accounts may put events on the bus"),
        Setting("memberOus", None, "strings", [],
            meaning="security: the organizational units (ou-… or r-…) the StackSet deploys members to"),
        Setting("memberAccounts", "FLOODGATE_MEMBER_ACCOUNTS", "strings", [],
            meaning="the member accounts the estate accepts events from and `status --all` reads"),
        Setting("securityAccount", "FLOODGATE_SECURITY_ACCOUNT", "text", "", pattern=r"\d{12}",
            what="a 12-digit account id", optional=True,
            meaning="security and member: the account that decides and owns the bus"),
        Setting("securityBus", "FLOODGATE_SECURITY_BUS", "text", "floodgate-estate",
            pattern=r"[A-Za-z0-9._\-]{1,256}", what="an event bus name",
            meaning="name of the security account's event bus"),
        Setting("decisionMaxAge", "FLOODGATE_DECISION_MAX_AGE", "duration", "10m",
            meaning="member: a decision older than this is refused, not applied late"),
        Setting("memberVpcTag", "FLOODGATE_MEMBER_VPC_TAG", "text", "floodgate:protect",
            pattern=r"[\w.:/=+\-@ ]{1,128}", what="a tag key",
            meaning="member: the one VPC of the account carrying this tag key is the one protected"),
        Setting("memberCodeBucket", None, "text", "", pattern=r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]",
            what="an S3 bucket name", optional=True,
            meaning="security: the bucket (readable by the organization) holding the members' function zip"),
        Setting("memberCodeKey", None, "text", "floodgate/functions.zip", pattern=r"[\w!\-.*'()/]{1,1024}",
            what="an S3 object key", meaning="security: the key of the members' function zip in that bucket"),
        Setting("estateReaderRole", "FLOODGATE_ESTATE_READER_ROLE", "text", "FloodgateEstateReader",
            pattern=r"[\w+=,.@\-]{1,64}", what="an IAM role name",
            meaning="member: the read-only role the security account assumes (`status --all`, member VPCs)"),
    ),
    *_area(
        "Set by the stack",
        Setting(None, "FLOODGATE_STATE_TABLE", "text", None,
            meaning="the state table (arming, ledger, leases, dependencies)"),
        Setting(None, "FLOODGATE_WINDOW_TABLE", "text", None, optional=True,
            meaning="the traffic-window table (deliveries, merged minutes); empty: the state table"),
        Setting(None, "FLOODGATE_LOG_TABLE", "text", None,
            meaning="the deny-log table"),
        Setting(None, "FLOODGATE_TOPIC_ARN", "text", None, optional=True,
            meaning="the notification topic; empty: no notifications"),
        Setting(None, "FLOODGATE_ALARM_NAMES", "names", [], optional=True,
            meaning="the only alarms that arm: the early alarm and existingAlarmNames; empty: none"),
        Setting(None, "FLOODGATE_MEMBER_ALARM_PREFIX", "text", None, optional=True,
            meaning="security: a member's alarm arms when its name starts with this (no existingAlarmNames)"),
        Setting(None, "FLOODGATE_STREAM_FAILURES", "text", None, optional=True,
            meaning="kinesis: the stream mapping's on-failure queue, whose ranges are replayed; empty: none"),
    ),
)
# fmt: on

BY_KEY: dict[str, Setting] = {row.key: row for row in SETTINGS if row.key is not None}
BY_ENV: dict[str, Setting] = {row.env: row for row in SETTINGS if row.env is not None}


def cdk_context() -> dict[str, Json]:
    """cdk.json's `context`: every key with its default, or its example where the row gives one."""
    return {key: row.default if row.example is None else row.example for key, row in BY_KEY.items()}
