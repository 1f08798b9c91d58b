"""The tests' own statement of what Floodgate must never deny, written from the RFCs and never imported from
the policy under test, so that a broken policy cannot grade itself.

A test builds its expectation from these ranges and its own allowlist / VPC CIDRs, then checks the product's
plans, NACL entries and refusals against it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Special-purpose ranges (IANA registries, RFC 6890) that are never an outside attacker as seen by a NACL:
# denying them cuts the VPC off from itself, its peers, on-premises links or the AWS plumbing.
SPECIAL_RANGES: tuple[Network, ...] = tuple(
    ipaddress.ip_network(text)
    for text in (
        "0.0.0.0/8",  # RFC 1122 §3.2.1.3: "this host on this network"
        "10.0.0.0/8",  # RFC 1918 private
        "100.64.0.0/10",  # RFC 6598 shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # RFC 1122 §3.2.1.3 loopback
        "169.254.0.0/16",  # RFC 3927 link-local (instance metadata, Route 53 resolver)
        "172.16.0.0/12",  # RFC 1918 private
        "192.0.0.0/24",  # RFC 6890 §2.2.2 IETF protocol assignments
        "192.168.0.0/16",  # RFC 1918 private
        "198.18.0.0/15",  # RFC 2544 benchmarking
        "224.0.0.0/4",  # RFC 5771 multicast
        "240.0.0.0/4",  # RFC 1112 §4 reserved, with RFC 919 limited broadcast 255.255.255.255
        "::/128",  # RFC 4291 §2.5.2 unspecified
        "::1/128",  # RFC 4291 §2.5.3 loopback
        "::ffff:0:0/96",  # RFC 4291 §2.5.5.2 IPv4-mapped
        "64:ff9b::/96",  # RFC 6052 NAT64 well-known prefix
        "fc00::/7",  # RFC 4193 unique local
        "fe80::/10",  # RFC 4291 §2.5.6 link-local
        "ff00::/8",  # RFC 4291 §2.7 multicast
    )
)
# Deliberately NOT special: the documentation ranges (RFC 5737 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
# RFC 3849 2001:db8::/32). They never carry real traffic, so the tests use them as public space: attackers,
# partners on the allowlist, a VPC's public blocks.

# A deployment's own protection, all in public space so that nothing else protects it by accident.
PARTNER_ALLOW = ("198.51.100.0/24", "192.0.2.64/26", "2001:db8:feed::/48")
VPC_V4_PUBLIC = "203.0.113.128/25"  # a public IPv4 block of the VPC (BYOIP)
VPC_V6 = "2600:1f18:4a3:6e00::/56"  # the VPC's Amazon-provided IPv6 block: public space
VPC_CIDRS = ("10.0.0.0/16", VPC_V4_PUBLIC, VPC_V6)


def networks(texts: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(text.strip(), strict=False) for text in texts)


def protected_by(network: Network, ranges: Iterable[Network]) -> Network | None:
    """The first of `ranges` that `network` shares an address with, or None."""
    for guarded in ranges:
        if guarded.version != network.version:
            continue
        first, last = int(network.network_address), int(network.broadcast_address)
        if first <= int(guarded.broadcast_address) and int(guarded.network_address) <= last:
            return guarded
    return None


def must_refuse(
    network: Network, *, allow: Iterable[str], vpc_cidrs: Iterable[str], cap_v4: int, cap_v6: int
) -> bool:
    """Whether a deny of `network` breaks a safety rule: wider than the family's cap, or sharing an address
    with a special range, the allowlist or the VPC."""
    cap = cap_v4 if network.version == 4 else cap_v6
    if network.prefixlen < cap:
        return True
    return protected_by(network, (*SPECIAL_RANGES, *networks(allow), *networks(vpc_cidrs))) is not None


def unsafe_denies(
    cidrs: Iterable[str],
    *,
    allow: Iterable[str] = PARTNER_ALLOW,
    vpc_cidrs: Iterable[str] = VPC_CIDRS,
    cap_v4: int = 16,
    cap_v6: int = 48,
) -> list[str]:
    """The CIDRs among `cidrs` that must never have been denied (empty when all is well)."""
    return [
        cidr
        for cidr in cidrs
        if must_refuse(
            ipaddress.ip_network(cidr), allow=allow, vpc_cidrs=vpc_cidrs, cap_v4=cap_v4, cap_v6=cap_v6
        )
    ]
