"""Runtime configuration of the Lambda functions, read from environment variables once at cold start.

The variables, their defaults and bounds are the rows of `floodgate.settings_table` that have one;
`Settings.from_env` reads each by its kind and validates it with errors that name the variable, then checks
what no single row can (the rule block fits the quota, a ban's bounds are in order).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from floodgate.core.durations import parse_duration
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat
from floodgate.core.networks import InvalidCidr, parse_network
from floodgate.settings_table import BY_ENV, ENV_PREFIX, Kind, Setting


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


class _Variables:
    """The variable names of the table by their name after the prefix: `ENV.BUDGET` is FLOODGATE_BUDGET."""

    def __getattr__(self, name: str) -> str:
        variable = ENV_PREFIX + name
        if variable not in BY_ENV:
            raise AttributeError(f"no setting has the variable {variable}")
        return variable


ENV = _Variables()
NACL_ID = re.compile(r"acl-[0-9a-f]{8,17}")  # also used by the stack settings and the CLI
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class Settings:
    """One field per variable of the table (see `attribute`)."""

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
    clock_skew_s: int
    arm_ttl_s: int
    alarm_names: frozenset[str]
    log_retention_days: int
    state_table: str
    window_table: str | None  # None: the window shares the state table
    log_table: str
    topic_arn: str | None
    hold_groups: tuple[str, ...]  # empty: no capacity hold
    hold_max_s: int
    ingest: str  # "subscription" or "kinesis"
    window_shards: int
    mode: str  # single | security | member
    member_accounts: tuple[str, ...]
    security_account: str | None
    security_bus: str
    decision_max_age_s: int
    member_vpc_tag: str
    estate_reader_role: str
    member_alarm_prefix: str | None  # security: what the members' forwarded alarm names start with
    stream_failures: str | None  # kinesis: the on-failure queue's URL

    @property
    def is_member(self) -> bool:
        """A member finds its VPC by tag at cold start (`floodgate.services.estate`); none is configured."""
        return self.mode == "member"

    @property
    def rule_end(self) -> int:
        """Last rule number of the owned block: budget + 1 spare slot per address family."""
        return self.rule_start + 2 * (self.budget + 1) - 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        # A member reads its VPC's blocks from EC2 (`services.estate`): one template serves every account. The
        # security account reads each member's through the member's reader role (`services.producer`).
        estate = (environ.get(ENV.MODE) or "").strip() in ("member", "security")
        values: dict[str, Any] = {
            attribute(row): () if estate and row.env == ENV.VPC_CIDRS else _read(row, environ)
            for row in BY_ENV.values()
        }
        settings = cls(**values)
        for nacl_id in settings.nacl_ids:
            if not NACL_ID.fullmatch(nacl_id):
                raise ConfigError(f"{ENV.NACL_IDS}: {nacl_id!r} is not a NACL id (acl-…)")
        if settings.is_member and settings.security_account is None:
            raise ConfigError(f"{ENV.SECURITY_ACCOUNT} is required in member mode: whose decisions to apply")
        # The security account protects no VPC of its own: it decides for the members' (`services.producer`).
        if not settings.nacl_ids and settings.vpc_id is None and settings.mode == "single":
            raise ConfigError(f"set {ENV.NACL_IDS} or {ENV.VPC_ID}: Floodgate needs NACLs to protect")
        if settings.budget + 2 > settings.nacl_quota:
            raise ConfigError(
                f"{ENV.BUDGET}={settings.budget} leaves no room under "
                f"{ENV.NACL_QUOTA}={settings.nacl_quota}: budget + default rule + one spare must fit"
            )
        if settings.rule_end > 32766:
            raise ConfigError(f"{ENV.RULE_START}={settings.rule_start}: the owned block runs past rule 32766")
        if settings.max_ttl_s < settings.base_ttl_s:
            raise ConfigError(f"{ENV.MAX_TTL} must not be shorter than {ENV.BASE_TTL}")
        return settings


def attribute(row: Setting) -> str:
    """The field of `Settings` a row fills: its variable after the prefix, lower case; `_s` for seconds."""
    assert row.env is not None
    name = row.env.removeprefix(ENV_PREFIX).lower()
    return f"{name}_s" if row.kind == "duration" else name


def _read(row: Setting, environ: Mapping[str, str]) -> Any:
    """One variable, by the kind of its row; absent or blank means the row's default."""
    assert row.env is not None
    parse = _PARSERS.get(row.kind)
    if parse is None:
        raise AssertionError(f"{row.env}: a {row.kind} setting is not read at run time")
    return parse(row, row.env, environ.get(row.env))


