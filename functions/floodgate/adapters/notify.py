"""SNS adapter: short, readable notices of denies going in and coming out, with the evidence behind them.

One message per operation, one line per source (a deny written to several NACLs is one line). Without a
topic the notifier does nothing. A failed publish is logged, never raised: the denies it reports are already
in force and in the deny log, and failing the invocation would only make Lambda repeat a decision that has
nothing left to do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from floodgate.adapters.retry import Retrier, default_client
from floodgate.core.durations import format_duration
from floodgate.core.records import EventKind, LogEvent

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

_log = logging.getLogger(__name__)

NOTIFIED: dict[EventKind, str] = {
    EventKind.BLOCK: "blocked",
    EventKind.UNBLOCK: "unblocked",
    EventKind.EXPIRE: "expired",
    EventKind.EVICT: "evicted",
    EventKind.HOLD: "capacity held",
    EventKind.RELEASE: "capacity released",
    EventKind.FOREIGN: "foreign entry found",
    EventKind.QUARANTINE: "quarantined",
    EventKind.PENDING: "pending, not in force yet",  # decided, its entry not written: a later run writes it
}
# Refusals are announced only when asked (`publish_refusals`): those of a source the VPC depends on.
_LABELS = {**NOTIFIED, EventKind.REFUSED: "refused"}
MAX_LINES = 25  # beyond this the message says how many more; the deny log has them all
_SUBJECT_LIMIT = 100  # SNS: at most 100 printable ASCII characters


class Notifier:
    """Publishes notices to `topic_arn` (None: notifications are off). Takes a low-level SNS client."""

    def __init__(
        self,
        topic_arn: str | None,
        client: Any = None,
        *,
        retrier: Retrier | None = None,
    ) -> None:
        self.topic_arn = topic_arn
        # The default client is made on first publish: most runs announce nothing.
        self._sns: SNSClient | None = client
        self._retry = retrier or Retrier()

    def publish(self, events: Sequence[LogEvent], *, context: str) -> bool:
        """Announce the block, unblock, expiry and eviction events among `events`. True when a message went
        out, False when there was nothing to say, no topic, or the publish failed (logged)."""
        return self._send([event for event in events if event.kind in NOTIFIED], context=context)

    def publish_refusals(self, events: Sequence[LogEvent], *, context: str) -> bool:
        """Announce REFUSED events: denies detection wanted and must not make (what the VPC depends on)."""
        return self._send([event for event in events if event.kind is EventKind.REFUSED], context=context)

    def publish_failure(self, what: str, advice: str) -> bool:
        """Announce that Floodgate itself failed (`what`, one line) and what on-call can do (`advice`)."""
        if self.topic_arn is None:
            return False
        subject = _ascii(f"Floodgate FAILED: {what}")[:_SUBJECT_LIMIT]
        return self._publish(self.topic_arn, subject, f"{what}\n\n{advice}\n")

    def _send(self, notable: list[LogEvent], *, context: str) -> bool:
        if not notable or self.topic_arn is None:
            return False
        subject, body = compose(notable, context=context)
        return self._publish(self.topic_arn, subject, body)

    def _publish(self, topic_arn: str, subject: str, body: str) -> bool:
        if self._sns is None:
            self._sns = default_client("sns")
        try:
            self._retry.call(
                "Publish",
                partial(self._sns.publish, TopicArn=topic_arn, Subject=subject, Message=body),
            )
        except Exception:
            _log.error("notification to %s failed: %s", topic_arn, subject, exc_info=True)
            return False
        return True


def compose(events: Sequence[LogEvent], *, context: str) -> tuple[str, str]:
    """(subject, body) of the notice for `events` (all of notified kinds)."""
    lines: dict[tuple[EventKind, str], list[LogEvent]] = {}
    for event in events:
        lines.setdefault((event.kind, event.cidr), []).append(event)
    counts: dict[EventKind, int] = {}
    for kind, _ in lines:
        counts[kind] = counts.get(kind, 0) + 1
    summary = ", ".join(f"{count} {_LABELS[kind]}" for kind, count in counts.items())
    first_cidr = next(iter(lines))[1]
    subject = (
        f"Floodgate: {summary}" if len(lines) > 1 else f"Floodgate: {first_cidr} {_LABELS[events[0].kind]}"
    )
    body = [f"Floodgate ({context}): {summary}.", ""]
    body += [_line(group) for group in list(lines.values())[:MAX_LINES]]
    if len(lines) > MAX_LINES:
        body.append(f"... and {len(lines) - MAX_LINES} more; see the deny log (floodgate log).")
    return _ascii(subject)[:_SUBJECT_LIMIT], "\n".join(body) + "\n"


def _line(group: list[LogEvent]) -> str:
    """`BLOCKED 203.0.113.7/32 in acl-1 (ingress rule 100), acl-2 (...) until 16:35Z: <reason>`."""
    first = group[0]
    places = ", ".join(
        f"{e.nacl_id} ({e.direction} rule {e.rule})" if e.rule is not None else str(e.nacl_id)
        for e in group
        if e.nacl_id is not None
    )
    where = f" in {places}" if places else ""
    until = ""
    if first.kind is EventKind.BLOCK and first.expires is not None:
        stamp = datetime.fromtimestamp(first.expires, UTC).strftime("%H:%MZ")
        until = f" until {stamp} ({format_duration(first.expires - first.at)})"
    return f"{_LABELS[first.kind].upper()} {first.cidr}{where}{until}: {first.reason}"


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode().replace("\n", " ")
