"""The incident report draws foreign entries as foreign, never as denies in force, and its header counts
the denies its timeline draws (issue 11, item 5)."""

from __future__ import annotations

from floodgate.cli.report_html import render
from floodgate.cli.timeline import Report
from floodgate.core.records import EventKind, LogEvent

SINCE, UNTIL = 1_764_000_000.0, 1_764_003_600.0


def report_of(events: list[LogEvent]) -> Report:
    return Report.build(stack="s", events=events, active=[], since=SINCE, until=UNTIL, generated=UNTIL)


def test_a_foreign_entry_gets_a_foreign_lane_and_is_not_counted_as_denied() -> None:
    report = report_of(
        [
            LogEvent(EventKind.BLOCK, SINCE + 60, "203.0.113.7/32", "flood", "detector", "acl-1", rule=100),
            LogEvent(
                EventKind.FOREIGN,
                SINCE + 90,
                "192.0.2.44/32",
                "not written by Floodgate",
                "expirer",
                "acl-1",
                rule=103,
            ),
        ]
    )
    assert [(lane.cidr, lane.foreign) for lane in report.lanes] == [
        ("203.0.113.7/32", False),
        ("192.0.2.44/32", True),
    ]
    assert report.denied_sources == 1
    page = render(report)
    assert '<div class="card"><b>1</b><span>sources denied</span></div>' in page
    assert page.count('class="span foreign"') == 1 and 'data-cidr="192.0.2.44/32"' in page
    assert "1 source, 1 deny, 1 foreign entry" in page  # the NACL's row in the timeline
    assert "192.0.2.44/32 (foreign)" in page


def test_a_repair_alone_is_not_drawn_as_a_deny_in_force() -> None:
    # Reconcile removed an entry left behind (REPAIR), with no deny of it in the window: nothing to draw.
    report = report_of(
        [
            LogEvent(
                EventKind.REPAIR,
                SINCE + 60,
                "8.8.8.8/32",
                "left-over entry: remove it",
                "cli",
                "acl-1",
                rule=102,
            )
        ]
    )
    assert report.lanes == ()
    assert report.denied_sources == 0


def test_a_quarantined_deny_ends_its_span() -> None:
    report = report_of(
        [
            LogEvent(EventKind.BLOCK, SINCE + 60, "203.0.113.66/32", "manual", "ann", "acl-1", rule=100),
            LogEvent(
                EventKind.QUARANTINE, SINCE + 61, "203.0.113.66/32", "EC2 refused", "ann", "acl-1", rule=100
            ),
        ]
    )
    ((span,),) = [lane.spans for lane in report.lanes]
    assert (span.end, span.ended_by) == (SINCE + 61, EventKind.QUARANTINE)
    assert 'fill="#f79009"' in render(report)  # its end is drawn, in the quarantine colour
