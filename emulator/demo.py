"""`make demo`: a whole attack, end to end, on the emulated AWS.

1. start moto server on a free localhost port;
2. create a demo VPC: subnets, a NACL (allow rule above Floodgate's owned block), three interfaces;
3. deploy the real synthesized stack into the emulator and fill in what its CloudFormation skips;
4. act as the Lambda service: invoke the handlers in-process with each deployed function's configuration;
5. play an incident: ordinary traffic → a flood from a few sources and a /24 → the early alarm fires and
   holds the web Auto Scaling group at its capacity (`scaleOutHold`) → denies in the NACL → the flood goes
   on, REJECTed → the attack stops, the alarm is OK, the hold is released → time passes → the expirer lifts
   the denies;
6. print the incident's deny log as on-call reads it (`floodgate log`), the incident's timeline and what
   the hold saved (`floodgate timeline`), and exit 0.

Any failure exits non-zero with the reason. `--keep` leaves the emulator running for the CLI afterwards.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import logging
import os
import random
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from emulator import server
from emulator.deploy import DeployedStack, deploy
from emulator.lambda_runtime import (
    LocalFunction,
    alarm_event,
    encode_awslogs,
    event_pattern_matches,
    subscription_document,
)
from emulator.network import DemoNetwork, create_demo_network
from emulator.traffic import (
    INTERVAL_S,
    Source,
    background,
    flow_lines,
    in_format,
    prefix_hosts,
    public_addresses,
)
from floodgate.cli.main import main as floodgate_cli
from floodgate.cli.render import rate, table
from floodgate.core.durations import format_duration
from floodgate.observability import OUTPUT
from floodgate.settings import ENV

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = ROOT / ".demo"
BOTNET = "203.0.113.0/24"
SCALING_GROUP = "floodgate-demo-web"  # the web tier the early alarm watches and the hold holds
TIMELINE = ("timeline", "--hold", "--delivery", "1m..10m", "--step", "3m")  # the model, for this deployment
EXTRA_INTERFACES = (("10.0.1.11", 0), ("10.0.2.10", 1))  # (address, subnet index) besides the demo's ENI


@dataclass
class DemoClock:
    """Wall time for the functions: starts in the past so that the log reads as recent history at the end."""

    now: float

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Incident:
    """What happened, for the caller (the end-to-end test reads it)."""

    stack: DeployedStack
    network: DemoNetwork
    denied: list[str] = field(default_factory=list)
    after_expiry: list[str] = field(default_factory=list)
    log_events: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    held: list[str] = field(default_factory=list)  # processes suspended on the group during the flood
    released: list[str] = field(default_factory=list)  # suspended after the release
    capacity: list[tuple[int, int]] = field(default_factory=list)  # (desired, max) before and after
    moments: dict[str, float] = field(default_factory=dict)  # seconds after the flood began
    timeline: dict[str, Any] = field(default_factory=dict)  # `floodgate timeline --json` for the hold


class Narrator:
    def __init__(self, out: TextIO, clock: DemoClock) -> None:
        self.out, self.clock, self.began = out, clock, time.perf_counter()

    def step(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime(self.clock()))
        print(f"[{time.perf_counter() - self.began:5.1f}s | {stamp}Z] {text}", file=self.out, flush=True)

    def show(self, text: str) -> None:
        print("\n".join(f"    {line}" for line in text.splitlines()), file=self.out, flush=True)


class Demo:
    def __init__(self, out: TextIO, emulator: server.Emulator, function_log: TextIO, stack_name: str) -> None:
        self.emulator = emulator
        self.stack_name = stack_name
        self.started_at = float(int(time.time()) // 60 * 60 - 50 * 60)
        self.clock = DemoClock(self.started_at)
        self.say = Narrator(out, self.clock)
        self.ec2 = server.client(emulator, "ec2")
        self.rng = random.Random(2026)
        self.function_log = function_log

    # -- setting up -----------------------------------------------------------------------------------------

    def build(self) -> Incident:
        self.say.step(f"AWS emulator (moto server) listening on {self.emulator.endpoint}")
        network = create_demo_network(self.ec2)
        self.interfaces = [(network.eni_id, network.instance_ip)] + [
            (self._interface(network, address, subnet), address) for address, subnet in EXTRA_INTERFACES
        ]
        self.say.step(
            f"demo network: {network.vpc_id} {network.vpc_cidr}, NACL {network.nacl_id} (allow-all at rule "
            f"{network.allow_rule}), interfaces {', '.join(eni for eni, _ in self.interfaces)}"
        )
        self.autoscaling = server.client(self.emulator, "autoscaling")
        self._scaling_group(network)
        self.say.step(
            f"Auto Scaling group {SCALING_GROUP}: 2 instances (max 10), its scale-out on a 3-minute alarm"
        )
        self.say.step("deploying the synthesized CDK stack into the emulator (capacity hold on) …")
        context = {
            **network.context(),
            "stackName": self.stack_name,
            "alarmDimensions": {"AutoScalingGroupName": SCALING_GROUP},
            "scaleOutHold": True,
            "scaleOutHoldGroups": [SCALING_GROUP],
        }
        stack = deploy(self.emulator, context=context)
        self.say.show(stack.summary())
        self.stack = stack
        self.detector = self._function(OUTPUT.DETECTOR_FUNCTION)
        self.expirer = self._function(OUTPUT.EXPIRER_FUNCTION)
        self._check_wiring()
        return Incident(stack, network)

    def _scaling_group(self, network: DemoNetwork) -> None:
        template = self.ec2.create_launch_template(
            LaunchTemplateName=f"{SCALING_GROUP}-template",
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
        )["LaunchTemplate"]["LaunchTemplateId"]
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=SCALING_GROUP,
            LaunchTemplate={"LaunchTemplateId": template},
            MinSize=1,
            MaxSize=10,
            DesiredCapacity=2,
            VPCZoneIdentifier=",".join(network.subnet_ids),
        )

    def _group(self) -> tuple[list[str], tuple[int, int]]:
        """The group's suspended processes and its (desired, max) capacity."""
        (group,) = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[SCALING_GROUP])[
            "AutoScalingGroups"
        ]
        suspended = sorted(p["ProcessName"] for p in group.get("SuspendedProcesses", []))
        return suspended, (int(group["DesiredCapacity"]), int(group["MaxSize"]))

    def _interface(self, network: DemoNetwork, address: str, subnet: int) -> str:
        created = self.ec2.create_network_interface(
            SubnetId=network.subnet_ids[subnet], PrivateIpAddress=address, Description="floodgate-demo web"
        )
        eni: str = created["NetworkInterface"]["NetworkInterfaceId"]
        return eni

    def _function(self, output_key: str) -> LocalFunction:
        function = self.stack.function_for_output(output_key)
        return LocalFunction(function, self.emulator, self.clock)

    def _check_wiring(self) -> None:
        """The deliveries below take the deployed routes: the subscription filter and the alarm rule."""
        logs = server.client(self.emulator, "logs")
        self.log_group = self.stack.outputs["FlowLogGroupName"]
        filters = logs.describe_subscription_filters(logGroupName=self.log_group)["subscriptionFilters"]
        routed = [f for f in filters if f["destinationArn"] == self.detector.function.arn]
        if not routed:
            raise SystemExit(f"no subscription filter on {self.log_group} sends to the detector")
        self.filter_name = routed[0]["filterName"]
        self.alarm_name = self.stack.outputs["EarlyAlarmName"]
        self.say.step(
            f"wiring: {self.log_group} → filter {self.filter_name} → {self.detector.function.name}; "
            f"alarm {self.alarm_name} → EventBridge → detector; expirer on its schedule"
        )

    # -- the incident ---------------------------------------------------------------------------------------

    def play(self, incident: Incident) -> None:
        ordinary = background(self.rng, 600, pps=6.0)
        floods = [Source(a, 15_000, flows=12) for a in public_addresses(self.rng, 3)]
        bots = [Source(a, 250, flows=2) for a in prefix_hosts(BOTNET, 200)]

        for minute in range(2):
            self._deliver_minute(ordinary, f"ordinary traffic, minute {minute + 1}")
        began = self.clock()
        _, before = self._group()
        for minute in range(2):
            self._deliver_minute(
                ordinary + floods + bots, f"FLOOD, minute {minute + 1}: 3 sources + {BOTNET}"
            )

        self.say.step(f"early-warning alarm {self.alarm_name} goes to ALARM (before the scale-out alarm)")
        incident.moments["early alarm: armed, capacity held, first denies"] = self.clock() - began
        answer = self._alarm("ALARM", "Threshold Crossed: packets in above the early-warning threshold")
        for event in answer.get("capacity", []):
            self.say.show(f"{event['event']} {event['cidr']}: {event['reason'][:100]}")
        incident.held, _ = self._group()
        self.say.step(f"{SCALING_GROUP}: suspended {incident.held} — a scale-out alarm now changes nothing")
        decision = answer.get("decision") or {}
        self.say.show(
            f"verdict {decision.get('verdict')} over a {decision.get('window_s', 0):.0f} s window:\n"
            + table(
                ("PLANNED", "RATE", "SHARE", "WHY"),
                [
                    (d["cidr"], rate(d["pps"], "pps"), f"{d['share']:.1%}", d["reason"])
                    for d in decision["planned"]
                ],
                right=(1, 2),
            )
        )
        incident.denied = self._show_nacl(incident.network)

        denied = [ipaddress.ip_network(cidr) for cidr in incident.denied]
        rejected = [
            replace(s, action="REJECT")
            if any(ipaddress.ip_address(s.address) in net for net in denied)
            else s
            for s in floods + bots
        ]
        self._deliver_minute(ordinary + rejected, "the flood goes on, now REJECTed at the subnet edge")
        self._run_expirer()

        self.say.step("the attack stops; the alarm returns to OK (denies stay until they expire)")
        incident.moments["flood over; alarm OK: capacity released"] = self.clock() - began
        answer = self._alarm("OK", "Threshold Crossed: packets in back to normal")
        for event in answer.get("capacity", []):
            self.say.show(f"{event['event']} {event['cidr']}: {event['reason'][:100]}")
        incident.released, after = self._group()
        incident.capacity = [before, after]
        self.say.step(
            f"{SCALING_GROUP}: suspended {incident.released}; capacity (desired, max) {before} → {after}"
        )
        for _ in range(2):
            self._deliver_minute(ordinary, "ordinary traffic again")
        minutes = 35
        self.clock.advance(minutes * 60)
        self.say.step(f"… {minutes} minutes later, past the ban time: the expirer's scheduled run")
        self._run_expirer()
        incident.after_expiry = self._show_nacl(incident.network)

    def _deliver_minute(self, sources: list[Source], what: str) -> None:
        """One aggregation interval: each interface's records arrive as one delivery, all in parallel."""
        start = int(self.clock())
        # What the stack's flow log writes: records in the format the detector was deployed with.
        written_as = self.detector.environment[ENV.FLOW_LOG_FORMAT]
        lines = [
            in_format(line, written_as)
            for line in flow_lines(sources, intervals=1, seed=start, start=start, interfaces=self.interfaces)
        ]
        self.clock.advance(INTERVAL_S)
        by_interface: dict[str, list[str]] = {}
        for line in lines:
            by_interface.setdefault(line.split(" ", 3)[2], []).append(line)
        events = [
            encode_awslogs(
                subscription_document(
                    records,
                    log_group=self.log_group,
                    log_stream=f"{eni}-all",
                    filter_name=self.filter_name,
                    timestamp_ms=int(self.clock()) * 1000,
                )
            )
            for eni, records in sorted(by_interface.items())
        ]
        with ThreadPoolExecutor(max_workers=len(events)) as pool:
            answers = list(pool.map(self.detector.invoke, events))
        parsed = sum(a.get("parsed", 0) for a in answers)
        self.say.step(f"{what}: {len(lines):,} records from {len(events)} interfaces, {parsed:,} used")

    def _alarm(self, state: str, reason: str) -> dict[str, Any]:
        cloudwatch = server.client(self.emulator, "cloudwatch")
        (before,) = cloudwatch.describe_alarms(AlarmNames=[self.alarm_name])["MetricAlarms"]
        cloudwatch.set_alarm_state(AlarmName=self.alarm_name, StateValue=state, StateReason=reason)
        (alarm,) = cloudwatch.describe_alarms(AlarmNames=[self.alarm_name])["MetricAlarms"]
        event = alarm_event(alarm, before["StateValue"], self.clock())
        self._check_rule_matches(event)
        return self.detector.invoke(event)

    def _check_rule_matches(self, event: dict[str, Any]) -> None:
        """EventBridge cannot invoke Lambda in moto: check that the deployed rule would route this event."""
        events = server.client(self.emulator, "events")
        rules = events.list_rule_names_by_target(TargetArn=self.detector.function.arn)["RuleNames"]
        for name in rules:
            rule = events.describe_rule(Name=name)
            if "EventPattern" in rule and event_pattern_matches(json.loads(rule["EventPattern"]), event):
                return
        raise SystemExit(
            f"no deployed EventBridge rule routes the {self.alarm_name} state change to the detector"
        )

    def _run_expirer(self) -> None:
        answer = self.expirer.invoke({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
        summary = {k: v for k, v in answer.items() if isinstance(v, int | float) and v} or answer
        self.say.step(f"expirer: {json.dumps(summary)[:300]}")

    def _show_nacl(self, network: DemoNetwork) -> list[str]:
        (acl,) = self.ec2.describe_network_acls(NetworkAclIds=[network.nacl_id])["NetworkAcls"]
        entries = sorted(acl["Entries"], key=lambda e: (e["Egress"], e["RuleNumber"]))
        rows = [
            (
                e["RuleNumber"],
                "egress" if e["Egress"] else "ingress",
                e["Protocol"],
                e["RuleAction"],
                e.get("CidrBlock") or e.get("Ipv6CidrBlock", ""),
            )
            for e in entries
        ]
        self.say.step(f"aws ec2 describe-network-acls --network-acl-ids {network.nacl_id}")
        self.say.show(table(("RULE", "DIRECTION", "PROTOCOL", "ACTION", "CIDR"), rows, right=(0,)))
        return [
            e.get("CidrBlock") or e.get("Ipv6CidrBlock", "")
            for e in entries
            if e["RuleAction"] == "deny" and not e["Egress"] and e["RuleNumber"] < network.allow_rule
        ]

    def timeline(self, incident: Incident) -> None:
        self.say.step("the incident's timeline (the emulator delivers flow logs at once; AWS takes minutes)")
        self.say.show(
            table(
                ("AFTER THE FLOOD BEGAN", "WHAT"),
                [("0s", "flood begins")]
                + [(format_duration(at), what) for what, at in incident.moments.items()],
                right=(0,),
            )
        )
        self.say.step(f"the same incident on AWS's delays, modelled: floodgate {' '.join(TIMELINE)}")
        self.say.show(self._cli(*TIMELINE))
        incident.timeline = json.loads(self._cli(*TIMELINE, "--json"))

    def deny_log(self, incident: Incident) -> None:
        self.say.step(f"the deny log, as on-call reads it: floodgate log --stack {self.stack.stack_name}")
        human = self._cli("log", "--stack", self.stack.stack_name, "--since", "2h", "--limit", "0")
        self.say.show(human)
        records = self._cli(
            "log", "--stack", self.stack.stack_name, "--since", "2h", "--limit", "0", "--json"
        )
        incident.log_events = [json.loads(line) for line in records.splitlines() if line.strip()]

    def _cli(self, *argv: str) -> str:
        out = io.StringIO()
        with redirect_stdout(out):
            code = floodgate_cli(list(argv))
        if code != 0:
            raise SystemExit(f"floodgate {' '.join(argv)} failed with exit code {code}")
        return out.getvalue()


def run(
    out: TextIO = sys.stdout,
    *,
    stack_name: str = "Floodgate",
    keep: bool = False,
) -> Incident:
    """Play the whole demo on an emulator of its own; raises SystemExit with the reason on any failure."""
    began = time.perf_counter()
    # The deploy step reports what moto's CloudFormation skips (and fills it in); moto's own per-resource
    # warnings would only repeat that.
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", "Tried to parse .* not supported by moto", UserWarning)
    LOG_DIR.mkdir(exist_ok=True)
    # What the functions print (structured logs, EMF metrics) goes to a file, as it would go to CloudWatch
    # Logs; the story goes to `out`.
    with server.running() as emulator:
        with (LOG_DIR / "functions.log").open("w") as function_log, redirect_stdout(function_log):
            demo = Demo(out, emulator, function_log, stack_name)
            incident = demo.build()
            demo.play(incident)
            demo.deny_log(incident)
            demo.timeline(incident)
            incident.seconds = time.perf_counter() - began
            _verdict(demo, incident, out, keep=keep)
        if keep:
            _explain_endpoint(emulator, demo.stack.stack_name, out)
            _wait_for_interrupt()
    return incident


def _verdict(demo: Demo, incident: Incident, out: TextIO, *, keep: bool) -> None:
    kinds: dict[str, int] = {}
    for event in incident.log_events:
        kinds[event["event"]] = kinds.get(event["event"], 0) + 1
    problems = []
    if not incident.denied:
        problems.append("no deny entry was written during the flood")
    if incident.after_expiry:
        problems.append(f"deny entries still in the NACL after expiry: {incident.after_expiry}")
    if not kinds.get("BLOCK") or not kinds.get("EXPIRE"):
        problems.append(f"the deny log lacks BLOCK or EXPIRE events: {kinds}")
    if incident.held != ["AlarmNotification"] or incident.released:
        problems.append(f"capacity not held then released: {incident.held} then {incident.released}")
    if len(set(incident.capacity)) != 1:
        problems.append(f"the hold changed the group's capacity: {incident.capacity}")
    saved = [t["saved_instance_minutes"] for t in incident.timeline.get("timelines", [])]
    if problems:
        raise SystemExit("demo failed: " + "; ".join(problems))
    print(
        f"\ndemo passed in {incident.seconds:.1f}s: {len(incident.denied)} denies written "
        f"({', '.join(incident.denied)}), all lifted after expiry; deny log: "
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        + f"; capacity held then released, {SCALING_GROUP} unchanged at {incident.capacity[0]}"
        + f"; instance-minutes saved (model, delivery 1–10 min): {min(saved):.0f}–{max(saved):.0f}"
        + f"; simulated time {format_duration(demo.clock() - demo.started_at)}"
        + f"; function logs in {demo.function_log.name}",
        file=out,
    )
    if not keep:
        print("To look around with the CLI and the AWS CLI afterwards: make demo-keep", file=out)


def _explain_endpoint(emulator: server.Emulator, stack_name: str, out: TextIO) -> None:
    exports = " ".join(f"{k}={v}" for k, v in emulator.environment().items())
    print(
        f"\nThe emulator stays up. In another shell:\n    export {exports}\n"
        f"    .venv/bin/floodgate status --stack {stack_name}\n"
        f"    .venv/bin/floodgate log --stack {stack_name} --since 2h\n"
        f"    aws ec2 describe-network-acls   # the AWS CLI works too\nCtrl-C stops it.",
        file=out,
        flush=True,
    )


def _wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        # The same Ctrl-C has already stopped the CDK's jsii runtime (a child in our process group); its exit
        # hook would only print a traceback about the closed pipe. Everything worth keeping is printed.
        print("\nemulator stopped", flush=True)
        os._exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the emulator running for the CLI")
    args = parser.parse_args(argv)
    try:
        run(keep=args.keep)
    except SystemExit as failure:
        if failure.code not in (None, 0):
            print(f"demo: {failure.code}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
