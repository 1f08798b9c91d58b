"""What every Floodgate deployment stores: the ledger's two tables, the traffic window's, and the dead-letter
queues.

Shared by the single-account stack (`Enforcement`), the estate's member stack and the kinesis ingest, so
that a table or a queue is declared once: same keys, TTL, encryption and recovery wherever it is deployed.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from floodgate.tables import (
    LOG_BY_CIDR_INDEX,
    LOG_BY_CIDR_PARTITION_KEY,
    LOG_BY_CIDR_SORT_KEY,
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
)
from infra.nag import acknowledge


def ledger_tables(scope: Construct, *, retain: bool) -> tuple[dynamodb.Table, dynamodb.Table]:
    """The STATE table (ledger, leases, window) and the LOG table (the deny log, with its by-CIDR index)."""
    removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY
    state = _table(scope, "StateTable", removal)
    log = _table(scope, "LogTable", removal)
    log.add_global_secondary_index(
        index_name=LOG_BY_CIDR_INDEX,
        partition_key=dynamodb.Attribute(name=LOG_BY_CIDR_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name=LOG_BY_CIDR_SORT_KEY, type=dynamodb.AttributeType.STRING),
        projection_type=dynamodb.ProjectionType.ALL,
    )
    return state, log


def window_table(scope: Construct) -> dynamodb.Table:
    """The WINDOW table: the traffic window's deliveries and merged minutes, which TTL removes within hours.

    Apart from STATE so that the bulk of the writes (every delivery's parts) and of the items never share a
    table with the few long-lived ones a decision queries (arming, dependencies, the ledger). Destroyed with
    the stack whatever `retainTables` says: nothing in it outlives its hours.
    """
    table = _table(scope, "WindowTable", RemovalPolicy.DESTROY, recoverable=False)
    acknowledge(
        table,
        "AwsSolutions-DDB3",
        "The window holds minutes of traffic summaries that expire within hours; restoring it to an earlier "
        "point would only bring back evidence too old to count.",
    )
    return table


def dead_letter_queue(scope: Construct, construct_id: str, *, holds: str) -> sqs.Queue:
    """An encrypted queue keeping what could not be processed for 14 days. `holds` says what lands in it:
    cdk-nag's "no DLQ" finding is acknowledged with it (a DLQ of a DLQ would only move the same records)."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    acknowledge(
        queue,
        "AwsSolutions-SQS3",
        f"This queue is itself a dead-letter destination ({holds}); a DLQ of a DLQ would only move the same "
        "records again.",
    )
    return queue


def _table(
    scope: Construct, construct_id: str, removal: RemovalPolicy, *, recoverable: bool = True
) -> dynamodb.Table:
    return dynamodb.Table(
        scope,
        construct_id,
        partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        time_to_live_attribute=TTL_ATTRIBUTE,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=recoverable
        ),
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        removal_policy=removal,
    )
