"""The demo network in the emulator: a VPC, two subnets, a NACL we protect, and an ENI for an instance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEMO_VPC_CIDR = "10.0.0.0/16"
DEMO_SUBNET_CIDRS = ("10.0.1.0/24", "10.0.2.0/24")
DEMO_INSTANCE_IP = "10.0.1.10"
DEFAULT_RULE_START = 100
DEFAULT_BUDGET = 10


def owned_rule_end(rule_start: int, budget: int) -> int:
    """Last rule number of Floodgate's owned block: 2 x (budget + 1) numbers from rule_start."""
    return rule_start + 2 * (budget + 1) - 1


def allow_rule_number(rule_start: int = DEFAULT_RULE_START, budget: int = DEFAULT_BUDGET) -> int:
    """The first multiple of 100 above the owned block (200 for the defaults)."""
    end = owned_rule_end(rule_start, budget)
    number = (end // 100 + 1) * 100
    if number > 32766:
        raise ValueError(f"no room for an allow rule above the owned block ending at {end}")
    return number


@dataclass(frozen=True, slots=True)
class DemoNetwork:
    vpc_id: str
    vpc_cidr: str
    subnet_ids: tuple[str, ...]
    nacl_id: str
    eni_id: str
    instance_ip: str
    allow_rule: int

    def context(self) -> dict[str, Any]:
        """The CDK context that points Floodgate at this network (see infra.settings)."""
        return {"vpcId": self.vpc_id, "naclIds": [self.nacl_id], "vpcCidrs": [self.vpc_cidr]}


def create_demo_network(
    ec2: Any, *, rule_start: int = DEFAULT_RULE_START, budget: int = DEFAULT_BUDGET
) -> DemoNetwork:
    """Create the network through the EC2 API (`ec2` is a boto3 EC2 client on the emulator)."""
    vpc_id = ec2.create_vpc(CidrBlock=DEMO_VPC_CIDR)["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc_id], Tags=[{"Key": "Name", "Value": "floodgate-demo"}])
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    subnet_ids = tuple(
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=zones[i % len(zones)])["Subnet"][
            "SubnetId"
        ]
        for i, cidr in enumerate(DEMO_SUBNET_CIDRS)
    )
    nacl_id = ec2.create_network_acl(VpcId=vpc_id)["NetworkAcl"]["NetworkAclId"]
    ec2.create_tags(Resources=[nacl_id], Tags=[{"Key": "Name", "Value": "floodgate-demo-public"}])
    # Move both subnets from the VPC's default NACL to ours.
    for subnet_id in subnet_ids:
        found = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}])
        for acl in found["NetworkAcls"]:
            for association in acl["Associations"]:
                if association["SubnetId"] == subnet_id:
                    ec2.replace_network_acl_association(
                        AssociationId=association["NetworkAclAssociationId"], NetworkAclId=nacl_id
                    )
    rule = allow_rule_number(rule_start, budget)
    for egress in (False, True):
        ec2.create_network_acl_entry(
            NetworkAclId=nacl_id,
            RuleNumber=rule,
            Protocol="-1",
            RuleAction="allow",
            Egress=egress,
            CidrBlock="0.0.0.0/0",
        )
    eni_id = ec2.create_network_interface(
        SubnetId=subnet_ids[0],
        PrivateIpAddress=DEMO_INSTANCE_IP,
        Description="floodgate-demo web-1 (stands in for an instance)",
    )["NetworkInterface"]["NetworkInterfaceId"]
    return DemoNetwork(
        vpc_id=vpc_id,
        vpc_cidr=DEMO_VPC_CIDR,
        subnet_ids=subnet_ids,
        nacl_id=nacl_id,
        eni_id=eni_id,
        instance_ip=DEMO_INSTANCE_IP,
        allow_rule=rule,
    )
