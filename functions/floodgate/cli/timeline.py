"""What the incident report shows, computed from the deny log: one lane per deny (NACL, direction, CIDR) with
the spans it was in force, the top sources by rate, and per incident the traffic over time with the effect
of each deny (`core.effect`). Pure: no I/O.

A span opens at BLOCK and closes at EXPIRE, EVICT, UNBLOCK or QUARANTINE; EXTEND and REPAIR mark it on the
way. A span whose BLOCK lies before the window starts at the window's edge (`started_before`); one still open
at the end of the window runs to that edge (`open_end`). Denies in force that left no event in the window get
a lane too. A REPAIR alone opens nothing (it may be the removal of a left-over entry), and a FOREIGN event
draws a lane of its own, marked `foreign`: an entry Floodgate found and did not write, not a deny of its.

An incident is a stretch of time in which denies or capacity holds were in force, those less than
`INCIDENT_GAP_S` apart counting as one. Its traffic is the expirer's EFFECT samples within it; the deny log's
table and counts leave those samples out (they are measurements, not actions).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from floodgate.core.effect import DenyEffect, TrafficPoint, accept_pps, deny_effects, traffic_series
from floodgate.core.records import DenyRecord, EventKind, Evidence, LogEvent, Origin
from floodgate.core.slots import Direction
from floodgate.services.capacity_hold import GROUP_PREFIX, HELD

ENDS = frozenset({EventKind.EXPIRE, EventKind.EVICT, EventKind.UNBLOCK, EventKind.QUARANTINE})
MARKS = frozenset({EventKind.EXTEND, EventKind.REPAIR})
CHARTED = ENDS | MARKS | {EventKind.BLOCK, EventKind.FOREIGN}
RATED = frozenset({EventKind.BLOCK, EventKind.EXTEND, EventKind.REFUSED})

LaneKey = tuple[str, Direction, str]  # NACL, direction, CIDR
INCIDENT_GAP_S = 600.0


@dataclass(frozen=True, slots=True)
class Mark:
    at: float
    kind: EventKind
    reason: str


@dataclass(slots=True)
class Span:
    start: float
    end: float
    started_before: bool
    origin: Origin | None
    rule: int | None
    reason: str  # why it began (the BLOCK's reason), or why it is known at all
    ended_by: EventKind | None = None  # None: still in force at the window's end
    end_reason: str = ""
    marks: list[Mark] = field(default_factory=list)

    @property
    def open_end(self) -> bool:
        return self.ended_by is None

    def close(self, event: LogEvent) -> None:
        self.end = event.at
        self.ended_by = event.kind
        self.end_reason = event.reason


@dataclass(frozen=True, slots=True)
class Lane:
    nacl_id: str
    direction: Direction
    cidr: str
    spans: tuple[Span, ...]
    foreign: bool = False  # an entry Floodgate found in its rules and did not write: not one of its denies


@dataclass(slots=True)
class Source:
    """One source's part in the incident: its peak evidence and what was done about it."""

    cidr: str
    first_seen: float
    last_seen: float
    peak_pps: float = 0.0
    peak_bps: float = 0.0
    peak_share: float = 0.0
    members: int = 0
    offences: int = 0  # the highest offence count its denies carried
    refusals: int = 0
    nacls: set[str] = field(default_factory=set)  # where it was denied

    def add(self, kind: EventKind, event: LogEvent, evidence: Evidence) -> None:
        self.first_seen = min(self.first_seen, event.at)
        self.last_seen = max(self.last_seen, event.at)
        self.peak_pps = max(self.peak_pps, evidence.pps, evidence.reject_pps or 0.0)
        self.peak_bps = max(self.peak_bps, evidence.bps)
        self.peak_share = max(self.peak_share, evidence.share)
        self.members = max(self.members, evidence.members)
        self.offences = max(self.offences, event.offences or 0)
        if kind is EventKind.REFUSED:
            self.refusals += 1
        elif event.nacl_id:
            self.nacls.add(event.nacl_id)


