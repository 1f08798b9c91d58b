"""What the engine's operations return, and the errors they raise."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from floodgate.adapters.ledger import Lease
from floodgate.core.decision import Drift
from floodgate.core.records import DenyRecord, EventKind, LogEvent
from floodgate.core.slots import Pool


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
    failures: tuple[tuple[str, str], ...] = ()  # (NACL id, why) of NACLs whose convergence failed
    would_change: tuple[str, ...] = ()  # NACLs a write would change (dry runs and inspections)

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
    pending: tuple[str, ...] = ()  # CIDRs of ledger denies whose entry is not written yet (retried by a run)


@dataclass(frozen=True, slots=True)
class Status:
    at: float
    dry_run: bool
    nacls: tuple[NaclStatus, ...]
