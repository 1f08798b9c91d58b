"""The enforcement engine: deny plans and manual requests in, NACL deny entries, ledger and deny log out.

This is the one place the handlers and the CLI call. Every operation works NACL by NACL, under that NACL's
lease, in three steps:

1. read the NACL and the ledger, and decide (pure: `core.slots` places entries, `core.bans` times them);
2. write the decision to the ledger, its log events riding in the same transactions, fenced by the lease;
3. change the NACL entries, new ones before leaving ones (make-before-break).

The ledger is written before the NACL, always. A worker that dies between 2 and 3 leaves a ledger that says
what the NACL should hold, and the next run puts the NACL right (REPAIR): an entry in the owned range without
a ledger record is removed, a ledger deny missing from the NACL is re-created while still valid. Entries
outside the owned range, and entries inside it that are not Floodgate's shape, are never touched.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from floodgate.adapters.ledger import (
    AppendEvent,
    DenyRecord,
    DropDeny,
    EventKind,
    Evidence,
    Lease,
    LeaseLost,
    Ledger,
    LedgerConflict,
    LedgerWrite,
    LogEvent,
    OffenceRecord,
    Origin,
    OriginKind,
    PutDeny,
    PutOffence,
)
from floodgate.adapters.nacl import (
    EntryAlreadyExists,
    EntryLimitExceeded,
    EntryNotFound,
    NaclEntry,
    NaclGateway,
    NaclSnapshot,
)
from floodgate.core.bans import BanPolicy, OffenceHistory, Outcome
from floodgate.core.durations import format_duration
from floodgate.core.model import DenyPlan, PlannedDeny
from floodgate.core.networks import DenyPolicy, canonical, parse_network
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

_log = logging.getLogger(__name__)

_MAX_ROUNDS = 4  # read-decide-write rounds per NACL before giving up on a ledger or NACL that keeps changing
_LEASE_MARGIN_S = 5.0  # no NACL write starts with less lease than this left (or a quarter of the lease)

RuleKey = tuple[Direction, int]


class EnforcementError(Exception):
    """An operation could not be carried out; the message says why and what to do."""


class PreflightError(EnforcementError):
    """A target NACL is not fit for Floodgate's entries; nothing was written."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("preflight failed:\n  " + "\n  ".join(self.problems))


class BlockRefused(EnforcementError):
    """A manual block was refused (protected range, too wide, no room); the REFUSED event says why."""

    def __init__(self, reason: str, result: EnforcementResult) -> None:
        super().__init__(reason)
        self.result = result


class NotBlocked(EnforcementError, LookupError):
    """An unblock for a CIDR that no target NACL denies."""


class NaclBusy(EnforcementError):
    """Another worker held the NACL's lease for longer than we could wait."""


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
    ORPHAN = "orphan"  # an entry in the owned range with no ledger record
    MISSING = "missing"  # a valid ledger deny with no entry
    MISMATCH = "mismatch"  # the entry at a ledger deny's rule denies something else
    FOREIGN = "foreign"  # an entry in the owned range that Floodgate did not write (never touched)


@dataclass(frozen=True, slots=True)
class Drift:
    kind: DriftKind
    nacl_id: str
    direction: Direction
    rule: int
    cidr: str
    detail: str


@dataclass(frozen=True, slots=True)
class EnforcementResult:
    """What an operation did: the log events it wrote (DRYRUN ones in a dry run) and the drift it found."""

    operation: str
    dry_run: bool
    nacl_ids: tuple[str, ...]
    events: tuple[LogEvent, ...] = ()
    drift: tuple[Drift, ...] = ()
    problems: tuple[str, ...] = ()  # preflight problems, reported by reconcile and status

    def of_kind(self, *kinds: EventKind) -> tuple[LogEvent, ...]:
        """Events of the given kinds; in a dry run, the DRYRUN events standing for them."""
        return tuple(e for e in self.events if (e.would if e.kind is EventKind.DRYRUN else e.kind) in kinds)

    @property
    def counts(self) -> dict[EventKind, int]:
        counts: dict[EventKind, int] = {}
        for event in self.events:
            counts[event.kind] = counts.get(event.kind, 0) + 1
        return counts


