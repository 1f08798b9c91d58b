"""The effect of a deny: the traffic its source sent before and after the deny went in, and when it stopped.

Before: the BLOCK event's evidence (the detector's window when it decided), whose ACCEPT rate is its packet
rate less what was already seen as REJECT. After: EFFECT events, which the expirer writes once a run (every
minute) for each source denied inbound while any deny is in force: the source's packet and REJECT rates in
the window then, and the window's whole inbound rate. A deny that works turns the source's ACCEPT into
REJECT; a source that goes on flooding keeps its REJECT rate up; a source that stopped shows no traffic.

Every figure is as Floodgate saw it at the event's time: flow logs reach the window minutes after the
packets, so a sample describes the traffic of the window before it. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from floodgate.core.records import EventKind, Evidence, LogEvent
from floodgate.core.summary import ADDRESS_BITS, TrafficSummary

ENDS = frozenset({EventKind.EXPIRE, EventKind.EVICT, EventKind.UNBLOCK, EventKind.QUARANTINE})


def source_evidence(summary: TrafficSummary, cidr: str, span_s: float) -> Evidence:
    """The rates of everything inside `cidr` in the window, and the window's inbound rate.

    Uses the level of exactly that prefix length when the summary keeps one; otherwise the counters of the
    coarsest finer level inside it (a lower bound: lighter members may have been compacted away), as
    `core.window.reject_rate_of` does for REJECT alone.
    """
    inbound = summary.total_packets / span_s
    network = ipaddress.ip_network(cidr)
    finer = [length for v, length in summary.levels if v == network.version and length >= network.prefixlen]
    if not finer:
        return Evidence(reject_pps=0.0, inbound_pps=inbound)
    length = min(finer)
    shift = length - network.prefixlen
    wanted = int(network.network_address) >> (ADDRESS_BITS[network.version] - network.prefixlen)
    inside = [
        c for key, c in summary.levels[(network.version, length)].counters.items() if key >> shift == wanted
    ]
    packets = sum(c.packets for c in inside)
    # Members are the sources seen inside: the keys of the finest level (the sources themselves) under it.
    finest = max(finer)
    member_shift = finest - network.prefixlen
    members = sum(
        1 for key in summary.levels[(network.version, finest)].counters if key >> member_shift == wanted
    )
    return Evidence(
        pps=packets / span_s,
        bps=8 * sum(c.bytes for c in inside) / span_s,
        share=packets / summary.total_packets if summary.total_packets else 0.0,
        members=members,
        reject_pps=sum(c.reject_packets for c in inside) / span_s,
        inbound_pps=inbound,
    )


def effect_events(
    summary: TrafficSummary, cidrs: Iterable[str], *, span_s: float, at: float, actor: str
) -> list[LogEvent]:
    """One EFFECT event per denied source: its rates in the window now. All carry the same `at`, which
    groups them into one run's point of the traffic series."""
    events = []
    for cidr in sorted(set(cidrs)):
        evidence = source_evidence(summary, cidr, span_s)
        reason = (
            f"in the last {span_s:.0f}s of flow logs: {evidence.reject_pps or 0.0:,.0f} pps REJECT, "
            f"{accept_pps(evidence):,.0f} pps ACCEPT (inbound {evidence.inbound_pps or 0.0:,.0f} pps)"
        )
        events.append(LogEvent(EventKind.EFFECT, at, cidr, reason, actor, evidence=evidence))
    return events


def outermost(cidrs: Iterable[str]) -> list[str]:
    """The CIDRs not inside another of them, sorted: adding up their traffic counts no packet twice."""
    networks = sorted({ipaddress.ip_network(c) for c in cidrs}, key=lambda n: (n.version, n.prefixlen))
    kept: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for network in networks:
        if not any(network.version == k.version and network.subnet_of(k) for k in kept):  # type: ignore[arg-type]
            kept.append(network)
    return sorted(str(n) for n in kept)


def accept_pps(evidence: Evidence) -> float:
    """Packets per second that got through: all the source's packets less those seen as REJECT."""
    return max(0.0, evidence.pps - (evidence.reject_pps or 0.0))


@dataclass(frozen=True, slots=True)
class TrafficPoint:
    """The traffic at one expirer run: inbound, and the part of it from denied sources."""

    at: float
    inbound_pps: float
    covered_accept_pps: float  # from denied sources and let through (a deny not yet in place, or leaking)
    covered_reject_pps: float  # from denied sources and stopped by the NACL

    @property
    def covered_share(self) -> float:
        covered = self.covered_accept_pps + self.covered_reject_pps
        return min(1.0, covered / self.inbound_pps) if self.inbound_pps > 0 else 0.0


