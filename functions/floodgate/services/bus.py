"""The estate bus contract: what the security account and the member accounts say to each other over
EventBridge, and the one validator every receiver runs before it reads or writes anything.

Three messages, each an EventBridge event (`version`, `id`, `detail-type`, `source`, `account`, `time`,
`region`, `resources`, `detail`):

- `Floodgate Decision` (source `floodgate.security`, sent by the security account): the deny plan for one
  VPC of one member account. detail: `{"schema": 1, "decisionId", "account", "region", "vpcId",
  "decidedAt", "dryRun", "denies": [{"cidr", "pps", "bps", "share", "members", "reason"}]}`. The member
  whose account the detail names applies it to that VPC's NACLs, in its own account, with its own ledger.
- `CloudWatch Alarm State Change` (source `aws.cloudwatch`, forwarded as is by a member's rule): a member's
  alarm changed state. EventBridge forwards an event across accounts unchanged and keeps its `account`, so
  the member needs no code to forward it; the security account refuses an alarm whose account (the event's
  and the alarm ARN's) is not a member's, and (`member_alarm_refusal`) one that is not the member's
  Floodgate deployment's, of another Region, or dated wrong. An accepted one arms that member's decisions
  alone.
- `Floodgate Outcome` (source `floodgate.member`, sent by a member): what applying one decision did.
  detail: `{"schema": 1, "decisionId", "account", "region", "vpcId", "dryRun", "denied": [cidr...],
  "failures": {naclId: why}}`; its `account` must be the sender's.

Refused, with a `BusEventError` that says why in a few words (quoting no more than a few dozen characters of
any value), and nothing written: an unknown detail type or source, a schema version this code does not know
(a newer sender is refused, never half-read), a sender or a named account outside the estate, a decision not
sent by the security account, a detail account that differs from the sender's (alarm, outcome), a decision
from the future (beyond the clock skew) or older than its maximum age (EventBridge retries a delivery for up
to 24 hours: a deny plan that late describes traffic that has moved on), and any deny the engine would refuse
to hold (not a CIDR, rates that are not finite non-negative numbers, a share outside 0..1, more denies than a
NACL can hold).

Pure: standard library and floodgate.core only; the adapters put and the handlers receive.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from floodgate.core.durations import format_duration
from floodgate.core.model import PlannedDeny
from floodgate.core.networks import InvalidCidr, canonical
from floodgate.core.text import clean, has_surrogates, shown
from floodgate.services.events import (
    ALARM_DETAIL_TYPE,
    ALARM_SOURCE,
    AlarmStateChange,
    InvalidEvent,
    parse_detector_event,
)

SCHEMA = 1  # the version this code writes and the only one it reads
DECISION_DETAIL_TYPE = "Floodgate Decision"
OUTCOME_DETAIL_TYPE = "Floodgate Outcome"
SECURITY_SOURCE = "floodgate.security"
MEMBER_SOURCE = "floodgate.member"
# A decision holds at most what one NACL can: 2 directions × 2 families × the largest budget (38).
MAX_DENIES = 152
MAX_REASON_CHARS = 256
MAX_DETAIL_CHARS = 256 * 1024  # EventBridge's PutEvents entry limit
_ACCOUNT = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_VPC = re.compile(r"vpc-[0-9a-f]{8,17}")
_NACL = re.compile(r"acl-[0-9a-f]{8,17}")
_DECISION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")


DEFAULT_BUS = "default"


def decision_route(member: str) -> dict[str, Any]:
    """Security bus: the rule pattern that carries decisions for `member` to that member's default bus only.

    No pattern here filters on the event's `account`: who may put events is the buses' resource policies'
    business, and whether a sender may say what it says is `parse_bus_event`'s, on receipt."""
    return {
        "source": [SECURITY_SOURCE],
        "detail-type": [DECISION_DETAIL_TYPE],
        "detail": {"account": [member]},
    }