@dataclass(frozen=True, slots=True)
class PoolStatus:
    pool: Pool
    budget: int
    held: int  # ledger denies in the pool
    entries: int  # Floodgate-shaped entries in the pool's rule numbers
    rules_used: int  # entries of this direction and family counted against the quota, default rule included
    quota: int


@dataclass(frozen=True, slots=True)
class NaclStatus:
    nacl_id: str
    vpc_id: str
    pools: tuple[PoolStatus, ...]
    denies: tuple[DenyRecord, ...]
    drift: tuple[Drift, ...]
    problems: tuple[str, ...]
    lease: Lease | None


@dataclass(frozen=True, slots=True)
class Status:
    at: float
    dry_run: bool
    nacls: tuple[NaclStatus, ...]


@dataclass(frozen=True, slots=True)
class _Want:
    """A deny asked for by this operation."""

    cidr: str
    family: int
    value: float
    evidence: Evidence
    reason: str
    origin: Origin
    ttl_s: int | None = None  # a manual ban time; None: escalation decides


@dataclass(frozen=True, slots=True)
class _Request:
    """What one operation asks of every target NACL."""

    actor: str
    wanted: Mapping[str, _Want] = field(default_factory=dict)
    remove: Mapping[str, str] = field(default_factory=dict)  # CIDR -> why (manual unblock)
    reject_pps: Mapping[str, float] = field(default_factory=dict)  # rates seen as REJECT, by CIDR
    expire_due: bool = False


class _Mode(StrEnum):
    WRITE = "write"
    DRY_RUN = "dry-run"  # decide, log DRYRUN events, change nothing else
    INSPECT = "inspect"  # decide, write nothing at all


@dataclass(frozen=True, slots=True)
class _EntryOp:
    direction: Direction
    slot: SlotOp
    record: DenyRecord | None  # the ledger deny a CREATE or REPLACE puts in place


@dataclass(slots=True)
class _Decision:
    now: float
    offences: list[PutOffence]
    groups: list[list[LedgerWrite]]
    events: list[LogEvent]
    ops: list[_EntryOp]
    drift: list[Drift]


@dataclass(slots=True)
class _Outcome:
    events: list[LogEvent] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)


