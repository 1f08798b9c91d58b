"""The manual-action contract, shared by the Lambda console test event, the SSM runbooks and the CLI.

    {"action": "block", "cidr": "203.0.113.7/32", "ttl": "30m", "reason": "...", "actor": "..."}
    {"action": "unblock", "cidr": "203.0.113.7/32", "reason": "...", "actor": "..."}
    {"action": "analyze", "dry_run": true}
    {"action": "status"}
    {"action": "release", "reason": "...", "actor": "..."}

- block: `ttl` is optional (without it the escalation rules decide) and at most FLOODGATE_MAX_TTL. The same
  budget, allowlist and prefix caps apply as to automatic denies; a manual deny outranks automatic ones.
- block, unblock: `dry_run` (optional) overrides the deployment's FLOODGATE_DRY_RUN for this request.
- analyze: decide on the traffic window now, whatever the armed state; `dry_run` defaults to true, so
  nothing is denied unless asked for in so many words.
- every action: `actor` names who asked (the CLI sends the caller's AWS identity); without it, "console".
- release: end every capacity hold now (FLOODGATE_HOLD_GROUPS); logged as RELEASE with the reason.
- block: a CIDR inside a wider prefix denied now is refused (it would only take another slot); unblock of
  such a CIDR names the covering deny to lift instead.
- text: control and formatting characters are removed from `reason` and `actor` (they would forge lines in
  `floodgate log`), lone surrogates refused; errors quote at most a few dozen characters of any value.
- status: the denies in force per NACL, pools against budget and quota, drift, and the armed state.

The answer is JSON: `{"ok": true, "action": ..., ...}`, or `{"ok": false, "action": ..., "error": "..."}`
for a payload that breaks the contract (nothing is done), a block the policy refuses (only the REFUSED log
event is written), or an unblock of a CIDR that is not denied. AWS failures raise: the caller sees them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from floodgate.adapters.arming import Armed
from floodgate.adapters.notify import Notifier
from floodgate.core.durations import format_duration, parse_duration
from floodgate.core.networks import InvalidCidr, Network, parse_network
from floodgate.core.records import DenyRecord, EventKind, LogEvent
from floodgate.core.text import clean, has_surrogates, printable, shown
from floodgate.engine.enforcer import Enforcer
from floodgate.engine.results import BlockRefused, EnforcementResult, NotBlocked, PreflightError, Status
from floodgate.services.records_json import deny_json, drift_json, event_json, iso
from floodgate.services.reports import armed_json, automatic_denies, event_metrics
from floodgate.settings import ENV, Settings

_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {  # action -> (required, optional)
    "block": (frozenset({"cidr", "reason"}), frozenset({"ttl", "dry_run", "actor", "force"})),
    "unblock": (frozenset({"cidr", "reason"}), frozenset({"dry_run", "actor"})),
    "analyze": (frozenset(), frozenset({"dry_run", "actor"})),
    "status": (frozenset(), frozenset({"actor"})),
    "release": (frozenset({"reason"}), frozenset({"actor"})),
}
REASON_LENGTH = (3, 256)  # as the SSM runbooks enforce
ACTOR_LENGTH = (1, 128)


class ManualError(ValueError):
    """The payload breaks the contract; the message says how."""


@dataclass(frozen=True, slots=True)
class Block:
    cidr: str
    reason: str
    actor: str
    ttl_s: int | None = None
    dry_run: bool | None = None
    force: bool = False  # deny even a source or prefix the VPC depends on


@dataclass(frozen=True, slots=True)
class Unblock:
    cidr: str
    reason: str
    actor: str
    dry_run: bool | None = None


@dataclass(frozen=True, slots=True)
class Analyze:
    dry_run: bool = True
    actor: str = "console"


@dataclass(frozen=True, slots=True)
class StatusRequest:
    actor: str = "console"


@dataclass(frozen=True, slots=True)
class Release:
    reason: str
    actor: str = "console"


ManualAction = Block | Unblock | Analyze | StatusRequest | Release


class Detector(Protocol):
    """What `analyze` and `status` need beyond the engine: the traffic window and the armed state
    (`floodgate.services.detection.DetectionService` provides both)."""

    def analyze(self, *, dry_run: bool, actor: str) -> AnalysisReport: ...

    def armings(self) -> tuple[Armed, ...]: ...

    def release_hold(self, *, reason: str, actor: str) -> tuple[LogEvent, ...]: ...


class DependencyCheck(Protocol):
    """Refuses denies of what the VPC depends on (`floodgate.adapters.dependencies.DependencyGuard`)."""

    def refusal(self, cidr: str, *, actor: str) -> LogEvent | None: ...


class AnalysisReport(Protocol):
    @property
    def events(self) -> tuple[LogEvent, ...]: ...

    def as_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ManualResponse:
    """The answer (`as_dict()` is the JSON body) and the log events the action wrote."""

    body: dict[str, Any]
    events: tuple[LogEvent, ...] = ()

    @property
    def ok(self) -> bool:
        return bool(self.body["ok"])

    def metric_values(self) -> dict[str, float]:
        return event_metrics(self.events)

    def as_dict(self) -> dict[str, Any]:
        return self.body


def parse_manual(payload: Mapping[str, Any], settings: Settings) -> ManualAction:
    """The action a payload asks for. Raises ManualError naming the first problem."""
    action = payload.get("action")
    if not isinstance(action, str) or action not in _FIELDS:
        raise ManualError(f"action must be one of {', '.join(_FIELDS)}; got {shown(action)}")
    required, optional = _FIELDS[action]
    given = set(payload) - {"action"}
    missing = sorted(required - given)
    if missing:
        raise ManualError(f"{action} needs {', '.join(missing)}")
    unknown = sorted(str(key) for key in given - required - optional)
    if unknown:
        allowed = ", ".join(sorted(required | optional)) or "nothing else"
        named = ", ".join(printable(key[:40]) for key in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ManualError(f"{action} does not take {named} (it takes {allowed})")
    # Who asked: the CLI sends the caller's AWS identity; a console test event may not say.
    actor = _text(payload, "actor", ACTOR_LENGTH) if "actor" in payload else "console"
    if action == "block":
        return Block(
            cidr=_cidr(payload),
            reason=_text(payload, "reason", REASON_LENGTH),
            actor=actor,
            ttl_s=_ttl(payload, settings) if "ttl" in payload else None,
            dry_run=_flag(payload, "dry_run"),
            force=_flag(payload, "force") is True,
        )
    if action == "unblock":
        return Unblock(
            cidr=_cidr(payload),
            reason=_text(payload, "reason", REASON_LENGTH),
            actor=actor,
            dry_run=_flag(payload, "dry_run"),
        )
    if action == "release":
        return Release(reason=_text(payload, "reason", REASON_LENGTH), actor=actor)
    if action == "analyze":
        dry_run = _flag(payload, "dry_run")
        return Analyze(dry_run=True if dry_run is None else dry_run, actor=actor)
    return StatusRequest(actor=actor)


def run_manual(
    payload: Mapping[str, Any],
    *,
    settings: Settings,
    enforcer: Enforcer,
    detector: Detector | None = None,
    notifier: Notifier | None = None,
    dependencies: DependencyCheck | None = None,
) -> ManualResponse:
    """Validate and carry out one manual action. `detector` is needed for analyze (and adds the armed state
    to status); `notifier` announces blocks and unblocks; with `dependencies`, a block of a source or
    prefix the VPC depends on is refused (REFUSED in the deny log) unless the payload says `force`."""
    given = payload.get("action")
    name = given if isinstance(given, str) and given in _FIELDS else None
    try:
        action = parse_manual(payload, settings)
    except ManualError as exc:
        return _error(name, str(exc))
    match action:
        case Block():
            refusal = None
            if dependencies is not None and not action.force:
                refusal = dependencies.refusal(action.cidr, actor=action.actor)
            if refusal is not None:
                enforcer.ledger.append([refusal])
                return _error("block", f"{action.cidr} refused: {refusal.reason}", (refusal,))
            response = _block(action, enforcer)
        case Unblock():
            response = _unblock(action, enforcer)
        case Analyze():
            if detector is None:
                return _error("analyze", "analyze reads the live traffic window: send it to the detector")
            report = detector.analyze(dry_run=action.dry_run, actor=action.actor)
            response = ManualResponse({"ok": True, "action": "analyze", **report.as_dict()}, report.events)
        case Release():
            if detector is None:
                return _error("release", "release ends the capacity holds: send it to the detector")
            released = detector.release_hold(reason=action.reason, actor=action.actor)
            body = {"ok": True, "action": "release", "released": [event_json(e) for e in released]}
            response = ManualResponse(body, released)
        case StatusRequest():
            armings = detector.armings() if detector is not None else None
            response = ManualResponse(_status_body(enforcer.status(), armings, settings))
    if notifier is not None and isinstance(action, Block | Unblock) and response.ok:
        notifier.publish(response.events, context=f"manual:{action.actor}")
    return response


def _block(action: Block, enforcer: Enforcer) -> ManualResponse:
    covering = _covering(enforcer, action.cidr)
    if covering:
        wider = covering[0]
        return _error(
            "block",
            f"{action.cidr} is already denied by {wider.cidr} until {iso(wider.expires)} "
            f"({', '.join(sorted({d.nacl_id for d in covering}))}); a separate entry would only take another "
            f"slot. To make it last longer, block {wider.cidr} with a longer ttl",
        )
    try:
        result = enforcer.block(
            action.cidr, reason=action.reason, actor=action.actor, ttl_s=action.ttl_s, dry_run=action.dry_run
        )
    except BlockRefused as exc:
        return _error("block", str(exc), exc.result.events)
    except PreflightError as exc:
        return _error("block", str(exc))
    went_in = result.of_kind(EventKind.BLOCK, EventKind.EXTEND)
    pending = sorted({e.nacl_id for e in result.of_kind(EventKind.PENDING) if e.nacl_id})
    if not went_in and not pending:
        return _done(
            "block", result, f"{action.cidr} is already denied for at least as long; nothing changed"
        )
    until = max((e.expires for e in went_in if e.expires is not None), default=None)
    nacls = sorted({e.nacl_id for e in went_in if e.nacl_id} - set(pending))
    verb = "would deny" if result.dry_run else "denied"
    when = f" until {iso(until)}" if until is not None else ""
    said = [f"{verb} in {', '.join(nacls)}{when}"] if nacls else []
    if pending:
        said.append(f"pending in {', '.join(pending)} (entry not written yet; the next run writes it)")
    return _done("block", result, f"{action.cidr} {'; '.join(said)}")


def _unblock(action: Unblock, enforcer: Enforcer) -> ManualResponse:
    try:
        result = enforcer.unblock(
            action.cidr, reason=action.reason, actor=action.actor, dry_run=action.dry_run
        )
    except NotBlocked as exc:
        covering = _covering(enforcer, action.cidr)
        if not covering:
            return _error("unblock", str(exc))
        wider = covering[0]
        return _error(
            "unblock",
            f"{action.cidr} has no deny of its own, but is covered by the deny of {wider.cidr} "
            f"({', '.join(sorted({d.nacl_id for d in covering}))}); to lift it, unblock {wider.cidr}",
        )
    nacls = sorted({e.nacl_id for e in result.of_kind(EventKind.UNBLOCK) if e.nacl_id})
    verb = "would lift the deny of" if result.dry_run else "lifted the deny of"
    return _done("unblock", result, f"{verb} {action.cidr} in {', '.join(nacls)}")


def _covering(enforcer: Enforcer, cidr: str) -> list[DenyRecord]:
    """Denies in force of prefixes strictly wider than `cidr` that contain it, widest first."""
    status = enforcer.status()
    network = parse_network(cidr)
    found = [
        deny
        for nacl in status.nacls
        for deny in nacl.denies
        if not deny.expired(status.at) and _strictly_covers(parse_network(deny.cidr), network)
    ]
    return sorted(found, key=lambda d: (parse_network(d.cidr).prefixlen, -d.expires))


def _strictly_covers(wider: Network, narrower: Network) -> bool:
    return (
        wider.version == narrower.version
        and wider.prefixlen < narrower.prefixlen
        and narrower.subnet_of(wider)  # type: ignore[arg-type]
    )


def _done(action: str, result: EnforcementResult, message: str) -> ManualResponse:
    body = {
        "ok": True,
        "action": action,
        "dry_run": result.dry_run,
        "message": message,
        "events": [event_json(e) for e in result.events],
    }
    if result.failures:  # NACLs this action failed on; the others went ahead
        body["failed"] = dict(result.failures)
    if result.problems:  # NACLs left out as unfit, with the fix
        body["problems"] = list(result.problems)
    return ManualResponse(body, result.events)


def _error(action: str | None, error: str, events: tuple[LogEvent, ...] = ()) -> ManualResponse:
    body: dict[str, Any] = {"ok": False, "action": action, "error": error}
    if events:
        body["events"] = [event_json(e) for e in events]
    return ManualResponse(body, events)


def _status_body(status: Status, armings: tuple[Armed, ...] | None, settings: Settings) -> dict[str, Any]:
    """`armings` None: not known here (the detector alone reads the arming state)."""
    return {
        "ok": True,
        "action": "status",
        "at": iso(status.at),
        "dry_run": status.dry_run,
        "armed": armed_json(armings[0] if armings else None),
        "armed_by": None if armings is None else [armed_json(a) for a in armings],
        "automatic_denies": None
        if armings is None
        else automatic_denies(armings, always_pps=settings.always_pps, dry_run=status.dry_run),
        "nacls": [
            {
                "nacl_id": nacl.nacl_id,
                "vpc_id": nacl.vpc_id,
                "pools": [
                    {
                        "direction": str(p.pool.direction),
                        "family": p.pool.family,
                        "rules": f"{p.pool.first_rule}-{p.pool.last_rule}",
                        "denies": p.held,
                        "budget": p.budget,
                        "rules_used": p.rules_used,
                        "quota": p.quota,
                    }
                    for p in nacl.pools
                ],
                "denies": [deny_json(d, status.at) for d in nacl.denies],
                "drift": [drift_json(d) for d in nacl.drift],
                "problems": list(nacl.problems),
                "pending": list(nacl.pending),
            }
            for nacl in status.nacls
        ],
    }


def _cidr(payload: Mapping[str, Any]) -> str:
    value = payload["cidr"]
    if not isinstance(value, str):
        raise ManualError(f"cidr must be a string such as 203.0.113.7/32, got {shown(value)}")
    try:
        return str(parse_network(value))
    except InvalidCidr as exc:
        raise ManualError(f"cidr: {exc}") from None


def _ttl(payload: Mapping[str, Any], settings: Settings) -> int:
    value = payload["ttl"]
    if not isinstance(value, str):
        raise ManualError(f"ttl must be a duration such as 30m, 2h or 1d, got {shown(value)}")
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ManualError(f"ttl: {exc}") from None
    if seconds > settings.max_ttl_s:
        raise ManualError(
            f"ttl {value} is longer than the longest ban, {format_duration(settings.max_ttl_s)} "
            f"({ENV.MAX_TTL})"
        )
    return seconds


def _text(payload: Mapping[str, Any], key: str, length: tuple[int, int]) -> str:
    """The value as kept in the deny log: printable characters only, within `length`."""
    value = payload[key]
    wanted = f"{key} must be text of {length[0]} to {length[1]} characters"
    if not isinstance(value, str):
        raise ManualError(f"{wanted}, got {shown(value)}")
    if len(value) > 4 * length[1]:  # not worth cleaning: no control characters make it fit
        raise ManualError(f"{wanted}, got {len(value)} characters")
    if has_surrogates(value):
        raise ManualError(f"{key} is not valid Unicode text (it holds a lone surrogate): {shown(value)}")
    text = clean(value).strip()
    if not length[0] <= len(text) <= length[1]:
        raise ManualError(f"{wanted} (control characters removed), got {shown(value)}")
    return text


def _flag(payload: Mapping[str, Any], key: str) -> bool | None:
    value = payload.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise ManualError(f"{key} must be true or false, got {shown(value)}")