def lanes(
    events: Iterable[LogEvent], active: Sequence[DenyRecord], *, since: float, until: float
) -> list[Lane]:
    """The window's deny lanes, grouped by NACL; `events` oldest first, `active` the denies in force now."""
    spans: dict[LaneKey, list[Span]] = {}
    open_spans: dict[LaneKey, Span] = {}
    foreign: dict[LaneKey, list[Span]] = {}
    for event in events:
        if event.nacl_id is None or event.kind not in CHARTED:
            continue
        key = (event.nacl_id, event.direction or Direction.INGRESS, event.cidr)
        if event.kind is EventKind.FOREIGN:
            found = Span(event.at, until, False, None, event.rule, event.reason)
            foreign.setdefault(key, []).append(found)
            continue
        span = open_spans.get(key)
        if span is None and event.kind is EventKind.REPAIR:
            continue  # a repair with no deny known here: not evidence of a deny in force
        if span is None:
            span = open_spans[key] = _opened_by(event, since, until)
            spans.setdefault(key, []).append(span)
        if event.kind in ENDS:
            span.close(event)
            del open_spans[key]
        elif event.kind in MARKS:
            span.marks.append(Mark(event.at, event.kind, event.reason))
    for deny in active:  # in force all through the window, without an event in it
        key = (deny.nacl_id, deny.direction, deny.cidr)
        if key not in open_spans and deny.created <= until:
            span = Span(
                max(deny.created, since), until, deny.created < since, deny.origin, deny.rule, deny.reason
            )
            spans.setdefault(key, []).append(span)
    charted = [(key, found, False) for key, found in spans.items()]
    charted += [(key, found, True) for key, found in foreign.items()]
    by_nacl_then_start = sorted(
        charted, key=lambda item: (*item[0][:2], item[2], item[1][0].start, item[0][2])
    )
    return [Lane(*key, tuple(found), foreign=is_foreign) for key, found, is_foreign in by_nacl_then_start]


def _opened_by(event: LogEvent, since: float, until: float) -> Span:
    """The span of an event when none is open: a BLOCK begins one; any other event means the deny began
    before the window."""
    if event.kind is EventKind.BLOCK:
        return Span(event.at, until, False, event.origin, event.rule, event.reason)
    return Span(since, until, True, event.origin, event.rule, "denied before the window")


def top_sources(events: Iterable[LogEvent], limit: int = 15) -> list[Source]:
    """The sources with the highest rates seen in the window (evidence of BLOCK, EXTEND, REFUSED, and of
    the dry runs standing for them), busiest first."""
    sources: dict[str, Source] = {}
    for event in events:
        kind = event.would if event.kind is EventKind.DRYRUN and event.would else event.kind
        evidence = event.evidence
        if evidence is None or kind not in RATED or max(evidence.pps, evidence.reject_pps or 0.0) <= 0:
            continue
        sources.setdefault(event.cidr, Source(event.cidr, event.at, event.at)).add(kind, event, evidence)
    return sorted(sources.values(), key=lambda s: (-s.peak_pps, s.cidr))[:limit]


@dataclass(frozen=True, slots=True)
class HoldSpan:
    """An Auto Scaling group held at its capacity, from its HOLD to its RELEASE (or the window's end)."""

    group: str
    start: float
    end: float
    open_end: bool


def hold_spans(events: Iterable[LogEvent], *, since: float, until: float) -> list[HoldSpan]:
    """The window's capacity holds: a HOLD that held its group opens one, the group's RELEASE closes it (a
    RELEASE without its HOLD in the window closes one held since before the window)."""
    opened: dict[str, float] = {}
    spans: list[HoldSpan] = []
    for event in events:
        if not event.cidr.startswith(GROUP_PREFIX):
            continue
        group = event.cidr[len(GROUP_PREFIX) :]
        if event.kind is EventKind.HOLD and event.reason.startswith(HELD):
            opened.setdefault(group, event.at)
        elif event.kind is EventKind.RELEASE:
            spans.append(HoldSpan(group, opened.pop(group, since), event.at, False))
    spans += [HoldSpan(group, start, until, True) for group, start in opened.items()]
    return sorted(spans, key=lambda h: (h.start, h.group))


@dataclass(frozen=True, slots=True)
class DenyMoment:
    """Denies that began (BLOCK) or ended at one moment."""

    at: float
    began: tuple[str, ...]  # CIDRs
    ended: tuple[str, ...]
    accept_pps_before: float  # the ACCEPT rate of those that began, from the BLOCK evidence
    inbound_pps: float | None  # the inbound rate at the BLOCK, from the evidence (rate / share)