class Enforcer:
    """Applies plans, manual blocks and unblocks, expiry and repair to the target NACLs.

    `now` is the clock for every decision and lease (injectable for tests); `actor` names this worker in the
    log (a person's name is passed to `block` and `unblock`).
    """

    def __init__(
        self,
        config: EnforcementConfig,
        gateway: NaclGateway,
        ledger: Ledger,
        *,
        now: Callable[[], float] = time.time,
        actor: str = "floodgate",
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.ledger = ledger
        self.actor = actor
        self._now = now
        self._rng = random.Random()

    # -- operations ----------------------------------------------------------------------------------------

    def preflight(self) -> dict[str, NaclSnapshot]:
        """The target NACLs, checked fit for Floodgate's entries; raises PreflightError listing every problem
        with its fix, or UnknownNacl."""
        snapshots = self._snapshots()
        problems = [problem for snapshot in snapshots.values() for problem in self._problems(snapshot)]
        if problems:
            raise PreflightError(problems)
        return snapshots

    def apply(
        self,
        plan: DenyPlan | Iterable[PlannedDeny],
        *,
        origin: Origin | None = None,
        reject_pps: Mapping[str, float] | None = None,
        dry_run: bool | None = None,
    ) -> EnforcementResult:
        """Bring every target NACL to the plan plus the still-valid earlier denies, within the budget.

        `reject_pps` (rates seen as REJECT, by CIDR) ranks denies that are absent from the plan because
        they already work; without it such a deny ranks as having no current evidence.
        """
        denies = plan.denies if isinstance(plan, DenyPlan) else tuple(plan)
        source = origin or Origin.automatic()
        rejects = _canonical_rates(reject_pps)
        wanted: dict[str, _Want] = {}
        for planned in denies:
            cidr = canonical(planned.cidr)
            evidence = Evidence(planned.pps, planned.bps, planned.share, planned.members, rejects.get(cidr))
            value = max(planned.pps, rejects.get(cidr, 0.0))
            if cidr not in wanted or wanted[cidr].value < value:
                wanted[cidr] = _Want(cidr, _family(cidr), value, evidence, planned.reason, source)
        mode = self._mode(dry_run)
        snapshots = self.preflight()
        refused = self._screen(wanted, actor=self.actor, mode=mode)
        request = _Request(self.actor, wanted=wanted, reject_pps=rejects)
        outcome = self._converge_all(snapshots, request, mode)
        outcome.events[:0] = refused
        return self._result("apply", mode, snapshots, outcome)

    def block(
        self,
        cidr: str,
        *,
        reason: str,
        actor: str,
        ttl_s: int | None = None,
        dry_run: bool | None = None,
    ) -> EnforcementResult:
        """Deny `cidr` by hand, through the same planner: budget, allowlist and caps apply.

        A manual deny outranks automatic ones (it evicts the lowest automatic deny when the budget is full)
        but never another manual one. Raises BlockRefused, after logging REFUSED, when it cannot go in.
        """
        network = parse_network(cidr)
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ban time must be positive, got {ttl_s}s")
        mode = self._mode(dry_run)
        snapshots = self.preflight()
        want = _Want(
            str(network), network.version, PINNED, Evidence(), reason, Origin.manual(actor), ttl_s=ttl_s
        )
        wanted = {want.cidr: want}
        refused = self._screen(wanted, actor=actor, mode=mode)
        if refused:
            result = self._result("block", mode, snapshots, _Outcome(events=refused))
            raise BlockRefused(f"{want.cidr} refused: {refused[0].reason}", result)
        outcome = self._converge_all(snapshots, _Request(actor, wanted=wanted), mode)
        result = self._result("block", mode, snapshots, outcome)
        went_in = result.of_kind(EventKind.BLOCK, EventKind.EXTEND)
        not_in = result.of_kind(EventKind.REFUSED)
        if not_in and not went_in:
            raise BlockRefused(f"{want.cidr} refused: {not_in[0].reason}", result)
        return result

    def unblock(
        self, cidr: str, *, reason: str, actor: str, dry_run: bool | None = None
    ) -> EnforcementResult:
        """Lift the deny of `cidr` in every target NACL; the log records who and why. Not subject to the
        policy: a deny of a range protected since can always be lifted."""
        target = canonical(cidr)
        mode = self._mode(dry_run)
        snapshots = self._snapshots()
        request = _Request(actor, remove={target: f"unblocked by {actor}: {reason}"})
        outcome = self._converge_all(snapshots, request, mode)
        result = self._result("unblock", mode, snapshots, outcome)
        if not result.of_kind(EventKind.UNBLOCK):
            raise NotBlocked(f"{target} is not denied in {', '.join(snapshots)}")
        return result

    def expire(
        self, *, reject_pps: Mapping[str, float] | None = None, dry_run: bool | None = None
    ) -> EnforcementResult:
        """Remove denies whose ban is over, or extend those whose source still sends above the threshold
        (seen as REJECT in `reject_pps`). A NACL with nothing due costs a few reads and no write."""
        mode = self._mode(dry_run)
        snapshots = self._snapshots()
        request = _Request(self.actor, reject_pps=_canonical_rates(reject_pps), expire_due=True)
        outcome = self._converge_all(snapshots, request, mode)
        return self._result("expire", mode, snapshots, outcome)

    def reconcile(self, *, dry_run: bool = False) -> EnforcementResult:
        """Put each NACL's owned range back in line with the ledger (REPAIR), and report foreign entries.

        With `dry_run`, only report: nothing is written, not even to the log. A deployment in dry-run mode
        repairs in dry run too (DRYRUN events, NACLs untouched), so a pause by configuration holds.
        """
        mode = _Mode.INSPECT if dry_run else self._mode(None)
        snapshots = self._snapshots()
        outcome = self._converge_all(snapshots, _Request(self.actor), mode)
        problems = [problem for snapshot in snapshots.values() for problem in self._problems(snapshot)]
        return self._result("reconcile", mode, snapshots, outcome, problems=problems)

    def status(self) -> Status:
        """Per NACL: pools used against budget and quota, the denies held, drift and preflight problems."""
        now = self._now()
        nacls: list[NaclStatus] = []
        for nacl_id, snapshot in self._snapshots().items():
            records = self.ledger.denies(nacl_id)
            decision = _Decider(
                self.config, snapshot, records, offences={}, request=_Request(self.actor), now=now
            ).decide()
            pools = tuple(self._pool_status(snapshot, pool, records) for pool in self.config.pools)
            nacls.append(
                NaclStatus(
                    nacl_id=nacl_id,
                    vpc_id=snapshot.vpc_id,
                    pools=pools,
                    denies=tuple(records),
                    drift=tuple(decision.drift),
                    problems=tuple(self._problems(snapshot)),
                    lease=self.ledger.lease_of(nacl_id, now),
                )
            )
        return Status(at=now, dry_run=self.config.dry_run, nacls=tuple(nacls))

    # -- per-NACL convergence ---------------------------------------------------------------------------

    def _converge_all(
        self, snapshots: Mapping[str, NaclSnapshot], request: _Request, mode: _Mode
    ) -> _Outcome:
        outcome = _Outcome()
        for nacl_id in snapshots:
            if mode is not _Mode.WRITE:
                decision = self._decide(nacl_id, request)
                if mode is _Mode.DRY_RUN and decision.events:
                    dry = [_as_dry_run(event) for event in decision.events]
                    self.ledger.append(dry)
                    outcome.events += dry
                outcome.drift += decision.drift
                continue
            self.ledger.flush_journal(nacl_id)  # log lines a dead worker committed but never delivered
            first_look = self._decide(nacl_id, request)
            if not first_look.events and not first_look.ops:
                outcome.drift += first_look.drift  # foreign entries only: reported, never touched
                continue  # nothing to change: no lease taken, nothing written
            with self._lease(nacl_id) as lease:
                self._converge(nacl_id, request, lease, outcome)
        return outcome

    def _decide(self, nacl_id: str, request: _Request) -> _Decision:
        now = self._now()
        snapshot = self.gateway.describe([nacl_id])[nacl_id]
        records = self.ledger.denies(nacl_id)
        offences = self.ledger.offences(_offence_cidrs(request, records, now))
        return _Decider(self.config, snapshot, records, offences=offences, request=request, now=now).decide()

    def _converge(self, nacl_id: str, request: _Request, lease: Lease, outcome: _Outcome) -> None:
        """Read, decide, write the ledger, change the NACL; again from the top if anything moved under us."""
        for _ in range(_MAX_ROUNDS):
            decision = self._decide(nacl_id, request)
            try:
                self.ledger.put_offences(decision.offences)
                self.ledger.commit(decision.groups, lease=lease, now=decision.now)
            except LedgerConflict as exc:
                _log.info("%s: %s; reading again", nacl_id, exc)
                continue
            outcome.events += decision.events
            outcome.drift += decision.drift
            try:
                outcome.events += self._execute(nacl_id, decision.ops, lease)
            except EntryAlreadyExists as exc:
                # Another writer got to a rule number first (after a lease lapsed, or a person added an
                # entry mid-run): the ledger is already right, so read the NACL again and carry on from there.
                _log.warning("%s; reading again", exc)
                continue
            return
        raise EnforcementError(
            f"{nacl_id}: the ledger or the NACL kept changing during {_MAX_ROUNDS} attempts; run reconcile"
        )

    def _execute(self, nacl_id: str, ops: list[_EntryOp], lease: Lease) -> list[LogEvent]:
        """Run the entry changes in order. Returns REFUSED events for entries AWS would not take."""
        refused: list[LogEvent] = []
        for op in ops:
            self._check_lease(lease)
            if op.slot.kind is OpKind.DELETE:
                self.gateway.delete_entry(nacl_id, rule=op.slot.rule, direction=op.direction)
                continue
            assert op.record is not None, "every created or replaced entry stands for a ledger deny"
            try:
                self._put_entry(nacl_id, op)
            except EntryLimitExceeded as exc:
                refused.append(self._withdraw(op.record, str(exc), lease))
        return refused

    def _put_entry(self, nacl_id: str, op: _EntryOp) -> None:
        if op.slot.kind is OpKind.REPLACE:
            try:
                self.gateway.replace_deny(
                    nacl_id, rule=op.slot.rule, cidr=op.slot.cidr, direction=op.direction
                )
                return
            except EntryNotFound:
                pass  # the wrong entry left meanwhile: create the right one instead
        self.gateway.create_deny(nacl_id, rule=op.slot.rule, cidr=op.slot.cidr, direction=op.direction)

    def _withdraw(self, record: DenyRecord, why: str, lease: Lease) -> LogEvent:
        """AWS refused an entry (its quota is lower than ours): take the deny back out of the ledger."""
        _log.error("%s; raise the NACL rules quota or lower the budget", why)
        event = LogEvent(
            EventKind.REFUSED,
            self._now(),
            record.cidr,
            f"AWS refused the entry ({why}): the account's rules-per-NACL quota is below "
            f"{self.config.nacl_quota}; raise it or lower the budget",
            self.actor,
            nacl_id=record.nacl_id,
            direction=record.direction,
            rule=record.rule,
            origin=record.origin,
            evidence=record.evidence,
        )
        self.ledger.commit([[DropDeny(record), AppendEvent(event)]], lease=lease, now=self._now())
        return event

    # -- leases ----------------------------------------------------------------------------------------

    @contextmanager
    def _lease(self, nacl_id: str) -> Iterator[Lease]:
        deadline = time.monotonic() + self.config.lease_wait_s
        while True:
            lease = self.ledger.try_acquire(
                nacl_id, actor=self.actor, now=self._now(), lease_s=self.config.lease_s
            )
            if lease is not None:
                break
            if time.monotonic() >= deadline:
                raise NaclBusy(
                    f"{nacl_id} is being changed by another worker; gave up after "
                    f"{self.config.lease_wait_s:.0f}s (its lease lapses within {self.config.lease_s:.0f}s)"
                )
            time.sleep(self._rng.uniform(0.02, 0.1))
        try:
            yield lease
        finally:
            try:
                self.ledger.release(lease)
            except Exception:
                # Never mask the operation's own outcome: an unreleased lease lapses by itself.
                _log.warning("could not release the lease on %s; it lapses by itself", nacl_id, exc_info=True)

    def _check_lease(self, lease: Lease) -> None:
        margin = min(_LEASE_MARGIN_S, self.config.lease_s / 4)
        if lease.until - self._now() < margin:
            raise LeaseLost(f"{lease.nacl_id}: lease about to lapse; stopping before the next NACL change")

    # -- helpers ---------------------------------------------------------------------------------------

    def _mode(self, dry_run: bool | None) -> _Mode:
        return _Mode.DRY_RUN if (self.config.dry_run if dry_run is None else dry_run) else _Mode.WRITE

    def _snapshots(self) -> dict[str, NaclSnapshot]:
        if self.config.nacl_ids:
            return self.gateway.describe(self.config.nacl_ids)
        assert self.config.vpc_id is not None  # EnforcementConfig requires one target or the other
        return self.gateway.describe_vpc(self.config.vpc_id)

    def _screen(self, wanted: dict[str, _Want], *, actor: str, mode: _Mode) -> list[LogEvent]:
        """Drop wanted denies the policy refuses (protected, too wide), logging REFUSED for each."""
        refused: list[LogEvent] = []
        for cidr in sorted(wanted):
            reason = self.config.policy.refusal(parse_network(cidr))
            if reason is None:
                continue
            want = wanted.pop(cidr)
            refused.append(
                LogEvent(
                    EventKind.REFUSED,
                    self._now(),
                    cidr,
                    reason,
                    actor,
                    origin=want.origin,
                    evidence=want.evidence,
                )
            )
        if mode is _Mode.DRY_RUN:
            refused = [_as_dry_run(event) for event in refused]
        if refused:
            self.ledger.append(refused)
        return refused

    def _problems(self, snapshot: NaclSnapshot) -> list[str]:
        """Why Floodgate must not add entries to this NACL, each with the fix."""
        problems: list[str] = []
        move = f"or set FLOODGATE_RULE_START to a free block of {2 * (self.config.budget + 1)} rule numbers"
        for pool in self.config.pools:
            where = f"{snapshot.nacl_id} {pool.direction} IPv{pool.family}"
            inside = snapshot.in_rules(pool.direction, pool.rules)
            for entry in inside.values():
                if not entry.is_deny_all_from(pool.family):
                    problems.append(
                        f"{snapshot.nacl_id}: {entry.describe()} sits inside Floodgate's {pool.label}; "
                        f"move it out {move}"
                    )
            same_kind = _counted_entries(snapshot, pool)
            allows = [e for e in same_kind if e.action == "allow" and e.rule not in inside]
            first_allow = min(allows, key=lambda e: e.rule, default=None)
            if first_allow is not None and first_allow.rule < pool.first_rule:
                problems.append(
                    f"{where}: allow rule {first_allow.rule} ({first_allow.cidr}) is evaluated before "
                    f"Floodgate's rules {pool.first_rule}-{pool.last_rule}, so its denies would never "
                    f"match; renumber the allow rules above {self.config.rule_end} {move} below "
                    f"{first_allow.rule}"
                )
            others = sum(1 for e in same_kind if e.rule not in pool.rules)
            needed = others + 1 + self.config.budget + 1
            if needed > self.config.nacl_quota:
                problems.append(
                    f"{where}: {others} existing entries + 1 default rule + budget {self.config.budget} + "
                    f"1 spare = {needed} rules, over the quota of {self.config.nacl_quota}; lower "
                    f"FLOODGATE_BUDGET to {max(0, self.config.nacl_quota - others - 2)} or remove entries "
                    "(or raise the AWS quota, at most 40, and FLOODGATE_NACL_QUOTA with it)"
                )
        return problems

    def _pool_status(self, snapshot: NaclSnapshot, pool: Pool, records: list[DenyRecord]) -> PoolStatus:
        inside = snapshot.in_rules(pool.direction, pool.rules)
        return PoolStatus(
            pool=pool,
            budget=self.config.budget,
            held=sum(1 for r in records if r.direction is pool.direction and r.rule in pool.rules),
            entries=sum(1 for e in inside.values() if e.is_deny_all_from(pool.family)),
            rules_used=len(_counted_entries(snapshot, pool)) + 1,
            quota=self.config.nacl_quota,
        )

    def _result(
        self,
        operation: str,
        mode: _Mode,
        snapshots: Mapping[str, NaclSnapshot],
        outcome: _Outcome,
        *,
        problems: Iterable[str] = (),
    ) -> EnforcementResult:
        return EnforcementResult(
            operation=operation,
            dry_run=mode is not _Mode.WRITE,
            nacl_ids=tuple(snapshots),
            events=tuple(outcome.events),
            drift=tuple(outcome.drift),
            problems=tuple(problems),
        )


class _Decider:
    """Decides one NACL: renewals, expiries and removals first, then each pool's slots; collects the ledger
    writes (grouped with their log events), the entry changes and the drift found."""

    def __init__(
        self,
        config: EnforcementConfig,
        snapshot: NaclSnapshot,
        records: list[DenyRecord],
        *,
        offences: Mapping[str, OffenceRecord],
        request: _Request,
        now: float,
    ) -> None:
        self.config = config
        self.bans = config.bans
        self.snapshot = snapshot
        self.nacl_id = snapshot.nacl_id
        self.request = request
        self.now = now
        self.original: dict[RuleKey, DenyRecord] = {(r.direction, r.rule): r for r in records}
        self.final: dict[RuleKey, DenyRecord | None] = {}  # changed rule keys: new record, or None if dropped
        self.offences_read = dict(offences)
        self.offences_final: dict[str, OffenceRecord] = {}
        self.events: list[LogEvent] = []
        self.event_keys: dict[str, RuleKey] = {}  # event id -> rule key it belongs with
        self.ops: list[_EntryOp] = []
        self.drift: list[Drift] = []
        self.terms: dict[str, tuple[float, int]] = {}  # CIDR -> (expires, offences) of its new placements
        self.placed: set[RuleKey] = set()
        self._tick = 0

    def decide(self) -> _Decision:
        held = self._decide_bans()
        for pool in self.config.pools:
            self._decide_pool(pool, held)
        offences = [
            PutOffence(record, replaces=self.offences_read.get(cidr))
            for cidr, record in self.offences_final.items()
        ]
        return _Decision(self.now, offences, self._groups(), self.events, self.ops, self.drift)

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
                if decision.outcome is Outcome.EXPIRE:
                    self._drop(record, EventKind.EXPIRE, decision.reason)
                    continue
                evidence = dataclasses.replace(
                    record.evidence, reject_pps=self.request.reject_pps.get(record.cidr)
                )
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

    def _renew(self, record: DenyRecord, want: _Want) -> DenyRecord:
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
        if decision.outcome is Outcome.KEEP:
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
            write_id=_new_id(),
        )
        key = (record.direction, record.rule)
        self.final[key] = extended
        self._event(EventKind.EXTEND, extended, reason, key)
        base = self._offence(record.cidr) or _offence_of(record, self.bans)
        if expires > base.ban_until:
            self._set_offence(
                dataclasses.replace(base, ban_until=expires, remember_until=self.bans.remember_until(expires))
            )
        return extended

    def _drop(self, record: DenyRecord, kind: EventKind, reason: str) -> None:
        key = (record.direction, record.rule)
        self.final[key] = None
        self._event(kind, record, reason, key)

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
        foreign = {rule for rule, entry in inside.items() if not entry.is_deny_all_from(pool.family)}
        for rule in sorted(foreign):
            self.drift.append(
                Drift(
                    DriftKind.FOREIGN,
                    self.nacl_id,
                    pool.direction,
                    rule,
                    inside[rule].cidr,
                    inside[rule].describe(),
                )
            )
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
            write_id=_new_id(),
        )
        key = (pool.direction, rule)
        self.final[key] = record
        self.placed.add(key)
        found = "; the entry was already in place" if adopted else ""
        reason = f"{want.reason}; offence {offences}, denied for {format_duration(expires - self.now)}{found}"
        self._event(EventKind.BLOCK, record, reason, key)

    def _terms(self, cidr: str, want: _Want) -> tuple[float, int]:
        """Expiry and offence count of a new placement: those of the source's running ban when it has one
        (another direction, another NACL, or back after an eviction), else a new offence."""
        if cidr in self.terms:
            return self.terms[cidr]
        running = [
            current
            for key, original in self.original.items()
            if (current := self.final.get(key, original)) is not None
            and current.cidr == cidr
            and not current.expired(self.now)
        ]
        record = self._offence(cidr)
        history = OffenceHistory(record.count, record.ban_until) if record else None
        if running or (record is not None and history is not None and history.ban_running(self.now)):
            if running:
                expires, offences = max(r.expires for r in running), max(r.offences for r in running)
            else:
                assert record is not None  # the condition above
                expires, offences = record.ban_until, record.count
            # A person's block asks for its ban time from now: a running ban is lengthened, never shortened.
            if want.origin.kind is OriginKind.MANUAL:
                asked = self.now + (want.ttl_s or self.bans.ban_time(offences))
                if asked > expires:
                    expires = asked
                    if record is not None:
                        self._set_offence(
                            dataclasses.replace(
                                record, ban_until=expires, remember_until=self.bans.remember_until(expires)
                            )
                        )
            terms = (expires, offences)
        else:
            offences = self.bans.offence_number(history, self.now)
            expires = self.now + (want.ttl_s or self.bans.ban_time(offences))
            self._set_offence(
                OffenceRecord(
                    cidr=cidr,
                    count=offences,
                    ban_started=self.now,
                    ban_until=expires,
                    remember_until=self.bans.remember_until(expires),
                    write_id=_new_id(),
                )
            )
            terms = (expires, offences)
        self.terms[cidr] = terms
        return terms

    def _label_ops(self, pool: Pool, plan: PoolPlan, inside: Mapping[int, str]) -> None:
        """Queue the pool's entry changes; those no ledger change explains are repairs of drift."""
        for slot in plan.ops:
            key = (pool.direction, slot.rule)
            record = self.final.get(key, self.original.get(key))
            if slot.kind is OpKind.DELETE:
                original = self.original.get(key)
                if original is None or original.cidr != slot.cidr or key not in self.final:
                    self._repair(
                        DriftKind.ORPHAN, pool, slot, f"entry {slot.cidr} has no ledger record: remove it"
                    )
                record = None
            elif slot.kind is OpKind.REPLACE:
                self._repair(
                    DriftKind.MISMATCH,
                    pool,
                    slot,
                    f"rule {slot.rule} denies {inside.get(slot.rule)} instead of the ledger's {slot.cidr}: "
                    "replace it",
                )
            elif key not in self.placed:
                self._repair(DriftKind.MISSING, pool, slot, "ledger deny missing from the NACL: re-create it")
            self.ops.append(_EntryOp(pool.direction, slot, record))

    def _repair(self, kind: DriftKind, pool: Pool, slot: SlotOp, detail: str) -> None:
        self.drift.append(Drift(kind, self.nacl_id, pool.direction, slot.rule, slot.cidr, detail))
        record = self.final.get((pool.direction, slot.rule)) or self.original.get((pool.direction, slot.rule))
        origin = record.origin if record and record.cidr == slot.cidr else None
        self._event_for(
            EventKind.REPAIR, slot.cidr, detail, direction=pool.direction, rule=slot.rule, origin=origin
        )

    # -- offences, events, grouping ---------------------------------------------------------------------

    def _offence(self, cidr: str) -> OffenceRecord | None:
        return self.offences_final.get(cidr) or self.offences_read.get(cidr)

    def _set_offence(self, record: OffenceRecord) -> None:
        self.offences_final[record.cidr] = dataclasses.replace(record, write_id=_new_id())

    def _event(self, kind: EventKind, record: DenyRecord, reason: str, key: RuleKey) -> None:
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
            evidence=record.evidence,
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

    def _groups(self) -> list[list[LedgerWrite]]:
        """Ledger writes in transaction groups: each rule's change with its log events, so that a committed
        change always has its log lines; events tied to no rule (refusals) form groups of their own."""
        by_key: dict[RuleKey, list[LedgerWrite]] = {}
        for key, record in self.final.items():
            original = self.original.get(key)
            if record is None:
                if original is not None:
                    by_key.setdefault(key, []).append(DropDeny(original))
            elif record is not original:
                by_key.setdefault(key, []).append(PutDeny(record, replaces=original))
        loose: list[list[LedgerWrite]] = []
        for event in self.events:
            event_key = self.event_keys.get(event.event_id)
            if event_key is None:
                loose.append([AppendEvent(event)])
            else:
                by_key.setdefault(event_key, []).append(AppendEvent(event))
        return [by_key[key] for key in sorted(by_key)] + loose


