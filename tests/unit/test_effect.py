"""The effect of a deny (core.effect): rates of a denied source in the window, and what the deny log says
about each deny before and after it went in. Expectations computed by hand in the comments."""

from __future__ import annotations

import ipaddress

import pytest

from floodgate.core.effect import (
    deny_effects,
    effect_events,
    outermost,
    source_evidence,
    traffic_series,
)
from floodgate.core.records import EventKind, Evidence, LogEvent
from floodgate.core.summary import Counter, TrafficSummary

T0 = 1_764_000_000.0


def summary_of(counters: dict[str, Counter], total_packets: int) -> TrafficSummary:
    """A summary holding these /32 and /24 counters, with `total_packets` inbound in all."""
    summary = TrafficSummary(capacity=64)
    for cidr, counter in counters.items():
        network = ipaddress.ip_network(cidr)
        key = int(network.network_address) >> (32 - network.prefixlen)
        summary.levels[(4, network.prefixlen)].counters[key] = counter
    summary.total_packets = total_packets
    return summary


def test_source_evidence_reads_the_exact_level_or_the_finer_one_inside() -> None:
    summary = summary_of(
        {
            "203.0.113.7/32": Counter(600_000, 360_000_000, 540_000, 0),
            "203.0.113.9/32": Counter(60_000, 36_000_000, 0, 0),
            "198.51.100.1/32": Counter(6_000, 3_600_000, 0, 0),
            "203.0.113.0/24": Counter(660_000, 396_000_000, 540_000, 0),
        },
        total_packets=1_200_000,
    )
    # 600,000 packets in 60 s: 10,000 pps, of which 540,000 / 60 = 9,000 pps REJECT; 360 MB * 8 / 60.
    seven = source_evidence(summary, "203.0.113.7/32", 60.0)
    assert seven == Evidence(
        pps=10_000.0, bps=48_000_000.0, share=0.5, members=1, reject_pps=9_000.0, inbound_pps=20_000.0
    )
    # No /23 level is kept (the summary has /32, /24 and /16): the /24 counters inside it add up.
    prefix = source_evidence(summary, "203.0.112.0/23", 60.0)
    assert (prefix.pps, prefix.reject_pps, prefix.members) == (11_000.0, 9_000.0, 2)
    assert source_evidence(summary, "192.0.2.1/32", 60.0) == Evidence(reject_pps=0.0, inbound_pps=20_000.0)


def test_effect_events_are_one_per_source_at_one_time() -> None:
    summary = summary_of({"203.0.113.7/32": Counter(600, 360_000, 600, 0)}, total_packets=1200)
    events = effect_events(summary, ["203.0.113.7/32", "192.0.2.1/32"], span_s=60.0, at=T0, actor="expirer")
    assert [(e.kind, e.cidr, e.at, e.nacl_id) for e in events] == [
        (EventKind.EFFECT, "192.0.2.1/32", T0, None),
        (EventKind.EFFECT, "203.0.113.7/32", T0, None),
    ]
    assert events[1].reason == "in the last 60s of flow logs: 10 pps REJECT, 0 pps ACCEPT (inbound 20 pps)"


def test_outermost_leaves_out_what_lies_inside_another() -> None:
    assert outermost(
        ["203.0.113.7/32", "203.0.113.0/24", "192.0.2.1/32", "2001:db8::/48", "2001:db8::1/128"]
    ) == [
        "192.0.2.1/32",
        "2001:db8::/48",
        "203.0.113.0/24",
    ]


def event(kind: EventKind, at: float, cidr: str, *, nacl: str | None = None, **rates: float) -> LogEvent:
    evidence = Evidence(**rates) if rates else None  # type: ignore[arg-type]
    return LogEvent(kind, T0 + at, cidr, "", "test", nacl_id=nacl, evidence=evidence)


SEVEN = "203.0.113.7/32"
BOTS = "192.0.2.0/24"


