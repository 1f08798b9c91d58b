"""Keep or release a capacity hold, judged on the plan for the window."""

from __future__ import annotations

import pytest

from floodgate.core.capacity_hold import judge
from floodgate.core.model import DenyPlan, ParseStats, PlannedDeny, Verdict

HELD_AT = 1_000_000.0


def plan(verdict: Verdict, total_pps: float, *denied_pps: float) -> DenyPlan:
    denies = tuple(
        PlannedDeny(f"203.0.113.{n}/32", pps, pps * 800, pps / total_pps, 1, "flood")
        for n, pps in enumerate(denied_pps, 1)
    )
    return DenyPlan(verdict, 300.0, denies, total_pps, total_pps * 800, ParseStats())


def test_without_records_of_a_whole_minute_after_the_hold_it_waits_whatever_the_verdict() -> None:
    # None: nothing yet; before the hold: the traffic that led to it; 59 s after it: the interval the hold
    # began in, of which the first interfaces' deliveries show only part of the flood.
    for latest in (None, HELD_AT - 1, HELD_AT + 59):
        judgement = judge(plan(Verdict.QUIET, 10.0), reject_pps=0, latest_record_end=latest, held_at=HELD_AT)
        assert judgement.keep and "waiting" in judgement.reason


@pytest.mark.parametrize(
    ("verdict", "words"), [(Verdict.DISTRIBUTED, "distributed"), (Verdict.QUIET, "no flood")]
)
def test_distributed_or_quiet_evidence_releases(verdict: Verdict, words: str) -> None:
    judgement = judge(plan(verdict, 50_000.0), reject_pps=0, latest_record_end=HELD_AT + 60, held_at=HELD_AT)
    assert not judgement.keep
    assert words in judgement.reason


def test_concentrated_and_mostly_denied_keeps() -> None:
    # 30,000 + 10,000 of 50,000 pps: 80 % covered.
    judgement = judge(
        plan(Verdict.CONCENTRATED, 50_000.0, 30_000.0, 10_000.0),
        reject_pps=38_000,
        latest_record_end=HELD_AT + 60,
        held_at=HELD_AT,
    )
    assert judgement.keep
    assert "80%" in judgement.reason and "38000 pps REJECT" in judgement.reason


def test_concentrated_keeps_even_while_the_first_deliveries_show_part_of_the_flood() -> None:
    # 20,000 of 50,000 pps: 40 % covered, as after the first interface's records only.
    judgement = judge(
        plan(Verdict.CONCENTRATED, 50_000.0, 20_000.0),
        reject_pps=0,
        latest_record_end=HELD_AT + 60,
        held_at=HELD_AT,
    )
    assert judgement.keep
    assert "40%" in judgement.reason
