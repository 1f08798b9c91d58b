"""Per-NACL leases for the engine: one worker changes a NACL at a time, and stops before its lease lapses."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from floodgate.adapters.ledger import Lease, LeaseLost, Ledger
from floodgate.engine.results import NaclBusy

_log = logging.getLogger(__name__)

CLOCK_SLACK_S = 1.0  # between this worker's clock and DynamoDB's view of the lease, added to the margin


class Leases:
    """Takes NACL leases in the ledger for `actor`, waiting up to `wait_s` for another worker's to go.

    `call_budget_s` is the longest one NACL call may take (its client's timeouts): no NACL call starts, nor is
    retried, with less than that (plus clock slack) left of the lease, so every call ends within the lease.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        actor: str,
        lease_s: float,
        wait_s: float,
        now: Callable[[], float],
        call_budget_s: float,
    ) -> None:
        self.ledger = ledger
        self.actor = actor
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.margin_s = call_budget_s + CLOCK_SLACK_S
        if self.margin_s > lease_s / 2:
            raise ValueError(
                f"a NACL call may take {call_budget_s:g}s (the EC2 client's connect + read timeouts): too "
                f"long for a lease of {lease_s:g}s; keep the timeouts under {lease_s / 2 - CLOCK_SLACK_S:g}s"
            )
        self._now = now
        self._rng = random.Random()

    @contextmanager
    def held(self, nacl_id: str) -> Iterator[Lease]:
        deadline = time.monotonic() + self.wait_s
        while True:
            lease = self.ledger.try_acquire(nacl_id, actor=self.actor, now=self._now(), lease_s=self.lease_s)
            if lease is not None:
                break
            if time.monotonic() >= deadline:
                raise NaclBusy(
                    f"{nacl_id} is being changed by another worker; gave up after "
                    f"{self.wait_s:.0f}s (its lease lapses within {self.lease_s:.0f}s)"
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

    def check(self, lease: Lease) -> None:
        """Raise LeaseLost when too little of the lease is left to start another NACL change."""
        if lease.until - self._now() < self.margin_s:
            raise LeaseLost(f"{lease.nacl_id}: lease about to lapse; stopping before the next NACL change")

    def margin_left(self, lease: Lease) -> Callable[[], bool]:
        """Whether another NACL call may still start under `lease` (for the retries of one change)."""
        return lambda: lease.until - self._now() >= self.margin_s
