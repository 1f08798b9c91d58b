"""The shared window plans exactly what `floodgate analyze` plans, however the capture is split.

A capture is spread over 1 to 64 interfaces (one log stream each), each stream cut into deliveries, and
the deliveries summarised, packed, opened and merged in any order, as the detector's window does. The
plan must equal the one `floodgate analyze` makes from the whole capture in one file.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.fleet import fleet_lines
from emulator.traffic import START
from floodgate.cli.analyze import analyze_paths
from floodgate.core.detect import DetectionConfig, plan_denies
from floodgate.core.flowlog import DEFAULT_FORMAT, STACK_FORMAT, FlowLogFormat, FlowLogParser, TimeBounds
from floodgate.core.model import DenyPlan
from floodgate.core.networks import DenyPolicy
from floodgate.core.summary import TrafficSummary
from floodgate.core.window import merge_batches, open_batch, pack_summary, rate_window_s
from tests.fleet_scenarios import Scenario, capture, scenarios

# Every test runs with the compiled block scanner and with numpy only (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("scan_engine")

VPC = ("10.0.0.0/16", "2600:1f18:abcd:1200::/56")
HOSTS = ("10.0.1.10", "10.0.2.11", "2600:1f18:abcd:1201::10")
WINDOW_S = 300
FORMATS = {"v2": DEFAULT_FORMAT, "v5": STACK_FORMAT}
CONFIG = DetectionConfig(policy=DenyPolicy.build(vpc_cidrs=VPC), min_pps=5000.0)


def analyze(lines: list[str], fmt: FlowLogFormat) -> DenyPlan:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "capture.log"
        path.write_text("\n".join(lines) + "\n")
        return analyze_paths([str(path)], fmt, CONFIG, list(VPC))


def through_window(deliveries: list[list[str]], fmt: FlowLogFormat, now: int) -> DenyPlan:
    parser = FlowLogParser(fmt, VPC)
    bounds = TimeBounds(oldest_end=now - 1500, newest_start=now + 120)
    digests = []
    dependencies: set[tuple[int, int]] = set()
    for lines in deliveries:
        batch = parser.parse(lines, bounds)
        dependencies |= batch.dependencies
        summary = TrafficSummary.for_share(CONFIG.min_share)
        summary.add(batch)
        digests.append(open_batch(pack_summary(summary)))
    window = TrafficSummary.for_share(CONFIG.min_share)
    merge_batches(window, digests)
    window.add_dependencies(dependencies)  # the adapter's memory: a set union
    return plan_denies(window, dataclasses.replace(CONFIG, window_s=rate_window_s(window, WINDOW_S)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=scenarios,
    interfaces=st.integers(1, 64),
    cuts=st.integers(1, 3),
    fmt_name=st.sampled_from(sorted(FORMATS)),
    span_s=st.sampled_from([60, 120, 300]),
    with_egress=st.booleans(),
    order=st.randoms(use_true_random=False),
)
def test_any_split_over_interfaces_and_deliveries_plans_what_analyze_plans(
    *,
    scenario: Scenario,
    interfaces: int,
    cuts: int,
    fmt_name: str,
    span_s: int,
    with_egress: bool,
    order: random.Random,
) -> None:
    fmt = FlowLogFormat.parse(FORMATS[fmt_name])
    flows = capture(scenario, with_egress=with_egress)
    per_interface = fleet_lines(
        flows, interfaces=interfaces, start=START, span_s=span_s, vpc_hosts=HOSTS, fmt=fmt_name
    )
    whole = [line for lines in per_interface.values() for line in lines]
    deliveries = [lines[i::cuts] for lines in per_interface.values() for i in range(cuts) if lines[i::cuts]]
    order.shuffle(deliveries)
    expected = analyze(whole, fmt)
    planned = through_window(deliveries, fmt, now=START + span_s + 30)
    assert planned.verdict == expected.verdict
    assert planned.denies == expected.denies
    assert planned.refused == expected.refused
