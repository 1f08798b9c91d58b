"""The Kinesis ingest path (`ingest: "kinesis"`): what a stream batch adds to the window, and the scheduled
decision that reads it.

Ingest only stores. A shard's deliveries are summed in the tumbling window's state (the mapping hands the
state of one invocation to the next of the same window, up to 1 MB per shard) and stored in the traffic
window once per tumbling window, or sooner when the packed summary would not fit the state
(STATE_BUDGET_CHARS). So the window holds one item set per shard and tumbling window instead of one per
delivery: at 100k records/s that is the difference between thousands of deliveries a minute to merge and
a few dozen (README, "Kinesis ingest").

What is stored is named by the shard and its first and last sequence numbers: Lambda's retry of the same
records writes the same keys (put-if-absent), whatever it did before failing.

Decisions run on the schedule, single-flight per VPC: a lease in the ledger (`engine.leases`), taken without
waiting; a tick that finds it held leaves the decision to the holder.
"""

from __future__ import annotations

import base64
import binascii
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from floodgate.adapters.window import WindowWrite
from floodgate.core.model import ParseStats
from floodgate.core.summary import TrafficSummary
from floodgate.core.window import BatchDigest, CorruptPart, open_batch, pack_summary
from floodgate.observability import METRIC

if TYPE_CHECKING:
    from floodgate.services.detection import DecisionReport

_log = logging.getLogger(__name__)

# Lambda keeps at most 1 MB of state per shard (more ends the window early). Base64 of the packed summary
# up to this many characters stays in the state; a larger one is stored at once.
STATE_BUDGET_CHARS = 700_000
STATE_FIRST = "first"  # first sequence number the state holds
STATE_LAST = "last"  # last one
STATE_PART = "part"  # part000, part001, …: base64 of the packed summary's parts
DECISION_LEASE_PREFIX = "DECISION#"
ALARM_DECISION_LEASE_S = 60.0  # the decision an ALARM starts holds the decision lease this long at most


@dataclass(frozen=True, slots=True)
class HeldState:
    """What a tumbling window's state holds: the summary so far and the sequence range it covers."""

    digest: BatchDigest | None
    first: str | None
    last: str | None


def open_state(state: Mapping[str, str]) -> HeldState:
    """The state a previous invocation returned. A state this code cannot read (another version, damage)
    is dropped with an error log: the records it summed are lost to the window, the shard goes on."""
    parts = sorted(key for key in state if key.startswith(STATE_PART))
    if not parts:
        return HeldState(None, state.get(STATE_FIRST), state.get(STATE_LAST))
    try:
        digest = open_batch([base64.b64decode(state[key], validate=True) for key in parts])
    except (CorruptPart, binascii.Error, ValueError, zlib.error) as exc:
        _log.error("tumbling window state unreadable, dropped: %s", exc)
        return HeldState(None, None, None)
    return HeldState(digest, state.get(STATE_FIRST), state.get(STATE_LAST))


def state_of(summary: TrafficSummary, first: str, last: str) -> dict[str, str]:
    """The summary as the state to return (texts only: the mapping stores a map of strings)."""
    state = {STATE_FIRST: first, STATE_LAST: last}
    for index, part in enumerate(pack_summary(summary)):
        state[f"{STATE_PART}{index:03d}"] = base64.b64encode(part).decode()
    return state


def state_chars(state: dict[str, str]) -> int:
    return sum(len(key) + len(value) for key, value in state.items())


def window_shard(shard_id: str, shards: int) -> int:
    """The window partition a stream shard writes to: stable, so a retry writes where the first try did."""
    return zlib.crc32(shard_id.encode()) % shards


@dataclass(frozen=True, slots=True)
class StreamReport:
    """One stream batch: what was read, what the state carries on, what was stored in the window."""

    stats: ParseStats
    unreadable: tuple[tuple[str, str], ...]  # (sequence number, why) of records holding no delivery
    state: dict[str, str]
    stored: WindowWrite | None  # None: kept in the state for the next invocation of the window

    def metric_values(self) -> dict[str, float]:
        return {
            METRIC.RECORDS_PARSED: float(self.stats.parsed),
            METRIC.RECORDS_SKIPPED: float(self.stats.total_skipped),
            METRIC.WINDOW_WRITES: float(self.stored.written if self.stored else 0),
            METRIC.STREAM_RECORDS_UNREADABLE: float(len(self.unreadable)),
        }

    def as_dict(self) -> dict[str, Any]:
        """The mapping's TimeWindowEventResponse: the state to carry on, and no record failed (one that
        cannot be read is reported in the log, not retried: retrying cannot mend it)."""
        return {"state": self.state, "batchItemFailures": []}


@dataclass(frozen=True, slots=True)
class ScheduleReport:
    """One tick of the decision schedule."""

    decision: DecisionReport | None
    why_no_decision: str | None

    def metric_values(self) -> dict[str, float]:
        return self.decision.metric_values() if self.decision else {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "scheduled-decision",
            "decision": self.decision.as_dict() if self.decision else None,
            "why_no_decision": self.why_no_decision,
        }
