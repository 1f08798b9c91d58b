"""The report's incidents (cli.timeline): capacity holds, moments denies began and ended, and the stretches
of time they make up. Expectations worked out by hand in the comments."""

from __future__ import annotations

from floodgate.cli.timeline import Report, deny_moments, hold_spans
from floodgate.core.records import EventKind, Evidence, LogEvent
from floodgate.services.capacity_hold import HELD

T0 = 1_764_000_000.0
SEVEN = "203.0.113.7/32"


def event(
    kind: EventKind, at: float, cidr: str, *, nacl: str | None = None, reason: str = "", **rates: float
) -> LogEvent:
    evidence = Evidence(**rates) if rates else None  # type: ignore[arg-type]
    return LogEvent(kind, T0 + at, cidr, reason, "test", nacl_id=nacl, evidence=evidence)


def test_hold_spans_open_at_a_hold_that_held_and_close_at_its_release() -> None:
    events = [
        event(EventKind.RELEASE, 60, "asg:old", reason="after 9m: OK"),  # held since before the window
        event(EventKind.HOLD, 120, "asg:web", reason=f"{HELD}2 instance(s) for at most 10m"),
        event(EventKind.HOLD, 120, "asg:gone", reason="no such Auto Scaling group: not held"),
        event(EventKind.HOLD, 180, "asg:api", reason=f"{HELD}4 instance(s) for at most 10m"),
        event(EventKind.RELEASE, 600, "asg:web", reason="after 8m: OK"),
    ]
    spans = hold_spans(events, since=T0, until=T0 + 3600)
    assert [(h.group, h.start - T0, h.end - T0, h.open_end) for h in spans] == [
        ("old", 0, 60, False),
        ("web", 120, 600, False),
        ("api", 180, 3600, True),  # still held at the window's end
    ]


def test_deny_moments_count_a_deny_in_several_nacls_once() -> None:
    events = [
        event(EventKind.BLOCK, 0.2, SEVEN, nacl="acl-a", pps=9_000.0, share=0.2),
        event(EventKind.BLOCK, 0.9, SEVEN, nacl="acl-b", pps=9_000.0, share=0.2),
        event(
            EventKind.BLOCK, 0.5, "192.0.2.0/24", nacl="acl-a", pps=20_000.0, share=0.5, reject_pps=1_000.0
        ),
        event(EventKind.EXTEND, 300, SEVEN, nacl="acl-a", pps=9_000.0),
        event(EventKind.EXPIRE, 1800, SEVEN, nacl="acl-a"),
        event(EventKind.EXPIRE, 1800, SEVEN, nacl="acl-b"),
    ]
    began, ended = deny_moments(events)
    # 9,000 + (20,000 - 1,000 already REJECTed) ACCEPT before; inbound 9,000 / 0.2 = 45,000 > 20,000 / 0.5.
    assert (began.at, began.began, began.ended) == (T0 + 0.2, ("192.0.2.0/24", SEVEN), ())
    assert (began.accept_pps_before, began.inbound_pps) == (28_000.0, 45_000.0)
    assert (ended.at, ended.began, ended.ended, ended.inbound_pps) == (T0 + 1800, (), (SEVEN,), None)


def test_incidents_join_denies_and_holds_less_than_ten_minutes_apart() -> None:
    events = [
        event(EventKind.HOLD, 0, "asg:web", reason=f"{HELD}2 instance(s)"),
        event(EventKind.BLOCK, 60, SEVEN, nacl="acl-a", pps=9_000.0, share=0.2),
        event(EventKind.EFFECT, 360, SEVEN, pps=9_000.0, reject_pps=9_000.0, inbound_pps=40_000.0),
        event(EventKind.RELEASE, 400, "asg:web", reason="after 6m40s: OK"),
        event(EventKind.EXPIRE, 1860, SEVEN, nacl="acl-a"),
        # 9 minutes later: the same incident; then 11 minutes after that deny: another one.
        event(EventKind.BLOCK, 2400, "192.0.2.0/24", nacl="acl-a", pps=5_000.0, share=0.5),
        event(EventKind.UNBLOCK, 2500, "192.0.2.0/24", nacl="acl-a"),
        event(EventKind.BLOCK, 3160, SEVEN, nacl="acl-a", pps=4_000.0, share=0.1),
        event(EventKind.EFFECT, 3300, SEVEN, pps=0.0, reject_pps=0.0, inbound_pps=1_000.0),
    ]
    report = Report.build(stack="s", events=events, active=[], since=T0, until=T0 + 3600, generated=T0 + 3600)
    assert len(report.events) == 7  # the EFFECT samples are measurements, not actions
    first, second = report.incidents
    assert (first.start, first.end, second.start, second.end) == (T0, T0 + 2500, T0 + 3160, T0 + 3600)
    assert [p.at - T0 for p in first.points] == [360] and [p.at - T0 for p in second.points] == [3300]
    assert [h.group for h in first.holds] == ["web"] and second.holds == ()
    assert [m.at - T0 for m in first.moments] == [60, 1860, 2400, 2500]
    assert first.peak_inbound_pps == 45_000.0  # the BLOCK's evidence: 9,000 pps at 20%
    assert [(e.cidr, e.denied_at - T0) for e in report.effects] == [
        (SEVEN, 60),
        ("192.0.2.0/24", 2400),
        (SEVEN, 3160),
    ]
