"""The enforcement engine: deny plans and manual requests in, NACL deny entries, ledger and deny log out.

This is the one place the handlers and the CLI call. Every operation works NACL by NACL, under that NACL's
lease, in three steps:

1. read the NACL and the ledger, and decide (pure: `core.decision`);
2. write the decision to the ledger, its log events riding in the same transactions, fenced by the lease;
3. change the NACL entries, new ones before leaving ones (make-before-break).

The ledger is written before the NACL, always. A worker that dies between 2 and 3 leaves a ledger that says
what the NACL should hold, and the next run puts the NACL right (REPAIR): an entry in the owned range without
a ledger record is removed, a ledger deny missing from the NACL is re-created while still valid. Entries
outside the owned range, and entries inside it that are not Floodgate's shape, are never touched.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from floodgate.adapters.ledger import Lease, LeaseLost, Ledger, LedgerConflict
from floodgate.adapters.nacl import EntryAlreadyExists, EntryLimitExceeded, EntryNotFound, NaclGateway
from floodgate.core.decision import (
    Decision,
    DeleteEntry,
    Drift,
    EnforcementConfig,
    EntryChange,
    PutEntry,
    Request,
    Want,
    decide,
)
from floodgate.core.model import DenyPlan, PlannedDeny
from floodgate.core.nacl import NaclEntry, NaclSnapshot
from floodgate.core.networks import address_family, canonical, parse_network
from floodgate.core.records import AppendEvent, DenyRecord, DropDeny, EventKind, Evidence, LogEvent, Origin
from floodgate.core.slots import PINNED, Pool

_log = logging.getLogger(__name__)

_MAX_ROUNDS = 4  # read-decide-write rounds per NACL before giving up on a ledger or NACL that keeps changing
_LEASE_MARGIN_S = 5.0  # no NACL write starts with less lease than this left (or a quarter of the lease)


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


class _Mode(StrEnum):
    WRITE = "write"
    DRY_RUN = "dry-run"  # decide, log DRYRUN events, change nothing else
    INSPECT = "inspect"  # decide, write nothing at all


@dataclass(slots=True)
class _Findings:
    """What an operation found across its NACLs, collected as it goes."""

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
        wanted: dict[str, Want] = {}
        for planned in denies:
            cidr = canonical(planned.cidr)
            evidence = Evidence(planned.pps, planned.bps, planned.share, planned.members, rejects.get(cidr))
            value = max(planned.pps, rejects.get(cidr, 0.0))
            if cidr not in wanted or wanted[cidr].value < value:
                wanted[cidr] = Want(cidr, address_family(cidr), value, evidence, planned.reason, source)
        mode = self._mode(dry_run)
        snapshots = self.preflight()
        refused = self._screen(wanted, actor=self.actor, mode=mode)
        request = Request(self.actor, wanted=wanted, reject_pps=rejects)
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
        want = Want(
            str(network), network.version, PINNED, Evidence(), reason, Origin.manual(actor), ttl_s=ttl_s
        )
        wanted = {want.cidr: want}
        refused = self._screen(wanted, actor=actor, mode=mode)
        if refused:
            result = self._result("block", mode, snapshots, _Findings(events=refused))
            raise BlockRefused(f"{want.cidr} refused: {refused[0].reason}", result)
        outcome = self._converge_all(snapshots, Request(actor, wanted=wanted), mode)
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
        request = Request(actor, remove={target: f"unblocked by {actor}: {reason}"})
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
        request = Request(self.actor, reject_pps=_canonical_rates(reject_pps), expire_due=True)
        outcome = self._converge_all(snapshots, request, mode)
        return self._result("expire", mode, snapshots, outcome)

    def reconcile(self, *, dry_run: bool = False) -> EnforcementResult:
        """Put each NACL's owned range back in line with the ledger (REPAIR), and report foreign entries.

        With `dry_run`, only report: nothing is written, not even to the log. A deployment in dry-run mode
        repairs in dry run too (DRYRUN events, NACLs untouched), so a pause by configuration holds.
        """
        mode = _Mode.INSPECT if dry_run else self._mode(None)
        snapshots = self._snapshots()
        outcome = self._converge_all(snapshots, Request(self.actor), mode)
        problems = [problem for snapshot in snapshots.values() for problem in self._problems(snapshot)]
        return self._result("reconcile", mode, snapshots, outcome, problems=problems)

    def status(self) -> Status:
        """Per NACL: pools used against budget and quota, the denies held, drift and preflight problems."""
        now = self._now()
        nacls: list[NaclStatus] = []
        for nacl_id, snapshot in self._snapshots().items():
            records = self.ledger.denies(nacl_id)
            decision = decide(self.config, snapshot, records, {}, Request(self.actor), now=now)
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
        self, snapshots: Mapping[str, NaclSnapshot], request: Request, mode: _Mode
    ) -> _Findings:
        outcome = _Findings()
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
            if not first_look.changes_anything:
                outcome.drift += first_look.drift  # foreign entries only: reported, never touched
                continue  # nothing to change: no lease taken, nothing written
            with self._lease(nacl_id) as lease:
                self._converge(nacl_id, request, lease, outcome)
        return outcome

    def _decide(self, nacl_id: str, request: Request) -> Decision:
        now = self._now()
        snapshot = self.gateway.describe([nacl_id])[nacl_id]
        records = self.ledger.denies(nacl_id)
        offences = self.ledger.offences(request.offence_cidrs(records, now))
        return decide(self.config, snapshot, records, offences, request, now=now)

    def _converge(self, nacl_id: str, request: Request, lease: Lease, outcome: _Findings) -> None:
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
                outcome.events += self._execute(nacl_id, decision.changes, lease)
            except EntryAlreadyExists as exc:
                # Another writer got to a rule number first (after a lease lapsed, or a person added an
                # entry mid-run): the ledger is already right, so read the NACL again and carry on from there.
                _log.warning("%s; reading again", exc)
                continue
            return
        raise EnforcementError(
            f"{nacl_id}: the ledger or the NACL kept changing during {_MAX_ROUNDS} attempts; run reconcile"
        )

    def _execute(self, nacl_id: str, changes: Sequence[EntryChange], lease: Lease) -> list[LogEvent]:
        """Make the entry changes in order. Returns REFUSED events for entries AWS would not take."""
        refused: list[LogEvent] = []
        for change in changes:
            self._check_lease(lease)
            if isinstance(change, DeleteEntry):
                self.gateway.delete_entry(nacl_id, rule=change.rule, direction=change.direction)
                continue
            try:
                self._put_entry(nacl_id, change)
            except EntryLimitExceeded as exc:
                refused.append(self._withdraw(change.record, str(exc), lease))
        return refused

    def _put_entry(self, nacl_id: str, change: PutEntry) -> None:
        if change.replace:
            try:
                self.gateway.replace_deny(
                    nacl_id, rule=change.rule, cidr=change.cidr, direction=change.direction
                )
                return
            except EntryNotFound:
                pass  # the wrong entry left meanwhile: create the right one instead
        self.gateway.create_deny(nacl_id, rule=change.rule, cidr=change.cidr, direction=change.direction)

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

    def _screen(self, wanted: dict[str, Want], *, actor: str, mode: _Mode) -> list[LogEvent]:
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
        outcome: _Findings,
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


def _counted_entries(snapshot: NaclSnapshot, pool: Pool) -> list[NaclEntry]:
    """The NACL's entries that count against the quota alongside the pool's: same direction and address
    family, the unchangeable default rule aside."""
    return [
        e
        for e in snapshot.entries
        if e.direction is pool.direction and e.family == pool.family and not e.is_default
    ]


def _as_dry_run(event: LogEvent) -> LogEvent:
    return dataclasses.replace(event, kind=EventKind.DRYRUN, would=event.kind)


def _canonical_rates(rates: Mapping[str, float] | None) -> dict[str, float]:
    return {canonical(cidr): float(rate) for cidr, rate in (rates or {}).items()}
