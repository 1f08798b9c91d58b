"""Slot planning: which denies a block of NACL rule numbers keeps, which go in, which give way, and the
order of entry changes that never lets coverage drop mid-change.

Floodgate owns, per NACL and direction, one block of rule numbers per address family (a *pool*): `budget`
entries at rest plus one spare number, so a new entry can go in before the entry it replaces leaves
(make-before-break). Pure: no I/O, and the same inputs always give the same plan.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from floodgate.core.networks import DenyPolicy, parse_network

# The value of a deny is its current rate evidence in packets per second. Two values sit outside that scale:
PINNED = math.inf  # a manual deny: automatic evidence never outranks it
EXPIRED = -1.0  # a deny whose ban is over but which the expirer has not removed yet: first to give way


class Direction(StrEnum):
    INGRESS = "ingress"
    EGRESS = "egress"

    @property
    def egress(self) -> bool:
        return self is Direction.EGRESS


@dataclass(frozen=True, slots=True)
class Pool:
    """The rule numbers Floodgate owns in one NACL for one direction and one address family."""

    direction: Direction
    family: int  # 4 or 6
    first_rule: int
    last_rule: int

    @property
    def rules(self) -> range:
        return range(self.first_rule, self.last_rule + 1)

    @property
    def label(self) -> str:
        return f"{self.direction} IPv{self.family} rules {self.first_rule}-{self.last_rule}"


def owned_pools(rule_start: int, budget: int, directions: Iterable[Direction]) -> tuple[Pool, ...]:
    """The owned block: IPv4 at rule_start..rule_start+budget, IPv6 on the next budget+1 numbers.

    The same numbers are used in every direction (rule numbers are per NACL and direction).
    """
    size = budget + 1
    return tuple(
        Pool(direction, family, start, start + size - 1)
        for direction in directions
        for family, start in ((4, rule_start), (6, rule_start + size))
    )


@dataclass(frozen=True, slots=True)
class Held:
    """A deny the ledger holds in the pool."""

    rule: int
    cidr: str
    value: float  # rate evidence now (pps), PINNED or EXPIRED
    since: float  # when it went in: among equal values the oldest gives way first
    restore: bool = True  # re-create the entry when it is missing from the NACL


@dataclass(frozen=True, slots=True)
class Wanted:
    """A deny that should be in force, with the rate evidence that ranks it."""

    cidr: str
    value: float


class OpKind(StrEnum):
    CREATE = "create"
    REPLACE = "replace"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class SlotOp:
    """One NACL entry change. For DELETE, `cidr` is the entry that leaves."""

    kind: OpKind
    rule: int
    cidr: str


@dataclass(frozen=True, slots=True)
class Placement:
    """A new deny and the rule number it gets. `adopted`: the NACL already has exactly this entry there
    (left behind by an interrupted run), so only the ledger needs to learn about it."""

    cidr: str
    rule: int
    value: float
    adopted: bool = False


@dataclass(frozen=True, slots=True)
class Eviction:
    held: Held
    reason: str


@dataclass(frozen=True, slots=True)
class Refusal:
    cidr: str
    reason: str


@dataclass(frozen=True, slots=True)
class PoolPlan:
    kept: tuple[Held, ...]
    placed: tuple[Placement, ...]
    evicted: tuple[Eviction, ...]
    refused: tuple[Refusal, ...]
    ops: tuple[SlotOp, ...]  # in the order they must run
    after: Mapping[int, str]  # the pool's entries once the ops have run


def describe_value(value: float) -> str:
    if value == PINNED:
        return "manual"
    if value <= EXPIRED:
        return "expired"
    return f"{value:,.0f} pps"


def plan_pool(
    *,
    rules: Sequence[int],
    budget: int,
    entries: Mapping[int, str],
    held: Sequence[Held],
    wanted: Sequence[Wanted],
    policy: DenyPolicy | None = None,
) -> PoolPlan:
    """The minimal change that brings one pool from `entries` (what the NACL has) to the best `budget` denies
    among `held` (what the ledger has) and `wanted` (what should be denied now).

    A held deny is kept unless it is refused by `policy`, or a wanted one of strictly higher value needs its
    slot: then the lowest-valued held deny gives way, the oldest first on ties. Incumbents win ties, so equal
    evidence never causes churn. Entries in the pool without a ledger record are removed; held denies missing
    from the NACL are re-created when `restore` is set.
    """
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    pool_rules = sorted(set(rules))
    capacity = min(budget, len(pool_rules))
    in_pool = set(pool_rules)
    stray = sorted(h.rule for h in held if h.rule not in in_pool)
    if stray:
        raise ValueError(f"held rules {stray} lie outside the pool {pool_rules[0]}-{pool_rules[-1]}")

    wanted_value: dict[str, float] = {}
    for want in wanted:
        wanted_value[want.cidr] = max(want.value, wanted_value.get(want.cidr, -math.inf))

    kept, evicted = _screen_held(held, wanted_value, policy)
    while len(kept) > capacity:
        victim = min(kept, key=_eviction_order)
        kept.remove(victim)
        evicted.append(Eviction(victim, f"over the budget of {budget}: lowest value ({_held_text(victim)})"))

    # What is left of `wanted` is new: best first, each into a free slot or in place of a lower-valued deny.
    refused: list[Refusal] = []
    chosen: list[Wanted] = []
    for cidr, value in sorted(wanted_value.items(), key=lambda item: (-item[1], item[0])):
        refusal = _refusal(policy, cidr)
        if refusal is not None:
            refused.append(Refusal(cidr, refusal))
            continue
        if len(kept) + len(chosen) < capacity:
            chosen.append(Wanted(cidr, value))
            continue
        weakest = min(kept, key=_eviction_order, default=None)
        if weakest is None or value <= weakest.value:
            lowest = f"; lowest held: {_held_text(weakest)}" if weakest is not None else ""
            refused.append(
                Refusal(
                    cidr,
                    f"budget of {budget} full with denies of equal or higher value than "
                    f"{describe_value(value)}{lowest}",
                )
            )
            continue
        kept.remove(weakest)
        reason = f"budget of {budget} full: lowest value ({_held_text(weakest)}) gave way to {cidr}"
        evicted.append(Eviction(weakest, f"{reason} ({describe_value(value)})"))
        chosen.append(Wanted(cidr, value))

    placed, ops, after = _sequence(
        rules=pool_rules, capacity=capacity, entries=entries, kept=kept, evicted=evicted, chosen=chosen
    )
    return PoolPlan(tuple(kept), placed, tuple(evicted), tuple(refused), ops, after)


def _screen_held(
    held: Sequence[Held], wanted_value: dict[str, float], policy: DenyPolicy | None
) -> tuple[list[Held], list[Eviction]]:
    """Split held denies into kept and evicted (duplicates, no longer allowed). A held deny that is also
    wanted takes the higher of the two values and leaves `wanted_value`."""
    kept: list[Held] = []
    evicted: list[Eviction] = []
    seen: set[str] = set()
    for record in sorted(held, key=lambda h: h.rule):
        if record.cidr in seen:
            evicted.append(Eviction(record, f"{record.cidr} is held twice in this pool; the copy gives way"))
            continue
        seen.add(record.cidr)
        deny = record
        if deny.cidr in wanted_value:
            deny = _revalued(deny, max(deny.value, wanted_value.pop(deny.cidr)))
        refusal = _refusal(policy, deny.cidr)
        if refusal is not None:
            evicted.append(Eviction(deny, f"no longer allowed: {refusal}"))
        else:
            kept.append(deny)
    return kept, evicted


def _sequence(
    *,
    rules: list[int],
    capacity: int,
    entries: Mapping[int, str],
    kept: list[Held],
    evicted: list[Eviction],
    chosen: list[Wanted],
) -> tuple[tuple[Placement, ...], tuple[SlotOp, ...], dict[int, str]]:
    """Allocate rule numbers and order the entry changes, make-before-break.

    Each new entry takes a free number; whenever that brings the pool above `capacity` (it used the spare),
    one entry that must go leaves before the next new one goes in. An entry has to leave first only when no
    number is free at all: the NACL already held more than the budget, or foreign entries took the spare.
    """
    in_pool = set(rules)
    physical = {rule: cidr for rule, cidr in entries.items() if rule in in_pool}
    kept_by_rule = {h.rule: h for h in kept}
    ops: list[SlotOp] = []

    # Leaving entries: those without a ledger record first (nobody relies on them), then evictions in the
    # order they were decided (lowest value first).
    evicted_rules = [e.held.rule for e in evicted]
    leaving = sorted(r for r in physical if r not in kept_by_rule and r not in evicted_rules)
    leaving += [r for r in dict.fromkeys(evicted_rules) if r in physical and r not in kept_by_rule]

    for rule, deny in sorted(kept_by_rule.items()):
        present = physical.get(rule)
        if present is not None and present != deny.cidr:
            if deny.restore:
                ops.append(SlotOp(OpKind.REPLACE, rule, deny.cidr))
                physical[rule] = deny.cidr
            else:
                leaving.insert(0, rule)

    placed: list[Placement] = []
    adoptable = {physical[r]: r for r in leaving if r not in kept_by_rule}
    for want in chosen:
        orphan_rule = adoptable.get(want.cidr)
        if orphan_rule is not None:
            leaving.remove(orphan_rule)
            placed.append(Placement(want.cidr, orphan_rule, want.value, adopted=True))
    reserved = set(kept_by_rule) | {p.rule for p in placed}

    def leave_one() -> None:
        rule = leaving.pop(0)
        ops.append(SlotOp(OpKind.DELETE, rule, physical.pop(rule)))

    def create(rule: int, cidr: str) -> None:
        ops.append(SlotOp(OpKind.CREATE, rule, cidr))
        physical[rule] = cidr
        while len(physical) > capacity and leaving:
            leave_one()

    for rule, deny in sorted(kept_by_rule.items()):
        if deny.restore and rule not in physical:
            create(rule, deny.cidr)
    adopted = {p.cidr for p in placed}
    for want in chosen:
        if want.cidr in adopted:
            continue
        free = [r for r in rules if r not in physical and r not in reserved]
        while not free:
            leave_one()
            free = [r for r in rules if r not in physical and r not in reserved]
        rule = free[0]
        reserved.add(rule)
        placed.append(Placement(want.cidr, rule, want.value))
        create(rule, want.cidr)
    while leaving:
        leave_one()
    return tuple(sorted(placed, key=lambda p: p.rule)), tuple(ops), dict(sorted(physical.items()))


def _revalued(deny: Held, value: float) -> Held:
    return Held(deny.rule, deny.cidr, value, deny.since, deny.restore)


def _eviction_order(deny: Held) -> tuple[float, float, int]:
    return (deny.value, deny.since, deny.rule)


def _held_text(deny: Held) -> str:
    return f"{deny.cidr} at {describe_value(deny.value)}"


def _refusal(policy: DenyPolicy | None, cidr: str) -> str | None:
    return None if policy is None else policy.refusal(parse_network(cidr))