def member_inbound() -> dict[str, Any]:
    """Member default bus: decisions, to the member's enforcer."""
    return {"source": [SECURITY_SOURCE], "detail-type": [DECISION_DETAIL_TYPE]}


def member_outbound(alarm_names: Sequence[str], alarm_prefix: str) -> list[dict[str, Any]]:
    """Member default bus: what is forwarded to the security bus, its outcomes and its alarms (those named,
    else those whose name starts with `alarm_prefix`)."""
    names: list[Any] = list(alarm_names) or [{"prefix": alarm_prefix}]
    return [
        {"source": [MEMBER_SOURCE], "detail-type": [OUTCOME_DETAIL_TYPE]},
        {"source": [ALARM_SOURCE], "detail-type": [ALARM_DETAIL_TYPE], "detail": {"alarmName": names}},
    ]


def security_inbound() -> dict[str, Any]:
    """Security bus: members' decision outcomes, to the estate's record (the detection inbox queue)."""
    return {"source": [MEMBER_SOURCE], "detail-type": [OUTCOME_DETAIL_TYPE]}


def security_alarms() -> dict[str, Any]:
    """Security bus: members' alarm state changes, to the security detector, which arms the sender's
    decisions (`member_alarm_refusal` says which it refuses: the pattern does not filter on the sender)."""
    return {"source": [ALARM_SOURCE], "detail-type": [ALARM_DETAIL_TYPE]}


def is_member_alarm(alarm_name: str, alarm_names: Collection[str], alarm_prefix: str) -> bool:
    """Whether a member's alarm is one of its Floodgate deployment's: what `member_outbound` forwards (the
    names given, else those starting with `alarm_prefix`)."""
    if alarm_names:
        return alarm_name in alarm_names
    return bool(alarm_prefix) and alarm_name.startswith(alarm_prefix)


def member_alarm_refusal(
    alarm: MemberAlarm,
    *,
    alarm_names: Collection[str],
    alarm_prefix: str,
    region: str,
    now: float,
    clock_skew_s: float,
    arm_ttl_s: float,
) -> str | None:
    """Why a member's alarm (already read by `parse_bus_event`: its sender is a member, and the alarm's ARN
    names the sender's account) may not arm that member's decisions, or None when it may. As in single mode
    (`DetectionService.alarm_refusal`): only the member deployment's own alarms, of this Region, and not
    from the future nor older than the arming."""
    change = alarm.change
    name = shown(change.alarm_name, 80)
    if not is_member_alarm(change.alarm_name, alarm_names, alarm_prefix):
        watched = ", ".join(sorted(alarm_names)) if alarm_names else f"names starting {alarm_prefix!r}"
        return (
            f"alarm {name} of member {alarm.account} is not one of its Floodgate deployment's "
            f"({watched}: existingAlarmNames, else <stackName>-)"
        )
    if change.region != region:
        return f"alarm {name} of member {alarm.account} is in {change.region or '?'}, not in {region}"
    return alarm_time_refusal(change, now=now, clock_skew_s=clock_skew_s, arm_ttl_s=arm_ttl_s)


def alarm_time_refusal(
    change: AlarmStateChange, *, now: float, clock_skew_s: float, arm_ttl_s: float
) -> str | None:
    """Why a state change is dated wrong to arm or disarm: in the future beyond the clock skew (a wrong
    clock, or not AWS), or older than the arming time (it would arm for less than nothing). None: fine."""
    if change.changed_at is None:
        return None
    name = shown(change.alarm_name, 80)
    if change.changed_at > now + clock_skew_s:
        ahead = format_duration(change.changed_at - now) if change.changed_at - now < 10**9 else "years"
        return f"alarm {name} changed state {ahead} in the future: a wrong clock, or not AWS"
    if change.changed_at < now - arm_ttl_s:
        return (
            f"alarm {name} changed state {format_duration(now - change.changed_at)} ago, longer than "
            f"the arming time ({format_duration(arm_ttl_s)}, armTtl)"
        )
    return None


