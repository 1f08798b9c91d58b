"""The armed state follows the alarm's own order of state changes, not the order deliveries arrive in."""

from __future__ import annotations

import pytest

from floodgate.adapters.arming import Arming
from tests.integration.conftest import AwsClientFactory, Tables

pytestmark = pytest.mark.integration


@pytest.fixture
def arming(tables: Tables, aws_client: AwsClientFactory) -> Arming:
    return Arming(tables.state, aws_client("dynamodb"))


def test_an_alarm_arms_until_its_deadline_and_ok_disarms(arming: Arming) -> None:
    armed = arming.arm("early", now=1000.0, until=2800.0, reason="threshold crossed", changed_at=995.0)
    assert armed is not None
    assert arming.current(now=1500.0) == armed
    assert arming.current(now=2800.0) is None  # the deadline passed
    assert arming.disarm("early", now=1600.0, changed_at=1590.0) is True
    assert arming.current(now=1601.0) is None
    assert arming.disarm("early", now=1700.0, changed_at=1690.0) is False  # nothing was armed


def test_a_late_alarm_delivered_after_the_ok_does_not_rearm(arming: Arming) -> None:
    assert arming.arm("early", now=1000.0, until=2800.0, reason="first", changed_at=1000.0) is not None
    assert arming.disarm("early", now=1100.0, changed_at=1090.0) is True
    # Lambda's retry of the first ALARM, or EventBridge delivering it late: older than the OK.
    assert arming.arm("early", now=1160.0, until=2960.0, reason="first, again", changed_at=1000.0) is None
    assert arming.current(now=1200.0) is None
    # A genuinely new ALARM arms again, and a stale OK cannot undo it.
    assert arming.arm("early", now=1300.0, until=3100.0, reason="second", changed_at=1295.0) is not None
    assert arming.disarm("early", now=1310.0, changed_at=1090.0) is False
    assert arming.current(now=1320.0) is not None


def test_alarms_arm_independently(arming: Arming) -> None:
    arming.arm("early-a", now=1000.0, until=2000.0, reason="a", changed_at=1000.0)
    arming.arm("early-b", now=1100.0, until=2900.0, reason="b", changed_at=1100.0)
    arming.disarm("early-b", now=1200.0, changed_at=1200.0)
    current = arming.current(now=1300.0)
    assert current is not None and current.alarm_name == "early-a"
