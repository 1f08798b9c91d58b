"""The enforcement decision for one NACL, pure: what its entries, the ledger and the deny log should become.

`decide` takes the NACL as read, the ledger's denies for it, the offence records of the sources involved, what
the operation asks (a `Request`) and the time, and returns a `Decision`: the ledger writes grouped with their
log events, the offence records to write, the entry changes to make (new entries before leaving ones) and the
drift found. It reads nothing and writes nothing; `engine` does the I/O around it.

In order: what happens to each held deny's ban (unblock, renew, expire or extend, drop a lapsed deny whose
entry is gone), then each pool's slots (`core.slots` places entries, evicts, refuses), then the entry changes
no ledger change explains, which are repairs of drift.

Ownership: the ledger is written before the NACL, so an entry in the owned range is Floodgate's only when the
ledger holds its deny, or an OWNED mark for it (written with the change that drops or moves its deny, and
dropped once the entry is gone). Every other entry there is foreign, whatever it looks like: reported (a
FOREIGN event the first time, remembered by a FOREIGN mark), its rule number skipped, never deleted or
replaced; the rest of the pool keeps working.

Truth of the log: the decision's events are committed with its ledger writes, before the entry changes; an
event that says an entry went in (BLOCK, EXTEND, REPAIR) whose entry was then not written is logged as PENDING
instead (`settle_events`), and a PENDING mark remembers it, so that the run that writes the entry logs BLOCK.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from floodgate.core.bans import BanOutcome, BanPolicy, OffenceHistory
from floodgate.core.durations import format_duration
from floodgate.core.nacl import NaclEntry, NaclSnapshot
from floodgate.core.networks import DenyPolicy
from floodgate.core.records import (
    AppendEvent,
    DenyRecord,
    DropDeny,
    DropMark,
    EntryMark,
    EventKind,
    Evidence,
    LedgerWrite,
    LogEvent,
    MarkKind,
    OffenceRecord,
    Origin,
    OriginKind,
    PutDeny,
    PutMark,
    PutOffence,
)
from floodgate.core.slots import (
    EXPIRED,
    PINNED,
    Direction,
    Held,
    OpKind,
    Pool,
    PoolPlan,
    SlotOp,
    Wanted,
    owned_pools,
    plan_pool,
)

if TYPE_CHECKING:
    from floodgate.settings import Settings

RuleKey = tuple[Direction, int]
EntryKey = tuple[Direction, int, str]  # an entry: direction, rule number and the CIDR it denies

# Events that say an entry is in the NACL: false, and logged as PENDING, when that entry was not written.
_ENTRY_IN_FORCE = frozenset({EventKind.BLOCK, EventKind.EXTEND, EventKind.REPAIR})


def settle_events(
    events: Collection[LogEvent],
    unwritten: Mapping[EntryKey, str],
    dropped: Collection[EntryKey] = (),
) -> list[LogEvent]:
    """The log lines of a decision once its entry changes are done: an event saying an entry went in whose
    entry was not written (`unwritten`: entry -> why) becomes PENDING (`would` keeps what was decided, the
    time and id stay, so a retried delivery lands on the same line); one whose deny was dropped because AWS
    refused the entry (`dropped`) is left out, the refusal's own event says what happened."""
    settled: list[LogEvent] = []
    for event in events:
        key = _entry_key(event)
        if key is None or event.kind not in _ENTRY_IN_FORCE:
            settled.append(event)
        elif key in dropped:
            continue
        elif key in unwritten:
            settled.append(
                dataclasses.replace(
                    event,
                    kind=EventKind.PENDING,
                    would=event.kind,
                    reason=f"entry not written ({unwritten[key]}); the next run writes it. {event.reason}",
                )
            )
        else:
            settled.append(event)
    return settled


def _entry_key(event: LogEvent) -> EntryKey | None:
    if event.direction is None or event.rule is None:
        return None
    return (event.direction, event.rule, event.cidr)


