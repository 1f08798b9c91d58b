"""The enforcement engine: deny plans and manual requests in, NACL deny entries, ledger and deny log out.

This is the one place the handlers and the CLI call. Every operation works NACL by NACL, under that NACL's
lease, in three steps:

1. read the NACL and the ledger, and decide (pure: `core.decision`);
2. write the decision to the ledger, its log events riding in the same transactions (in a journal), fenced
   by the lease;
3. change the NACL entries, new ones before leaving ones (make-before-break);
4. deliver the log events as the entry changes turned out: a line saying an entry went in whose entry was not
   written is PENDING (`core.decision.settle_events`), and a PENDING mark makes the run that writes it say
   BLOCK. Journals a dead worker left are delivered by the next run, settled against the NACL.

The ledger is written before the NACL, always. A worker that dies between 2 and 3 leaves a ledger that says
what the NACL should hold, and the next run puts the NACL right (REPAIR): an entry whose deny left the
ledger (it carries an OWNED mark until it is gone) is removed, a ledger deny missing from the NACL is
re-created while still valid. Entries Floodgate did not write are never deleted or replaced, wherever they
are: inside the owned range they are reported (FOREIGN, once) and their rule numbers skipped.

Isolation: each NACL is converged on its own; an error on one is reported (`EnforcementResult.failures`) and
the others carry on. An entry EC2 refuses as invalid is quarantined (its deny dropped, QUARANTINE logged),
never retried; an entry change EC2 refuses otherwise is reported as FAILED drift and the other changes go on.
A delete is made only after looking that the entry is still the one expected, and every NACL call starts, and
is retried, only while the lease has more left than one call may take (`Leases.margin_s`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from botocore.exceptions import BotoCoreError, ClientError

from floodgate.adapters.ledger import Journal, Lease, LeaseLost, Ledger, LedgerConflict, LedgerError
from floodgate.adapters.nacl import (
    EntryAlreadyExists,
    EntryLimitExceeded,
    EntryNotFound,
    EntryRejected,
    NaclError,
    NaclGateway,
)
from floodgate.adapters.retry import NoTimeLeft, error_code, is_transient
from floodgate.core.decision import (
    Decision,
    DeleteEntry,
    Drift,
    DriftKind,
    EnforcementConfig,
    EntryChange,
    EntryKey,
    PutEntry,
    Request,
    Want,
    decide,
    settle_events,
)
from floodgate.core.model import DenyPlan, PlannedDeny
from floodgate.core.nacl import NaclSnapshot
from floodgate.core.networks import address_family, canonical, parse_network
from floodgate.core.records import (
    AppendEvent,
    DenyRecord,
    DropDeny,
    DropMark,
    EntryMark,
    EventKind,
    Evidence,
    LogEvent,
    MarkKind,
    Origin,
)
from floodgate.core.slots import PINNED
from floodgate.engine.leases import Leases
from floodgate.engine.preflight import pool_status, problems_of
from floodgate.engine.results import (
    BlockRefused,
    EnforcementError,
    EnforcementResult,
    NaclStatus,
    NotBlocked,
    PreflightError,
    Status,
)

_log = logging.getLogger(__name__)

_MAX_ROUNDS = 4  # read-decide-write rounds per NACL before giving up on a ledger or NACL that keeps changing


class _Mode(StrEnum):
    WRITE = "write"
    DRY_RUN = "dry-run"  # decide, log DRYRUN events, change nothing else
    INSPECT = "inspect"  # decide, write nothing at all


@dataclass(slots=True)
class _Findings:
    """What an operation found across its NACLs, collected as it goes."""

    events: list[LogEvent] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # NACL id -> why its convergence failed
    would_change: set[str] = field(default_factory=set)  # NACLs a write would change (dry runs, inspection)
    problems: list[str] = field(default_factory=list)  # preflight problems of NACLs left out


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
        self.leases = Leases(
            ledger,
            actor=actor,
            lease_s=config.lease_s,
            wait_s=config.lease_wait_s,
            now=now,
            call_budget_s=gateway.call_budget_s,
        )

    # -- operations ----------------------------------------------------------------------------------------

    def _fit(self) -> tuple[dict[str, NaclSnapshot], list[str]]:
        """The target NACLs fit for new entries, and the problems of the others (each with its fix). An unfit
        NACL never holds up the fit ones; raises PreflightError when none is fit."""
        snapshots = self._snapshots()
        fit: dict[str, NaclSnapshot] = {}
        problems: list[str] = []
        for nacl_id, snapshot in snapshots.items():
            found = problems_of(self.config, snapshot)
            if found:
                problems += found
            else:
                fit[nacl_id] = snapshot
        if not fit:
            raise PreflightError(problems)
        for problem in problems:
            _log.error("left out: %s", problem)
        return fit, problems

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
        snapshots, problems = self._fit()
        refused = self._screen(wanted, actor=self.actor, mode=mode)
        request = Request(self.actor, wanted=wanted, reject_pps=rejects)
        outcome = self._converge_all(snapshots, request, mode)
        outcome.events[:0] = refused
        outcome.problems += problems
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
        snapshots, problems = self._fit()
        want = Want(
            str(network), network.version, PINNED, Evidence(), reason, Origin.manual(actor), ttl_s=ttl_s
        )
        wanted = {want.cidr: want}
        refused = self._screen(wanted, actor=actor, mode=mode)
        if refused:
            result = self._result("block", mode, snapshots, _Findings(events=refused))
            raise BlockRefused(f"{want.cidr} refused: {refused[0].reason}", result)
        outcome = self._converge_all(snapshots, Request(actor, wanted=wanted), mode)
        outcome.problems += problems
        result = self._result("block", mode, snapshots, outcome)
        went_in = result.of_kind(EventKind.BLOCK, EventKind.EXTEND, EventKind.PENDING)
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
        outcome.problems += [
            problem for snapshot in snapshots.values() for problem in problems_of(self.config, snapshot)
        ]
        return self._result("reconcile", mode, snapshots, outcome)

    def status(self) -> Status:
        """Per NACL: pools used against budget and quota, the denies held, drift and preflight problems."""
        now = self._now()
        nacls: list[NaclStatus] = []
        for nacl_id, snapshot in self._snapshots().items():
            records = self.ledger.denies(nacl_id)
            marks = self.ledger.marks(nacl_id)
            decision = decide(self.config, snapshot, records, {}, Request(self.actor), now=now, marks=marks)
            pools = tuple(pool_status(self.config, snapshot, pool, records) for pool in self.config.pools)
            nacls.append(
                NaclStatus(
                    nacl_id=nacl_id,
                    vpc_id=snapshot.vpc_id,
                    pools=pools,
                    denies=tuple(records),
                    drift=tuple(decision.drift),
                    problems=tuple(problems_of(self.config, snapshot)),
                    lease=self.ledger.lease_of(nacl_id, now),
                    pending=tuple(
                        r.cidr for r in records if not r.expired(now) and not _entry_in(snapshot, r)
                    ),
                )
            )
        return Status(at=now, dry_run=self.config.dry_run, nacls=tuple(nacls))

    # -- per-NACL convergence ---------------------------------------------------------------------------

    def _converge_all(
        self, snapshots: Mapping[str, NaclSnapshot], request: Request, mode: _Mode
    ) -> _Findings:
        outcome = _Findings()
        for nacl_id in snapshots:
            try:
                self._converge_one(nacl_id, request, mode, outcome)
            except (EnforcementError, NaclError, LedgerError, NoTimeLeft, ClientError, BotoCoreError) as exc:
                # One NACL's trouble is reported, and never stops the others.
                _log.error("%s: %s; the other NACLs carry on", nacl_id, exc)
                outcome.failures[nacl_id] = f"{type(exc).__name__}: {exc}"[:500]
        return outcome

    def _converge_one(self, nacl_id: str, request: Request, mode: _Mode, outcome: _Findings) -> None:
        if mode is not _Mode.WRITE:
            decision = self._decide(nacl_id, request)
            if mode is _Mode.DRY_RUN and decision.events:
                dry = [_as_dry_run(event) for event in decision.events]
                self.ledger.append(dry)
                outcome.events += dry
            outcome.drift += decision.drift
            if decision.changes_anything:
                outcome.would_change.add(nacl_id)
            return
        self._deliver_left_journals(nacl_id)
        first_look = self._decide(nacl_id, request)
        if not first_look.changes_anything:
            outcome.drift += first_look.drift  # foreign entries already reported: never touched
            return  # nothing to change: no lease taken, nothing written
        with self.leases.held(nacl_id) as lease:
            self._converge(nacl_id, request, lease, outcome)

    def _decide(self, nacl_id: str, request: Request) -> Decision:
        now = self._now()
        snapshot = self.gateway.describe([nacl_id])[nacl_id]
        records = self.ledger.denies(nacl_id)
        marks = self.ledger.marks(nacl_id)
        offences = self.ledger.offences(request.offence_cidrs(records, now))
        return decide(self.config, snapshot, records, offences, request, now=now, marks=marks)

    def _deliver_left_journals(self, nacl_id: str) -> None:
        """Deliver the log lines a worker committed and never delivered (it died, or its lease ran out),
        settled against the NACL: a line saying an entry went in whose entry is not there is PENDING."""
        journals = self.ledger.journals(nacl_id, now=self._now())
        if not journals:
            return
        snapshot = self.gateway.describe([nacl_id])[nacl_id]
        unwritten = {
            (r.direction, r.rule, r.cidr): "the worker stopped before writing it"
            for r in self.ledger.denies(nacl_id)
            if not _entry_in(snapshot, r)
        }
        for journal in journals:
            settled = settle_events(journal.events, unwritten)
            self.ledger.put_marks(_pending_marks(settled))
            self.ledger.deliver(journal, settled)

    def _converge(self, nacl_id: str, request: Request, lease: Lease, outcome: _Findings) -> None:
        """Read, decide, write the ledger, change the NACL, log what came of it; again from the top if
        anything moved under us."""
        for _ in range(_MAX_ROUNDS):
            decision = self._decide(nacl_id, request)
            try:
                self.ledger.put_offences(decision.offences)
                journals = self.ledger.commit(decision.groups, lease=lease, now=decision.now, deliver=False)
            except LedgerConflict as exc:
                _log.info("%s: %s; reading again", nacl_id, exc)
                continue
            outcome.drift += decision.drift
            progress = _Progress.of(decision)
            try:
                extra = self._execute(nacl_id, decision, lease, outcome, progress)
            except EntryAlreadyExists as exc:
                # Another writer got to a rule number first (after a lease lapsed, or a person added an
                # entry mid-run): the ledger is already right, so read the NACL again and carry on from there.
                _log.warning("%s; reading again", exc)
                progress.stopped(f"another entry took its rule meanwhile: {exc}")
                outcome.events += self._deliver(journals, progress)
                continue
            except Exception:
                progress.stopped("the run stopped before writing it")
                try:
                    outcome.events += self._deliver(journals, progress)
                except Exception:
                    # Never mask the failure itself: the journals stay, and the next run delivers them.
                    _log.warning("%s: log lines left for the next run", nacl_id, exc_info=True)
                raise
            outcome.events += self._deliver(journals, progress) + extra
            return
        raise EnforcementError(
            f"{nacl_id}: the ledger or the NACL kept changing during {_MAX_ROUNDS} attempts; run reconcile"
        )

    def _deliver(self, journals: Sequence[Journal], progress: _Progress) -> list[LogEvent]:
        """Log the decision's events as they turned out (`settle_events`), PENDING marks first (so a worker
        dying in between leaves a journal the next run settles the same way). Returns the events logged."""
        delivered: list[LogEvent] = []
        for journal in journals:
            settled = settle_events(journal.events, progress.unwritten, progress.dropped)
            self.ledger.put_marks(_pending_marks(settled))
            self.ledger.deliver(journal, settled)
            delivered += settled
        return delivered

    def _execute(
        self, nacl_id: str, decision: Decision, lease: Lease, outcome: _Findings, progress: _Progress
    ) -> list[LogEvent]:
        """Make the entry changes in order, noting in `progress` each entry written. Returns the events of
        entries AWS would not take (REFUSED over quota, QUARANTINE when invalid). A change EC2 refuses for
        another lasting reason is reported as FAILED drift and the next change goes on; the NACL then counts
        as failed."""
        written: list[LogEvent] = []  # events of entries AWS would not take
        failed: list[str] = []
        deleted: list[DropMark] = []
        looked: NaclSnapshot | None = None  # the NACL as seen after the puts, just before the deletes
        changes = decision.changes
        # Events of what happened to the entries come after the decision's own (a microsecond apart each).
        after = decision.now + 1e-3
        for change in changes:
            try:
                self.leases.check(lease)
            except LeaseLost:
                progress.stopped("the lease ran short before it was written")
                raise
            keep_going = self.leases.margin_left(lease)
            try:
                if isinstance(change, DeleteEntry):
                    looked = looked or self.gateway.describe([nacl_id])[nacl_id]
                    deleted.append(self._delete_entry(nacl_id, change, lease, looked))
                    continue
                try:
                    self._put_entry(nacl_id, change, keep_going)
                    progress.written(change)
                except EntryLimitExceeded as exc:
                    written.append(self._withdraw(change.record, str(exc), lease, after))
                    progress.refused(change)
                except EntryRejected as exc:
                    written.append(self._quarantine(change.record, str(exc), lease, after))
                    progress.refused(change)
            except NoTimeLeft as exc:
                # The lease's margin ran out while EC2 kept failing: the deny stays in the ledger, pending,
                # and the next run (the expirer's drift check) writes its entry.
                why = f"{exc} (the lease's margin ran out)"
                progress.not_written(change, why)
                status = "pending" if isinstance(change, PutEntry) else "not done, the next run retries"
                failed.append(self._failed(nacl_id, change, f"{status}: {why}", outcome))
            except ClientError as exc:
                if not is_transient(exc):
                    progress.not_written(change, f"EC2 refused it: {error_code(exc) or exc}")
                    failed.append(self._failed(nacl_id, change, str(exc), outcome))
                    continue
                # Retried as long as the backoff allowed: pending, as above.
                why = f"EC2 kept failing ({error_code(exc) or type(exc).__name__})"
                progress.not_written(change, why)
                status = "pending" if isinstance(change, PutEntry) else "not done, the next run retries"
                failed.append(self._failed(nacl_id, change, f"{status}: {why}", outcome))
        if deleted:  # the entries are gone: their OWNED marks have served (a later decision drops any left)
            self.ledger.commit([deleted], lease=lease, now=self._now())
        if failed:
            outcome.failures[nacl_id] = "; ".join(failed)[:500]
        return written

    def _delete_entry(
        self, nacl_id: str, change: DeleteEntry, lease: Lease, looked: NaclSnapshot
    ) -> DropMark:
        """Delete the entry only if it is still the one the decision expects, as `looked` (read under this
        lease, with the lease checked again right before the call): a worker whose lease lapsed must not
        delete what a newer worker put there. Returns the drop of the entry's OWNED mark."""
        entry = looked.entry(change.direction, change.rule)
        if entry is not None and not entry.is_deny_of(change.cidr):
            raise EntryAlreadyExists(nacl_id, change.rule, change.direction, entry)  # read again
        self.leases.check(lease)
        if entry is not None:
            self.gateway.delete_entry(
                nacl_id,
                rule=change.rule,
                direction=change.direction,
                keep_going=self.leases.margin_left(lease),
            )
        return DropMark(EntryMark(MarkKind.OWNED, nacl_id, change.direction, change.rule, change.cidr))

    def _put_entry(self, nacl_id: str, change: PutEntry, keep_going: Callable[[], bool]) -> None:
        if change.replace:
            try:
                self.gateway.replace_deny(
                    nacl_id,
                    rule=change.rule,
                    cidr=change.cidr,
                    direction=change.direction,
                    keep_going=keep_going,
                )
                return
            except EntryNotFound:
                pass  # the wrong entry left meanwhile: create the right one instead
        self.gateway.create_deny(
            nacl_id, rule=change.rule, cidr=change.cidr, direction=change.direction, keep_going=keep_going
        )

    def _failed(self, nacl_id: str, change: EntryChange, why: str, outcome: _Findings) -> str:
        verb = "delete" if isinstance(change, DeleteEntry) else "put"
        text = f"{verb} {change.direction} rule {change.rule} ({change.cidr}): {why}"
        _log.error("%s: %s; the other changes carry on", nacl_id, text)
        outcome.drift.append(
            Drift(DriftKind.FAILED, nacl_id, change.direction, change.rule, change.cidr, why)
        )
        return text

    def _quarantine(self, record: DenyRecord, why: str, lease: Lease, after: float) -> LogEvent:
        """EC2 refused the entry as invalid: retrying cannot help, so the deny leaves the ledger for good
        rather than fail every run for its whole ban."""
        _log.error("%s: %s; quarantined", record.cidr, why)
        reason = f"EC2 refused the entry as invalid ({why}): deny dropped, not retried"
        return self._drop_refused(EventKind.QUARANTINE, record, reason, lease, after)

    def _withdraw(self, record: DenyRecord, why: str, lease: Lease, after: float) -> LogEvent:
        """AWS refused an entry (its quota is lower than ours): take the deny back out of the ledger."""
        _log.error("%s; raise the NACL rules quota or lower the budget", why)
        reason = (
            f"AWS refused the entry ({why}): the account's rules-per-NACL quota is below "
            f"{self.config.nacl_quota}; raise it or lower the budget"
        )
        return self._drop_refused(EventKind.REFUSED, record, reason, lease, after)

    def _drop_refused(
        self, kind: EventKind, record: DenyRecord, reason: str, lease: Lease, after: float
    ) -> LogEvent:
        """Drop a deny whose entry AWS would not take, with the log line that says why, in one commit."""
        event = LogEvent(
            kind,
            max(self._now(), after),
            record.cidr,
            reason,
            self.actor,
            nacl_id=record.nacl_id,
            direction=record.direction,
            rule=record.rule,
            origin=record.origin,
            evidence=record.evidence,
        )
        self.ledger.commit([[DropDeny(record), AppendEvent(event)]], lease=lease, now=self._now())
        return event

    # -- helpers ---------------------------------------------------------------------------------------

    def _mode(self, dry_run: bool | None) -> _Mode:
        return _Mode.DRY_RUN if (self.config.dry_run if dry_run is None else dry_run) else _Mode.WRITE

    def _snapshots(self) -> dict[str, NaclSnapshot]:
        if self.config.vpc_id is not None and not self.config.nacl_ids:
            return self.gateway.describe_vpc(self.config.vpc_id)
        return self.gateway.describe(self.config.nacl_ids)

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

    def _result(
        self,
        operation: str,
        mode: _Mode,
        snapshots: Mapping[str, NaclSnapshot],
        outcome: _Findings,
    ) -> EnforcementResult:
        return EnforcementResult(
            operation=operation,
            dry_run=mode is not _Mode.WRITE,
            nacl_ids=tuple(snapshots),
            events=tuple(outcome.events),
            drift=tuple(outcome.drift),
            problems=tuple(outcome.problems),
            failures=tuple(sorted(outcome.failures.items())),
            would_change=tuple(sorted(outcome.would_change)),
        )