def _text(row: Setting, name: str, raw: str | None) -> str | None:
    value = (raw or "").strip() or (row.default if isinstance(row.default, str) else "")
    if not value:
        if not row.optional:
            raise ConfigError(f"{name} is required")
        return None
    if row.pattern is not None and not re.fullmatch(row.pattern, value):
        raise ConfigError(f"{name}: {value!r} is not {row.what}")
    return value


def _choice(row: Setting, name: str, raw: str | None) -> str:
    value = (raw or "").strip() or str(row.default)
    if value not in row.choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(row.choices)}")
    return value


def _strings(row: Setting, name: str, raw: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (raw or "").split(",") if item.strip())


def _names(row: Setting, name: str, raw: str | None) -> frozenset[str]:
    """A JSON list of names (alarm names may hold commas); unset or empty: none."""
    if not (raw or "").strip():
        return frozenset()
    longest = 255  # CloudWatch's longest alarm name
    try:
        value = json.loads(raw or "")
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(
        isinstance(item, str) and 1 <= len(item) <= longest and item.isprintable() for item in value
    ):
        raise ConfigError(f'{name}: expected a JSON list of names of 1 to {longest} characters, e.g. ["a"]')
    return frozenset(value)


def _cidrs(row: Setting, name: str, raw: str | None) -> tuple[str, ...]:
    items = _strings(row, name, raw)
    if not row.optional and not items:
        raise ConfigError(f"{name} is required (comma-separated CIDRs)")
    out = []
    for item in items:
        try:
            out.append(str(parse_network(item)))
        except InvalidCidr as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return tuple(out)


def _integer(row: Setting, name: str, raw: str | None) -> int | None:
    text = (raw or "").strip()
    if not text:
        default = _numeric_default(row)
        return None if default is None else int(default)
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {text!r}") from None
    low, high = int(row.low or 0), int(row.high or 0)
    if not low <= value <= high:
        raise ConfigError(f"{name}: {value} is outside {low}..{high}")
    return value


def _number(row: Setting, name: str, raw: str | None) -> float | None:
    text = (raw or "").strip()
    if not text:
        return _numeric_default(row)
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {text!r}") from None
    low = float(row.low or 0.0)
    high = None if row.high is None else float(row.high)
    if math.isnan(value) or value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name}: {text} is outside {bound}")
    return value


def _numeric_default(row: Setting) -> float | None:
    default = row.default
    return float(default) if isinstance(default, int | float) else None


def _duration(row: Setting, name: str, raw: str | None) -> int:
    try:
        return parse_duration((raw or "").strip() or str(row.default))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _flag(row: Setting, name: str, raw: str | None) -> bool:
    if raw is None:
        return bool(row.default)
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:  # set but empty: false
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def _format(row: Setting, name: str, raw: str | None) -> FlowLogFormat:
    text = (raw or "").strip()
    try:
        return FlowLogFormat.parse(DEFAULT_FORMAT if text in ("", "default") else text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


_PARSERS: dict[Kind, Callable[[Setting, str, str | None], Any]] = {
    "text": _text,
    "choice": _choice,
    "strings": _strings,
    "names": _names,
    "cidrs": _cidrs,
    "int": _integer,
    "number": _number,
    "duration": _duration,
    "flag": _flag,
    "format": _format,
}
