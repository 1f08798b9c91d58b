"""Value types shared by detection, enforcement and the handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    """What the traffic looks like, and so whether a NACL can help."""

    CONCENTRATED = "concentrated"  # a few sources or prefixes carry the flood: deny them
    DISTRIBUTED = "distributed"  # traffic is high but spread thin: WAF / Shield territory, not a NACL's
    QUIET = "quiet"  # nothing above the absolute thresholds


@dataclass(frozen=True, slots=True)
class PlannedDeny:
    """One NACL deny entry the detector wants, with the evidence behind it."""

    cidr: str  # canonical network, e.g. "203.0.113.7/32" or "2001:db8::/64"
    pps: float  # inbound packets per second from inside the CIDR over the window
    bps: float  # inbound bits per second from inside the CIDR over the window
    share: float  # fraction of all inbound packets, 0..1
    members: int  # distinct sources seen inside the CIDR
    reason: str  # one readable sentence: why this entry

    @property
    def is_prefix(self) -> bool:
        return not self.cidr.endswith(("/32", "/128"))


@dataclass(slots=True)
class ParseStats:
    """How many flow-log records were used and, by reason, how many were skipped."""

    parsed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def merge(self, other: ParseStats) -> None:
        self.parsed += other.parsed
        for reason, count in other.skipped.items():
            self.skip(reason, count)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())


@dataclass(frozen=True, slots=True)
class DenyPlan:
    """The detector's decision for one window of traffic."""

    verdict: Verdict
    window_s: float
    denies: tuple[PlannedDeny, ...]
    total_pps: float
    total_bps: float
    records: ParseStats
    # Entries detection would have chosen and must not make (a source or prefix the VPC depends on).
    refused: tuple[PlannedDeny, ...] = ()