class BusEventError(ValueError):
    """The event breaks the bus contract or comes from outside the estate. Nothing was read or written."""


@dataclass(frozen=True, slots=True)
class Estate:
    """Who may say what on the bus: the security account (the only one that decides) and the members."""

    security_account: str
    members: frozenset[str]

    def __post_init__(self) -> None:
        for account in (self.security_account, *self.members):
            if not _ACCOUNT.fullmatch(account):
                raise ValueError(f"not an AWS account id: {shown(account)}")
        if self.security_account in self.members:
            raise ValueError(f"the security account {self.security_account} cannot also be a member")


@dataclass(frozen=True, slots=True)
class Target:
    """One VPC of one member account, in one region."""

    account: str
    region: str
    vpc_id: str


@dataclass(frozen=True, slots=True)
class Decision:
    decision_id: str
    target: Target
    decided_at: float
    dry_run: bool
    denies: tuple[PlannedDeny, ...]


@dataclass(frozen=True, slots=True)
class MemberAlarm:
    account: str
    change: AlarmStateChange


@dataclass(frozen=True, slots=True)
class Outcome:
    decision_id: str
    target: Target
    dry_run: bool
    denied: tuple[str, ...]
    failures: Mapping[str, str]


BusMessage = Decision | MemberAlarm | Outcome


def parse_bus_event(
    event: object, estate: Estate, *, now: float, clock_skew_s: float, max_age_s: float
) -> BusMessage:
    """The message `event` carries, checked against the contract and the estate; raises BusEventError."""
    if not isinstance(event, Mapping):
        raise BusEventError(f"expected an EventBridge event (a JSON object), got {type(event).__name__}")
    detail_type, source, sender = event.get("detail-type"), event.get("source"), event.get("account")
    if not (isinstance(sender, str) and _ACCOUNT.fullmatch(sender)):
        raise BusEventError(f"event account is not an AWS account id: {shown(sender)}")
    if detail_type == DECISION_DETAIL_TYPE:
        _expect_source(source, SECURITY_SOURCE, detail_type)
        if sender != estate.security_account:
            raise BusEventError(
                f"decision sent by account {sender}, not by the security account {estate.security_account}"
            )
        return _decision(_detail(event), estate, now=now, clock_skew_s=clock_skew_s, max_age_s=max_age_s)
    if detail_type == ALARM_DETAIL_TYPE:
        _expect_source(source, ALARM_SOURCE, detail_type)
        _member(sender, estate, "alarm from")
        try:
            change = parse_detector_event(event)
        except InvalidEvent as exc:
            raise BusEventError(f"malformed alarm state change: {exc}") from None
        if not isinstance(change, AlarmStateChange):
            raise BusEventError("alarm state change of an unknown shape")
        resources = event.get("resources")
        arn = resources[0] if isinstance(resources, list) and resources else None
        arn_account = arn.split(":")[4] if isinstance(arn, str) and arn.count(":") >= 5 else None
        if arn_account != sender:
            raise BusEventError(f"alarm {shown(arn)} is not an alarm of the sending account {sender}")
        return MemberAlarm(sender, change)
    if detail_type == OUTCOME_DETAIL_TYPE:
        _expect_source(source, MEMBER_SOURCE, detail_type)
        _member(sender, estate, "outcome from")
        outcome = _outcome(_detail(event), estate)
        if outcome.target.account != sender:
            raise BusEventError(f"outcome for account {outcome.target.account} sent by account {sender}")
        return outcome
    raise BusEventError(
        f"unknown detail-type {shown(detail_type)}: expected {DECISION_DETAIL_TYPE!r}, {ALARM_DETAIL_TYPE!r} "
        f"or {OUTCOME_DETAIL_TYPE!r}"
    )


