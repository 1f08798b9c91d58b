"""AWS at the edges of the estate: the VPC a member protects (found by tag) and the events it puts on the
security account's bus."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from floodgate.adapters.retry import Retrier, client_config, default_client
from floodgate.adapters.vpc import vpc_cidr_blocks

_log = logging.getLogger(__name__)


class NoProtectedVpc(LookupError):
    """Not exactly one VPC of the account carries the member tag; the message says what was found."""


def tagged_vpc(tag_key: str, *, client: Any = None, retrier: Retrier | None = None) -> str:
    """The id of the one VPC of this account and region that carries `tag_key` (any value)."""
    ec2 = default_client("ec2", client)
    retry = retrier or Retrier()
    found = retry.call(
        "DescribeVpcs", partial(ec2.describe_vpcs, Filters=[{"Name": "tag-key", "Values": [tag_key]}])
    )
    vpc_ids: list[str] = sorted(vpc["VpcId"] for vpc in found.get("Vpcs", []))
    if len(vpc_ids) != 1:
        what = ", ".join(vpc_ids) if vpc_ids else "none"
        raise NoProtectedVpc(
            f"a member protects the one VPC tagged {tag_key!r}; found {what}: tag exactly one VPC"
        )
    return vpc_ids[0]


@dataclass(frozen=True, slots=True)
class MemberVpc:
    """A member's protected VPC as the security account sees it: its id and every CIDR block it holds."""

    vpc_id: str
    cidrs: tuple[str, ...]


class MemberVpcReader:
    """The tagged VPC of a member account, read through the member's read-only role (the one `floodgate
    status --all` assumes); `clients(account, service)` gives a client of the member (default: AssumeRole
    into arn:aws:iam::<account>:role/<role_name> with this account's credentials)."""

    def __init__(
        self,
        tag_key: str,
        *,
        role_name: str,
        clients: Callable[[str, str], Any] | None = None,
        retrier: Retrier | None = None,
    ) -> None:
        self.tag_key = tag_key
        self.role_name = role_name
        self._clients = clients or self._assumed
        self._retry = retrier or Retrier()

    def __call__(self, account: str) -> MemberVpc:
        ec2 = self._clients(account, "ec2")
        vpc_id = tagged_vpc(self.tag_key, client=ec2, retrier=self._retry)
        _, blocks = vpc_cidr_blocks(vpc_id=vpc_id, nacl_ids=(), client=ec2, retrier=self._retry)
        return MemberVpc(vpc_id, blocks)

    def _assumed(self, account: str, service: str) -> Any:
        sts = default_client("sts", None)
        role = f"arn:aws:iam::{account}:role/{self.role_name}"
        answer = self._retry.call(
            "AssumeRole", partial(sts.assume_role, RoleArn=role, RoleSessionName="floodgate-security")
        )
        credentials = answer["Credentials"]
        import boto3  # noqa: PLC0415 - lazy, as default_client

        return boto3.client(
            service,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            config=client_config(),
        )


def ensure_flow_log(
    vpc_id: str,
    *,
    log_group: str,
    delivery_role_arn: str,
    log_format: str | None,
    client: Any = None,
    retrier: Retrier | None = None,
) -> str | None:
    """A flow log of `vpc_id` delivering to `log_group` (whose subscription filter carries it to the security
    account): the id of the one created now, or None when one is there already. The member template cannot
    name the VPC (one template for every account), so the member's expirer makes it at run time."""
    ec2 = default_client("ec2", client)
    retry = retrier or Retrier()
    filters = [{"Name": "resource-id", "Values": [vpc_id]}, {"Name": "log-group-name", "Values": [log_group]}]
    found = retry.call("DescribeFlowLogs", partial(ec2.describe_flow_logs, Filters=filters))
    # moto ignores the log-group-name filter: check the group on each flow log.
    if any(f.get("LogGroupName") == log_group for f in found.get("FlowLogs", [])):
        return None
    request: dict[str, Any] = {
        "ResourceIds": [vpc_id],
        "ResourceType": "VPC",
        "TrafficType": "ALL",
        "LogDestinationType": "cloud-watch-logs",
        "LogGroupName": log_group,
        "DeliverLogsPermissionArn": delivery_role_arn,
        "MaxAggregationInterval": 60,
    }
    if log_format:
        request["LogFormat"] = log_format
    answer = retry.call("CreateFlowLogs", partial(ec2.create_flow_logs, **request))
    if answer.get("Unsuccessful"):
        why = answer["Unsuccessful"][0].get("Error", {}).get("Message", "refused")
        raise RuntimeError(f"CreateFlowLogs for {vpc_id} into {log_group} failed: {why}")
    flow_logs: list[str] = answer.get("FlowLogIds", [])
    return flow_logs[0] if flow_logs else None


def own_account(client: Any = None) -> str:
    """The account these credentials belong to (GetCallerIdentity needs no permission)."""
    return str(default_client("sts", client).get_caller_identity()["Account"])


class BusPublisher:
    """Puts one event on an event bus (name or ARN); a failure is logged and reported, never raised: what the
    event reports has already happened."""

    def __init__(self, client: Any = None, *, retrier: Retrier | None = None) -> None:
        self._events = client
        self._retry = retrier or Retrier()

    def put(self, entry: Mapping[str, Any]) -> bool:
        if self._events is None:
            self._events = default_client("events")
        try:
            answer = self._retry.call("PutEvents", partial(self._events.put_events, Entries=[dict(entry)]))
        except Exception:
            _log.error("PutEvents to %s failed", entry.get("EventBusName"), exc_info=True)
            return False
        if answer.get("FailedEntryCount", 0):
            failed = answer.get("Entries", [{}])[0]
            _log.error(
                "PutEvents to %s refused the event: %s %s",
                entry.get("EventBusName"),
                failed.get("ErrorCode"),
                failed.get("ErrorMessage"),
            )
            return False
        return True
