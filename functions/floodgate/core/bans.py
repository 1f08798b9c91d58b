"""Ban times: how long a deny lasts, how repeat offenders escalate, and what happens when a ban runs out.

This is fail2ban's `bantime.increment`: the n-th offence of a source is banned for
base * factor^(n-1), capped at a maximum. Offences are remembered for `offence_memory_s` after the latest ban
ends; a source that stays quiet that long starts again at the base time. An offence is a new ban; a source
seen again while banned (a re-offence) only renews its current ban. Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from floodgate.core.durations import format_duration


@dataclass(frozen=True, slots=True)
class OffenceHistory:
    """What is remembered about one source: how many offences, and when its latest ban ends (or ended)."""

    count: int
    ban_until: float

    def ban_running(self, now: float) -> bool:
        return self.ban_until > now


class BanOutcome(StrEnum):
    KEEP = "keep"
    EXTEND = "extend"
    EXPIRE = "expire"


@dataclass(frozen=True, slots=True)
class BanRuling:
    outcome: BanOutcome
    expires: float  # the ban's end after the decision
    reason: str


@dataclass(frozen=True, slots=True)
class BanPolicy:
    base_ttl_s: int
    max_ttl_s: int
    factor: float = 2.0
    offence_memory_s: int = 7 * 86400

    def __post_init__(self) -> None:
        if self.base_ttl_s <= 0 or self.max_ttl_s < self.base_ttl_s:
            raise ValueError(f"need 0 < base ({self.base_ttl_s}s) <= max ({self.max_ttl_s}s)")
        if not self.factor >= 1.0:
            raise ValueError(f"escalation factor must be at least 1, got {self.factor}")
        if self.offence_memory_s < 0:
            raise ValueError(f"offence memory must not be negative, got {self.offence_memory_s}s")

    def ban_time(self, offences: int) -> int:
        """Seconds of ban for the `offences`-th offence: base * factor^(offences-1), capped at max."""
        if offences < 1:
            raise ValueError(f"offences count from 1, got {offences}")
        if self.factor == 1.0:
            return self.base_ttl_s
        # Only as many doublings as it takes to reach the cap: large counts would overflow a float.
        steps_to_cap = math.ceil(math.log(self.max_ttl_s / self.base_ttl_s, self.factor)) + 1
        growth = self.factor ** min(offences - 1, steps_to_cap)
        return min(self.max_ttl_s, round(self.base_ttl_s * growth))

    def offence_number(self, history: OffenceHistory | None, now: float) -> int:
        """The count a new ban starting `now` carries: 1, unless earlier offences are still remembered."""
        if history is None or now > history.ban_until + self.offence_memory_s:
            return 1
        return history.count + 1

    def remember_until(self, ban_until: float) -> float:
        return ban_until + self.offence_memory_s

    def on_reoffence(self, *, expires: float, offences: int, now: float, rate_pps: float) -> BanRuling:
        """A banned source shows up in a new plan: renew the ban to a full ban time from now.

        The renewal is only written once at least half of the ban has run down, so a source flooding without a
        pause costs one ledger write per half ban rather than one per detection window, while never having
        less than half a ban left.
        """
        ban = self.ban_time(offences)
        renewed = now + ban
        if renewed - expires >= ban / 2:
            return BanRuling(
                BanOutcome.EXTEND,
                renewed,
                f"seen again at {rate_pps:,.0f} pps: ban renewed for {format_duration(ban)} "
                f"(offence {offences})",
            )
        return BanRuling(BanOutcome.KEEP, expires, "ban still has more than half of its time to run")

    def on_expiry(
        self,
        *,
        expires: float,
        offences: int,
        now: float,
        reject_pps: float | None,
        threshold_pps: float,
        extend_on_evidence: bool,
    ) -> BanRuling:
        """What to do with a ban at `now`: keep it, or at its end expire it, or extend it on evidence.

        The evidence is the source's rate seen as REJECT records: a denied source keeps producing flow-log
        records, so a rate at or above the threshold means the attack goes on, and lifting the deny would
        let it straight back in.
        """
        if expires > now:
            return BanRuling(BanOutcome.KEEP, expires, f"{format_duration(expires - now)} left")
        if extend_on_evidence and reject_pps is not None and reject_pps >= threshold_pps:
            ban = self.ban_time(offences)
            return BanRuling(
                BanOutcome.EXTEND,
                now + ban,
                f"ban over but the source still sends {reject_pps:,.0f} pps, seen as REJECT "
                f"(threshold {threshold_pps:,.0f} pps): extended by {format_duration(ban)}",
            )
        reason = "ban over"
        if extend_on_evidence and reject_pps is not None:
            reason += f"; REJECT rate {reject_pps:,.0f} pps is below the {threshold_pps:,.0f} pps threshold"
        return BanRuling(BanOutcome.EXPIRE, expires, reason)