@dataclass(slots=True)
class _Progress:
    """Which of a decision's entries were written, as its changes go: every entry it puts starts unwritten."""

    unwritten: dict[EntryKey, str]  # entry -> why it is not written (so far: not yet tried)
    dropped: set[EntryKey] = field(default_factory=set)  # entries AWS refused: their denies were dropped
    settled: set[EntryKey] = field(default_factory=set)  # entries whose outcome is known

    @classmethod
    def of(cls, decision: Decision) -> _Progress:
        puts = [change for change in decision.changes if isinstance(change, PutEntry)]
        return cls({_key_of(change): "not tried yet" for change in puts})

    def written(self, change: PutEntry) -> None:
        self.unwritten.pop(_key_of(change), None)
        self.settled.add(_key_of(change))

    def refused(self, change: PutEntry) -> None:
        self.unwritten.pop(_key_of(change), None)
        self.dropped.add(_key_of(change))
        self.settled.add(_key_of(change))

    def not_written(self, change: EntryChange, why: str) -> None:
        if isinstance(change, PutEntry):
            self.unwritten[_key_of(change)] = why
            self.settled.add(_key_of(change))

    def stopped(self, why: str) -> None:
        """The run stopped: the entries not tried yet will not be."""
        for key in self.unwritten.keys() - self.settled:
            self.unwritten[key] = why


def _key_of(change: PutEntry) -> EntryKey:
    return (change.direction, change.rule, change.cidr)


def _pending_marks(events: Iterable[LogEvent]) -> list[EntryMark]:
    """PENDING marks for the PENDING events among `events`: the run that writes their entries logs BLOCK."""
    return [
        EntryMark(MarkKind.PENDING, event.nacl_id, event.direction, event.rule, event.cidr)
        for event in events
        if event.kind is EventKind.PENDING
        and event.nacl_id is not None
        and event.direction is not None
        and event.rule is not None
    ]


def _entry_in(snapshot: NaclSnapshot, record: DenyRecord) -> bool:
    entry = snapshot.entry(record.direction, record.rule)
    return entry is not None and entry.is_deny_of(record.cidr)


def _as_dry_run(event: LogEvent) -> LogEvent:
    return dataclasses.replace(event, kind=EventKind.DRYRUN, would=event.kind)


def _canonical_rates(rates: Mapping[str, float] | None) -> dict[str, float]:
    return {canonical(cidr): float(rate) for cidr, rate in (rates or {}).items()}
