"""`make demo` end to end: the same scenario through the same code path, asserted."""

from __future__ import annotations

import io
import ipaddress

import pytest

from emulator import demo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.xdist_group("demo"),
    # An alarm clearing publishes no metric; powertools warns about each (runtime.py silences it in Lambda).
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]


def test_the_demo_incident_holds_capacity_blocks_the_flood_and_lifts_it_after_expiry() -> None:
    out = io.StringIO()
    incident = demo.run(out, stack_name="FloodgateDemoTest")
    story = out.getvalue()

    # The flood's /24 and its three single sources were denied in the NACL, nothing else.
    assert demo.BOTNET in incident.denied
    singles = [cidr for cidr in incident.denied if cidr.endswith("/32")]
    assert len(singles) == 3 and len(incident.denied) == 4
    for cidr in incident.denied:
        assert not ipaddress.ip_network(cidr).overlaps(ipaddress.ip_network(incident.network.vpc_cidr))
    # After the ban time, the expirer lifted every deny.
    assert incident.after_expiry == []
    # The deny log tells the story: each deny blocked once by the detector, expired once by the expirer.
    by_kind: dict[str, set[str]] = {}
    for event in incident.log_events:
        by_kind.setdefault(event["event"], set()).add(event["cidr"])
    group = f"asg:{demo.SCALING_GROUP}"
    assert by_kind == {
        "BLOCK": set(incident.denied),
        "EXPIRE": set(incident.denied),
        "HOLD": {group},
        "RELEASE": {group},
    }
    # The early alarm held the web group without changing its size; the OK released it.
    assert incident.held == ["AlarmNotification"] and incident.released == []
    assert incident.capacity == [(2, 10), (2, 10)]
    (release,) = [e for e in incident.log_events if e["event"] == "RELEASE"]
    assert "-early-warning is OK" in release["reason"]
    # The printed timeline: the model with the hold on, delivery 1, 4, 7 and 10 minutes. Released on OK
    # up to 7 min (nothing launched: 168 instance-minutes saved of 168); at 10 min the 10-minute hold runs
    # out at 65 s + 600 s, before the deny (661 s): 4 instances from 665 s to 661 s + 15 min, 60 used.
    saved = [round(t["saved_instance_minutes"]) for t in incident.timeline["timelines"]]
    assert saved == [168, 168, 168, 108]
    assert "instance-minutes saved" in story
    assert {e["actor"] for e in incident.log_events if e["event"] == "BLOCK"} == {"floodgate-detector"}
    assert "demo passed" in story
