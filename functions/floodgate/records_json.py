"""The JSON shape of Floodgate's records — log events, denies, drift — shared by the Lambdas' answers and the
CLI's `--json` output, so that a person or a script reads the same fields whichever way they asked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from floodgate.core.decision import Drift
from floodgate.core.records import DenyRecord, Evidence, LogEvent


def iso(at: float) -> str:
    """2025-11-24T16:30:05.123456Z, for JSON."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def evidence_json(evidence: Evidence | None) -> dict[str, Any] | None:
    if evidence is None:
        return None
    return {
        "pps": evidence.pps,
        "bps": evidence.bps,
        "share": evidence.share,
        "members": evidence.members,
        "reject_pps": evidence.reject_pps,
    }


def event_json(event: LogEvent) -> dict[str, Any]:
    return {
        "at": iso(event.at),
        "event": str(event.kind),
        "would": str(event.would) if event.would else None,
        "cidr": event.cidr,
        "nacl_id": event.nacl_id,
        "direction": str(event.direction) if event.direction else None,
        "rule": event.rule,
        "origin": str(event.origin) if event.origin else None,
        "actor": event.actor,
        "reason": event.reason,
        "evidence": evidence_json(event.evidence),
        "expires": iso(event.expires) if event.expires is not None else None,
        "offences": event.offences,
        "event_id": event.event_id,
    }


def deny_json(deny: DenyRecord, now: float) -> dict[str, Any]:
    return {
        "cidr": deny.cidr,
        "nacl_id": deny.nacl_id,
        "direction": str(deny.direction),
        "rule": deny.rule,
        "created": iso(deny.created),
        "expires": iso(deny.expires),
        "expires_in_s": round(deny.expires - now, 3),
        "offences": deny.offences,
        "origin": str(deny.origin),
        "reason": deny.reason,
        "evidence": evidence_json(deny.evidence),
    }


def drift_json(drift: Drift) -> dict[str, Any]:
    return {
        "kind": str(drift.kind),
        "nacl_id": drift.nacl_id,
        "direction": str(drift.direction),
        "rule": drift.rule,
        "cidr": drift.cidr,
        "detail": drift.detail,
    }