def decision_detail(decision: Decision) -> dict[str, Any]:
    """The detail of a `Floodgate Decision` event (what `parse_bus_event` reads back)."""
    return {
        "schema": SCHEMA,
        "decisionId": decision.decision_id,
        **_target_json(decision.target),
        "decidedAt": datetime.fromtimestamp(decision.decided_at, UTC).isoformat(timespec="seconds"),
        "dryRun": decision.dry_run,
        "denies": [
            {
                "cidr": d.cidr,
                "pps": d.pps,
                "bps": d.bps,
                "share": d.share,
                "members": d.members,
                "reason": d.reason,
            }
            for d in decision.denies
        ],
    }


def outcome_detail(outcome: Outcome) -> dict[str, Any]:
    """The detail of a `Floodgate Outcome` event."""
    return {
        "schema": SCHEMA,
        "decisionId": outcome.decision_id,
        **_target_json(outcome.target),
        "dryRun": outcome.dry_run,
        "denied": list(outcome.denied),
        "failures": dict(outcome.failures),
    }


def put_events_entry(detail_type: str, detail: Mapping[str, Any], *, bus: str) -> dict[str, Any]:
    """One PutEvents entry for `bus` (name or ARN). Raises BusEventError when it is over EventBridge's size
    limit (the sender finds out, not the receiver)."""
    source = {DECISION_DETAIL_TYPE: SECURITY_SOURCE, OUTCOME_DETAIL_TYPE: MEMBER_SOURCE}.get(detail_type)
    if source is None:
        raise BusEventError(f"not a message Floodgate sends: {shown(detail_type)}")
    body = json.dumps(detail, separators=(",", ":"), allow_nan=False)
    if len(body) > MAX_DETAIL_CHARS:
        raise BusEventError(f"{detail_type} detail is {len(body)} characters, over EventBridge's 256 KB")
    return {"Source": source, "DetailType": detail_type, "Detail": body, "EventBusName": bus}


# -- parts ---------------------------------------------------------------------------------------------


def _target_json(target: Target) -> dict[str, str]:
    return {"account": target.account, "region": target.region, "vpcId": target.vpc_id}


def _expect_source(source: object, expected: str, detail_type: str) -> None:
    if source != expected:
        raise BusEventError(f"{detail_type} from source {shown(source)}, not {expected}")


def _member(account: str, estate: Estate, what: str) -> None:
    if account not in estate.members:
        raise BusEventError(f"{what} account {account}, which is not a member of the estate")


def _detail(event: Mapping[str, Any]) -> Mapping[str, Any]:
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise BusEventError("event detail is missing or not an object")
    schema = detail.get("schema")
    if type(schema) is not int or schema != SCHEMA:
        raise BusEventError(f"detail schema {shown(schema)} is not {SCHEMA}, the version this code reads")
    return detail


def _target(detail: Mapping[str, Any], estate: Estate) -> Target:
    account = _matching(detail, "account", _ACCOUNT, "an AWS account id")
    if account not in estate.members:
        raise BusEventError(f"detail.account {account} is not a member of the estate")
    region = _matching(detail, "region", _REGION, "an AWS region")
    return Target(account, region, _matching(detail, "vpcId", _VPC, "a VPC id (vpc-…)"))


def _decision(
    detail: Mapping[str, Any], estate: Estate, *, now: float, clock_skew_s: float, max_age_s: float
) -> Decision:
    target = _target(detail, estate)
    decision_id = _matching(detail, "decisionId", _DECISION_ID, "a decision id")
    decided_at = _instant(detail.get("decidedAt"))
    if decided_at > now + clock_skew_s:
        raise BusEventError(f"decision {decision_id} is dated {_iso(decided_at)}, in the future")
    if decided_at < now - max_age_s:
        raise BusEventError(
            f"decision {decision_id} from {_iso(decided_at)} is older than {max_age_s:.0f} s: "
            "stale, not applied"
        )
    denies = detail.get("denies")
    if not isinstance(denies, list):
        raise BusEventError("detail.denies is missing or not a list")
    if len(denies) > MAX_DENIES:
        raise BusEventError(
            f"detail.denies holds {len(denies)} denies, more than the {MAX_DENIES} a NACL holds"
        )
    return Decision(
        decision_id=decision_id,
        target=target,
        decided_at=decided_at,
        dry_run=_flag(detail, "dryRun"),
        denies=tuple(_deny(item, f"detail.denies[{index}]") for index, item in enumerate(denies)),
    )