@dataclass(frozen=True, slots=True)
class EnforcementConfig:
    """What the engine enforces and where. `Settings` builds one; tests and the CLI may build one directly."""

    policy: DenyPolicy
    bans: BanPolicy
    nacl_ids: tuple[str, ...] = ()  # explicit targets; when empty, every NACL of `vpc_id`
    vpc_id: str | None = None
    rule_start: int = 100
    budget: int = 10
    nacl_quota: int = 20
    evidence_threshold_pps: float = 5000.0  # REJECT rate at which an ending ban is extended instead
    extend_on_evidence: bool = True
    outbound_mirror: bool = False
    dry_run: bool = False
    lease_s: float = 60.0
    lease_wait_s: float = 20.0

    def __post_init__(self) -> None:
        if not self.nacl_ids and not self.vpc_id:
            raise ValueError("no target: give NACL ids or a VPC id")
        if self.budget < 1 or self.budget + 2 > self.nacl_quota:
            raise ValueError(
                f"budget {self.budget} must be at least 1 and leave room for the default rule and one spare "
                f"under the quota of {self.nacl_quota}"
            )
        if self.rule_start < 1 or self.pools[-1].last_rule > 32766:
            raise ValueError(f"owned rules {self.rule_start}-{self.pools[-1].last_rule} must lie in 1-32766")

    @classmethod
    def from_settings(cls, settings: Settings) -> EnforcementConfig:
        return cls(
            policy=DenyPolicy.build(
                vpc_cidrs=settings.vpc_cidrs,
                allow=settings.allow_cidrs,
                max_prefix_v4=settings.max_prefix_v4,
                max_prefix_v6=settings.max_prefix_v6,
            ),
            bans=BanPolicy(
                base_ttl_s=settings.base_ttl_s,
                max_ttl_s=settings.max_ttl_s,
                factor=settings.ttl_factor,
                offence_memory_s=settings.offence_memory_s,
            ),
            nacl_ids=settings.nacl_ids,
            vpc_id=settings.vpc_id,
            rule_start=settings.rule_start,
            budget=settings.budget,
            nacl_quota=settings.nacl_quota,
            evidence_threshold_pps=settings.min_pps,
            extend_on_evidence=settings.extend_on_evidence,
            outbound_mirror=settings.outbound_mirror,
            dry_run=settings.dry_run,
        )

    @property
    def directions(self) -> tuple[Direction, ...]:
        return (Direction.INGRESS, Direction.EGRESS) if self.outbound_mirror else (Direction.INGRESS,)

    @property
    def pools(self) -> tuple[Pool, ...]:
        return owned_pools(self.rule_start, self.budget, self.directions)

    @property
    def rule_end(self) -> int:
        return self.pools[-1].last_rule


class DriftKind(StrEnum):
    ORPHAN = "orphan"  # Floodgate's entry whose deny left the ledger (a worker stopped before deleting it)
    MISSING = "missing"  # a valid ledger deny with no entry
    MISMATCH = "mismatch"  # the entry at a ledger deny's rule denies something else
    FOREIGN = "foreign"  # an entry in the owned range that Floodgate did not write (never touched)
    FAILED = "failed"  # an entry change EC2 refused or that could not be made in time (see the detail)


@dataclass(frozen=True, slots=True)
class Drift:
    kind: DriftKind
    nacl_id: str
    direction: Direction
    rule: int
    cidr: str
    detail: str


@dataclass(frozen=True, slots=True)
class Want:
    """A deny asked for by an operation."""

    cidr: str  # canonical
    family: int
    value: float  # rank against the other denies of the pool (`core.slots`): a rate, or PINNED
    evidence: Evidence
    reason: str
    origin: Origin
    ttl_s: int | None = None  # a manual ban time; None: escalation decides


@dataclass(frozen=True, slots=True)
class Request:
    """What one operation asks of every target NACL."""

    actor: str
    wanted: Mapping[str, Want] = field(default_factory=dict)  # by CIDR
    remove: Mapping[str, str] = field(default_factory=dict)  # CIDR -> why (manual unblock)
    reject_pps: Mapping[str, float] = field(default_factory=dict)  # rates seen as REJECT, by CIDR
    expire_due: bool = False  # end (or extend) the bans that are over

    def offence_cidrs(self, records: Collection[DenyRecord], now: float) -> list[str]:
        """Sources whose offence record the decision may need: new or renewed bans, ended or extended ones."""
        cidrs = set(self.wanted) | set(self.remove)
        if self.expire_due:
            cidrs |= {r.cidr for r in records if r.expired(now)}
        return sorted(cidrs)


