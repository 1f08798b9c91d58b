"""EC2 adapter: the CIDR blocks of the protected VPC, IPv4 and IPv6, as AWS knows them.

Read once at cold start by the detector and the expirer: the VPC is the VPC_ID setting, or the VPC of the
configured NACLs. What the operator configured (FLOODGATE_VPC_CIDRS) is checked against it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import partial
from typing import Any

from floodgate.adapters.retry import Retrier, default_client

_ASSOCIATED = frozenset({"associated", "associating"})


class UnknownVpcCidr(ValueError):
    """A configured CIDR that is not one of the VPC's blocks (nor inside one); the message names it."""


def vpc_cidr_blocks(
    *, vpc_id: str | None, nacl_ids: Sequence[str], client: Any = None, retrier: Retrier | None = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(VPC ids, their associated IPv4 and IPv6 CIDR blocks) of `vpc_id`, or of the VPCs of `nacl_ids`."""
    ec2 = default_client("ec2", client)
    retry = retrier or Retrier()
    vpc_ids = [vpc_id] if vpc_id else []
    if not vpc_ids and nacl_ids:
        acls = retry.call(
            "DescribeNetworkAcls", partial(ec2.describe_network_acls, NetworkAclIds=list(nacl_ids))
        )
        vpc_ids = sorted({acl["VpcId"] for acl in acls.get("NetworkAcls", [])})
    if not vpc_ids:
        return (), ()
    vpcs = retry.call("DescribeVpcs", partial(ec2.describe_vpcs, VpcIds=vpc_ids))
    blocks: list[str] = []
    for vpc in vpcs.get("Vpcs", []):
        for association in vpc.get("CidrBlockAssociationSet", []):
            if association.get("CidrBlockState", {}).get("State", "associated") in _ASSOCIATED:
                blocks.append(association["CidrBlock"])
        for association in vpc.get("Ipv6CidrBlockAssociationSet", []):
            if association.get("Ipv6CidrBlockState", {}).get("State", "associated") in _ASSOCIATED:
                blocks.append(association["Ipv6CidrBlock"])
    canonical = sorted({str(ipaddress.ip_network(block, strict=False)) for block in blocks})
    return tuple(vpc_ids), tuple(canonical)


def union_with_vpc(
    configured: Sequence[str], vpc_ids: Sequence[str], blocks: Sequence[str]
) -> tuple[str, ...]:
    """The configured CIDRs together with the VPC's blocks. Raises UnknownVpcCidr naming a configured CIDR
    that lies in none of the VPC's blocks (a typo, or another network: it would go unprotected)."""
    networks = [ipaddress.ip_network(block) for block in blocks]
    for cidr in configured:
        network = ipaddress.ip_network(cidr, strict=False)
        if networks and not any(
            known.version == network.version and network.subnet_of(known)  # type: ignore[arg-type]
            for known in networks
        ):
            raise UnknownVpcCidr(
                f"FLOODGATE_VPC_CIDRS: {cidr} is not a CIDR block of {', '.join(vpc_ids)} "
                f"(its blocks: {', '.join(blocks)})"
            )
    merged = {str(ipaddress.ip_network(c, strict=False)) for c in (*configured, *blocks)}
    return tuple(sorted(merged, key=lambda c: (":" in c, c)))