def _outcome(detail: Mapping[str, Any], estate: Estate) -> Outcome:
    target = _target(detail, estate)
    denied = detail.get("denied")
    if not isinstance(denied, list):
        raise BusEventError("detail.denied is missing or not a list")
    if len(denied) > MAX_DENIES:
        raise BusEventError(
            f"detail.denied holds {len(denied)} CIDRs, more than the {MAX_DENIES} a NACL holds"
        )
    failures = detail.get("failures")
    if not isinstance(failures, Mapping):
        raise BusEventError("detail.failures is missing or not an object")
    for nacl_id, why in failures.items():
        if not (isinstance(nacl_id, str) and _NACL.fullmatch(nacl_id) and isinstance(why, str)):
            raise BusEventError(f"detail.failures: {shown(nacl_id)} is not a NACL id with a reason")
    return Outcome(
        decision_id=_matching(detail, "decisionId", _DECISION_ID, "a decision id"),
        target=target,
        dry_run=_flag(detail, "dryRun"),
        denied=tuple(_cidr(cidr, "detail.denied") for cidr in denied),
        failures={nacl_id: clean(why[:MAX_REASON_CHARS]) for nacl_id, why in failures.items()},
    )


def _deny(item: object, where: str) -> PlannedDeny:
    if not isinstance(item, Mapping):
        raise BusEventError(f"{where} is not an object")
    share = _rate(item, "share", where)
    if share > 1.0:
        raise BusEventError(f"{where}.share is {shown(item.get('share'))}, more than 1")
    members = item.get("members")
    if type(members) is not int or members < 1:
        raise BusEventError(f"{where}.members is {shown(members)}, not a positive whole number")
    reason = item.get("reason")
    if not isinstance(reason, str) or not reason.strip() or has_surrogates(reason):
        raise BusEventError(f"{where}.reason is missing, empty or not valid Unicode")
    if len(reason) > MAX_REASON_CHARS:
        raise BusEventError(f"{where}.reason is {len(reason)} characters, more than {MAX_REASON_CHARS}")
    return PlannedDeny(
        cidr=_cidr(item.get("cidr"), f"{where}.cidr"),
        pps=_rate(item, "pps", where),
        bps=_rate(item, "bps", where),
        share=share,
        members=members,
        reason=clean(reason),  # it ends up in the deny log: no control characters to forge lines with
    )


def _cidr(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise BusEventError(f"{where}: {shown(value)} is not a CIDR")
    try:
        return canonical(value)
    except InvalidCidr as exc:
        raise BusEventError(f"{where}: {exc}") from None


def _rate(item: Mapping[str, Any], key: str, where: str) -> float:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):  # a bool is no rate
        raise BusEventError(f"{where}.{key} is {shown(value)}, not a finite non-negative number")
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        number = math.inf
    if not (math.isfinite(number) and number >= 0):
        raise BusEventError(f"{where}.{key} is {shown(value)}, not a finite non-negative number")
    return number


def _flag(detail: Mapping[str, Any], key: str) -> bool:
    value = detail.get(key)
    if not isinstance(value, bool):
        raise BusEventError(f"detail.{key} is {shown(value)}, not true or false")
    return value


def _matching(detail: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str:
    value = detail.get(key)
    if not (isinstance(value, str) and pattern.fullmatch(value)):
        raise BusEventError(f"detail.{key} is {shown(value)}, not {what}")
    return value


def _instant(value: object) -> float:
    if not isinstance(value, str) or len(value) > 40:
        raise BusEventError(f"detail.decidedAt is {shown(value)}, not an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BusEventError(f"detail.decidedAt is {shown(value)}, not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise BusEventError(f"detail.decidedAt {shown(value)} has no time zone")
    return moment.timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
