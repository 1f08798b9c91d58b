"""Names shared by the handlers that emit metrics and the stack that graphs and alarms on them."""

from __future__ import annotations

SERVICE_NAME = "floodgate"
METRIC_NAMESPACE = "Floodgate"


class METRIC:
    """CloudWatch metric names (EMF, via powertools Metrics)."""

    RECORDS_PARSED = "RecordsParsed"
    RECORDS_SKIPPED = "RecordsSkipped"
    WINDOW_WRITES = "WindowWrites"
    STREAM_RECORDS_UNREADABLE = "StreamRecordsUnreadable"  # kinesis ingest: records holding no delivery
    DENIES_ACTIVE = "DeniesActive"  # also emitted with a NaclId dimension, one series per NACL
    BLOCKS = "Blocks"
    EXTENSIONS = "Extensions"
    EVICTIONS = "Evictions"
    EXPIRIES = "Expiries"
    UNBLOCKS = "Unblocks"
    REFUSALS = "Refusals"
    REPAIRS = "Repairs"
    QUARANTINES = "Quarantines"  # entries EC2 refused as invalid: their denies dropped
    PENDING_DENIES = "PendingDenies"  # entries that could not be written in time (a later run writes them)
    FOREIGN_ENTRIES = "ForeignEntries"  # foreign entries found in the owned rules (each counted once)
    NACL_FAILURES = "NaclFailures"  # NACLs whose convergence failed in one invocation (the others went on)
    DECISION_LATENCY_MS = "DecisionLatencyMs"
    INBOUND_PPS = "InboundPps"  # the window's inbound packet rate (detector decisions, expirer samples)
    DENIED_ACCEPT_PPS = "DeniedAcceptPps"  # from sources denied now, let through (should fall to 0)
    DENIED_REJECT_PPS = "DeniedRejectPps"  # from sources denied now, stopped by the NACLs
    INGEST_LAG_S = "IngestLagS"  # per stored delivery: when it was stored - its latest record's end
    DECISION_AGE_S = "DecisionAgeS"  # at each armed decision: since the last one completed (or the arming)
    DECISION_FAILURES = "DecisionFailures"  # decisions that raised (the invocation fails too, and is retried)
    DECISIONS_PUBLISHED = "DecisionsPublished"  # security account: member decisions put on the estate bus
    MEMBER_ALARMS_REFUSED = (
        "MemberAlarmsRefused"  # security account: alarm events that armed nothing, and why
    )
    STREAM_RANGES_REPLAYED = "StreamRangesReplayed"  # kinesis: failed ranges read back and stored
    STREAM_RANGES_LOST = "StreamRangesLost"  # kinesis: failed ranges no longer in the stream (trimmed)


# How far behind is "behind" (the alarms in infra.falling_behind, and `floodgate status`).
# Ingest: a record whose end is older than the window plus the late-delivery allowance (20 minutes,
# adapters.window.LATE_DELIVERY_S) is skipped as too old, so a delivery stored that late no longer counts:
# Floodgate is blind to what it carries.
INGEST_LAG_ALARM_S = 1200
# Decisions: armed, a decision is due every 20 s of deliveries (services.detection.DECISION_PACE_S); five
# minutes without one completing is fifteen missed, a whole detection window of a flood left standing.
DECISION_AGE_ALARM_S = 300


class OUTPUT:
    """CloudFormation output keys the CLI reads with `--stack`."""

    STATE_TABLE = "StateTableName"
    LOG_TABLE = "LogTableName"
    DETECTOR_FUNCTION = "DetectorFunctionName"
    EXPIRER_FUNCTION = "ExpirerFunctionName"
    TOPIC_ARN = "TopicArn"
    NACL_IDS = "NaclIds"  # comma-separated, empty when the VPC is the target
    VPC_ID = "VpcId"
    FAILURE_QUEUE = "FailureQueueUrl"  # the functions' on-failure destination (`status`, `replay`)


# The members' StackSet (infra.estate) is named after the security stack; CloudFormation names each member's
# stack StackSet-<StackSet name>-<id>, which is how `floodgate status --all` finds it in a member account.
MEMBER_STACK_SET = "{}-member"
MEMBER_ACCOUNTS_OUTPUT = "MemberAccounts"  # the security stack's output: the estate's member accounts

# Lambda handler entry points, relative to the `functions/` asset root.
DETECTOR_HANDLER = "floodgate.handlers.detector.lambda_handler"
EXPIRER_HANDLER = "floodgate.handlers.expirer.lambda_handler"
MEMBER_HANDLER = "floodgate.handlers.member.lambda_handler"
MEMBER_EXPIRY_HANDLER = "floodgate.handlers.member.expiry_handler"
SECURITY_HANDLER = "floodgate.handlers.security.lambda_handler"
