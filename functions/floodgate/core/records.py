"""Floodgate's records: the denies it holds, what it remembers of each source, and the lines of its deny log.

The ledger stores them, the engine decides them, the CLI and the Lambdas' answers show them. Each field is
declared here once: `plain_values` and `from_plain` map a record to and from plain values (text, numbers,
nested dicts), and the DynamoDB items and the JSON answers are built from those. A field's `metadata` says
when its outside name differs (`NAME`) or when it stays inside (`INTERNAL`: not shown in JSON answers).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, TypeVar

from floodgate.core.networks import address_family
from floodgate.core.slots import Direction

NAME = "name"  # field metadata: the name outside, when it differs from the field's
INTERNAL = "internal"  # field metadata: true for a field kept out of JSON answers

R = TypeVar("R")


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
    HOLD = "HOLD"  # an Auto Scaling group held at its capacity (`cidr` is asg:<group>)
    RELEASE = "RELEASE"  # a capacity hold ended
    EFFECT = "EFFECT"  # the traffic of a denied source as the window shows it now (`core.effect`)
    FOREIGN = (
        "FOREIGN"  # an entry Floodgate did not write sits in its owned rules: reported once, never touched
    )
    QUARANTINE = "QUARANTINE"  # EC2 refused a deny's entry as invalid: the deny was dropped, never retried
    PENDING = "PENDING"  # a deny's entry could not be written yet (EC2 throttling, lease margin): retried


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
    inbound_pps: float | None = None  # the whole window's inbound rate, where the event records it
    threshold_pps: float | None = None  # the REJECT rate that extends an ending ban, when that was judged


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
    write_id: str = field(
        metadata={INTERNAL: True}
    )  # the version: every change writes a new one, conditional on the old

    @property
    def family(self) -> int:
        return address_family(self.cidr)

    def expired(self, now: float) -> bool:
        return self.expires <= now


@dataclass(frozen=True, slots=True)
class OffenceRecord:
    """What is remembered about one source across its bans."""

    cidr: str
    count: int = field(metadata={NAME: "offences"})
    ban_started: float
    ban_until: float
    remember_until: float
    write_id: str = field(metadata={INTERNAL: True})


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One line of the deny log."""

    kind: EventKind = field(metadata={NAME: "event"})
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
    would: EventKind | None = None  # DRYRUN: the event a real run would have written; PENDING: the one
    # that was decided, and not logged as such because the entry did not get written
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


class MarkKind(StrEnum):
    OWNED = "OWNED"  # an entry Floodgate wrote or is about to write: its own to delete or replace
    FOREIGN = "FOREIGN"  # an entry Floodgate did not write, already reported (so it is logged once)
    PENDING = "PENDING"  # a deny logged PENDING (its entry not written): BLOCK is logged once it is


@dataclass(frozen=True, slots=True)
class EntryMark:
    """What the ledger remembers about one NACL entry (rule and CIDR) besides the denies it holds.

    The ledger is written before the NACL, so an entry in the owned rules is Floodgate's only when the ledger
    holds its deny or an OWNED mark; a mark outlives its deny until the entry is gone, so a worker dying
    between dropping a deny and deleting its entry leaves an entry that is still known to be its own.
    """

    kind: MarkKind
    nacl_id: str
    direction: Direction
    rule: int
    cidr: str


@dataclass(frozen=True, slots=True)
class PutMark:
    mark: EntryMark


@dataclass(frozen=True, slots=True)
class DropMark:
    mark: EntryMark


LedgerWrite = PutDeny | DropDeny | AppendEvent | PutMark | DropMark


# -- plain values: the one mapping behind the DynamoDB items and the JSON answers ------------------------


def plain_values(record: Any, *, keep_none: bool = False, internal: bool = True) -> dict[str, Any]:
    """The record's fields by outside name, as text, numbers and nested dicts (enums and origins as their
    text), in field order. Fields that are None are left out unless `keep_none`; INTERNAL fields unless
    `internal`."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(record):
        if item.metadata.get(INTERNAL) and not internal:
            continue
        value = getattr(record, item.name)
        if value is None and not keep_none:
            continue
        values[item.metadata.get(NAME, item.name)] = _plain(value, keep_none=keep_none, internal=internal)
    return values


def from_plain(cls: type[R], values: Mapping[str, Any]) -> R:
    """The record of type `cls` that `plain_values` gave `values` (numbers may come as Decimal). An absent
    field takes its default; an absent nested record its defaults (items written before it existed)."""
    record_type: Any = cls
    hints = _hints(record_type)
    arguments: dict[str, Any] = {}
    for item in _fields(cls):
        name = item.metadata.get(NAME, item.name)
        kind = _not_none(hints[item.name])
        if name in values and values[name] is not None:
            arguments[item.name] = _typed(kind, values[name])
        elif item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
            if not _is_record_type(kind):
                raise KeyError(f"{cls.__name__} needs {name!r}")
            arguments[item.name] = from_plain(kind, {})
    return cls(**arguments)


def _plain(value: object, *, keep_none: bool, internal: bool) -> Any:
    if isinstance(value, Enum | Origin):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_values(value, keep_none=keep_none, internal=internal)
    return value


def _typed(kind: Any, value: Any) -> Any:
    if kind is Origin:
        return Origin.parse(str(value))
    if _is_record_type(kind):
        return from_plain(kind, value)
    return kind(value)  # str, int, float, an enum


def _is_record_type(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _fields(cls: Any) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _not_none(hint: Any) -> Any:
    """`X` of `X | None`."""
    if isinstance(hint, types.UnionType):
        (kind,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        return kind
    return hint
