"""CIDR parsing and the deny-safety policy: what Floodgate must never deny."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from floodgate.core.text import shown

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Sources that are never outside attackers from a NACL's point of view: denying them breaks the VPC itself,
# peered networks, on-premises links or the AWS plumbing (metadata, DNS resolver, health checks).
NEVER_DENY: tuple[Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this" network
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, instance metadata
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::ffff:0:0/96",  # IPv4-mapped
        "64:ff9b::/96",  # NAT64
        "fc00::/7",  # unique local (ULA)
        "fe80::/10",  # link-local
        "ff00::/8",  # multicast
    )
)


class InvalidCidr(ValueError):
    """A CIDR that is not one, or not one Floodgate may deny."""


# The longest CIDR text there is: an IPv6 address with an embedded IPv4 part, plus "/128".
MAX_CIDR_TEXT = 49
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_network(text: str) -> Network:
    """A canonical network from "1.2.3.4", "1.2.3.0/24" or an IPv6 form, refusing anything a NACL entry
    cannot hold: host bits set, IPv6 zone ids ("fe80::1%eth0"), text that is not plain ASCII. An
    IPv4-mapped IPv6 address or prefix ("::ffff:203.0.113.7") is the IPv4 network it maps."""
    candidate = text.strip() if isinstance(text, str) else ""
    if (
        not candidate
        or len(candidate) > MAX_CIDR_TEXT
        or not candidate.isascii()
        or not candidate.isprintable()
    ):
        raise InvalidCidr(f"invalid CIDR {shown(text)}: not an IPv4 or IPv6 address or prefix")
    if "%" in candidate:
        raise InvalidCidr(
            f"invalid CIDR {shown(text)}: an IPv6 zone id (%...) names an interface of one host; "
            "a NACL entry takes the address alone"
        )
    try:
        network = ipaddress.ip_network(candidate, strict=True)
    except ValueError as exc:
        hint = ""
        if "host bits set" in str(exc):
            hint = f"; the prefix is {ipaddress.ip_network(candidate, strict=False)}"
        raise InvalidCidr(f"invalid CIDR {shown(text)}: {exc}{hint}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def canonical(text: str) -> str:
    """The one spelling of a CIDR we store and compare: "1.2.3.4" becomes "1.2.3.4/32"."""
    return str(parse_network(text))


@dataclass(frozen=True, slots=True)
class DenyPolicy:
    """Which CIDRs may be denied: not protected, not overlapping protection, not wider than the caps."""

    protected: tuple[Network, ...]
    max_prefix_v4: int = 16
    max_prefix_v6: int = 48

    @classmethod
    def build(
        cls,
        *,
        vpc_cidrs: Iterable[str] = (),
        allow: Iterable[str] = (),
        max_prefix_v4: int = 16,
        max_prefix_v6: int = 48,
    ) -> DenyPolicy:
        if not 1 <= max_prefix_v4 <= 32:
            raise InvalidCidr(f"IPv4 prefix cap must be 1..32, got {max_prefix_v4}")
        if not 1 <= max_prefix_v6 <= 128:
            raise InvalidCidr(f"IPv6 prefix cap must be 1..128, got {max_prefix_v6}")
        own = tuple(ipaddress.ip_network(c.strip(), strict=False) for c in (*vpc_cidrs, *allow))
        return cls(protected=NEVER_DENY + own, max_prefix_v4=max_prefix_v4, max_prefix_v6=max_prefix_v6)

    def refusal(self, network: Network) -> str | None:
        """Why `network` may not be denied, or None when it may."""
        cap = self.max_prefix_v4 if network.version == 4 else self.max_prefix_v6
        if network.prefixlen < cap:
            return f"{network} is wider than the /{cap} cap"
        for guarded in self.protected:
            if guarded.version == network.version and network.overlaps(guarded):
                return f"{network} overlaps protected range {guarded}"
        return None

    def allows(self, network: Network) -> bool:
        return self.refusal(network) is None

    def is_protected_address(self, network: Network) -> bool:
        """True when the (host) network lies inside a protected range, caps aside."""
        return any(g.version == network.version and network.overlaps(g) for g in self.protected)


def address_family(cidr: str) -> int:
    """4 or 6, for a canonical CIDR (the one spelling `canonical` gives)."""
    return 6 if ":" in cidr else 4