def deny_moments(events: Iterable[LogEvent]) -> list[DenyMoment]:
    """Beginnings and ends of denies, one per moment (a deny written in several NACLs at once counts once)."""
    began: dict[int, dict[str, Evidence | None]] = {}
    ended: dict[int, set[str]] = {}
    first_at: dict[int, float] = {}  # the second a moment falls in -> its earliest event
    for event in events:
        second = int(event.at)
        if event.kind is EventKind.BLOCK:
            began.setdefault(second, {}).setdefault(event.cidr, event.evidence)
        elif event.kind in ENDS:
            ended.setdefault(second, set()).add(event.cidr)
        else:
            continue
        first_at[second] = min(first_at.get(second, event.at), event.at)
    moments = []
    for second in sorted(first_at):
        evidence = [e for e in began.get(second, {}).values() if e is not None]
        inbound = [e.inbound_pps or e.pps / e.share for e in evidence if e.inbound_pps or e.share > 0]
        moments.append(
            DenyMoment(
                at=first_at[second],
                began=tuple(sorted(began.get(second, {}))),
                ended=tuple(sorted(ended.get(second, set()))),
                accept_pps_before=sum(accept_pps(e) for e in evidence),
                inbound_pps=max(inbound) if inbound else None,
            )
        )
    return moments


@dataclass(frozen=True, slots=True)
class Incident:
    """One stretch of denies and holds, with the traffic sampled in it."""

    start: float
    end: float
    points: tuple[TrafficPoint, ...]
    moments: tuple[DenyMoment, ...]
    holds: tuple[HoldSpan, ...]

    @property
    def peak_inbound_pps(self) -> float:
        rates = [p.inbound_pps for p in self.points] + [m.inbound_pps or 0.0 for m in self.moments]
        return max(rates, default=0.0)


def incidents(
    lanes: Sequence[Lane], holds: Sequence[HoldSpan], samples: Sequence[LogEvent], events: Sequence[LogEvent]
) -> list[Incident]:
    """The stretches of time with a deny or a hold in force, joined when less than INCIDENT_GAP_S apart."""
    stretches = sorted(
        [(span.start, span.end) for lane in lanes for span in lane.spans] + [(h.start, h.end) for h in holds]
    )
    merged: list[list[float]] = []
    for start, end in stretches:
        if merged and start <= merged[-1][1] + INCIDENT_GAP_S:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    points = traffic_series(samples)
    moments = deny_moments(events)
    return [
        Incident(
            start,
            end,
            tuple(p for p in points if start <= p.at <= end),
            tuple(m for m in moments if start <= m.at <= end),
            tuple(h for h in holds if h.start <= end and h.end >= start),
        )
        for start, end in merged
    ]


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the post-incident page shows."""

    stack: str
    since: float
    until: float
    generated: float
    events: tuple[LogEvent, ...]  # oldest first, without the EFFECT samples
    lanes: tuple[Lane, ...]
    sources: tuple[Source, ...]
    in_force: int  # denies in force when the report was made
    effects: tuple[DenyEffect, ...] = ()  # each deny that began in the window, with its samples
    incidents: tuple[Incident, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        stack: str,
        events: Sequence[LogEvent],
        active: Sequence[DenyRecord],
        since: float,
        until: float,
        generated: float,
    ) -> Report:
        actions = [e for e in events if e.kind is not EventKind.EFFECT]
        samples = [e for e in events if e.kind is EventKind.EFFECT]
        found = lanes(actions, active, since=since, until=until)
        holds = hold_spans(actions, since=since, until=until)
        return cls(
            stack=stack,
            since=since,
            until=until,
            generated=generated,
            events=tuple(actions),
            lanes=tuple(found),
            sources=tuple(top_sources(actions)),
            in_force=len(active),
            effects=tuple(deny_effects(events)),
            incidents=tuple(incidents(found, holds, samples, actions)),
        )

    @property
    def denied_sources(self) -> int:
        """Sources denied at some time in the window: those the timeline draws, whether their deny began in
        the window or before it, so the page's counts and its timeline agree."""
        return len({lane.cidr for lane in self.lanes if not lane.foreign})

    def count(self, kind: EventKind) -> int:
        return sum(1 for event in self.events if event.kind is kind)
