"""Names shared by the handlers that emit metrics and the stack that graphs and alarms on them."""

from __future__ import annotations

SERVICE_NAME = "floodgate"
METRIC_NAMESPACE = "Floodgate"


class METRIC:
    """CloudWatch metric names (EMF, via powertools Metrics)."""

    RECORDS_PARSED = "RecordsParsed"
    RECORDS_SKIPPED = "RecordsSkipped"
    WINDOW_WRITES = "WindowWrites"
    DENIES_ACTIVE = "DeniesActive"  # also emitted with a NaclId dimension, one series per NACL
    BLOCKS = "Blocks"
    EXTENSIONS = "Extensions"
    EVICTIONS = "Evictions"
    EXPIRIES = "Expiries"
    UNBLOCKS = "Unblocks"
    REFUSALS = "Refusals"
    REPAIRS = "Repairs"
    QUARANTINES = "Quarantines"  # entries EC2 refused as invalid: their denies dropped
    FOREIGN_ENTRIES = "ForeignEntries"  # foreign entries found in the owned rules (each counted once)
    NACL_FAILURES = "NaclFailures"  # NACLs whose convergence failed in one invocation (the others went on)
    DECISION_LATENCY_MS = "DecisionLatencyMs"
    INBOUND_PPS = "InboundPps"  # the window's inbound packet rate (detector decisions, expirer samples)
    DENIED_ACCEPT_PPS = "DeniedAcceptPps"  # from sources denied now, let through (should fall to 0)
    DENIED_REJECT_PPS = "DeniedRejectPps"  # from sources denied now, stopped by the NACLs


class OUTPUT:
    """CloudFormation output keys the CLI reads with `--stack`."""

    STATE_TABLE = "StateTableName"
    LOG_TABLE = "LogTableName"
    DETECTOR_FUNCTION = "DetectorFunctionName"
    EXPIRER_FUNCTION = "ExpirerFunctionName"
    TOPIC_ARN = "TopicArn"
    NACL_IDS = "NaclIds"  # comma-separated, empty when the VPC is the target
    VPC_ID = "VpcId"


# The members' StackSet (infra.estate) is named after the security stack; CloudFormation names each member's
# stack StackSet-<StackSet name>-<id>, which is how `floodgate status --all` finds it in a member account.
MEMBER_STACK_SET = "{}-member"
MEMBER_ACCOUNTS_OUTPUT = "MemberAccounts"  # the security stack's output: the estate's member accounts

# Lambda handler entry points, relative to the `functions/` asset root.
DETECTOR_HANDLER = "floodgate.handlers.detector.lambda_handler"
EXPIRER_HANDLER = "floodgate.handlers.expirer.lambda_handler"
MEMBER_HANDLER = "floodgate.handlers.member.lambda_handler"
MEMBER_EXPIRY_HANDLER = "floodgate.handlers.member.expiry_handler"
