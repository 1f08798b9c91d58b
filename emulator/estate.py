"""Acting as EventBridge's last hop for a multi-account estate in the emulator.

moto routes an event across accounts (a rule whose target is another account's event bus) and on to an SQS
target, but it cannot target Lambda, and it does not keep the event's `account` on the way: an event it
forwards to another account's bus is stamped with that account and loses its `resources` (an alarm's
ARN), and the body it writes to an SQS target has no `account` at all. Real EventBridge keeps the account
that put the event, and that is what the receiving Lambda checks. So a test routes the estate's rules to
an SQS queue in the receiving account (in place of the Lambda target), and `delivered` takes the events
off that queue as EventBridge would have handed them to the Lambda: unchanged, with `account` set to the
account that put them.
"""

from __future__ import annotations

import json
from typing import Any


def queue_target(sqs: Any, name: str) -> tuple[str, str]:
    """A fresh queue standing in for a Lambda target: (queue URL, queue ARN)."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def delivered(sqs: Any, queue_url: str, *, sender: str) -> list[dict[str, Any]]:
    """Every event waiting on the queue, oldest first, as EventBridge delivers it: `account` is `sender`."""
    events: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return events
        for message in messages:
            event = json.loads(message["Body"])
            events.append({**event, "account": sender})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
