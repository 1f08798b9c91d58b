"""EC2 Auto Scaling adapter: hold a group at its capacity by suspending its `AlarmNotification` process.

Why suspend rather than lower `MaxSize` to the desired capacity: a suspension changes no size, so there is
nothing to restore but the suspension itself; it stops exactly the alarm-driven scaling a flood would
trigger (target tracking and step policies), while scheduled actions and a person's own capacity changes
still work; and a `MaxSize` written back after the hold would undo any change someone made to it in the
meantime. A group whose `AlarmNotification` someone else suspended is left alone: Floodgate resumes only
what it suspended.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from floodgate.adapters.retry import Retrier, default_client, error_code

HELD_PROCESS = "AlarmNotification"


@dataclass(frozen=True, slots=True)
class GroupState:
    name: str
    desired: int
    suspended: frozenset[str]

    @property
    def held(self) -> bool:
        return HELD_PROCESS in self.suspended


class GroupNotFound(LookupError):
    """No Auto Scaling group of that name."""


class ScalingGroups:
    """Takes a low-level Auto Scaling client (default: a new one)."""

    def __init__(self, client: Any = None, *, retrier: Retrier | None = None) -> None:
        self._asg = default_client("autoscaling", client)
        self._retry = retrier or Retrier()

    def state(self, group: str) -> GroupState:
        """The group's capacity and suspended processes. Raises GroupNotFound."""
        reply = self._retry.call(
            "DescribeAutoScalingGroups",
            partial(self._asg.describe_auto_scaling_groups, AutoScalingGroupNames=[group]),
        )
        for found in reply.get("AutoScalingGroups", []):
            if found["AutoScalingGroupName"] == group:
                suspended = frozenset(p["ProcessName"] for p in found.get("SuspendedProcesses", []))
                return GroupState(group, int(found["DesiredCapacity"]), suspended)
        raise GroupNotFound(group)

    def suspend(self, group: str) -> None:
        self._retry.call(
            "SuspendProcesses",
            partial(self._asg.suspend_processes, AutoScalingGroupName=group, ScalingProcesses=[HELD_PROCESS]),
        )

    def resume(self, group: str) -> None:
        """Resume the held process. Raises GroupNotFound when the group was deleted meanwhile."""
        try:
            self._retry.call(
                "ResumeProcesses",
                partial(
                    self._asg.resume_processes, AutoScalingGroupName=group, ScalingProcesses=[HELD_PROCESS]
                ),
            )
        except ClientError as exc:
            if error_code(exc) != "ValidationError":
                raise
            self.state(group)  # raises GroupNotFound when that is what the refusal meant
            raise
