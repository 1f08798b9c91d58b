"""Floodgate's records: the denies it holds, what it remembers of each source, and the lines of its deny log.

The ledger stores them, the engine decides them, the CLI and the Lambdas' answers show them; each field is
declared here once (the DynamoDB and JSON shapes are derived from the fields; `metadata["item"]` names a
field whose stored attribute is spelled differently).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from floodgate.core.networks import address_family
from floodgate.core.slots import Direction


def time_key(at: float) -> str:
    """2025-11-24T16:30:05.123456Z: the log's sort order and the JSON spelling of a time."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventKind(StrEnum):
    BLOCK = "BLOCK"  # a deny went in
    EXTEND = "EXTEND"  # a deny's ban was renewed or lengthened
    EVICT = "EVICT"  # a deny gave way to a more valuable one, or is no longer allowed
    EXPIRE = "EXPIRE"  # a ban ran out
    UNBLOCK = "UNBLOCK"  # a person lifted a deny
    REPAIR = "REPAIR"  # NACL and ledger disagreed and the NACL was put right
    REFUSED = "REFUSED"  # a deny that was asked for and not made, with the reason
    DRYRUN = "DRYRUN"  # what would have happened; `would` says which event


class OriginKind(StrEnum):
    AUTOMATIC = "automatic"
    ALARM = "alarm"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class Origin:
    """Who asked for a deny: the detector on its own, the detector armed by an alarm, or a person."""

    kind: OriginKind
    name: str | None = None  # the alarm's name, or who acted by hand

    @classmethod
    def automatic(cls) -> Origin:
        return cls(OriginKind.AUTOMATIC)

    @classmethod
    def alarm(cls, alarm_name: str) -> Origin:
        return cls(OriginKind.ALARM, alarm_name)

    @classmethod
    def manual(cls, who: str) -> Origin:
        return cls(OriginKind.MANUAL, who)

    @classmethod
    def parse(cls, text: str) -> Origin:
        kind, _, name = text.partition(":")
        return cls(OriginKind(kind), name or None)

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else str(self.kind)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a source is denied: its rates when last seen."""

    pps: float = 0.0
    bps: float = 0.0
    share: float = 0.0
    members: int = 0
    reject_pps: float | None = None  # rate seen as REJECT records, i.e. while already denied


@dataclass(frozen=True, slots=True)
class DenyRecord:
    """One deny entry Floodgate holds: where, what, until when and why."""

    nacl_id: str
    direction: Direction
    rule: int
    cidr: str
    created: float
    expires: float
    offences: int
    origin: Origin
    reason: str
    evidence: Evidence
    write_id: str  # the version: every change writes a new one and is conditional on the old

    @property
    def family(self) -> int:
        return address_family(self.cidr)

    def expired(self, now: float) -> bool:
        return self.expires <= now


@dataclass(frozen=True, slots=True)
class OffenceRecord:
    """What is remembered about one source across its bans."""

    cidr: str
    count: int
    ban_started: float
    ban_until: float
    remember_until: float
    write_id: str


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One line of the deny log."""

    kind: EventKind
    at: float
    cidr: str
    reason: str
    actor: str
    nacl_id: str | None = None
    direction: Direction | None = None
    rule: int | None = None
    origin: Origin | None = None
    evidence: Evidence | None = None
    expires: float | None = None
    offences: int | None = None
    would: EventKind | None = None  # for DRYRUN: the event a real run would have written
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def sort_key(self) -> str:
        return f"{time_key(self.at)}#{self.event_id}"


# -- ledger changes: what a decision asks the ledger to write ----------------------------------------


@dataclass(frozen=True, slots=True)
class PutDeny:
    record: DenyRecord
    replaces: DenyRecord | None = None  # None: the rule number must be free in the ledger


@dataclass(frozen=True, slots=True)
class DropDeny:
    record: DenyRecord


@dataclass(frozen=True, slots=True)
class PutOffence:
    record: OffenceRecord
    replaces: OffenceRecord | None = None


@dataclass(frozen=True, slots=True)
class AppendEvent:
    event: LogEvent


LedgerWrite = PutDeny | DropDeny | AppendEvent
