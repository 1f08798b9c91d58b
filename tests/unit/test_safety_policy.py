"""The deny policy against the tests' own oracle (tests/safety_oracle.py): the special ranges from the RFCs,
a public allowlist, the VPC's IPv4 and public IPv6 blocks, and the prefix caps."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floodgate.core.networks import DenyPolicy, InvalidCidr
from tests.safety_oracle import (
    PARTNER_ALLOW,
    SPECIAL_RANGES,
    VPC_CIDRS,
    VPC_V4_PUBLIC,
    VPC_V6,
    Network,
    must_refuse,
)

BITS = {4: 32, 6: 128}


def policy(cap_v4: int = 16, cap_v6: int = 48) -> DenyPolicy:
    return DenyPolicy.build(
        vpc_cidrs=VPC_CIDRS, allow=PARTNER_ALLOW, max_prefix_v4=cap_v4, max_prefix_v6=cap_v6
    )


def around(network: Network, prefixlen: int, *, offset: int) -> Network:
    """The network of `prefixlen` bits that holds the address `offset` steps from `network`'s first address
    (negative: before it; past its size: after it), clamped to the address space."""
    value = int(network.network_address) + offset
    value = max(0, min(value, 2 ** BITS[network.version] - 1))
    return ipaddress.ip_network((value, prefixlen), strict=False)


# Each example lands on, inside, or just beside a range that matters, at any prefix length.
_landmarks = st.sampled_from(
    [*SPECIAL_RANGES, *(ipaddress.ip_network(c) for c in (*PARTNER_ALLOW, *VPC_CIDRS))]
    + [ipaddress.ip_network(c) for c in ("45.33.0.0/16", "203.0.113.0/25", "2a00:1450::/32", "8.0.0.0/7")]
)


@st.composite
def candidate_networks(draw: st.DrawFn) -> Network:
    landmark = draw(_landmarks)
    size = landmark.num_addresses
    offset = draw(
        st.one_of(
            st.sampled_from([-1, 0, size - 1, size]),  # the edges and their outside neighbours
            st.integers(0, size - 1),
            st.integers(-(2**20), 2**20),
        )
    )
    return around(landmark, draw(st.integers(0, BITS[landmark.version])), offset=offset)


@settings(max_examples=1500, deadline=None)
@given(
    network=candidate_networks(),
    cap_v4=st.integers(1, 32),
    cap_v6=st.integers(1, 128),
)
def test_the_policy_refuses_exactly_what_the_rfcs_the_allowlist_the_vpc_and_the_caps_forbid(
    network: Network, cap_v4: int, cap_v6: int
) -> None:
    deny_policy = policy(cap_v4, cap_v6)
    expected = must_refuse(network, allow=PARTNER_ALLOW, vpc_cidrs=VPC_CIDRS, cap_v4=cap_v4, cap_v6=cap_v6)
    reason = deny_policy.refusal(network)
    assert (reason is not None) == expected, (network, reason)
    assert deny_policy.allows(network) is not expected


@pytest.mark.parametrize("special", SPECIAL_RANGES, ids=str)
def test_every_special_range_is_refused_at_its_edges_whatever_the_configuration(special: Network) -> None:
    bare = DenyPolicy.build(max_prefix_v4=1, max_prefix_v6=1)  # no allowlist, no VPC, caps wide open
    host = BITS[special.version]
    for address in (special.network_address, special.broadcast_address):
        single = ipaddress.ip_network((int(address), host))
        reason = bare.refusal(single)
        assert reason is not None and "overlaps protected range" in reason, single
        assert bare.is_protected_address(single)
    # ...and the range itself and any wider network holding it.
    for prefixlen in range(special.prefixlen, 0, -max(1, special.prefixlen // 4)):
        assert bare.refusal(special.supernet(new_prefix=prefixlen)) is not None
    assert bare.refusal(special) is not None


@pytest.mark.parametrize(
    "cidr",
    [
        "198.51.100.7/32",  # inside the partner allowlist
        "198.51.100.0/24",  # the allowlisted range itself
        "198.51.0.0/16",  # a wider range that holds it
        "192.0.2.64/32",
        "192.0.2.127/32",  # last address of 192.0.2.64/26
        "2001:db8:feed:1::5/128",
        "2001:db8:feed::/48",
        "203.0.113.128/32",  # first address of the VPC's public IPv4 block
        "203.0.113.255/32",  # its last
        "203.0.113.128/26",
        "2600:1f18:4a3:6e00::1/128",  # inside the VPC's IPv6 block
        "2600:1f18:4a3:6eff:ffff:ffff:ffff:ffff/128",  # its last address
        "2600:1f18:4a3:6e80::/64",
        "2600:1f18:4a3::/48",  # a /48 (at the cap) holding the VPC block
    ],
)
def test_public_allowlisted_and_vpc_ranges_are_refused(cidr: str) -> None:
    network = ipaddress.ip_network(cidr)
    reason = policy().refusal(network)
    assert reason is not None and "overlaps protected range" in reason
    assert policy().is_protected_address(network)


@pytest.mark.parametrize(
    "cidr",
    [
        "198.51.101.0/32",  # just past the allowlisted /24
        "198.51.99.255/32",  # just before it
        "192.0.2.63/32",
        "192.0.2.128/32",
        "203.0.113.127/32",  # just below the VPC's public /25
        "203.0.113.0/25",
        "2001:db8:fef0::/48",
        "2600:1f18:4a3:6d00::/56",  # beside the VPC's IPv6 block
        "2600:1f18:4a3:6f00::1/128",
        "45.33.0.0/16",  # exactly at the /16 cap
        "2a00:1450::/48",  # exactly at the /48 cap
    ],
)
def test_public_space_beside_the_protection_may_be_denied(cidr: str) -> None:
    network = ipaddress.ip_network(cidr)
    assert policy().refusal(network) is None
    assert policy().allows(network)
    assert not policy().is_protected_address(network)


@pytest.mark.parametrize(("cap", "version"), [(16, 4), (24, 4), (32, 4), (48, 6), (64, 6), (128, 6)])
def test_a_prefix_one_bit_wider_than_the_cap_is_refused_and_one_at_the_cap_is_not(
    cap: int, version: int
) -> None:
    base = ipaddress.ip_network("45.32.0.0/11" if version == 4 else "2a00:1400::/22")
    caps = {"cap_v4": cap, "cap_v6": 48} if version == 4 else {"cap_v4": 16, "cap_v6": cap}
    deny_policy = policy(**caps)
    at_cap = ipaddress.ip_network((int(base.network_address), cap))
    too_wide = at_cap.supernet()
    assert deny_policy.refusal(at_cap) is None
    reason = deny_policy.refusal(too_wide)
    assert reason == f"{too_wide} is wider than the /{cap} cap"
    assert not deny_policy.allows(too_wide)
    assert not deny_policy.is_protected_address(too_wide)  # width alone is no protection


def test_refusals_name_the_range_that_protects() -> None:
    assert policy().refusal(ipaddress.ip_network("198.51.100.9/32")) == (
        "198.51.100.9/32 overlaps protected range 198.51.100.0/24"
    )
    assert policy().refusal(ipaddress.ip_network("2600:1f18:4a3:6e01::/64")) == (
        f"2600:1f18:4a3:6e01::/64 overlaps protected range {VPC_V6}"
    )
    assert policy().refusal(ipaddress.ip_network("169.254.169.254/32")) == (
        "169.254.169.254/32 overlaps protected range 169.254.0.0/16"
    )


def test_configured_ranges_are_read_leniently_host_bits_and_spaces_included() -> None:
    lenient = DenyPolicy.build(
        vpc_cidrs=[f" {VPC_V4_PUBLIC} "], allow=["198.51.100.77/24", " 2001:db8:feed::1/48"]
    )
    for cidr in ("203.0.113.200/32", "198.51.100.1/32", "2001:db8:feed::9/128"):
        assert lenient.refusal(ipaddress.ip_network(cidr)) is not None, cidr
    assert lenient.refusal(ipaddress.ip_network("198.51.101.1/32")) is None


@pytest.mark.parametrize(
    ("caps", "message"),
    [
        ({"max_prefix_v4": 0}, "IPv4 prefix cap must be 1..32, got 0"),
        ({"max_prefix_v4": 33}, "IPv4 prefix cap must be 1..32, got 33"),
        ({"max_prefix_v6": 0}, "IPv6 prefix cap must be 1..128, got 0"),
        ({"max_prefix_v6": 129}, "IPv6 prefix cap must be 1..128, got 129"),
    ],
)
def test_caps_outside_the_address_size_are_refused(caps: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidCidr, match=f"^{message}$"):
        DenyPolicy.build(**caps)  # type: ignore[arg-type]


@pytest.mark.parametrize(("cap_v4", "cap_v6"), [(1, 1), (32, 128)])
def test_caps_at_the_ends_of_their_range_are_accepted_and_kept(cap_v4: int, cap_v6: int) -> None:
    built = DenyPolicy.build(max_prefix_v4=cap_v4, max_prefix_v6=cap_v6)
    assert (built.max_prefix_v4, built.max_prefix_v6) == (cap_v4, cap_v6)


def test_the_default_caps_are_a_slash16_and_a_slash48() -> None:
    default = DenyPolicy.build()
    assert default.refusal(ipaddress.ip_network("45.32.0.0/15")) is not None
    assert default.refusal(ipaddress.ip_network("45.32.0.0/16")) is None
    assert default.refusal(ipaddress.ip_network("2a00:1400::/47")) is not None
    assert default.refusal(ipaddress.ip_network("2a00:1400::/48")) is None
    direct = DenyPolicy(protected=())
    assert direct.refusal(ipaddress.ip_network("45.32.0.0/15")) is not None
    assert direct.refusal(ipaddress.ip_network("2a00:1400::/47")) is not None
    assert direct.refusal(ipaddress.ip_network("2a00:1400::/48")) is None
