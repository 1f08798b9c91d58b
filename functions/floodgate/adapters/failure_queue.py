"""SQS adapter: the functions' on-failure queue, where Lambda puts an asynchronous invocation it gave up on
(retries exhausted, or older than `asyncMaxEventAge`), as an invocation record holding the original event.

Reading a message hides it for `hide_s`; it comes back unless deleted. Nothing here deletes a message but
`delete`, which `services.replay` calls only once the event's redelivery was accepted (and
`services.stream_replay` once a failed stream range is stored). The stream mapping's on-failure queue
(`ingest: "kinesis"`) is read through the same class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from floodgate.adapters.retry import Retrier, default_client

_BATCH = 10  # SQS: at most 10 messages per receive, 10 entries per batch call
MAX_HIDE_S = 43_200  # SQS: the longest visibility timeout, 12 hours


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    message_id: str
    receipt: str
    body: str
    sent_at: float  # when Lambda put it in the queue (SentTimestamp)


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits in the queue. `oldest_seen` is the oldest sent time among the messages a peek returned (up
    to 10; SQS offers no exact oldest but the ApproximateAgeOfOldestMessage metric)."""

    waiting: int
    in_flight: int  # received by someone (a replay under way) and not deleted yet
    oldest_seen: float | None


class FailureQueue:
    """The queue at `url`. Takes a low-level SQS client (default: a new one)."""

    def __init__(self, url: str, client: Any = None, *, retrier: Retrier | None = None) -> None:
        self.url = url
        self._sqs = default_client("sqs", client)
        self._retry = retrier or Retrier()

    def backlog(self) -> Backlog:
        attributes = self._retry.call(
            "GetQueueAttributes",
            partial(
                self._sqs.get_queue_attributes,
                QueueUrl=self.url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            ),
        )["Attributes"]
        waiting = int(attributes.get("ApproximateNumberOfMessages", 0))
        # A peek that leaves the messages visible (hidden for 0 s): only their sent times are read.
        peeked = self.receive(_BATCH, hide_s=0) if waiting else []
        return Backlog(
            waiting=waiting,
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            oldest_seen=min((m.sent_at for m in peeked), default=None),
        )

    def receive(self, count: int, *, hide_s: int, wait_s: int = 0) -> list[QueuedMessage]:
        """Up to `count` (at most 10) messages, hidden from other readers for `hide_s` seconds."""
        reply = self._retry.call(
            "ReceiveMessage",
            partial(
                self._sqs.receive_message,
                QueueUrl=self.url,
                MaxNumberOfMessages=max(1, min(count, _BATCH)),
                VisibilityTimeout=hide_s,
                WaitTimeSeconds=wait_s,
                MessageSystemAttributeNames=["SentTimestamp"],
            ),
        )
        return [
            QueuedMessage(
                message_id=message["MessageId"],
                receipt=message["ReceiptHandle"],
                body=message.get("Body", ""),
                sent_at=int(message.get("Attributes", {}).get("SentTimestamp", 0)) / 1000,
            )
            for message in reply.get("Messages", [])
        ]

    def delete(self, receipt: str) -> None:
        self._retry.call(
            "DeleteMessage", partial(self._sqs.delete_message, QueueUrl=self.url, ReceiptHandle=receipt)
        )

    def hide(self, receipt: str, seconds: int) -> None:
        """Keep a received message out of sight for `seconds` (at most SQS's 12 hours) without deleting it."""
        self._retry.call(
            "ChangeMessageVisibility",
            partial(
                self._sqs.change_message_visibility,
                QueueUrl=self.url,
                ReceiptHandle=receipt,
                VisibilityTimeout=min(seconds, MAX_HIDE_S),
            ),
        )

    def release(self, receipts: Sequence[str]) -> None:
        """Make received messages visible again now, not when their hiding runs out."""
        for start in range(0, len(receipts), _BATCH):
            entries = [
                {"Id": str(n), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
                for n, receipt in enumerate(receipts[start : start + _BATCH])
            ]
            self._retry.call(
                "ChangeMessageVisibilityBatch",
                partial(self._sqs.change_message_visibility_batch, QueueUrl=self.url, Entries=entries),
            )
