"""How the services are put together from `Settings`: the engine, the window and their AWS clients.

One place for the production defaults, shared by the detector and the expirer so that both read the same
window the same way and enforce through identically configured engines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import boto3

from floodgate.adapters.ledger import Ledger
from floodgate.adapters.nacl import NaclGateway
from floodgate.adapters.retry import Retrier, client_config
from floodgate.adapters.window import TrafficWindow
from floodgate.core.detect import DetectionConfig
from floodgate.core.networks import DenyPolicy
from floodgate.core.summary import TrafficSummary
from floodgate.enforcement import EnforcementConfig, Enforcer
from floodgate.settings import Settings


def dynamodb_client(client: Any = None) -> Any:
    """The given client, or the default one every DynamoDB adapter of a service shares."""
    return client if client is not None else boto3.client("dynamodb", config=client_config())


def enforcer_for(
    settings: Settings,
    *,
    dynamodb: Any,
    ec2: Any = None,
    clock: Callable[[], float] = time.time,
    actor: str,
    retrier: Retrier | None = None,
) -> Enforcer:
    ledger = Ledger(
        settings.state_table,
        settings.log_table,
        dynamodb,
        log_retention_days=settings.log_retention_days,
        retrier=retrier,
    )
    gateway = NaclGateway(ec2, retrier=retrier)
    return Enforcer(EnforcementConfig.from_settings(settings), gateway, ledger, now=clock, actor=actor)


def detection_config(settings: Settings, policy: DenyPolicy) -> DetectionConfig:
    """The detection knobs of the settings, with the engine's deny policy (one policy for both)."""
    return DetectionConfig(
        policy=policy,
        min_pps=settings.min_pps,
        min_bps=settings.min_bps,
        min_share=settings.min_share,
        budget=settings.budget,
    )


def window_for(
    settings: Settings, detection: DetectionConfig, *, dynamodb: Any, retrier: Retrier | None = None
) -> TrafficWindow:
    """The shared window in the STATE table. Its summaries are sized so that every source or prefix above
    FLOODGATE_MIN_SHARE of the window's packets is found (`core.summary`)."""
    policy = detection.policy

    def new_summary() -> TrafficSummary:
        return TrafficSummary.for_share(
            detection.min_share, detection.member_floor_pps, policy.max_prefix_v4, policy.max_prefix_v6
        )

    return TrafficWindow(
        settings.state_table,
        window_s=settings.window_s,
        new_summary=new_summary,
        client=dynamodb,
        retrier=retrier,
    )
