"""CIDR policy and human durations."""

from __future__ import annotations

import ipaddress

import pytest

from floodgate.core.durations import format_duration, parse_duration
from floodgate.core.networks import DenyPolicy, InvalidCidr, canonical, parse_network


@pytest.mark.parametrize(
    ("cidr", "refused"),
    [
        ("203.0.113.7/32", None),
        ("203.0.113.0/24", None),
        ("203.0.0.0/16", None),
        ("203.0.0.0/15", "wider than the /16 cap"),
        ("0.0.0.0/0", "wider than the /16 cap"),
        ("::/0", "wider than the /48 cap"),
        ("10.0.0.0/16", "overlaps protected range 10.0.0.0/8"),
        ("172.20.1.1/32", "overlaps protected range 172.16.0.0/12"),
        ("100.64.3.3/32", "overlaps protected range 100.64.0.0/10"),
        ("127.0.0.1/32", "overlaps protected range 127.0.0.0/8"),
        ("169.254.169.254/32", "overlaps protected range 169.254.0.0/16"),
        ("224.0.0.5/32", "overlaps protected range 224.0.0.0/4"),
        ("fd12::1/128", "overlaps protected range fc00::/7"),
        ("fe80::1/128", "overlaps protected range fe80::/10"),
        ("198.51.100.0/24", "overlaps protected range 198.51.100.128/25"),
        ("198.51.100.200/32", "overlaps protected range 198.51.100.128/25"),
        ("2a00:1450::/48", None),
        ("2a00:1450::/47", "wider than the /48 cap"),
    ],
)
def test_policy_refuses_protected_overlapping_and_wide_networks(cidr: str, refused: str | None) -> None:
    policy = DenyPolicy.build(vpc_cidrs=["10.0.0.0/16"], allow=["198.51.100.128/25"])
    reason = policy.refusal(ipaddress.ip_network(cidr))
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


def test_cidrs_are_canonical_and_strict() -> None:
    assert canonical("203.0.113.7") == "203.0.113.7/32"
    assert canonical(" 2001:DB8:0:0::1 ") == "2001:db8::1/128"
    with pytest.raises(InvalidCidr, match="has host bits set"):
        parse_network("203.0.113.7/24")
    with pytest.raises(InvalidCidr, match="invalid CIDR 'nope'"):
        parse_network("nope")


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("1h30m", 5400), ("7d", 604800)])
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-5m", "5 minutes", "m", "1.5h", "90", "5"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(45, "45s"), (720, "12m"), (7500, "2h05m"), (273600, "3d04h"), (-60, "-1m")]
)
def test_durations_format(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
