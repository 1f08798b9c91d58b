"""The estate bus contract (floodgate.services.bus): real-shaped events in tests/events/bus-*.json."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floodgate.core.model import PlannedDeny
from floodgate.services.bus import (
    DECISION_DETAIL_TYPE,
    MAX_DENIES,
    BusEventError,
    Decision,
    Estate,
    MemberAlarm,
    Outcome,
    Target,
    decision_detail,
    is_member_alarm,
    member_alarm_refusal,
    parse_bus_event,
    put_events_entry,
    security_alarms,
    security_inbound,
)
from floodgate.services.events import AlarmState
from tests.events import load

SECURITY, MEMBER_A, MEMBER_B, OUTSIDER = "111111111111", "222222222222", "333333333333", "444444444444"
ESTATE = Estate(SECURITY, frozenset({MEMBER_A, MEMBER_B}))
DECIDED_AT = datetime(2025, 11, 24, 16, 5, tzinfo=UTC).timestamp()
NOW = DECIDED_AT + 30


def parse(event: Any, *, now: float = NOW) -> Any:
    return parse_bus_event(event, ESTATE, now=now, clock_skew_s=300, max_age_s=600)


def test_a_decision_names_its_member_vpc_and_carries_the_plan() -> None:
    decision = parse(load("bus-decision"))
    assert isinstance(decision, Decision)
    assert decision.target == Target(MEMBER_A, "us-east-1", "vpc-0a1b2c3d4e5f60718")
    assert decision.decided_at == DECIDED_AT
    assert decision.dry_run is False
    assert [(d.cidr, d.pps, d.members) for d in decision.denies] == [
        ("203.0.113.7/32", 91234.5, 1),
        ("198.51.100.0/24", 30120.0, 37),
    ]


def test_a_forwarded_member_alarm_keeps_its_account_and_state() -> None:
    alarm = parse(load("bus-member-alarm"))
    assert isinstance(alarm, MemberAlarm)
    assert alarm.account == MEMBER_A
    assert (alarm.change.alarm_name, alarm.change.state) == ("Floodgate-early-warning", AlarmState.ALARM)


def test_an_outcome_reports_what_the_member_did() -> None:
    outcome = parse(load("bus-outcome"))
    assert isinstance(outcome, Outcome)
    assert outcome.target.account == MEMBER_A
    assert outcome.denied == ("203.0.113.7/32", "198.51.100.0/24")
    assert list(outcome.failures) == ["acl-0f1e2d3c4b5a69788"]


REFUSED = {
    "bus-refused-decision-from-member": "decision sent by account 333333333333, not by the security account",
    "bus-refused-decision-outside-estate": "detail.account 444444444444 is not a member of the estate",
    "bus-refused-decision-schema-2": "detail schema 2 is not 1",
    "bus-refused-decision-host-bits": "detail.denies[1].cidr: invalid CIDR '198.51.100.7/24'",
    "bus-refused-alarm-other-account-arn": "alarm 'arn:aws:cloudwatch:us-east-1:33333333",
}


@pytest.mark.parametrize(("name", "message"), sorted(REFUSED.items()))
def test_refused_fixtures_say_why(name: str, message: str) -> None:
    with pytest.raises(BusEventError, match="^" + re.escape(message)):
        parse(load(name))


def _decision(**changes: Any) -> dict[str, Any]:
    event = load("bus-decision")
    event["detail"].update(changes)
    return event


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([1], "expected an EventBridge event"),
        ({**load("bus-decision"), "account": "1234"}, "event account is not an AWS account id"),
        ({**load("bus-decision"), "source": "floodgate.member"}, "Floodgate Decision from source"),
        ({**load("bus-decision"), "detail-type": "Floodgate Decision v2"}, "unknown detail-type"),
        ({**load("bus-decision"), "detail": "{}"}, "event detail is missing or not an object"),
        (_decision(schema=True), "detail schema True is not 1"),
        (_decision(vpcId="vpc-XYZ"), "detail.vpcId is 'vpc-XYZ', not a VPC id"),
        (
            _decision(decidedAt="2025-11-24T16:05:00"),
            "detail.decidedAt '2025-11-24T16:05:00' has no time zone",
        ),
        (_decision(decidedAt="2025-11-24T17:05:00Z"), "decision .* is dated .*, in the future"),
        (_decision(dryRun="false"), "detail.dryRun is 'false', not true or false"),
        (_decision(denies={"cidr": "1.2.3.4/32"}), "detail.denies is missing or not a list"),
        (_decision(denies=[{}] * (MAX_DENIES + 1)), "detail.denies holds 153 denies"),
        ({**load("bus-outcome"), "account": MEMBER_B}, "outcome for account 222222222222 sent by account"),
        ({**load("bus-member-alarm"), "account": OUTSIDER}, "alarm from account 444444444444, which is not"),
    ],
)
def test_malformed_or_foreign_events_are_refused(event: Any, message: str) -> None:
    with pytest.raises(BusEventError, match="^" + message):
        parse(event)


def test_a_stale_decision_is_refused_not_applied_late() -> None:
    with pytest.raises(BusEventError, match="older than 600 s: stale"):
        parse(load("bus-decision"), now=DECIDED_AT + 601)
    assert isinstance(parse(load("bus-decision"), now=DECIDED_AT + 599), Decision)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pps", float("nan"), "pps is nan, not a finite"),
        ("bps", -1, "bps is -1, not a finite"),
        ("share", 1.5, "share is 1.5, more than 1"),
        ("pps", True, "pps is True, not a finite"),
        ("pps", 10**400, "pps is an integer of 1329 bits, not a finite"),
        ("members", 0, "members is 0, not a positive"),
        ("reason", "", "reason is missing"),
        ("reason", "x" * 257, "reason is 257 characters"),
        ("cidr", "10.0.0.0/8/8", "cidr: invalid CIDR"),
    ],
)
def test_a_deny_the_engine_would_not_hold_is_refused(field: str, value: Any, message: str) -> None:
    event = load("bus-decision")
    event["detail"]["denies"][0][field] = value
    with pytest.raises(BusEventError, match=r"^detail\.denies\[0\]\." + message):
        parse(event)


def test_control_characters_in_a_reason_never_reach_the_deny_log() -> None:
    event = load("bus-decision")
    event["detail"]["denies"][0]["reason"] = "flood\n2025-11-24 BLOCK 0.0.0.0/0 forged\x1b[2J"
    decision = parse(event)
    assert "\n" not in decision.denies[0].reason and "\x1b" not in decision.denies[0].reason


def test_an_unknown_estate_shape_is_refused_at_configuration() -> None:
    with pytest.raises(ValueError, match="cannot also be a member"):
        Estate(SECURITY, frozenset({SECURITY}))
    with pytest.raises(ValueError, match="not an AWS account id"):
        Estate("12", frozenset())


_deny = st.builds(
    PlannedDeny,
    cidr=st.sampled_from(["203.0.113.7/32", "198.51.100.0/24", "2001:db8::/64", "192.0.2.1/32"]),
    pps=st.floats(0, 1e9),
    bps=st.floats(0, 1e12),
    share=st.floats(0, 1),
    members=st.integers(1, 1 << 20),
    # Cheap to draw (a free text strategy with a filter trips Hypothesis' too-slow check under load), and
    # still beyond ASCII; hostile text has its own test above.
    reason=st.builds(
        "{} {}".format,
        st.sampled_from(["flood", "Überlast", "洪水", "203.0.113.7 carries 62% of inbound packets"]),
        st.integers(0, 10**6),
    ),
)


@given(denies=st.lists(_deny, max_size=8), dry_run=st.booleans(), offset=st.integers(0, 599))
def test_what_the_security_account_sends_a_member_reads_back_unchanged(
    denies: list[PlannedDeny], dry_run: bool, offset: int
) -> None:
    sent = Decision(
        "d-1", Target(MEMBER_B, "eu-west-1", "vpc-0123456789abcdef0"), DECIDED_AT, dry_run, tuple(denies)
    )
    entry = put_events_entry(DECISION_DETAIL_TYPE, decision_detail(sent), bus="floodgate-estate")
    event = {
        "version": "0",
        "id": "x",
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": SECURITY,
        "time": "2025-11-24T16:05:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": json.loads(entry["Detail"]),
    }
    received = parse(copy.deepcopy(event), now=DECIDED_AT + offset)
    assert received == sent


def test_a_decision_over_eventbridges_size_limit_is_refused_by_the_sender() -> None:
    huge = PlannedDeny("203.0.113.7/32", 1.0, 1.0, 0.5, 1, "x" * 256)
    sent = Decision(
        "d-1", Target(MEMBER_A, "us-east-1", "vpc-0123456789abcdef0"), DECIDED_AT, False, (huge,) * 1200
    )
    with pytest.raises(BusEventError, match="over EventBridge's 256 KB"):
        put_events_entry(DECISION_DETAIL_TYPE, decision_detail(sent), bus="floodgate-estate")


# -- a member's alarm arms that member's decisions: which alarms may ----------------------------------------

ALARM_AT = datetime(2025, 11, 24, 16, 5, 0, 118000, tzinfo=UTC).timestamp()  # the fixture's state change


def member_alarm(name: str = "Floodgate-early-warning", **changes: Any) -> MemberAlarm:
    event = load("bus-member-alarm")
    event["detail"]["alarmName"] = name
    event["resources"] = [f"arn:aws:cloudwatch:us-east-1:{MEMBER_A}:alarm:{name}"]
    for key, value in changes.items():
        event[key] = value
    alarm = parse(event)
    assert isinstance(alarm, MemberAlarm)
    return alarm


def refusal(
    alarm: MemberAlarm,
    *,
    names: tuple[str, ...] = (),
    prefix: str = "Floodgate-",
    region: str = "us-east-1",
    now: float = ALARM_AT + 20,
) -> str | None:
    return member_alarm_refusal(
        alarm,
        alarm_names=names,
        alarm_prefix=prefix,
        region=region,
        now=now,
        clock_skew_s=300,
        arm_ttl_s=1800,
    )


def test_a_members_own_floodgate_alarm_in_time_may_arm() -> None:
    assert refusal(member_alarm()) is None
    # existingAlarmNames, when given, are the member's Floodgate alarms instead of the stack's prefix.
    assert refusal(member_alarm("web-packets-high"), names=("web-packets-high",)) is None


@pytest.mark.parametrize(
    ("name", "names", "expected"),
    [
        # Not the member deployment's: another alarm of the member (its CPU, say) arms nothing.
        ("web-cpu-high", (), "alarm 'web-cpu-high' of member 222222222222 is not one of its Floodgate"),
        # The prefix is not a substring match, and names given replace it.
        ("MyFloodgate-early", (), "alarm 'MyFloodgate-early' of member 222222222222 is not one of"),
        ("Floodgate-early-warning", ("web-packets-high",), "alarm 'Floodgate-early-warning' of member"),
    ],
)
def test_an_alarm_that_is_not_the_members_floodgate_alarm_is_refused(
    name: str, names: tuple[str, ...], expected: str
) -> None:
    why = refusal(member_alarm(name), names=names)
    assert why is not None and why.startswith(expected)


def test_without_names_or_prefix_no_alarm_is_the_members() -> None:
    assert not is_member_alarm("Floodgate-early-warning", (), "")
    assert is_member_alarm("Floodgate-early-warning", (), "Floodgate-")
    assert not is_member_alarm("Floodgate-early-warning", ("other",), "Floodgate-")


def test_an_alarm_of_another_region_is_refused() -> None:
    why = refusal(member_alarm(), region="eu-west-1")
    assert why == "alarm 'Floodgate-early-warning' of member 222222222222 is in us-east-1, not in eu-west-1"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (ALARM_AT - 3600, "alarm 'Floodgate-early-warning' changed state 1h in the future"),
        (ALARM_AT + 7200, "alarm 'Floodgate-early-warning' changed state 2h ago, longer than the arming"),
    ],
)
def test_an_alarm_dated_wrong_is_refused(now: float, expected: str) -> None:
    why = refusal(member_alarm(), now=now)
    assert why is not None and why.startswith(expected)


def test_an_alarm_from_a_non_member_or_of_another_account_never_reaches_the_checks() -> None:
    event = load("bus-member-alarm")
    with pytest.raises(BusEventError, match=f"^alarm from account {OUTSIDER}, which is not a member"):
        parse({**event, "account": OUTSIDER})
    # A member forwarding another member's alarm: the ARN's account is not the sender's.
    with pytest.raises(BusEventError, match=r"^alarm 'arn:aws:cloudwatch:us-east-1:22222222"):
        parse({**event, "account": MEMBER_B})


def test_the_security_bus_routes_alarms_to_detection_and_outcomes_to_the_record() -> None:
    assert security_alarms() == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
    }
    assert security_inbound() == {"source": ["floodgate.member"], "detail-type": ["Floodgate Outcome"]}
