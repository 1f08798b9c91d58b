"""Ban times: escalation, memory of offences, renewal on re-offence and the decision at a ban's end."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floodgate.core.bans import BanOutcome, BanPolicy, OffenceHistory

POLICY = BanPolicy(base_ttl_s=1800, max_ttl_s=86400, factor=2.0, offence_memory_s=7 * 86400)
NOW = 1_000_000.0


def test_ban_time_escalates_by_the_factor_and_stops_at_the_cap() -> None:
    assert [POLICY.ban_time(n) for n in range(1, 8)] == [1800, 3600, 7200, 14400, 28800, 57600, 86400]
    assert POLICY.ban_time(10_000) == 86400  # no float overflow on absurd counts


def test_factor_one_means_no_escalation() -> None:
    flat = BanPolicy(base_ttl_s=600, max_ttl_s=3600, factor=1.0)
    assert flat.ban_time(50) == 600


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_ttl_s": 0, "max_ttl_s": 60}, "base"),
        ({"base_ttl_s": 120, "max_ttl_s": 60}, "base"),
        ({"base_ttl_s": 60, "max_ttl_s": 60, "factor": 0.5}, "factor"),
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BanPolicy(**kwargs)  # type: ignore[arg-type]


def test_offences_are_remembered_for_the_memory_after_the_last_ban_ends() -> None:
    history = OffenceHistory(count=2, ban_until=NOW)
    assert POLICY.offence_number(None, NOW) == 1
    assert POLICY.offence_number(history, NOW + 7 * 86400) == 3
    assert POLICY.offence_number(history, NOW + 7 * 86400 + 1) == 1
    assert POLICY.remember_until(NOW) == NOW + 7 * 86400


def test_reoffence_renews_only_once_half_the_ban_has_run_down() -> None:
    fresh = POLICY.on_reoffence(expires=NOW + 1500, offences=1, now=NOW, rate_pps=9000)
    assert fresh.outcome is BanOutcome.KEEP and fresh.expires == NOW + 1500
    worn = POLICY.on_reoffence(expires=NOW + 900, offences=1, now=NOW, rate_pps=9000)
    assert worn.outcome is BanOutcome.EXTEND
    assert worn.expires == NOW + 1800
    assert "9,000 pps" in worn.reason


def test_expiry_keeps_a_running_ban() -> None:
    decision = POLICY.on_expiry(
        expires=NOW + 60, offences=1, now=NOW, reject_pps=None, threshold_pps=1000, extend_on_evidence=True
    )
    assert decision.outcome is BanOutcome.KEEP


def test_expiry_extends_a_source_still_sending_and_says_why() -> None:
    decision = POLICY.on_expiry(
        expires=NOW, offences=2, now=NOW, reject_pps=4500, threshold_pps=1000, extend_on_evidence=True
    )
    assert decision.outcome is BanOutcome.EXTEND
    assert decision.expires == NOW + 3600
    assert "4,500 pps" in decision.reason and "REJECT" in decision.reason


@pytest.mark.parametrize(
    ("reject_pps", "enabled", "reason_part"),
    [(None, True, "ban over"), (999.0, True, "below"), (50_000.0, False, "ban over")],
)
def test_expiry_expires_without_enough_evidence(
    reject_pps: float | None, enabled: bool, reason_part: str
) -> None:
    decision = POLICY.on_expiry(
        expires=NOW - 1,
        offences=1,
        now=NOW,
        reject_pps=reject_pps,
        threshold_pps=1000,
        extend_on_evidence=enabled,
    )
    assert decision.outcome is BanOutcome.EXPIRE
    assert reason_part in decision.reason


@given(
    base=st.integers(1, 10_000),
    extra=st.integers(0, 1_000_000),
    factor=st.floats(1.0, 100.0),
    offences=st.integers(1, 500),
)
def test_ban_time_grows_never_shrinks_and_stays_within_base_and_max(
    base: int, extra: int, factor: float, offences: int
) -> None:
    policy = BanPolicy(base_ttl_s=base, max_ttl_s=base + extra, factor=factor)
    assert base <= policy.ban_time(offences) <= base + extra
    assert policy.ban_time(offences) <= policy.ban_time(offences + 1)


@given(expires=st.floats(-1e6, 1e6), offences=st.integers(1, 20), rate=st.floats(0, 1e7))
def test_a_renewal_never_shortens_a_ban(expires: float, offences: int, rate: float) -> None:
    decision = POLICY.on_reoffence(expires=NOW + expires, offences=offences, now=NOW, rate_pps=rate)
    assert decision.expires >= NOW + expires