def traffic_point(at: float, samples: Sequence[LogEvent]) -> TrafficPoint:
    """The point of one run's EFFECT events (a source inside another denied one is counted once)."""
    by_cidr = {e.cidr: e.evidence for e in samples if e.evidence is not None}
    counted = [by_cidr[c] for c in outermost(by_cidr)]
    inbound = max((e.inbound_pps or 0.0 for e in by_cidr.values()), default=0.0)
    return TrafficPoint(
        at=at,
        inbound_pps=inbound,
        covered_accept_pps=sum(accept_pps(e) for e in counted),
        covered_reject_pps=sum(e.reject_pps or 0.0 for e in counted),
    )


def traffic_series(events: Iterable[LogEvent]) -> list[TrafficPoint]:
    """One point per expirer run that left EFFECT events, oldest first."""
    runs: dict[float, list[LogEvent]] = {}
    for event in events:
        if event.kind is EventKind.EFFECT:
            runs.setdefault(event.at, []).append(event)
    return [traffic_point(at, runs[at]) for at in sorted(runs)]


@dataclass(frozen=True, slots=True)
class DenyEffect:
    """One source's deny, from its first BLOCK until every NACL's deny of it ended (or until now)."""

    cidr: str
    denied_at: float
    accept_pps_before: float  # at the BLOCK, from the detector's evidence
    ended_at: float | None  # when the last NACL's deny ended; None while one is in force
    samples: int  # EFFECT events since the BLOCK
    reject_pps_peak: float | None  # the highest REJECT rate sampled since the BLOCK
    reject_pps_latest: float | None  # the latest sample's
    accept_pps_latest: float | None  # the latest sample's: near 0 when the deny works
    last_seen: float | None  # the latest sample in which the source sent anything
    gone_by: float | None  # the first sample after `last_seen` in which it sent nothing: it had stopped

    @property
    def still_sending(self) -> bool:
        return self.last_seen is not None and self.gone_by is None


@dataclass(slots=True)
class _Episode:
    cidr: str
    denied_at: float
    accept_before: float
    open_nacls: set[str]
    ended_at: float | None = None
    samples: list[tuple[float, Evidence]] = field(default_factory=list)  # (at, evidence), oldest first


def deny_effects(events: Iterable[LogEvent]) -> list[DenyEffect]:
    """The effect of each deny in `events` (oldest first), in the order the denies began.

    A deny of a source begins with a BLOCK while none of its NACLs denies it, and ends when the last NACL's
    deny ends (EXPIRE, EVICT, UNBLOCK). EFFECT samples go to the source's latest deny begun before them.
    """
    episodes: list[_Episode] = []
    current: dict[str, _Episode] = {}
    for event in events:
        episode = current.get(event.cidr)
        if event.kind is EventKind.BLOCK:
            if episode is None or not episode.open_nacls:
                before = accept_pps(event.evidence) if event.evidence else 0.0
                episode = current[event.cidr] = _Episode(event.cidr, event.at, before, set())
                episodes.append(episode)
            episode.open_nacls.add(event.nacl_id or "")
            episode.ended_at = None
        elif episode is not None and event.kind in ENDS:
            episode.open_nacls.discard(event.nacl_id or "")
            if not episode.open_nacls:
                episode.ended_at = event.at
        elif episode is not None and event.kind is EventKind.EFFECT and event.evidence is not None:
            episode.samples.append((event.at, event.evidence))
    return [_effect(episode) for episode in episodes]


def _effect(episode: _Episode) -> DenyEffect:
    rated = episode.samples
    seen = [at for at, e in rated if e.pps > 0]
    last_seen = seen[-1] if seen else None
    gone_by = next((at for at, e in rated if last_seen is not None and at > last_seen and e.pps <= 0), None)
    latest = rated[-1][1] if rated else None
    return DenyEffect(
        cidr=episode.cidr,
        denied_at=episode.denied_at,
        accept_pps_before=episode.accept_before,
        ended_at=episode.ended_at,
        samples=len(rated),
        reject_pps_peak=max((e.reject_pps or 0.0 for _, e in rated), default=None),
        reject_pps_latest=None if latest is None else latest.reject_pps or 0.0,
        accept_pps_latest=None if latest is None else accept_pps(latest),
        last_seen=last_seen,
        gone_by=gone_by,
    )
