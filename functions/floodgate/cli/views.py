"""How deny-log events and ledger denies look on screen and in JSON, the same for every command."""

from __future__ import annotations

from floodgate.cli.render import rate
from floodgate.cli.times import clock, expires_in
from floodgate.core.decision import Drift
from floodgate.core.records import DenyRecord, EventKind, Evidence, LogEvent, Origin
from floodgate.core.slots import Direction

EVENT_HEADERS = ("TIME (UTC)", "EVENT", "CIDR", "NACL", "RULE", "RATE", "BY", "REASON")
DENY_HEADERS = ("CIDR", "RULE", "EXPIRES IN", "OFFENCES", "ORIGIN", "RATE", "REASON")
DRIFT_HEADERS = ("DRIFT", "NACL", "RULE", "CIDR", "DETAIL")


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """1 NACL, 2 NACLs; 1 deny, 3 denies (give the plural when it is not noun + s)."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def short_actor(actor: str) -> str:
    """An ARN without its arn:aws:sts::ACCOUNT: prefix, e.g. assumed-role/OnCall/alice; else `actor`."""
    return actor.split(":", 5)[5] if actor.startswith("arn:") and actor.count(":") >= 5 else actor


def origin_text(origin: Origin) -> str:
    """automatic, alarm:Floodgate-early-warning, manual:assumed-role/OnCall/alice."""
    return f"{origin.kind}:{short_actor(origin.name)}" if origin.name else str(origin.kind)


def event_name(event: LogEvent) -> str:
    """BLOCK, EXPIRE, …; a dry run says what it would have done (DRYRUN:BLOCK), a pending deny what was
    decided and is not in force yet (PENDING:BLOCK)."""
    shows_would = event.kind in (EventKind.DRYRUN, EventKind.PENDING) and event.would
    return f"{event.kind}:{event.would}" if shows_would else str(event.kind)


def rule_text(rule: int | None, direction: Direction | None) -> str:
    if rule is None:
        return ""
    return f"{rule}" if direction in (None, Direction.INGRESS) else f"{rule} {direction}"


def evidence_rate(evidence: Evidence | None) -> str:
    """The packet rate behind an event: what the detector saw, else what was seen as REJECT."""
    if evidence is None:
        return ""
    if evidence.pps > 0:
        return rate(evidence.pps, "pps")
    if evidence.reject_pps is not None:
        return f"{rate(evidence.reject_pps, 'pps')} rejected"
    return ""


def evidence_text(evidence: Evidence | None) -> str:
    """All of the evidence, e.g. 9.12 kpps, 43.80 Mbps, 12.0% of inbound, 4 sources; empty for none."""
    if evidence is None:
        return ""
    parts = []
    if evidence.pps > 0:
        parts += [rate(evidence.pps, "pps"), rate(evidence.bps, "bps"), f"{evidence.share:.1%} of inbound"]
    if evidence.members > 1:
        parts.append(f"{evidence.members} sources")
    if evidence.reject_pps is not None:
        judged = (
            "" if evidence.threshold_pps is None else f" (threshold {rate(evidence.threshold_pps, 'pps')})"
        )
        parts.append(f"{rate(evidence.reject_pps, 'pps')} seen as REJECT{judged}")
    elif evidence.threshold_pps is not None:
        parts.append(f"no REJECT rate seen (threshold {rate(evidence.threshold_pps, 'pps')})")
    return ", ".join(parts)


def event_row(event: LogEvent) -> tuple[str, ...]:
    return (
        clock(event.at),
        event_name(event),
        event.cidr,
        event.nacl_id or "",
        rule_text(event.rule, event.direction),
        evidence_rate(event.evidence),
        short_actor(event.actor),
        event.reason,
    )


def deny_row(deny: DenyRecord, now: float) -> tuple[str, ...]:
    return (
        deny.cidr,
        rule_text(deny.rule, deny.direction),
        expires_in(deny.expires, now),
        str(deny.offences),
        origin_text(deny.origin),
        evidence_rate(deny.evidence),
        deny.reason,
    )


def drift_row(drift: Drift) -> tuple[str, ...]:
    return (str(drift.kind), drift.nacl_id, rule_text(drift.rule, drift.direction), drift.cidr, drift.detail)