@dataclass(frozen=True, slots=True)
class DeleteEntry:
    """Remove the entry at `rule`: a deny leaving the ledger, or an orphan."""

    direction: Direction
    rule: int
    cidr: str


@dataclass(frozen=True, slots=True)
class PutEntry:
    """Put the entry of the ledger deny `record` in place: create it, or, with `replace`, turn the entry found
    at its rule into it."""

    record: DenyRecord
    replace: bool = False

    @property
    def direction(self) -> Direction:
        return self.record.direction

    @property
    def rule(self) -> int:
        return self.record.rule

    @property
    def cidr(self) -> str:
        return self.record.cidr


EntryChange = DeleteEntry | PutEntry


@dataclass(frozen=True, slots=True)
class Decision:
    """One NACL's decision. `groups` are the ledger writes, each rule's change with its log events (a group
    is written atomically); `offences` go in ahead of them; `changes` are the entry changes, in order."""

    now: float
    offences: tuple[PutOffence, ...]
    groups: tuple[tuple[LedgerWrite, ...], ...]
    events: tuple[LogEvent, ...]
    changes: tuple[EntryChange, ...]
    drift: tuple[Drift, ...]

    @property
    def changes_anything(self) -> bool:
        return bool(self.groups or self.changes)


def decide(
    config: EnforcementConfig,
    snapshot: NaclSnapshot,
    records: Collection[DenyRecord],
    offences: Mapping[str, OffenceRecord],
    request: Request,
    *,
    now: float,
    new_id: Callable[[], str] | None = None,
    marks: Collection[EntryMark] = (),
) -> Decision:
    """Decide one NACL (see the module's docstring). `records` are the ledger's denies of `snapshot`'s NACL,
    `offences` the offence records of `request.offence_cidrs(records, now)` that exist, `marks` the ledger's
    entry marks of the NACL; `new_id` makes the version ids of changed records (default: random)."""
    return _Deciding(
        config,
        snapshot,
        records=records,
        offences=offences,
        marks=marks,
        request=request,
        now=now,
        new_id=new_id or _random_id,
    ).decide()


