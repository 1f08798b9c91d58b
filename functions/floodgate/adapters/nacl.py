"""EC2 Network ACL adapter: read NACLs and write Floodgate's deny entries, nothing else.

Every mutating call writes one all-protocol deny entry (`Protocol "-1"`, `RuleAction deny`) at a rule number
the caller chose; the gateway never decides numbers and never lists what to write. Failures come out as the
distinct exceptions below, after transient ones (throttling, 5xx) were retried with backoff.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from floodgate.adapters.retry import (
    THROTTLING_CODES,
    Retrier,
    call_budget_s,
    default_client,
    error_code,
    is_server_error,
)
from floodgate.core.nacl import ALL_PROTOCOLS, NaclEntry, NaclSnapshot
from floodgate.core.slots import Direction

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import NetworkAclEntryTypeDef, NetworkAclTypeDef


# The emulator reports an unknown NACL id with a route-table error code; AWS with the NACL one.
_UNKNOWN_NACL_CODES = frozenset({"InvalidNetworkAclID.NotFound", "InvalidRouteTableID.NotFound"})
_ENTRY_NOT_FOUND = "InvalidNetworkAclEntry.NotFound"
_ENTRY_EXISTS = "NetworkAclEntryAlreadyExists"
_ENTRY_LIMIT = "NetworkAclEntryLimitExceeded"
# EC2's answers to an entry it will never take as written: retrying the same entry cannot help.
_ENTRY_INVALID_CODES = frozenset(
    {
        "InvalidParameterValue",
        "InvalidParameter",
        "InvalidParameterCombination",
        "InvalidNetworkAclEntry",
        "InvalidNetworkAclEntry.Malformed",
        "InvalidIPAddress.Malformed",
        "InvalidIpv6CidrBlock",
        "InvalidCidrBlock",
        "MissingParameter",
    }
)


class NaclError(Exception):
    """A NACL operation that cannot succeed as asked."""


class UnknownNacl(NaclError, LookupError):
    """The NACL (or the VPC's NACLs) does not exist or is not visible with these credentials."""


class EntryAlreadyExists(NaclError):
    """Another entry holds the rule number: a concurrent writer got there first."""

    def __init__(self, nacl_id: str, rule: int, direction: Direction, existing: NaclEntry | None) -> None:
        held_by = existing.describe() if existing else "an entry that has since gone"
        super().__init__(f"{nacl_id}: {direction} rule {rule} is taken by {held_by}")
        self.existing = existing


class EntryLimitExceeded(NaclError):
    """AWS refused the entry: the account's rules-per-NACL quota is lower than Floodgate was told."""


class EntryRejected(NaclError):
    """EC2 refused the entry as invalid (a non-transient 4xx): the same entry will never go in."""


class EntryNotFound(NaclError, LookupError):
    """The entry to replace is not there."""


class NaclGateway:
    """Reads NACLs and creates, replaces and deletes deny entries.

    At most one mutating EC2 call per method call, plus retries of calls that failed transiently. One attempt
    takes at most `call_budget_s` (the client's connect and read timeouts): the engine starts a call only
    while its lease has that much left.
    """

    def __init__(self, client: EC2Client | None = None, *, retrier: Retrier | None = None) -> None:
        self._ec2: EC2Client = default_client("ec2", client)
        self._retry = retrier or Retrier()
        self.call_budget_s = call_budget_s(self._ec2)

    def describe_vpc(self, vpc_id: str) -> dict[str, NaclSnapshot]:
        """Snapshots of every NACL of the VPC, by id in id order."""
        found: dict[str, NaclSnapshot] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Filters": [{"Name": "vpc-id", "Values": [vpc_id]}], "MaxResults": 100}
            if token:
                params["NextToken"] = token
            page = self._retry.call("DescribeNetworkAcls", partial(self._ec2.describe_network_acls, **params))
            found.update((acl["NetworkAclId"], _snapshot(acl)) for acl in page.get("NetworkAcls", []))
            token = page.get("NextToken")
            if not token:
                break
        if not found:
            raise UnknownNacl(
                f"{vpc_id} has no network ACLs (does the VPC exist in this account and Region?)"
            )
        return dict(sorted(found.items()))

    def describe(self, nacl_ids: Sequence[str]) -> dict[str, NaclSnapshot]:
        """Snapshots of the given NACLs, in one call. Raises UnknownNacl naming any id that does not exist."""
        if not nacl_ids:
            return {}
        wanted = list(dict.fromkeys(nacl_ids))
        try:
            page = self._retry.call(
                "DescribeNetworkAcls", lambda: self._ec2.describe_network_acls(NetworkAclIds=wanted)
            )
        except ClientError as exc:
            if error_code(exc) in _UNKNOWN_NACL_CODES:
                raise UnknownNacl(f"unknown network ACL among {', '.join(wanted)}: {_message(exc)}") from None
            raise
        found = {acl["NetworkAclId"]: _snapshot(acl) for acl in page.get("NetworkAcls", [])}
        missing = [nacl_id for nacl_id in wanted if nacl_id not in found]
        if missing:
            raise UnknownNacl(f"unknown network ACL: {', '.join(missing)}")
        return {nacl_id: found[nacl_id] for nacl_id in wanted}

    def create_deny(
        self,
        nacl_id: str,
        *,
        rule: int,
        cidr: str,
        direction: Direction,
        keep_going: Callable[[], bool] | None = None,
    ) -> None:
        """Create the deny entry. Succeeds quietly when exactly this entry is already there (a retried call
        whose first response was lost, or another worker doing the same). `keep_going` bounds the retries
        (`Retrier.call`)."""
        params = _entry_params(nacl_id, rule, cidr, direction)
        network = str(ipaddress.ip_network(cidr))
        try:
            self._retry.call(
                "CreateNetworkAclEntry",
                lambda: self._ec2.create_network_acl_entry(**params),
                keep_going=keep_going,
            )
        except ClientError as exc:
            code = error_code(exc)
            if code == _ENTRY_EXISTS:
                existing = self._entry(nacl_id, direction, rule)
                if existing is not None and existing.is_deny_of(network):
                    return
                raise EntryAlreadyExists(nacl_id, rule, direction, existing) from None
            if code == _ENTRY_LIMIT:
                raise EntryLimitExceeded(f"{nacl_id}: {_message(exc)}") from None
            if code in _UNKNOWN_NACL_CODES:
                raise UnknownNacl(f"{nacl_id}: {_message(exc)}") from None
            if code in _ENTRY_INVALID_CODES:
                raise EntryRejected(f"{nacl_id}: {code}: {_message(exc)}") from None
            raise

    def replace_deny(
        self,
        nacl_id: str,
        *,
        rule: int,
        cidr: str,
        direction: Direction,
        keep_going: Callable[[], bool] | None = None,
    ) -> None:
        """Turn the entry at `rule` into a deny of `cidr`, in one call. Raises EntryNotFound if it is gone,
        EntryRejected if EC2 refuses the entry as invalid."""
        params = _entry_params(nacl_id, rule, cidr, direction)

        def attempt() -> None:
            try:
                self._ec2.replace_network_acl_entry(**params)
            except Exception as exc:
                if error_code(exc) == _ENTRY_NOT_FOUND or self._missing_after(exc, nacl_id, direction, rule):
                    raise EntryNotFound(f"{nacl_id}: no {direction} rule {rule} to replace") from None
                if isinstance(exc, ClientError) and error_code(exc) in _ENTRY_INVALID_CODES:
                    raise EntryRejected(f"{nacl_id}: {error_code(exc)}: {_message(exc)}") from None
                raise

        self._retry.call("ReplaceNetworkAclEntry", attempt, keep_going=keep_going)

    def delete_entry(
        self, nacl_id: str, *, rule: int, direction: Direction, keep_going: Callable[[], bool] | None = None
    ) -> bool:
        """Delete the entry at `rule`. False when it was already gone."""

        def attempt() -> bool:
            try:
                self._ec2.delete_network_acl_entry(
                    NetworkAclId=nacl_id, RuleNumber=rule, Egress=direction.egress
                )
            except Exception as exc:
                if error_code(exc) == _ENTRY_NOT_FOUND or self._missing_after(exc, nacl_id, direction, rule):
                    return False
                raise
            return True

        return self._retry.call("DeleteNetworkAclEntry", attempt, keep_going=keep_going)

    def _missing_after(self, exc: BaseException, nacl_id: str, direction: Direction, rule: int) -> bool:
        """After a 5xx on replace or delete: is the entry simply not there?

        The emulator answers a missing entry with HTTP 500; AWS answers 5xx only for its own trouble. Looking
        tells the two apart: absent means not-found, present means a real server error worth retrying.
        """
        if not is_server_error(exc) or error_code(exc) in THROTTLING_CODES:
            return False  # throttling comes back as 503: not a sign of a missing entry
        return self._entry(nacl_id, direction, rule) is None

    def _entry(self, nacl_id: str, direction: Direction, rule: int) -> NaclEntry | None:
        return self.describe([nacl_id])[nacl_id].entry(direction, rule)


def _entry_params(nacl_id: str, rule: int, cidr: str, direction: Direction) -> dict[str, Any]:
    network = ipaddress.ip_network(cidr)
    address_key = "CidrBlock" if network.version == 4 else "Ipv6CidrBlock"
    return {
        "NetworkAclId": nacl_id,
        "RuleNumber": rule,
        "Protocol": ALL_PROTOCOLS,
        "RuleAction": "deny",
        "Egress": direction.egress,
        address_key: str(network),
    }


def _snapshot(acl: NetworkAclTypeDef) -> NaclSnapshot:
    return NaclSnapshot(
        nacl_id=acl["NetworkAclId"],
        vpc_id=acl.get("VpcId", ""),
        is_default=bool(acl.get("IsDefault", False)),
        entries=tuple(sorted(_entries(acl.get("Entries", [])), key=lambda e: (e.direction, e.rule))),
    )


def _entries(raw: Iterable[NetworkAclEntryTypeDef]) -> Iterable[NaclEntry]:
    for item in raw:
        cidr = item.get("CidrBlock") or item.get("Ipv6CidrBlock")
        if not cidr:
            continue
        port_range = item.get("PortRange")
        yield NaclEntry(
            rule=int(item["RuleNumber"]),
            direction=Direction.EGRESS if item.get("Egress") else Direction.INGRESS,
            action=str(item.get("RuleAction", "")).lower(),
            protocol=str(item.get("Protocol", "")),
            cidr=str(ipaddress.ip_network(cidr, strict=False)),
            ports=(int(port_range["From"]), int(port_range["To"])) if port_range else None,
        )


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", exc))
