"""How the services are put together from `Settings`: the engine, the window and their AWS clients.

One place for the production defaults, shared by the detector and the expirer so that both read the same
window the same way and enforce through identically configured engines.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from floodgate.adapters.arming import Arming
from floodgate.adapters.autoscaling import ScalingGroups
from floodgate.adapters.health import HealthRecords
from floodgate.adapters.holds import HoldRecords
from floodgate.adapters.ledger import Ledger
from floodgate.adapters.nacl import NaclGateway
from floodgate.adapters.notify import Notifier
from floodgate.adapters.retry import Retrier, default_client
from floodgate.adapters.vpc import union_with_vpc, vpc_cidr_blocks
from floodgate.adapters.window import TrafficWindow
from floodgate.core.decision import EnforcementConfig
from floodgate.core.detect import DetectionConfig
from floodgate.core.networks import DenyPolicy
from floodgate.core.summary import TrafficSummary
from floodgate.engine.enforcer import Enforcer
from floodgate.services.capacity_hold import CapacityHold
from floodgate.settings import Settings


@dataclass(frozen=True)
class Wiring:
    """How a service reaches AWS and tells time: its clients (None: the production default, one DynamoDB
    client shared by every DynamoDB adapter), the retry policy, and the wall clock."""

    clock: Callable[[], float] = time.time
    dynamodb: Any = None
    ec2: Any = None
    sns: Any = None
    autoscaling: Any = None
    retrier: Retrier | None = None

    def known_vpc(self, settings: Settings) -> Settings:
        """The settings with `vpc_cidrs` widened to every IPv4 and IPv6 block of the protected VPC, read from
        EC2 (VPC_ID, or the NACLs' VPC). Raises UnknownVpcCidr when a configured CIDR is not the VPC's."""
        vpc_ids, blocks = vpc_cidr_blocks(
            vpc_id=settings.vpc_id, nacl_ids=settings.nacl_ids, client=self.ec2, retrier=self.retrier
        )
        return dataclasses.replace(settings, vpc_cidrs=union_with_vpc(settings.vpc_cidrs, vpc_ids, blocks))

    def parts(self, settings: Settings, *, actor: str) -> ServiceParts:
        """The engine, the window, the notifier and the arming the services are made of."""
        dynamodb = default_client("dynamodb", self.dynamodb)
        ledger = Ledger(
            settings.state_table,
            settings.log_table,
            dynamodb,
            log_retention_days=settings.log_retention_days,
            retrier=self.retrier,
        )
        gateway = NaclGateway(self.ec2, retrier=self.retrier)
        config = EnforcementConfig.from_settings(settings)
        notifier = Notifier(settings.topic_arn, self.sns, retrier=self.retrier)
        arming = Arming(
            settings.state_table, dynamodb, retrier=self.retrier, clock_skew_s=settings.clock_skew_s
        )
        return ServiceParts(
            enforcer=Enforcer(config, gateway, ledger, now=self.clock, actor=actor),
            window=window_for(
                settings, detection_config(settings, config.policy), dynamodb=dynamodb, retrier=self.retrier
            ),
            notifier=notifier,
            dynamodb=dynamodb,
            arming=arming,
            health=HealthRecords(settings.state_table, dynamodb, retrier=self.retrier),
            holds=self._holds(settings, ledger, notifier, dynamodb, arming, actor=actor),
        )

    def _holds(
        self,
        settings: Settings,
        ledger: Ledger,
        notifier: Notifier,
        dynamodb: Any,
        arming: Arming,
        *,
        actor: str,
    ) -> CapacityHold | None:
        """The capacity hold when groups are named (FLOODGATE_HOLD_GROUPS), else None: off."""
        if not settings.hold_groups:
            return None
        return CapacityHold(
            settings.hold_groups,
            max_s=settings.hold_max_s,
            records=HoldRecords(settings.state_table, dynamodb, retrier=self.retrier),
            scaling=ScalingGroups(self.autoscaling, retrier=self.retrier),
            arming=arming,
            ledger=ledger,
            notifier=notifier,
            actor=actor,
            clock=self.clock,
        )


@dataclass(frozen=True)
class ServiceParts:
    enforcer: Enforcer
    window: TrafficWindow
    notifier: Notifier
    dynamodb: Any
    arming: Arming
    health: HealthRecords
    holds: CapacityHold | None = None


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
    settings: Settings,
    detection: DetectionConfig,
    *,
    dynamodb: Any,
    retrier: Retrier | None = None,
    scope: str = "",
) -> TrafficWindow:
    """The shared window, in its own table (FLOODGATE_WINDOW_TABLE; the STATE table when unset). Its
    summaries are sized so that every source or prefix above FLOODGATE_MIN_SHARE of the window's packets is
    found (`core.summary`)."""
    policy = detection.policy

    def new_summary() -> TrafficSummary:
        return TrafficSummary.for_share(detection.min_share, policy.max_prefix_v4, policy.max_prefix_v6)

    return TrafficWindow(
        settings.window_table or settings.state_table,
        window_s=settings.window_s,
        new_summary=new_summary,
        client=dynamodb,
        retrier=retrier,
        shards=settings.window_shards,
        scope=scope,
    )