def _counted_entries(snapshot: NaclSnapshot, pool: Pool) -> list[NaclEntry]:
    """The NACL's entries that count against the quota alongside the pool's: same direction and address
    family, the unchangeable default rule aside."""
    return [
        e
        for e in snapshot.entries
        if e.direction is pool.direction and e.family == pool.family and not e.is_default
    ]


def _offence_cidrs(request: _Request, records: list[DenyRecord], now: float) -> list[str]:
    """Sources whose offence record a decision may need: new or renewed bans, ended or extended ones."""
    cidrs = set(request.wanted) | set(request.remove)
    if request.expire_due:
        cidrs |= {r.cidr for r in records if r.expired(now)}
    return sorted(cidrs)


def _offence_of(record: DenyRecord, bans: BanPolicy) -> OffenceRecord:
    """The offence record a held deny implies, for a source whose record is gone (TTL, or never written)."""
    return OffenceRecord(
        cidr=record.cidr,
        count=record.offences,
        ban_started=record.created,
        ban_until=record.expires,
        remember_until=bans.remember_until(record.expires),
        write_id=_new_id(),
    )


def _as_dry_run(event: LogEvent) -> LogEvent:
    return dataclasses.replace(event, kind=EventKind.DRYRUN, would=event.kind)


def _canonical_rates(rates: Mapping[str, float] | None) -> dict[str, float]:
    return {canonical(cidr): float(rate) for cidr, rate in (rates or {}).items()}


def _family(cidr: str) -> int:
    return ipaddress.ip_network(cidr).version


def _new_id() -> str:
    return uuid.uuid4().hex
