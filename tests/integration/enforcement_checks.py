"""Invariants the enforcement tests check after concurrency and faults: NACL, ledger and log agree."""

from __future__ import annotations

from floodgate.core.records import EventKind
from floodgate.core.slots import Direction

from .conftest import START, EnforcerKit, VpcFixture

# Events that end a deny at its rule number (REFUSED: AWS refused an entry the ledger had taken).
ENDINGS = (EventKind.EVICT, EventKind.EXPIRE, EventKind.UNBLOCK, EventKind.REFUSED)


def owned_entries(kit: EnforcerKit, nacl_id: str, direction: Direction) -> dict[int, str]:
    """The NACL's entries inside Floodgate's owned block."""
    snapshot = kit.gateway.describe([nacl_id])[nacl_id]
    rules = range(kit.config.rule_start, kit.config.rule_end + 1)
    return {rule: entry.cidr for rule, entry in snapshot.in_rules(direction, rules).items()}


def assert_consistent(kit: EnforcerKit, vpc: VpcFixture, *, now: float) -> None:
    """Each NACL's owned block holds exactly the ledger's denies (none lost, none orphaned, one per rule
    number), and replaying the deny log gives back the ledger (no change without its log line)."""
    events = sorted(kit.ledger.events(since=START - 1, until=now + 1, now=now), key=lambda e: e.sort_key)
    for nacl_id in vpc.nacl_ids:
        for direction in kit.config.directions:
            ledger = {d.rule: d.cidr for d in kit.ledger.denies(nacl_id) if d.direction is direction}
            assert owned_entries(kit, nacl_id, direction) == ledger, f"{nacl_id} {direction} disagrees"
            replayed: dict[int, str] = {}
            for event in events:
                if event.nacl_id != nacl_id or event.direction is not direction or event.rule is None:
                    continue
                if event.kind is EventKind.BLOCK:
                    replayed[event.rule] = event.cidr
                elif event.kind in ENDINGS and replayed.get(event.rule) == event.cidr:
                    del replayed[event.rule]
            assert replayed == ledger, f"{nacl_id} {direction}: the log does not add up to the ledger"
