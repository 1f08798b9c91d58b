"""Hostile input against moto: alarms that are not ours, clocks that lie, manual payloads that must write
nothing, and the CLI telling the truth about covering prefixes and drift (issue 11, the non-engine half).
The pure half is tests/unit/test_hostile_inputs.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from floodgate.core.records import EventKind
from floodgate.handlers import detector as detector_handler
from floodgate.settings import ENV
from tests.events import load
from tests.integration import test_handlers
from tests.integration.conftest import START, AwsClientFactory, Tables, VpcFixture
from tests.integration.incident import ALARM, play_incident, stand_in
from tests.integration.incident import Deployment as Incident
from tests.integration.test_handlers import Deployment

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics to publish")]

# The detector under test, wired to moto, as tests/integration/test_handlers.py builds it.
make_deployment = test_handlers.make_deployment
deployment = test_handlers.deployment

OUR_ALARM = "Floodgate-early-warning"
ALARM_STAMP = START + 300.118  # state.timestamp of alarm-eventbridge-alarm.json


def armed_items(deployment: Deployment) -> list[dict[str, Any]]:
    return [i for i in deployment.items(deployment.tables.state) if i["pk"]["S"] == "ARMED"]


def written(deployment: Deployment) -> tuple[int, int, dict[str, set[str]]]:
    """Everything a refused request must leave as it was: state items, log items, NACL denies."""
    return (
        len(deployment.items(deployment.tables.state)),
        len(deployment.items(deployment.tables.log)),
        deployment.deny_entries(),
    )


# -- arming only by the alarms this deployment watches ---------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "why"),
    [
        ("foreign-alarm-docs-server-cpu", "alarm 'ServerCpuTooHigh' is not one this deployment watches"),
        ("foreign-alarm-composite", "alarm 'ServiceAggregatedAlarm' is not one this deployment watches"),
        (
            "foreign-alarm-action-other-account",
            "is of account 912397435824 in eu-west-1; this function runs in account 123456789012, us-east-1",
        ),
    ],
)
def test_an_alarm_that_is_not_ours_arms_nothing(deployment: Deployment, fixture: str, why: str) -> None:
    deployment.clock.at = START + 3 * 60
    before = written(deployment)
    answer = deployment.detect(load(fixture))
    assert why in answer["refused"]
    assert answer["armed"] is None and answer["decision"] is None
    assert written(deployment) == before and armed_items(deployment) == []


def test_a_state_change_from_the_future_is_refused_and_locks_nothing_out(deployment: Deployment) -> None:
    deployment.clock.at = ALARM_STAMP + 10
    from_2099 = load("alarm-eventbridge-alarm")
    from_2099["detail"]["state"]["timestamp"] = "2099-01-01T00:00:00.000+0000"
    answer = deployment.detect(from_2099)
    assert "in the future: a wrong clock, or not AWS" in answer["refused"] and armed_items(deployment) == []

    # One stamped 2099 that got in before this check existed must not make genuine events stale.
    detector = detector_handler.detector.get()
    detector.arming.arm(OUR_ALARM, now=deployment.clock(), until=deployment.clock() + 60, reason="x",
                        changed_at=4_070_908_800.0)  # fmt: skip
    answer = deployment.detect(load("alarm-eventbridge-alarm"))
    assert answer["refused"] is None and answer["armed"]["alarm"] == OUR_ALARM
    (item,) = armed_items(deployment)
    assert float(item["changed_at"]["N"]) == pytest.approx(ALARM_STAMP)


def test_a_state_change_older_than_the_arming_time_is_refused(deployment: Deployment) -> None:
    deployment.clock.at = ALARM_STAMP + 31 * 60
    answer = deployment.detect(load("alarm-eventbridge-alarm"))
    assert (
        "changed state 31m ago, longer than the arming time (30m, armTtl / FLOODGATE_ARM_TTL)"
        in answer["refused"]
    )
    assert armed_items(deployment) == []


def test_status_lists_every_armed_alarm_and_says_whether_denies_can_happen(
    make_deployment: Callable[..., Deployment],
) -> None:
    second = "web-5xx, critical"
    deployment = make_deployment(**{ENV.ALARM_NAMES: json.dumps([OUR_ALARM, second])})
    deployment.clock.at = ALARM_STAMP + 10
    status = deployment.detect(load("manual-status"))
    assert status["armed_by"] == [] and status["automatic_denies"].startswith("no: no alarm arms")

    deployment.detect(load("alarm-eventbridge-alarm"))
    other = load("alarm-action-alarm")
    other["alarmData"]["alarmName"] = second
    other["alarmArn"] = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{second}"
    deployment.clock.advance(5)
    assert deployment.detect(other)["refused"] is None
    status = deployment.detect(load("manual-status"))
    assert [a["alarm"] for a in status["armed_by"]] == [second, OUR_ALARM]  # most recent first
    assert status["automatic_denies"] == f"yes: armed by 2 alarms ({second}, {OUR_ALARM})"


# -- manual payloads that must write nothing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"reason": "flood \ud800 from them"}, "lone surrogate"),
        ({"reason": "r" * (10 << 20)}, "got 10485760 characters"),
        ({"cidr": "2a01:4f8::1%eth0"}, "zone id"),
        ({"cidr": "203.0.113.7/24"}, "the prefix is 203.0.113.0/24"),
        ({"ttl": "5"}, "has no unit"),
    ],
)
def test_a_refused_manual_block_writes_nothing(
    deployment: Deployment, changes: dict[str, Any], fragment: str
) -> None:
    before = written(deployment)
    answer = deployment.detect({**load("manual-block"), **changes})
    assert answer["ok"] is False and fragment in answer["error"] and len(json.dumps(answer)) < 500
    assert written(deployment) == before  # no OFFENCE record, no log event, no entry


def test_an_ipv4_mapped_block_denies_the_ipv4_address(deployment: Deployment) -> None:
    answer = deployment.detect({**load("manual-block"), "cidr": "::ffff:203.0.113.7"})
    assert answer["ok"] is True, answer
    assert all(cidrs == {"203.0.113.7/32"} for cidrs in deployment.deny_entries().values())


def test_a_block_inside_a_denied_prefix_is_refused_and_unblock_names_the_prefix(
    deployment: Deployment,
) -> None:
    prefix = {**load("manual-block"), "cidr": "203.0.113.0/24"}
    assert deployment.detect(prefix)["ok"] is True
    before = written(deployment)

    inner = deployment.detect({**load("manual-block"), "cidr": "203.0.113.7/32"})
    assert inner["ok"] is False
    assert inner["error"].startswith("203.0.113.7/32 is already denied by 203.0.113.0/24 until ")
    unblock = deployment.detect({**load("manual-unblock"), "cidr": "203.0.113.5"})
    assert unblock["ok"] is False
    assert "covered by the deny of 203.0.113.0/24" in unblock["error"]
    assert "to lift it, unblock 203.0.113.0/24" in unblock["error"]
    assert written(deployment) == before


def test_a_reason_with_terminal_escapes_is_kept_clean(deployment: Deployment) -> None:
    payload = {**load("manual-block"), "reason": "scraper\x1b[2J\x1b[H\nBLOCK 0.0.0.0/0 by root"}
    assert deployment.detect(payload)["ok"] is True
    (block, *_) = [e for e in deployment.log() if e.kind is EventKind.BLOCK]
    assert block.reason.startswith("scraper[2J[H BLOCK 0.0.0.0/0 by root;") and block.reason.isprintable()


# -- the CLI tells the truth ----------------------------------------------------------------------------


@pytest.fixture
def incident(aws_client: AwsClientFactory, vpc: VpcFixture, tables: Tables) -> Incident:
    """27 events in two NACLs; 203.0.113.7/32 and 192.0.2.0/24 denied now (tests/integration/incident.py)."""
    return play_incident(stand_in(aws_client, vpc, tables))


def test_show_knows_the_covering_prefix_and_its_history(incident: Incident) -> None:
    text = incident.cli("show", "192.0.2.200").out
    assert text.startswith("192.0.2.200/32: denied now by 192.0.2.0/24 in 2 NACLs")
    story = incident.cli("show", "192.0.2.200", "--json").json()
    assert {d["cidr"] for d in story["denied"]} == {"192.0.2.0/24"}
    assert story["events"] and {e["cidr"] for e in story["events"]} == {"192.0.2.0/24"}


def test_cli_block_and_unblock_inside_a_denied_prefix(incident: Incident) -> None:
    run = incident.cli("block", "192.0.2.7", "--ttl", "1h", "--reason", "one of them")
    assert run.code == 2 and "is already denied by 192.0.2.0/24" in run.err
    run = incident.cli("unblock", "192.0.2.7", "--reason", "false positive")
    assert run.code == 2 and "unblock 192.0.2.0/24" in run.err
    run = incident.cli("block", "198.51.100.7", "--ttl", "5", "--reason", "no unit")
    assert run.code == 2 and "has no unit" in run.err


def test_reconcile_dry_run_exits_1_on_drift_and_0_without(incident: Incident) -> None:
    assert incident.cli("reconcile", "--dry-run").code == 0
    nacl_id = incident.vpc.nacl_ids[0]
    rule = next(r for r, cidr in incident.entries(nacl_id).items() if cidr == "203.0.113.7/32")
    incident.ec2.delete_network_acl_entry(NetworkAclId=nacl_id, RuleNumber=rule, Egress=False)
    run = incident.cli("reconcile", "--dry-run")
    assert run.code == 1 and "dry run: 1 to repair" in run.out


def test_status_says_plainly_whether_automatic_denies_can_happen(incident: Incident) -> None:
    out = incident.cli("status").out
    assert f"automatic denies now: yes: armed by 1 alarm ({ALARM})" in out
    assert "enforcing" not in out
