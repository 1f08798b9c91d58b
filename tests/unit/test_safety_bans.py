"""Ban decisions pinned down exactly where the mutation run found them loose: boundaries, the ban's end
carried by every decision, and the reasons people read."""

from __future__ import annotations

import pytest

from floodgate.core.bans import BanOutcome, BanPolicy, BanRuling, OffenceHistory

POLICY = BanPolicy(base_ttl_s=1800, max_ttl_s=86400, factor=2.0, offence_memory_s=7 * 86400)
NOW = 1_000_000.0


def expiry(expires: float, reject_pps: float | None, *, enabled: bool = True) -> BanRuling:
    return POLICY.on_expiry(
        expires=expires,
        offences=1,
        now=NOW,
        reject_pps=reject_pps,
        threshold_pps=1000,
        extend_on_evidence=enabled,
    )


def test_a_running_ban_is_kept_to_its_end_and_says_how_long_is_left() -> None:
    assert expiry(NOW + 60, None) == BanRuling(BanOutcome.KEEP, NOW + 60, "1m left")


def test_a_rate_exactly_at_the_threshold_extends() -> None:
    decision = expiry(NOW, 1000.0)
    assert (decision.outcome, decision.expires) == (BanOutcome.EXTEND, NOW + 1800)


def test_an_expiry_keeps_the_bans_end_and_gives_the_whole_reason() -> None:
    assert expiry(NOW - 1, None) == BanRuling(BanOutcome.EXPIRE, NOW - 1, "ban over")
    assert expiry(NOW - 1, 999.0) == BanRuling(
        BanOutcome.EXPIRE, NOW - 1, "ban over; REJECT rate 999 pps is below the 1,000 pps threshold"
    )


def test_a_reoffence_with_more_than_half_the_ban_left_keeps_it() -> None:
    # 1,000 s left of a 1,800 s ban: a renewal would add 800 s, less than half a ban.
    assert POLICY.on_reoffence(expires=NOW + 1000, offences=1, now=NOW, rate_pps=9000) == BanRuling(
        BanOutcome.KEEP, NOW + 1000, "ban still has more than half of its time to run"
    )


def test_a_ban_is_running_until_its_end_and_not_at_it() -> None:
    assert OffenceHistory(count=1, ban_until=NOW + 1).ban_running(NOW)
    assert not OffenceHistory(count=1, ban_until=NOW).ban_running(NOW)


def test_offence_memory_may_be_zero_but_not_negative() -> None:
    assert BanPolicy(base_ttl_s=60, max_ttl_s=60, offence_memory_s=0).offence_memory_s == 0
    with pytest.raises(ValueError, match=r"^offence memory must not be negative, got -1s$"):
        BanPolicy(base_ttl_s=60, max_ttl_s=60, offence_memory_s=-1)


def test_offences_count_from_one() -> None:
    with pytest.raises(ValueError, match=r"^offences count from 1, got 0$"):
        POLICY.ban_time(0)
