"""The capacity hold against the emulator's Auto Scaling API over HTTP: placed at arming, kept on
concentrated evidence, and released on every path (distributed or quiet evidence, OK, the maximum, by hand,
a failed run, an owner that died), restoring exactly what it changed."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from emulator.traffic import START, background
from floodgate.adapters.autoscaling import HELD_PROCESS
from floodgate.adapters.holds import HoldRecord
from floodgate.adapters.retry import Retrier
from floodgate.core.records import EventKind, LogEvent
from floodgate.services.capacity_hold import CapacityHold
from floodgate.services.detection import DecisionFailed, DetectionService
from floodgate.services.events import parse_detector_event
from floodgate.services.expiry import ExpiryService
from floodgate.services.wiring import Wiring
from floodgate.settings import ENV, Settings
from tests.events import load
from tests.integration.conftest import FAST_RETRIES, AwsClientFactory, Clock, Tables, VpcFixture
from tests.integration.test_handlers import FLOOD, MINUTE, ORDINARY, VPC_CIDR, deliveries, environment

pytestmark = pytest.mark.integration

ALARM = "Floodgate-early-warning"
QUIET = background(random.Random(11), 10, pps=8.0)  # 80 pps: below the 1,000 pps floor
SPREAD = background(random.Random(12), 2000, pps=8.0)  # 16,000 pps from 2,000 sources: a flash crowd


@dataclass
class Held:
    detector: DetectionService
    expirer: ExpiryService
    clock: Clock
    autoscaling: Any
    groups: tuple[str, ...]
    calls: list[str] = field(default_factory=list)  # Auto Scaling operations the services made

    def alarm(self, state: str = "alarm") -> dict[str, Any]:
        return self.handle(load(f"alarm-eventbridge-{state}"))

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self.detector.handle(parse_detector_event(event)).as_dict()
        return answer

    def deliver(self, sources: list[Any], minute: int) -> None:
        for event in deliveries(sources, minute):
            self.handle(event)

    def suspended(self, group: str) -> set[str]:
        (found,) = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
            "AutoScalingGroups"
        ]
        return {p["ProcessName"] for p in found.get("SuspendedProcesses", [])}

    def desired(self, group: str) -> int:
        (found,) = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
            "AutoScalingGroups"
        ]
        return int(found["DesiredCapacity"])

    def capacity_log(self) -> list[LogEvent]:
        events = self.detector.enforcer.ledger.events(
            since=START - 86400, until=self.clock() + 86400, now=self.clock()
        )
        kinds = {EventKind.HOLD, EventKind.RELEASE}
        return sorted((e for e in events if e.kind in kinds), key=lambda e: e.sort_key)

    def releases(self) -> list[LogEvent]:
        return [e for e in self.capacity_log() if e.kind is EventKind.RELEASE]

    @property
    def holds(self) -> CapacityHold:
        assert self.detector.holds is not None
        return self.detector.holds


@pytest.fixture
def make_held(
    aws_client: AwsClientFactory, make_vpc: Callable[..., VpcFixture], tables: Tables, clock: Clock
) -> Callable[..., Held]:
    """`make_held(groups=2, hold=True)`: Auto Scaling groups of 2 instances, and the detector and expirer
    built by their production wiring on emulator clients, holding those groups (or not)."""

    def build(*, groups: int = 1, hold: bool = True) -> Held:
        vpc = make_vpc(cidr=VPC_CIDR)
        autoscaling = aws_client("autoscaling")
        ec2 = aws_client("ec2")
        subnet = ec2.create_subnet(VpcId=vpc.vpc_id, CidrBlock="10.0.200.0/24")["Subnet"]["SubnetId"]
        names = tuple(f"web-{uuid.uuid4().hex[:8]}" for _ in range(groups))
        template = f"lt-{uuid.uuid4().hex[:8]}"
        ec2.create_launch_template(
            LaunchTemplateName=template,
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
        )
        for name in names:
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=name,
                LaunchTemplate={"LaunchTemplateName": template},
                MinSize=1,
                MaxSize=10,
                DesiredCapacity=2,
                VPCZoneIdentifier=subnet,
            )
        overrides = {ENV.HOLD_GROUPS: ",".join(names), ENV.HOLD_MAX: "10m"} if hold else {}
        settings = Settings.from_env(environment(vpc, tables, "", **overrides))
        service_autoscaling = aws_client("autoscaling")
        wiring = Wiring(
            clock=clock,
            retrier=Retrier(FAST_RETRIES),
            dynamodb=aws_client("dynamodb"),
            ec2=aws_client("ec2"),
            sns=aws_client("sns"),
            autoscaling=service_autoscaling,
        )
        held = Held(
            DetectionService.from_settings(settings, wiring),
            ExpiryService.from_settings(settings, wiring),
            clock,
            autoscaling,
            names,
        )
        service_autoscaling.meta.events.register(
            "before-call", lambda model, **_: held.calls.append(model.name)
        )
        return held

    return build


def test_concentrated_evidence_keeps_the_hold_and_ok_releases_it(make_held: Callable[..., Held]) -> None:
    held = make_held(groups=2)
    clock = held.clock
    for minute in (0, 1):
        clock.at = START + (minute + 1) * MINUTE + 20
        held.deliver(ORDINARY, minute)

    # The alarm fires before any flood record has arrived: held, nothing raised, nothing to judge yet.
    clock.at = START + 2 * MINUTE + 30
    answer = held.alarm()
    assert [e["event"] for e in answer["capacity"]] == ["HOLD", "HOLD"]
    assert answer["decision"]["verdict"] == "distributed"  # ordinary traffic of before the hold
    for group in held.groups:
        assert held.suspended(group) == {HELD_PROCESS}
        assert held.desired(group) == 2
    assert len(held.holds.records.in_force()) == 2

    # The flood's records arrive: concentrated, the denies cover it: the hold stays.
    clock.at = START + 3 * MINUTE + 20
    held.deliver(ORDINARY + FLOOD, 2)
    assert all(held.suspended(group) == {HELD_PROCESS} for group in held.groups)
    clock.at = START + 4 * MINUTE + 20
    held.deliver(ORDINARY + FLOOD, 3)
    assert all(held.suspended(group) == {HELD_PROCESS} for group in held.groups)

    # OK: released, exactly what was suspended is resumed.
    clock.at = START + 6 * MINUTE
    answer = held.alarm("ok")
    assert [e["event"] for e in answer["capacity"]] == ["RELEASE", "RELEASE"]
    assert all(held.suspended(group) == set() for group in held.groups)
    assert held.holds.records.in_force() == []
    story = [(e.kind, e.cidr) for e in held.capacity_log()]
    for group in held.groups:
        assert [k for k, c in story if c == f"asg:{group}"] == [EventKind.HOLD, EventKind.RELEASE]
    release = held.releases()[-1]
    assert f"{ALARM} is OK" in release.reason and release.reason.startswith("after 3m30s")


@pytest.mark.parametrize(("traffic", "words"), [(SPREAD, "distributed"), (QUIET, "no flood")])
def test_distributed_or_quiet_evidence_releases_at_once(
    make_held: Callable[..., Held], traffic: list[Any], words: str
) -> None:
    held = make_held()
    (group,) = held.groups
    held.clock.at = START + 30
    held.alarm()
    assert held.suspended(group) == {HELD_PROCESS}
    held.clock.at = START + MINUTE + 20
    held.deliver(traffic, 0)  # records of minute 0, the hold's own: only part of it, interface by interface
    assert held.suspended(group) == {HELD_PROCESS}
    held.clock.at = START + 2 * MINUTE + 20
    held.deliver(traffic, 1)  # a whole minute after the hold: judged, released at once
    assert held.suspended(group) == set()
    (release,) = held.releases()
    assert words in release.reason


def test_the_expirer_releases_a_hold_at_its_maximum(make_held: Callable[..., Held]) -> None:
    held = make_held()
    (group,) = held.groups
    held.clock.at = START + 30
    held.alarm()
    held.clock.advance(9 * MINUTE)
    held.expirer.run()
    assert held.suspended(group) == {HELD_PROCESS}
    held.clock.advance(MINUTE)
    report = held.expirer.run()
    assert [e.kind for e in report.events] == [EventKind.RELEASE]
    assert "held for the maximum, 10m" in report.events[0].reason
    assert held.suspended(group) == set()


def test_a_person_releases_the_hold_by_hand(make_held: Callable[..., Held]) -> None:
    held = make_held()
    (group,) = held.groups
    held.clock.at = START + 30
    held.alarm()
    answer = held.handle(
        {"action": "release", "reason": "launch day, we need the capacity", "actor": "alice"}
    )
    assert answer["ok"] and [e["event"] for e in answer["released"]] == ["RELEASE"]
    assert held.suspended(group) == set()
    (release,) = held.releases()
    assert release.actor == "alice" and "released by hand: launch day" in release.reason
    assert held.handle({"action": "release", "reason": "again, nothing held"})["released"] == []


def test_a_failed_run_releases_the_hold_and_still_fails(
    make_held: Callable[..., Held], monkeypatch: pytest.MonkeyPatch
) -> None:
    held = make_held()
    (group,) = held.groups
    held.clock.at = START + 30

    def broken_read(**_: Any) -> Any:
        raise RuntimeError("window unreadable")

    monkeypatch.setattr(held.detector.window, "read", broken_read)
    with pytest.raises(DecisionFailed, match="RuntimeError: window unreadable"):
        held.alarm()  # held, then the decision fails
    assert held.suspended(group) == set()
    assert sorted(e.kind for e in held.capacity_log()) == [EventKind.HOLD, EventKind.RELEASE]
    (release,) = held.releases()
    assert "Floodgate's run failed (RuntimeError: window unreadable)" in release.reason


def test_the_expirer_releases_a_hold_whose_owner_died(make_held: Callable[..., Held]) -> None:
    held = make_held(groups=2)
    first, second = held.groups
    held.clock.at = START + 30
    held.alarm()
    # The run handling the OK wrote the disarm and died before releasing; and a run placing a hold died
    # between writing its record and suspending the group.
    # (changed_at: after the fixture ALARM's own state timestamp, 16:05 on the test's day)
    assert held.detector.arming.disarm(ALARM, now=held.clock(), changed_at=held.clock() + 3600)
    assert held.holds.records.drop(second) is not None
    held.autoscaling.resume_processes(AutoScalingGroupName=second, ScalingProcesses=[HELD_PROCESS])
    assert held.holds.records.claim(
        HoldRecord(second, held.clock(), held.clock() + 600, ALARM, "dying", True, 2)
    )
    assert held.suspended(first) == {HELD_PROCESS} and held.suspended(second) == set()

    held.clock.advance(MINUTE)
    report = held.expirer.run()
    assert sorted(e.cidr for e in report.events) == sorted(f"asg:{g}" for g in held.groups)
    assert all("owner Floodgate-early-warning gone" in e.reason for e in report.events)
    assert held.suspended(first) == set() and held.suspended(second) == set()
    assert held.holds.records.in_force() == []


def test_a_suspension_made_by_someone_else_is_left_alone(make_held: Callable[..., Held]) -> None:
    held = make_held()
    (group,) = held.groups
    held.autoscaling.suspend_processes(AutoScalingGroupName=group, ScalingProcesses=[HELD_PROCESS])
    held.clock.at = START + 30
    answer = held.alarm()
    assert "already suspended outside Floodgate" in answer["capacity"][0]["reason"]
    held.clock.advance(MINUTE)
    assert held.alarm("ok")["capacity"] == []
    assert held.suspended(group) == {HELD_PROCESS}  # never resumed: not Floodgate's
    assert "SuspendProcesses" not in held.calls and "ResumeProcesses" not in held.calls


def test_with_the_hold_off_nothing_touches_auto_scaling(make_held: Callable[..., Held]) -> None:
    held = make_held(hold=False)
    (group,) = held.groups
    held.clock.at = START + 30
    answer = held.alarm()
    assert answer["capacity"] == [] and held.detector.holds is None
    held.clock.advance(MINUTE)
    held.alarm("ok")
    held.expirer.run()
    assert held.calls == []
    assert held.suspended(group) == set()