def test_a_deny_that_works_then_a_source_that_stops() -> None:
    events = [
        event(EventKind.BLOCK, 0, SEVEN, nacl="acl-a", pps=9_000.0, share=0.3, reject_pps=500.0),
        event(EventKind.BLOCK, 1, SEVEN, nacl="acl-b", pps=9_000.0, share=0.3, reject_pps=500.0),
        event(EventKind.EFFECT, 300, SEVEN, pps=8_000.0, reject_pps=7_000.0, inbound_pps=30_000.0),
        event(EventKind.EFFECT, 600, SEVEN, pps=12_000.0, reject_pps=12_000.0, inbound_pps=40_000.0),
        event(EventKind.EFFECT, 900, SEVEN, pps=0.0, reject_pps=0.0, inbound_pps=5_000.0),
        event(EventKind.EFFECT, 1200, SEVEN, pps=0.0, reject_pps=0.0, inbound_pps=5_000.0),
        event(EventKind.EXPIRE, 1800, SEVEN, nacl="acl-a"),
        event(EventKind.EXPIRE, 1801, SEVEN, nacl="acl-b"),
    ]
    (effect,) = deny_effects(events)
    assert effect.cidr == SEVEN and effect.denied_at == T0
    assert effect.accept_pps_before == 8_500.0  # 9,000 pps less the 500 already REJECTed
    assert effect.samples == 4
    assert effect.reject_pps_peak == 12_000.0
    assert (effect.reject_pps_latest, effect.accept_pps_latest) == (0.0, 0.0)
    assert effect.last_seen == T0 + 600 and effect.gone_by == T0 + 900
    assert effect.ended_at == T0 + 1801 and not effect.still_sending


def test_a_second_deny_of_the_same_source_is_its_own() -> None:
    events = [
        event(EventKind.BLOCK, 0, SEVEN, nacl="acl-a", pps=9_000.0, share=0.3),
        event(EventKind.EFFECT, 300, SEVEN, pps=9_000.0, reject_pps=9_000.0, inbound_pps=30_000.0),
        event(EventKind.EXTEND, 400, SEVEN, nacl="acl-a", pps=9_000.0, share=0.3),
        event(EventKind.EVICT, 600, SEVEN, nacl="acl-a"),
        event(EventKind.BLOCK, 900, SEVEN, nacl="acl-a", pps=4_000.0, share=0.1),
        event(EventKind.EFFECT, 1200, SEVEN, pps=3_000.0, reject_pps=2_500.0, inbound_pps=30_000.0),
    ]
    first, second = deny_effects(events)
    assert (first.accept_pps_before, first.ended_at, first.samples, first.reject_pps_peak) == (
        9_000.0,
        T0 + 600,
        1,
        9_000.0,
    )
    assert (second.denied_at, second.accept_pps_before, second.ended_at) == (T0 + 900, 4_000.0, None)
    # 500 pps still ACCEPTed: the deny leaks (another path, or a NACL without it); it has not stopped.
    assert (second.accept_pps_latest, second.reject_pps_latest) == (500.0, 2_500.0)
    assert second.last_seen == T0 + 1200 and second.gone_by is None and second.still_sending


def test_a_deny_without_samples_has_only_its_before() -> None:
    (effect,) = deny_effects([event(EventKind.BLOCK, 0, BOTS, nacl="acl-a", pps=20_000.0, share=0.4)])
    assert effect.accept_pps_before == 20_000.0
    assert (effect.samples, effect.reject_pps_peak, effect.last_seen, effect.gone_by) == (0, None, None, None)


def test_traffic_series_adds_up_denied_sources_once_per_run() -> None:
    events = [
        event(EventKind.EFFECT, 300, BOTS, pps=20_000.0, reject_pps=19_000.0, inbound_pps=50_000.0),
        event(EventKind.EFFECT, 300, "192.0.2.7/32", pps=5_000.0, reject_pps=5_000.0, inbound_pps=50_000.0),
        event(EventKind.EFFECT, 300, SEVEN, pps=10_000.0, reject_pps=10_000.0, inbound_pps=50_000.0),
        event(EventKind.BLOCK, 400, "198.51.100.1/32", nacl="acl-a", pps=1_000.0, share=0.1),
        event(EventKind.EFFECT, 600, SEVEN, pps=0.0, reject_pps=0.0, inbound_pps=8_000.0),
    ]
    first, second = traffic_series(events)
    # 192.0.2.7 lies inside the /24: counted with it, not again. 20,000 + 10,000 covered of 50,000.
    assert (first.at, first.inbound_pps, first.covered_accept_pps, first.covered_reject_pps) == (
        T0 + 300,
        50_000.0,
        1_000.0,
        29_000.0,
    )
    assert first.covered_share == pytest.approx(0.6)
    assert (second.inbound_pps, second.covered_share) == (8_000.0, 0.0)