class _Deciding:
    """Decides one NACL: renewals, expiries and removals first, then each pool's slots; collects the ledger
    writes (grouped with their log events), the entry changes and the drift found."""

    def __init__(
        self,
        config: EnforcementConfig,
        snapshot: NaclSnapshot,
        *,
        records: Collection[DenyRecord],
        offences: Mapping[str, OffenceRecord],
        marks: Collection[EntryMark],
        request: Request,
        now: float,
        new_id: Callable[[], str],
    ) -> None:
        self.config = config
        self.bans = config.bans
        self.snapshot = snapshot
        self.nacl_id = snapshot.nacl_id
        self.request = request
        self.now = now
        self.new_id = new_id
        self.original: dict[RuleKey, DenyRecord] = {(r.direction, r.rule): r for r in records}
        self.marks = frozenset(m for m in marks if m.nacl_id == snapshot.nacl_id)
        self.mark_writes: dict[RuleKey, list[LedgerWrite]] = {}
        self.final: dict[RuleKey, DenyRecord | None] = {}  # changed rule keys: new record, or None if dropped
        self.offences_read = dict(offences)
        self.offences_final: dict[str, OffenceRecord] = {}
        self.events: list[LogEvent] = []
        self.event_keys: dict[str, RuleKey] = {}  # event id -> rule key it belongs with
        self.changes: list[EntryChange] = []
        self.drift: list[Drift] = []
        self.terms: dict[str, tuple[float, int]] = {}  # CIDR -> (expires, offences) of its new placements
        self.placed: set[RuleKey] = set()
        self._tick = 0

    def decide(self) -> Decision:
        held = self._decide_bans()
        for pool in self.config.pools:
            self._decide_pool(pool, held)
        offences = tuple(
            PutOffence(record, replaces=self.offences_read.get(cidr))
            for cidr, record in self.offences_final.items()
        )
        return Decision(
            now=self.now,
            offences=offences,
            groups=self._groups(),
            events=tuple(self.events),
            changes=tuple(self.changes),
            drift=tuple(self.drift),
        )

    # -- step 1: what happens to each held deny's ban -------------------------------------------------

    def _decide_bans(self) -> list[DenyRecord]:
        held: list[DenyRecord] = []
        for record in self.original.values():
            if record.cidr in self.request.remove:
                self._drop(record, EventKind.UNBLOCK, self.request.remove[record.cidr])
                self._end_ban(record.cidr)
                continue
            want = self.request.wanted.get(record.cidr)
            if want is not None:
                held.append(self._renew(record, want))
                continue
            if self.request.expire_due and record.expired(self.now):
                decision = self.bans.on_expiry(
                    expires=record.expires,
                    offences=record.offences,
                    now=self.now,
                    reject_pps=self.request.reject_pps.get(record.cidr),
                    threshold_pps=self.config.evidence_threshold_pps,
                    extend_on_evidence=self.config.extend_on_evidence,
                )
                seen = self.request.reject_pps.get(record.cidr)
                threshold = self.config.evidence_threshold_pps if self.config.extend_on_evidence else None
                if decision.outcome is BanOutcome.EXPIRE:
                    # The row shows what the ban was judged on now, not the rate it was blocked at.
                    judged = Evidence(reject_pps=seen, threshold_pps=threshold)
                    self._drop(record, EventKind.EXPIRE, decision.reason, evidence=judged)
                    continue
                evidence = dataclasses.replace(record.evidence, reject_pps=seen, threshold_pps=threshold)
                held.append(self._extend(record, decision.expires, decision.reason, evidence=evidence))
                continue
            if record.expired(self.now) and not self._in_nacl(record):
                # Over, and its entry is gone (a worker died before writing it): nothing is left to keep.
                self._drop(record, EventKind.EXPIRE, "ban over; its entry was already missing from the NACL")
                continue
            held.append(record)
        return held

    def _in_nacl(self, record: DenyRecord) -> bool:
        entry = self.snapshot.entry(record.direction, record.rule)
        return entry is not None and entry.is_deny_of(record.cidr)

    def _renew(self, record: DenyRecord, want: Want) -> DenyRecord:
        """A held deny asked for again: a manual request lengthens it to its ban time and pins it; automatic
        evidence renews it by the escalation rules."""
        if want.origin.kind is OriginKind.MANUAL:
            ttl = want.ttl_s or self.bans.ban_time(record.offences)
            expires = max(record.expires, self.now + ttl)
            if expires == record.expires and record.origin == want.origin:
                return record
            reason = f"{want.reason} ({want.origin}): ban until +{format_duration(expires - self.now)}"
            return self._extend(record, expires, reason, origin=want.origin)
        if record.expired(self.now):
            # Its ban is over though the expirer has not lifted it yet: showing up again is a new offence,
            # exactly as a minute later (or it joins the ban another NACL's decision just started).
            expires, offences = self._terms(record.cidr, want)
            reason = (
                f"seen again at {want.evidence.pps:,.0f} pps after its ban ended: offence {offences}, "
                f"denied for {format_duration(expires - self.now)}"
            )
            return self._extend(record, expires, reason, evidence=want.evidence, offences=offences)
        decision = self.bans.on_reoffence(
            expires=record.expires, offences=record.offences, now=self.now, rate_pps=want.evidence.pps
        )
        if decision.outcome is BanOutcome.KEEP:
            return record
        return self._extend(record, decision.expires, decision.reason, evidence=want.evidence)

    def _extend(
        self,
        record: DenyRecord,
        expires: float,
        reason: str,
        *,
        evidence: Evidence | None = None,
        origin: Origin | None = None,
        offences: int | None = None,
    ) -> DenyRecord:
        extended = dataclasses.replace(
            record,
            expires=expires,
            evidence=evidence or record.evidence,
            origin=origin or record.origin,
            offences=record.offences if offences is None else offences,
            write_id=self.new_id(),
        )
        key = (record.direction, record.rule)
        self.final[key] = extended
        self._event(EventKind.EXTEND, extended, reason, key)
        base = self._offence(record.cidr) or self._offence_implied_by(record)
        if expires > base.ban_until:
            self._set_offence(
                dataclasses.replace(base, ban_until=expires, remember_until=self.bans.remember_until(expires))
            )
        return extended

    def _drop(
        self, record: DenyRecord, kind: EventKind, reason: str, *, evidence: Evidence | None = None
    ) -> None:
        key = (record.direction, record.rule)
        self.final[key] = None
        self._event(kind, record, reason, key, evidence=evidence)

    def _end_ban(self, cidr: str) -> None:
        """A lifted ban ends now; the offence count stays remembered."""
        base = self._offence(cidr)
        if base is not None and base.ban_until > self.now:
            ended = dataclasses.replace(
                base, ban_until=self.now, remember_until=self.bans.remember_until(self.now)
            )
            self._set_offence(ended)

    # -- step 2: each pool's slots ----------------------------------------------------------------------

    def _decide_pool(self, pool: Pool, held_records: list[DenyRecord]) -> None:
        inside = self.snapshot.in_rules(pool.direction, pool.rules)
        foreign = {rule for rule, entry in inside.items() if not self._owned(pool, rule, entry)}
        self._note_foreign(pool, {rule: inside[rule] for rule in foreign})
        self._forget_gone_owned(pool, inside)
        rules = [rule for rule in pool.rules if rule not in foreign]
        for record in held_records:
            if record.direction is pool.direction and record.family == pool.family and record.rule in foreign:
                # Someone else's entry sits on our rule: the ledger's deny is not in force, and we never
                # overwrite a foreign entry. Say so loudly rather than count the deny as held.
                self.drift.append(
                    Drift(
                        DriftKind.MISSING,
                        self.nacl_id,
                        pool.direction,
                        record.rule,
                        record.cidr,
                        f"rule {record.rule} is taken by a foreign entry ({inside[record.rule].describe()}): "
                        f"the ledger's deny of {record.cidr} is not in force",
                    )
                )
        mine = {
            r.rule: r
            for r in held_records
            if r.direction is pool.direction and r.family == pool.family and r.rule in rules
        }
        plan = plan_pool(
            rules=rules,
            budget=self.config.budget,
            entries={rule: entry.cidr for rule, entry in inside.items() if rule not in foreign},
            held=[
                Held(r.rule, r.cidr, self._value(r), r.created, restore=not r.expired(self.now))
                for r in mine.values()
            ],
            wanted=[Wanted(w.cidr, w.value) for w in self.request.wanted.values() if w.family == pool.family],
            policy=self.config.policy,
        )
        for eviction in plan.evicted:
            self._drop(mine[eviction.held.rule], EventKind.EVICT, eviction.reason)
        for placement in plan.placed:
            self._place(pool, placement.cidr, placement.rule, adopted=placement.adopted)
        for refusal in plan.refused:
            want = self.request.wanted[refusal.cidr]
            self._event_for(
                EventKind.REFUSED,
                refusal.cidr,
                refusal.reason,
                direction=pool.direction,
                origin=want.origin,
                evidence=want.evidence,
            )
        self._label_ops(pool, plan, inside={rule: e.cidr for rule, e in inside.items()})

    def _owned(self, pool: Pool, rule: int, entry: NaclEntry) -> bool:
        """Whether Floodgate wrote this entry: its shape, and its deny in the ledger or an OWNED mark."""
        if not entry.is_deny_all_from(pool.family):
            return False
        record = self.original.get((pool.direction, rule))
        if record is not None and entry.is_deny_of(record.cidr):
            return True
        return EntryMark(MarkKind.OWNED, self.nacl_id, pool.direction, rule, entry.cidr) in self.marks

    def _note_foreign(self, pool: Pool, foreign: Mapping[int, NaclEntry]) -> None:
        """Report each foreign entry as drift; log (and remember) the ones not reported before, and forget
        the ones that left, so an entry added again is reported again."""
        for rule, entry in sorted(foreign.items()):
            detail = (
                f"{entry.describe()} was not written by Floodgate (no ledger record): never touched, "
                f"rule {rule} skipped; move it out of {pool.first_rule}-{pool.last_rule} or set ruleStart / "
                "FLOODGATE_RULE_START to a free block"
            )
            self.drift.append(
                Drift(DriftKind.FOREIGN, self.nacl_id, pool.direction, rule, entry.cidr, detail)
            )
            mark = EntryMark(MarkKind.FOREIGN, self.nacl_id, pool.direction, rule, entry.cidr)
            if mark not in self.marks:
                self.mark_writes.setdefault((pool.direction, rule), []).append(PutMark(mark))
                self._event_for(EventKind.FOREIGN, entry.cidr, detail, direction=pool.direction, rule=rule)
        for mark in sorted(self.marks, key=lambda m: (m.rule, m.cidr)):
            if mark.kind is not MarkKind.FOREIGN or mark.direction is not pool.direction:
                continue
            if mark.rule in pool.rules and (mark.rule not in foreign or foreign[mark.rule].cidr != mark.cidr):
                self.mark_writes.setdefault((pool.direction, mark.rule), []).append(DropMark(mark))

    def _forget_gone_owned(self, pool: Pool, inside: Mapping[int, NaclEntry]) -> None:
        """OWNED marks of entries no longer in the NACL have served their purpose."""
        for mark in sorted(self.marks, key=lambda m: (m.rule, m.cidr)):
            if mark.kind is not MarkKind.OWNED or mark.direction is not pool.direction:
                continue
            entry = inside.get(mark.rule)
            if mark.rule in pool.rules and (entry is None or not entry.is_deny_of(mark.cidr)):
                self.mark_writes.setdefault((pool.direction, mark.rule), []).append(DropMark(mark))

    def _value(self, record: DenyRecord) -> float:
        if record.origin.kind is OriginKind.MANUAL:
            return PINNED
        if record.expired(self.now):
            return EXPIRED
        return self.request.reject_pps.get(record.cidr, 0.0)

    def _place(self, pool: Pool, cidr: str, rule: int, *, adopted: bool) -> None:
        want = self.request.wanted[cidr]
        expires, offences = self._terms(cidr, want)
        record = DenyRecord(
            nacl_id=self.nacl_id,
            direction=pool.direction,
            rule=rule,
            cidr=cidr,
            created=self.now,
            expires=expires,
            offences=offences,
            origin=want.origin,
            reason=want.reason,
            evidence=want.evidence,
            write_id=self.new_id(),
        )
        key = (pool.direction, rule)
        self.final[key] = record
        self.placed.add(key)
        found = "; the entry was already in place" if adopted else ""
        reason = f"{want.reason}; offence {offences}, denied for {format_duration(expires - self.now)}{found}"
        self._event(EventKind.BLOCK, record, reason, key)

    def _terms(self, cidr: str, want: Want) -> tuple[float, int]:
        """Expiry and offence count of a new placement: those of the source's running ban when it has one
        (another direction, another NACL, or back after an eviction), else a new offence."""
        if cidr not in self.terms:
            running = self._running_ban(cidr)
            self.terms[cidr] = self._join(cidr, want, *running) if running else self._new_offence(cidr, want)
        return self.terms[cidr]

    def _running_ban(self, cidr: str) -> tuple[float, int] | None:
        """Expiry and offence count of the source's ban still running here (as decided so far) or as its
        offence record says, if any."""
        running = [
            current
            for key, original in self.original.items()
            if (current := self.final.get(key, original)) is not None
            and current.cidr == cidr
            and not current.expired(self.now)
        ]
        if running:
            return max(r.expires for r in running), max(r.offences for r in running)
        record = self._offence(cidr)
        if record is not None and OffenceHistory(record.count, record.ban_until).ban_running(self.now):
            return record.ban_until, record.count
        return None

    def _join(self, cidr: str, want: Want, expires: float, offences: int) -> tuple[float, int]:
        """A new placement joins the running ban. A person's block asks for its ban time from now: a running
        ban is lengthened, never shortened."""
        if want.origin.kind is OriginKind.MANUAL:
            asked = self.now + (want.ttl_s or self.bans.ban_time(offences))
            if asked > expires:
                expires = asked
                record = self._offence(cidr)
                if record is not None:
                    self._set_offence(
                        dataclasses.replace(
                            record, ban_until=expires, remember_until=self.bans.remember_until(expires)
                        )
                    )
        return expires, offences

    def _new_offence(self, cidr: str, want: Want) -> tuple[float, int]:
        record = self._offence(cidr)
        history = OffenceHistory(record.count, record.ban_until) if record else None
        offences = self.bans.offence_number(history, self.now)
        expires = self.now + (want.ttl_s or self.bans.ban_time(offences))
        self._set_offence(
            OffenceRecord(
                cidr=cidr,
                count=offences,
                ban_started=self.now,
                ban_until=expires,
                remember_until=self.bans.remember_until(expires),
                write_id=self.new_id(),
            )
        )
        return expires, offences

    def _label_ops(self, pool: Pool, plan: PoolPlan, inside: Mapping[int, str]) -> None:
        """Queue the pool's entry changes; those no ledger change explains are repairs of drift."""
        standing = {
            key: record
            for key in self.original.keys() | self.final.keys()
            if (record := self.final.get(key, self.original.get(key))) is not None
        }
        for slot in plan.ops:
            key = (pool.direction, slot.rule)
            pending = EntryMark(MarkKind.PENDING, self.nacl_id, pool.direction, slot.rule, slot.cidr)
            if slot.kind is not OpKind.DELETE and key not in self.placed and pending in self.marks:
                # Logged PENDING by the run that could not write it: writing it now is when it goes in.
                self.drift.append(
                    Drift(
                        DriftKind.MISMATCH if slot.kind is OpKind.REPLACE else DriftKind.MISSING,
                        self.nacl_id,
                        pool.direction,
                        slot.rule,
                        slot.cidr,
                        "pending deny (an earlier run could not write its entry): write it",
                    )
                )
                self._went_in(standing[key], pending, "its entry, pending since an earlier run, is written")
                self.changes.append(PutEntry(standing[key], replace=slot.kind is OpKind.REPLACE))
                continue
            if slot.kind is OpKind.DELETE:
                original = self.original.get(key)
                if original is None or original.cidr != slot.cidr or key not in self.final:
                    self._repair(
                        DriftKind.ORPHAN,
                        pool,
                        slot,
                        f"Floodgate's entry {slot.cidr} outlived its deny (a worker stopped before deleting "
                        "it): remove it",
                    )
                self.changes.append(DeleteEntry(pool.direction, slot.rule, slot.cidr))
                continue
            if slot.kind is OpKind.REPLACE:
                self._repair(
                    DriftKind.MISMATCH,
                    pool,
                    slot,
                    f"rule {slot.rule} denies {inside.get(slot.rule)} instead of the ledger's {slot.cidr}: "
                    "replace it",
                )
            elif key not in self.placed:
                self._repair(DriftKind.MISSING, pool, slot, "ledger deny missing from the NACL: re-create it")
            # The planner creates or replaces an entry only for the deny the ledger keeps at that rule.
            self.changes.append(PutEntry(standing[key], replace=slot.kind is OpKind.REPLACE))
        self._settle_pending(pool, standing)

    def _settle_pending(self, pool: Pool, standing: Mapping[RuleKey, DenyRecord]) -> None:
        """PENDING marks the entry changes above do not take up: a deny whose entry is in place after all (a
        write whose answer was lost) is logged as gone in now; one no longer held is simply forgotten; one
        whose rule a foreign entry holds stays pending."""
        putting = {(c.direction, c.rule, c.cidr) for c in self.changes if isinstance(c, PutEntry)}
        for mark in sorted(self.marks, key=lambda m: (m.rule, m.cidr)):
            if mark.kind is not MarkKind.PENDING or mark.direction is not pool.direction:
                continue
            key = (mark.direction, mark.rule)
            if mark.rule not in pool.rules:
                continue
            if key not in self.placed and (mark.direction, mark.rule, mark.cidr) in putting:
                continue  # its entry is written by this decision: taken up above
            record = None if key in self.placed else standing.get(key)
            if record is None or record.cidr != mark.cidr:
                self.mark_writes.setdefault(key, []).append(DropMark(mark))
            elif self._in_nacl(record):
                self._went_in(record, mark, "its entry, pending since an earlier run, was found in place")
            # else its rule is held by a foreign entry: still pending, the mark waits

    def _went_in(self, record: DenyRecord, pending: EntryMark, how: str) -> None:
        """BLOCK for a deny logged PENDING before, and the drop of its PENDING mark, in the rule's group."""
        key = (record.direction, record.rule)
        self.mark_writes.setdefault(key, []).append(DropMark(pending))
        self._event(EventKind.BLOCK, record, f"{record.reason}; {how}", key)

    def _repair(self, kind: DriftKind, pool: Pool, slot: SlotOp, detail: str) -> None:
        self.drift.append(Drift(kind, self.nacl_id, pool.direction, slot.rule, slot.cidr, detail))
        record = self.final.get((pool.direction, slot.rule)) or self.original.get((pool.direction, slot.rule))
        origin = record.origin if record and record.cidr == slot.cidr else None
        self._event_for(
            EventKind.REPAIR, slot.cidr, detail, direction=pool.direction, rule=slot.rule, origin=origin
        )

    # -- offences, events, grouping ---------------------------------------------------------------------

    def _offence_implied_by(self, record: DenyRecord) -> OffenceRecord:
        """The offence record a held deny implies, for a source whose record is gone (TTL, never written)."""
        return OffenceRecord(
            cidr=record.cidr,
            count=record.offences,
            ban_started=record.created,
            ban_until=record.expires,
            remember_until=self.bans.remember_until(record.expires),
            write_id=self.new_id(),
        )

    def _offence(self, cidr: str) -> OffenceRecord | None:
        return self.offences_final.get(cidr) or self.offences_read.get(cidr)

    def _set_offence(self, record: OffenceRecord) -> None:
        self.offences_final[record.cidr] = dataclasses.replace(record, write_id=self.new_id())

    def _event(
        self,
        kind: EventKind,
        record: DenyRecord,
        reason: str,
        key: RuleKey,
        *,
        evidence: Evidence | None = None,
    ) -> None:
        event = LogEvent(
            kind,
            self._at(),
            record.cidr,
            reason,
            self.request.actor,
            nacl_id=self.nacl_id,
            direction=record.direction,
            rule=record.rule,
            origin=record.origin,
            evidence=record.evidence if evidence is None else evidence,
            expires=record.expires,
            offences=record.offences,
        )
        self.events.append(event)
        self.event_keys[event.event_id] = key

    def _event_for(
        self,
        kind: EventKind,
        cidr: str,
        reason: str,
        *,
        direction: Direction,
        rule: int | None = None,
        origin: Origin | None = None,
        evidence: Evidence | None = None,
    ) -> None:
        event = LogEvent(
            kind,
            self._at(),
            cidr,
            reason,
            self.request.actor,
            nacl_id=self.nacl_id,
            direction=direction,
            rule=rule,
            origin=origin,
            evidence=evidence,
        )
        self.events.append(event)
        if rule is not None:
            self.event_keys[event.event_id] = (direction, rule)

    def _at(self) -> float:
        # One microsecond apart, so the log keeps the order of one decision's events.
        self._tick += 1
        return self.now + self._tick * 1e-6

    def _groups(self) -> tuple[tuple[LedgerWrite, ...], ...]:
        """Ledger writes in transaction groups: each rule's change with its log events, so that a committed
        change always has its log lines; events tied to no rule (refusals) form groups of their own."""
        by_key: dict[RuleKey, list[LedgerWrite]] = {}
        for key, record in self.final.items():
            # `final` holds only changes: a dropped deny (None) was held, a new record replaces what was.
            original = self.original.get(key)
            change = DropDeny(self.original[key]) if record is None else PutDeny(record, original)
            by_key.setdefault(key, []).append(change)
            if (
                original is not None
                and (record is None or record.cidr != original.cidr)
                and self._in_nacl(original)
            ):
                # Its entry stays until the NACL change that follows: mark it ours till then.
                mark = EntryMark(
                    MarkKind.OWNED, self.nacl_id, original.direction, original.rule, original.cidr
                )
                if mark not in self.marks:
                    by_key[key].append(PutMark(mark))
        for key, writes in self.mark_writes.items():
            by_key.setdefault(key, []).extend(writes)
        loose: list[list[LedgerWrite]] = []
        for event in self.events:
            event_key = self.event_keys.get(event.event_id)
            if event_key is None:
                loose.append([AppendEvent(event)])
            else:
                by_key.setdefault(event_key, []).append(AppendEvent(event))
        return tuple(tuple(group) for group in [by_key[key] for key in sorted(by_key)] + loose)


def _random_id() -> str:
    return uuid.uuid4().hex
