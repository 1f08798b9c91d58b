"""Notifications: one short message per operation, one line per source, never a failed invocation."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from floodgate.adapters.notify import MAX_LINES, Notifier, compose
from floodgate.adapters.retry import Backoff, Retrier
from floodgate.core.records import EventKind, Evidence, LogEvent, Origin
from floodgate.core.slots import Direction

AT = 1_764_000_000.0
TOPIC = "arn:aws:sns:us-east-1:123456789012:floodgate"


def block(cidr: str, nacl_id: str, rule: int) -> LogEvent:
    return LogEvent(
        EventKind.BLOCK,
        AT,
        cidr,
        "single source at 12,000 pps, 11.8% of inbound packets; offence 1, denied for 30m",
        "floodgate-detector",
        nacl_id=nacl_id,
        direction=Direction.INGRESS,
        rule=rule,
        origin=Origin.alarm("Floodgate-early-warning"),
        evidence=Evidence(12_000, 57_600_000, 0.118, 1),
        expires=AT + 1800,
        offences=1,
    )


def test_one_line_per_source_with_where_until_and_why() -> None:
    events = [block("203.0.113.9/32", "acl-1", 100), block("203.0.113.9/32", "acl-2", 100)]
    subject, body = compose(events, context="alarm:Floodgate-early-warning")
    assert subject == "Floodgate: 203.0.113.9/32 blocked"
    assert body.splitlines() == [
        "Floodgate (alarm:Floodgate-early-warning): 1 blocked.",
        "",
        "BLOCKED 203.0.113.9/32 in acl-1 (ingress rule 100), acl-2 (ingress rule 100) until 16:30Z (30m): "
        "single source at 12,000 pps, 11.8% of inbound packets; offence 1, denied for 30m",
    ]


def test_a_deny_whose_entry_was_not_written_is_announced_as_pending_not_blocked() -> None:
    written = block("203.0.113.9/32", "acl-1", 100)
    pending = LogEvent(
        EventKind.PENDING,
        AT,
        "203.0.113.9/32",
        "entry not written (EC2 kept failing (RequestLimitExceeded)); the next run writes it. flood",
        "floodgate-detector",
        nacl_id="acl-2",
        direction=Direction.INGRESS,
        rule=100,
        would=EventKind.BLOCK,
    )
    subject, body = compose([written, pending], context="automatic")
    assert subject == "Floodgate: 1 blocked, 1 pending, not in force yet"
    assert body.splitlines()[3] == (
        "PENDING, NOT IN FORCE YET 203.0.113.9/32 in acl-2 (ingress rule 100): entry not written "
        "(EC2 kept failing (RequestLimitExceeded)); the next run writes it. flood"
    )


def test_a_long_list_is_cut_short_and_the_subject_stays_within_the_limit() -> None:
    events = [block(f"198.51.100.{n}/32", "acl-1", 100 + n) for n in range(40)]
    expired = LogEvent(EventKind.EXPIRE, AT, "192.0.2.1/32", "ban over", "floodgate-expirer", nacl_id="acl-1")
    subject, body = compose([*events, expired], context="expirer")
    assert subject == "Floodgate: 40 blocked, 1 expired"
    lines = body.splitlines()
    assert len(lines) == 2 + MAX_LINES + 1
    assert lines[-1] == "... and 16 more; see the deny log (floodgate log)."


class RecordingSns:
    def __init__(self, fail_with: str | None = None) -> None:
        self.published: list[dict[str, Any]] = []
        self.fail_with = fail_with

    def publish(self, **params: Any) -> dict[str, Any]:
        if self.fail_with:
            raise ClientError({"Error": {"Code": self.fail_with, "Message": "no"}}, "Publish")
        self.published.append(params)
        return {"MessageId": "1"}


def test_only_notable_events_are_published_and_only_with_a_topic() -> None:
    sns = RecordingSns()
    refused = LogEvent(EventKind.REFUSED, AT, "10.0.0.0/8", "protected", "floodgate-detector")
    assert not Notifier(TOPIC, sns).publish([refused], context="automatic")
    assert not Notifier(None, sns).publish([block("203.0.113.9/32", "acl-1", 100)], context="automatic")
    assert Notifier(TOPIC, sns).publish([block("203.0.113.9/32", "acl-1", 100), refused], context="automatic")
    (message,) = sns.published
    assert message["TopicArn"] == TOPIC and message["Subject"] == "Floodgate: 203.0.113.9/32 blocked"


def test_a_failed_publish_is_logged_not_raised() -> None:
    retrier = Retrier(Backoff(attempts=2, base_s=0.0, cap_s=0.0))
    notifier = Notifier(TOPIC, RecordingSns(fail_with="AuthorizationError"), retrier=retrier)
    assert not notifier.publish([block("203.0.113.9/32", "acl-1", 100)], context="automatic")


def test_a_failure_notice_names_what_failed_and_what_to_do_in_a_valid_subject() -> None:
    sns = RecordingSns()
    what = (
        "decision (alarm:Floodgate-early-warning) failed: ProvisionedThroughputExceededException: " + "x" * 80
    )
    assert Notifier(TOPIC, sns).publish_failure(what, "Run floodgate replay.")
    (message,) = sns.published
    assert message["Subject"] == f"Floodgate FAILED: {what}"[:100]
    assert message["Message"] == f"{what}\n\nRun floodgate replay.\n"
    assert not Notifier(None, sns).publish_failure(what, "-")
    assert len(sns.published) == 1
