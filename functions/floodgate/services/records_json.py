"""The JSON shape of Floodgate's records — log events, denies, drift — shared by the Lambdas' answers and the
CLI's `--json` output, so that a person or a script reads the same fields whichever way they asked.

The fields come from the records themselves (`core.records.plain_values`); what is added here is the key
order people are used to (a field not named there follows at the end, never dropped) and times in ISO form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from floodgate.core.decision import Drift
from floodgate.core.records import DenyRecord, Evidence, LogEvent, plain_values, time_key

_EVENT_KEYS = (
    "at",
    "event",
    "would",
    "cidr",
    "nacl_id",
    "direction",
    "rule",
    "origin",
    "actor",
    "reason",
    "evidence",
    "expires",
    "offences",
    "event_id",
)
_DENY_KEYS = ("cidr", "nacl_id", "direction", "rule", "created", "expires", "expires_in_s", "offences")


def iso(at: float) -> str:
    """2025-11-24T16:30:05.123456Z, for JSON."""
    return time_key(at)


def evidence_json(evidence: Evidence | None) -> dict[str, Any] | None:
    return None if evidence is None else _json_values(evidence)


def event_json(event: LogEvent) -> dict[str, Any]:
    values = _json_values(event)
    values["at"] = iso(event.at)
    values["expires"] = iso(event.expires) if event.expires is not None else None
    return _ordered(values, _EVENT_KEYS)


def deny_json(deny: DenyRecord, now: float) -> dict[str, Any]:
    values = _json_values(deny)
    values.update(
        created=iso(deny.created), expires=iso(deny.expires), expires_in_s=round(deny.expires - now, 3)
    )
    return _ordered(values, _DENY_KEYS)


def drift_json(drift: Drift) -> dict[str, Any]:
    return _json_values(drift)


def _json_values(record: object) -> dict[str, Any]:
    return plain_values(record, keep_none=True, internal=False)


def _ordered(values: Mapping[str, Any], first: Sequence[str]) -> dict[str, Any]:
    return {**{key: values[key] for key in first}, **values}
