"""Whether a capacity hold should stay, judged on the traffic window. Pure: no I/O.

An early alarm may hold the protected Auto Scaling groups at their capacity until the flow logs arrive
(`floodgate.services.capacity_hold`). The evidence then decides:

- no records of a whole aggregation interval after the hold yet: keep waiting (the flow logs run minutes
  behind the alarm, and each network interface delivers its own records: the first deliveries of the
  minute the hold began show only part of the flood, a botnet spread over many interfaces not at all);
- `distributed` (a flash crowd, a spread attack) or `quiet` (no flood in the window): release at once,
  real users need the capacity;
- `concentrated`: keep, the denies are taking the spike (the denied flood shows up as REJECT and is still
  counted); the share they cover is in the reason. A low share is not a reason to release: deliveries come
  one network interface at a time, and a decision on the first of them sees only part of the flood.

The hold also ends on OK, after its maximum, by hand, and when a run of Floodgate fails; those paths need
no judgement and live with the service.
"""

from __future__ import annotations

from dataclasses import dataclass

from floodgate.core.model import DenyPlan, Verdict


@dataclass(frozen=True, slots=True)
class Judgement:
    keep: bool
    reason: str


AGGREGATION_S = 60.0  # the flow log's aggregation interval (the stack's own flow log uses 60 s)


def evidence_arrived(latest_record_end: float | None, held_at: float) -> bool:
    """The window holds flow-log records of a whole interval after the hold was placed. Older ones show the
    traffic before the alarm, which says nothing about the flood that fired it; and by the time an
    interval after the hold is being delivered, the interval the hold began in has been delivered by every
    interface that had it, so the window shows the flood whole, not one interface's share of it."""
    return latest_record_end is not None and latest_record_end >= held_at + AGGREGATION_S


def judge(plan: DenyPlan, *, reject_pps: float, latest_record_end: float | None, held_at: float) -> Judgement:
    """Keep or release a hold placed at `held_at`, given the plan on the current window and the REJECT
    rate in it."""
    if not evidence_arrived(latest_record_end, held_at):
        return Judgement(True, "waiting for the flow logs of the time since the alarm")
    if plan.verdict is Verdict.DISTRIBUTED:
        return Judgement(False, "traffic is distributed (not a NACL's job): real users need the capacity")
    if plan.verdict is Verdict.QUIET:
        return Judgement(False, "no flood in the window any more")
    denied = sum(deny.pps for deny in plan.denies)
    covered = denied / plan.total_pps if plan.total_pps > 0 else 0.0
    return Judgement(
        True, f"concentrated: the denies cover {covered:.0%} of inbound packets ({reject_pps:.0f} pps REJECT)"
    )
