"""Pieces of the services' reports: metric values and a tally of the deny-log events an operation wrote, and
the armed state as JSON. Events and denies themselves look as in the CLI (`floodgate.cli.views`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from floodgate.adapters.arming import Armed
from floodgate.core.records import EventKind, LogEvent
from floodgate.observability import METRIC
from floodgate.services.records_json import iso

_EVENT_METRICS = {
    EventKind.BLOCK: METRIC.BLOCKS,
    EventKind.EXTEND: METRIC.EXTENSIONS,
    EventKind.EVICT: METRIC.EVICTIONS,
    EventKind.EXPIRE: METRIC.EXPIRIES,
    EventKind.UNBLOCK: METRIC.UNBLOCKS,
    EventKind.REFUSED: METRIC.REFUSALS,
    EventKind.REPAIR: METRIC.REPAIRS,
    EventKind.QUARANTINE: METRIC.QUARANTINES,
    EventKind.PENDING: METRIC.PENDING_DENIES,
    EventKind.FOREIGN: METRIC.FOREIGN_ENTRIES,
}


def event_metrics(events: Iterable[LogEvent]) -> dict[str, float]:
    """Metric values for the events an operation wrote. DRYRUN events changed nothing: not counted."""
    counts: dict[str, float] = {}
    for event in events:
        name = _EVENT_METRICS.get(event.kind)
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    return counts


def event_tally(events: Iterable[LogEvent]) -> dict[str, int]:
    """{"BLOCK": 2, "EXTEND": 1}; a dry run's events count as "DRYRUN:BLOCK" and so on."""
    counts: dict[str, int] = {}
    for event in events:
        name = f"{event.kind}:{event.would}" if event.would else str(event.kind)
        counts[name] = counts.get(name, 0) + 1
    return counts


def automatic_denies(armings: tuple[Armed, ...], *, always_pps: float | None, dry_run: bool) -> str:
    """Whether the detector may deny on its own right now, in one plain sentence."""
    if dry_run:
        return "no: dry run, nothing is enforced (denies are only logged as DRYRUN)"
    if armings:
        names = ", ".join(a.alarm_name for a in armings)
        return f"yes: armed by {len(armings)} alarm{'s' if len(armings) > 1 else ''} ({names})"
    if always_pps is not None:
        return f"only above {always_pps:g} pps: no alarm arms enforcement now"
    return "no: no alarm arms enforcement now; automatic denies start when a watched alarm fires"


def armed_json(armed: Armed | None) -> dict[str, Any] | None:
    if armed is None:
        return None
    return {
        "alarm": armed.alarm_name,
        "since": iso(armed.armed_at),
        "until": iso(armed.armed_until),
        "reason": armed.reason,
    }
