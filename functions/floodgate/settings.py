"""Runtime configuration of the Lambda functions, read from environment variables once at cold start.

This module is the contract between the CDK stack (which sets the variables) and the handlers (which read
them): `ENV` names every variable, and `Settings.from_env` validates them with errors that name the variable.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from floodgate.core.durations import parse_duration
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat
from floodgate.core.networks import InvalidCidr, parse_network


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


class ENV:
    """Environment variable names, in one place for the stack and the handlers."""

    NACL_IDS = "FLOODGATE_NACL_IDS"  # comma-separated NACL ids ...
    VPC_ID = "FLOODGATE_VPC_ID"  # ... or every NACL of this VPC
    VPC_CIDRS = "FLOODGATE_VPC_CIDRS"  # comma-separated; traffic to these is inbound, from them is ours
    RULE_START = "FLOODGATE_RULE_START"  # first rule number of the owned block
    BUDGET = "FLOODGATE_BUDGET"  # deny entries per NACL, direction and address family
    NACL_QUOTA = "FLOODGATE_NACL_QUOTA"  # rules per NACL per direction and family, default rule included
    MIN_PPS = "FLOODGATE_MIN_PPS"
    MIN_BPS = "FLOODGATE_MIN_BPS"
    MIN_SHARE = "FLOODGATE_MIN_SHARE"
    ALWAYS_PPS = "FLOODGATE_ALWAYS_PPS"  # enforce without an armed alarm above this rate; empty = never
    ALLOW_CIDRS = "FLOODGATE_ALLOW_CIDRS"
    MAX_PREFIX_V4 = "FLOODGATE_MAX_PREFIX_V4"
    MAX_PREFIX_V6 = "FLOODGATE_MAX_PREFIX_V6"
    BASE_TTL = "FLOODGATE_BASE_TTL"
    MAX_TTL = "FLOODGATE_MAX_TTL"
    TTL_FACTOR = "FLOODGATE_TTL_FACTOR"
    OFFENCE_MEMORY = "FLOODGATE_OFFENCE_MEMORY"
    EXTEND_ON_EVIDENCE = "FLOODGATE_EXTEND_ON_EVIDENCE"
    OUTBOUND_MIRROR = "FLOODGATE_OUTBOUND_MIRROR"
    DRY_RUN = "FLOODGATE_DRY_RUN"
    FLOW_LOG_FORMAT = "FLOODGATE_FLOW_LOG_FORMAT"
    WINDOW = "FLOODGATE_WINDOW"  # length of the shared sliding traffic window
    ARM_TTL = "FLOODGATE_ARM_TTL"  # an ALARM arms enforcement for at most this long without a refresh
    ALARM_NAMES = "FLOODGATE_ALARM_NAMES"  # JSON list: the only alarms that arm (names may hold commas)
    LOG_RETENTION_DAYS = "FLOODGATE_LOG_RETENTION_DAYS"
    STATE_TABLE = "FLOODGATE_STATE_TABLE"
    LOG_TABLE = "FLOODGATE_LOG_TABLE"
    TOPIC_ARN = "FLOODGATE_TOPIC_ARN"


NACL_ID = re.compile(r"acl-[0-9a-f]{8,17}")  # also used by the stack settings and the CLI
_VPC_ID = re.compile(r"vpc-[0-9a-f]{8,17}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class Settings:
    nacl_ids: tuple[str, ...]
    vpc_id: str | None
    vpc_cidrs: tuple[str, ...]
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
    base_ttl_s: int
    max_ttl_s: int
    ttl_factor: float
    offence_memory_s: int
    extend_on_evidence: bool
    outbound_mirror: bool
    dry_run: bool
    flow_log_format: FlowLogFormat
    window_s: int
    arm_ttl_s: int
    alarm_names: frozenset[str]
    log_retention_days: int
    state_table: str
    log_table: str
    topic_arn: str | None

    @property
    def rule_end(self) -> int:
        """Last rule number of the owned block: budget + 1 spare slot per address family."""
        return self.rule_start + 2 * (self.budget + 1) - 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        reader = _Reader(environ)
        nacl_ids = reader.list(ENV.NACL_IDS)
        for nacl_id in nacl_ids:
            if not NACL_ID.fullmatch(nacl_id):
                raise ConfigError(f"{ENV.NACL_IDS}: {nacl_id!r} is not a NACL id (acl-…)")
        vpc_id = environ.get(ENV.VPC_ID, "").strip() or None
        if vpc_id is not None and not _VPC_ID.fullmatch(vpc_id):
            raise ConfigError(f"{ENV.VPC_ID}: {vpc_id!r} is not a VPC id (vpc-…)")
        if not nacl_ids and vpc_id is None:
            raise ConfigError(f"set {ENV.NACL_IDS} or {ENV.VPC_ID}: Floodgate needs NACLs to protect")
        budget = reader.integer(ENV.BUDGET, 10, low=1, high=38)
        quota = reader.integer(ENV.NACL_QUOTA, 20, low=3, high=40)
        if budget + 2 > quota:
            raise ConfigError(
                f"{ENV.BUDGET}={budget} leaves no room under {ENV.NACL_QUOTA}={quota}: "
                "budget + default rule + one spare must fit"
            )
        rule_start = reader.integer(ENV.RULE_START, 100, low=1, high=32766)
        if rule_start + 2 * (budget + 1) - 1 > 32766:
            raise ConfigError(f"{ENV.RULE_START}={rule_start}: the owned block runs past rule 32766")
        base_ttl = reader.duration(ENV.BASE_TTL, "30m")
        max_ttl = reader.duration(ENV.MAX_TTL, "24h")
        if max_ttl < base_ttl:
            raise ConfigError(f"{ENV.MAX_TTL} must not be shorter than {ENV.BASE_TTL}")
        format_text = environ.get(ENV.FLOW_LOG_FORMAT, "").strip() or DEFAULT_FORMAT
        try:
            flow_log_format = FlowLogFormat.parse(format_text)
        except ValueError as exc:
            raise ConfigError(f"{ENV.FLOW_LOG_FORMAT}: {exc}") from None
        always = environ.get(ENV.ALWAYS_PPS, "").strip()
        return cls(
            nacl_ids=nacl_ids,
            vpc_id=vpc_id,
            vpc_cidrs=reader.cidrs(ENV.VPC_CIDRS, required=True),
            rule_start=rule_start,
            budget=budget,
            nacl_quota=quota,
            min_pps=reader.number(ENV.MIN_PPS, 5000.0, low=0.0),
            min_bps=reader.number(ENV.MIN_BPS, 0.0, low=0.0),
            min_share=reader.number(ENV.MIN_SHARE, 0.01, low=0.0001, high=1.0),
            always_pps=reader.number(ENV.ALWAYS_PPS, 0.0, low=1.0) if always else None,
            allow_cidrs=reader.cidrs(ENV.ALLOW_CIDRS),
            max_prefix_v4=reader.integer(ENV.MAX_PREFIX_V4, 16, low=8, high=32),
            max_prefix_v6=reader.integer(ENV.MAX_PREFIX_V6, 48, low=16, high=128),
            base_ttl_s=base_ttl,
            max_ttl_s=max_ttl,
            ttl_factor=reader.number(ENV.TTL_FACTOR, 2.0, low=1.0, high=100.0),
            offence_memory_s=reader.duration(ENV.OFFENCE_MEMORY, "7d"),
            extend_on_evidence=reader.flag(ENV.EXTEND_ON_EVIDENCE, default=True),
            outbound_mirror=reader.flag(ENV.OUTBOUND_MIRROR, default=False),
            dry_run=reader.flag(ENV.DRY_RUN, default=False),
            flow_log_format=flow_log_format,
            window_s=reader.duration(ENV.WINDOW, "5m"),
            arm_ttl_s=reader.duration(ENV.ARM_TTL, "30m"),
            alarm_names=reader.names(ENV.ALARM_NAMES, longest=255),
            log_retention_days=reader.integer(ENV.LOG_RETENTION_DAYS, 90, low=1, high=3650),
            state_table=reader.required(ENV.STATE_TABLE),
            log_table=reader.required(ENV.LOG_TABLE),
            topic_arn=environ.get(ENV.TOPIC_ARN, "").strip() or None,
        )


class _Reader:
    """Typed reads of environment variables; every error names the variable and the bad value."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self._raw(name)
        if value is None:
            raise ConfigError(f"{name} is required")
        return value

    def list(self, name: str) -> tuple[str, ...]:
        raw = self._raw(name) or ""
        return tuple(item.strip() for item in raw.split(",") if item.strip())

    def cidrs(self, name: str, *, required: bool = False) -> tuple[str, ...]:
        items = self.list(name)
        if required and not items:
            raise ConfigError(f"{name} is required (comma-separated CIDRs)")
        out = []
        for item in items:
            try:
                out.append(str(parse_network(item)))
            except InvalidCidr as exc:
                raise ConfigError(f"{name}: {exc}") from None
        return tuple(out)

    def names(self, name: str, *, longest: int) -> frozenset[str]:
        """A JSON list of names; unset or empty: none."""
        raw = self._raw(name)
        if raw is None:
            return frozenset()
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(
            isinstance(item, str) and 1 <= len(item) <= longest and item.isprintable() for item in value
        ):
            raise ConfigError(
                f'{name}: expected a JSON list of names of 1 to {longest} characters, e.g. ["a"]'
            )
        return frozenset(value)

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}: {value} is outside {low}..{high}")
        return value

    def number(self, name: str, default: float, *, low: float, high: float | None = None) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
        if math.isnan(value) or value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise ConfigError(f"{name}: {raw} is outside {bound}")
        return value

    def duration(self, name: str, default: str) -> int:
        raw = self._raw(name) or default
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None

    def flag(self, name: str, *, default: bool) -> bool:
        raw = self._environ.get(name)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")
