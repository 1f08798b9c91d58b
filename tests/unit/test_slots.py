"""Slot planning: the minimal change, eviction order, rule allocation and make-before-break."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from floodgate.core.networks import DenyPolicy
from floodgate.core.slots import (
    EXPIRED,
    PINNED,
    Direction,
    Held,
    OpKind,
    Placement,
    Pool,
    PoolPlan,
    SlotOp,
    Wanted,
    owned_pools,
    plan_pool,
)

RULES = list(range(100, 104))  # budget 3 + one spare
POLICY = DenyPolicy.build(vpc_cidrs=["10.0.0.0/16"], allow=["198.51.100.0/24"])


def plan(
    *,
    held: Sequence[Held] = (),
    wanted: Sequence[Wanted] = (),
    entries: Mapping[int, str] | None = None,
    budget: int = 3,
    rules: Sequence[int] = RULES,
) -> PoolPlan:
    physical = {h.rule: h.cidr for h in held} if entries is None else dict(entries)
    return plan_pool(rules=rules, budget=budget, entries=physical, held=held, wanted=wanted, policy=POLICY)


def run(
    entries: Mapping[int, str], ops: Sequence[SlotOp], rules: Sequence[int]
) -> tuple[dict[int, str], int]:
    """Apply the ops as the NACL would, refusing impossible ones; returns the entries and the lowest count."""
    state = dict(entries)
    lowest = len(state)
    for op in ops:
        assert op.rule in rules
        if op.kind is OpKind.CREATE:
            assert op.rule not in state, f"create on a taken rule: {op}"
            state[op.rule] = op.cidr
        elif op.kind is OpKind.REPLACE:
            assert op.rule in state, f"replace of a missing entry: {op}"
            state[op.rule] = op.cidr
        else:
            assert state.get(op.rule) == op.cidr, f"delete of something else: {op}"
            del state[op.rule]
        lowest = min(lowest, len(state))
    return state, lowest


def test_owned_pools_put_ipv4_first_then_ipv6_with_one_spare_each() -> None:
    pools = owned_pools(100, 10, [Direction.INGRESS, Direction.EGRESS])
    assert pools == (
        Pool(Direction.INGRESS, 4, 100, 110),
        Pool(Direction.INGRESS, 6, 111, 121),
        Pool(Direction.EGRESS, 4, 100, 110),
        Pool(Direction.EGRESS, 6, 111, 121),
    )


def test_free_slots_take_new_denies_lowest_rule_first_highest_value_first() -> None:
    result = plan(wanted=[Wanted("203.0.113.2/32", 10.0), Wanted("203.0.113.1/32", 30.0)])
    assert result.placed == (
        Placement("203.0.113.1/32", 100, 30.0),
        Placement("203.0.113.2/32", 101, 10.0),
    )
    assert result.ops == (
        SlotOp(OpKind.CREATE, 100, "203.0.113.1/32"),
        SlotOp(OpKind.CREATE, 101, "203.0.113.2/32"),
    )


def test_unchanged_state_needs_no_change_at_all() -> None:
    held = [Held(100, "203.0.113.1/32", 50.0, 1.0), Held(101, "203.0.113.2/32", 20.0, 2.0)]
    result = plan(held=held, wanted=[Wanted("203.0.113.1/32", 70.0)])
    assert result.ops == ()
    assert result.placed == () and result.evicted == ()
    assert [h.value for h in result.kept] == [70.0, 20.0]  # the held deny takes the fresher evidence


def test_full_budget_evicts_lowest_value_and_adds_before_the_eviction_leaves() -> None:
    held = [
        Held(100, "203.0.113.1/32", 90.0, 1.0),
        Held(101, "203.0.113.2/32", 10.0, 2.0),
        Held(102, "203.0.113.3/32", 40.0, 3.0),
    ]
    result = plan(held=held, wanted=[Wanted("203.0.113.9/32", 60.0)])
    assert [e.held.cidr for e in result.evicted] == ["203.0.113.2/32"]
    assert "gave way to 203.0.113.9/32" in result.evicted[0].reason
    assert result.ops == (
        SlotOp(OpKind.CREATE, 103, "203.0.113.9/32"),  # into the spare first...
        SlotOp(OpKind.DELETE, 101, "203.0.113.2/32"),  # ...then the evicted entry leaves
    )


def test_among_equal_values_the_oldest_gives_way() -> None:
    held = [
        Held(100, "203.0.113.1/32", 10.0, 5.0),
        Held(101, "203.0.113.2/32", 10.0, 1.0),  # oldest
        Held(102, "203.0.113.3/32", 10.0, 3.0),
    ]
    result = plan(held=held, wanted=[Wanted("203.0.113.9/32", 11.0)])
    assert [e.held.cidr for e in result.evicted] == ["203.0.113.2/32"]


def test_incumbents_win_ties_so_equal_evidence_never_churns() -> None:
    held = [Held(100 + i, f"203.0.113.{i}/32", 10.0, float(i)) for i in range(3)]
    result = plan(held=held, wanted=[Wanted("203.0.113.9/32", 10.0)])
    assert result.ops == ()
    assert [r.cidr for r in result.refused] == ["203.0.113.9/32"]
    assert "budget of 3 full" in result.refused[0].reason


def test_several_replacements_alternate_create_and_delete_through_the_spare() -> None:
    held = [Held(100 + i, f"203.0.113.{i}/32", 1.0 + i, float(i)) for i in range(3)]
    wanted = [Wanted("198.18.0.1/32", 5.0)]  # protected (benchmarking range): refused by policy
    wanted += [Wanted(f"203.0.113.{50 + i}/32", 100.0 + i) for i in range(2)]
    result = plan(held=held, wanted=wanted)
    assert [r.cidr for r in result.refused] == ["198.18.0.1/32"]
    assert [op.kind for op in result.ops] == [OpKind.CREATE, OpKind.DELETE, OpKind.CREATE, OpKind.DELETE]
    state, lowest = run({h.rule: h.cidr for h in held}, result.ops, RULES)
    assert lowest == 3
    assert sorted(state.values()) == ["203.0.113.2/32", "203.0.113.50/32", "203.0.113.51/32"]


def test_manual_denies_are_never_evicted_by_automatic_ones() -> None:
    held = [Held(100 + i, f"203.0.113.{i}/32", PINNED, float(i)) for i in range(3)]
    result = plan(held=held, wanted=[Wanted("203.0.113.9/32", 1e9)])
    assert result.evicted == ()
    assert [r.cidr for r in result.refused] == ["203.0.113.9/32"]


def test_expired_denies_give_way_first() -> None:
    held = [
        Held(100, "203.0.113.1/32", 0.0, 1.0),
        Held(101, "203.0.113.2/32", EXPIRED, 2.0, restore=False),
        Held(102, "203.0.113.3/32", 0.0, 3.0),
    ]
    result = plan(held=held, wanted=[Wanted("203.0.113.9/32", 1.0)])
    assert [e.held.cidr for e in result.evicted] == ["203.0.113.2/32"]
    assert "expired" in result.evicted[0].reason


def test_held_denies_that_policy_now_protects_are_evicted() -> None:
    held = [Held(100, "198.51.100.7/32", 50.0, 1.0)]  # allowlisted since
    result = plan(held=held)
    assert "no longer allowed" in result.evicted[0].reason
    assert result.ops == (SlotOp(OpKind.DELETE, 100, "198.51.100.7/32"),)


def test_drift_is_repaired_missing_created_mismatch_replaced_orphan_removed() -> None:
    held = [Held(100, "203.0.113.1/32", 5.0, 1.0), Held(101, "203.0.113.2/32", 5.0, 2.0)]
    entries = {101: "203.0.113.66/32", 102: "203.0.113.77/32"}
    result = plan(held=held, entries=entries)
    assert set(result.ops) == {
        SlotOp(OpKind.REPLACE, 101, "203.0.113.2/32"),
        SlotOp(OpKind.CREATE, 100, "203.0.113.1/32"),
        SlotOp(OpKind.DELETE, 102, "203.0.113.77/32"),
    }
    assert result.after == {100: "203.0.113.1/32", 101: "203.0.113.2/32"}


def test_expired_deny_missing_from_the_nacl_is_not_recreated() -> None:
    result = plan(held=[Held(100, "203.0.113.1/32", EXPIRED, 1.0, restore=False)], entries={})
    assert result.ops == ()


def test_an_orphan_entry_of_a_wanted_deny_is_adopted_without_a_call() -> None:
    result = plan(entries={102: "203.0.113.5/32"}, wanted=[Wanted("203.0.113.5/32", 9.0)])
    assert result.placed == (Placement("203.0.113.5/32", 102, 9.0, adopted=True),)
    assert result.ops == ()


def test_a_crowded_pool_frees_a_rule_before_it_creates() -> None:
    held = [Held(100 + i, f"203.0.113.{i}/32", 1.0, float(i)) for i in range(3)]
    entries = {h.rule: h.cidr for h in held} | {103: "203.0.113.99/32"}  # orphan in the spare
    result = plan(held=held, entries=entries, wanted=[Wanted("203.0.113.9/32", 50.0)])
    state, lowest = run(entries, result.ops, RULES)
    assert result.ops[0] == SlotOp(OpKind.DELETE, 103, "203.0.113.99/32")
    assert lowest == 3 and len(state) == 3


# -- properties -----------------------------------------------------------------------------------------

CIDRS = [f"203.0.113.{i}/32" for i in range(12)] + ["198.51.100.5/32", "10.0.3.0/24", "192.0.2.0/24"]
PROTECTED = {"198.51.100.5/32", "10.0.3.0/24"}
values = st.one_of(st.floats(min_value=0, max_value=1e6), st.just(PINNED), st.just(EXPIRED))


@dataclass(frozen=True)
class Case:
    rules: list[int]
    budget: int
    entries: dict[int, str]
    held: list[Held]
    wanted: list[Wanted]

    def plan(self, *, held: Sequence[Held] | None = None, wanted: Sequence[Wanted] | None = None) -> PoolPlan:
        return plan_pool(
            rules=self.rules,
            budget=self.budget,
            entries=self.entries,
            held=self.held if held is None else held,
            wanted=self.wanted if wanted is None else wanted,
            policy=POLICY,
        )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    budget = draw(st.integers(min_value=1, max_value=6))
    rules = list(range(200, 200 + budget + 1))
    held_rules = draw(st.lists(st.sampled_from(rules), unique=True, max_size=len(rules)))
    held = [
        Held(rule, draw(st.sampled_from(CIDRS)), value, draw(st.floats(0, 100)), restore=value != EXPIRED)
        for rule in held_rules
        for value in [draw(values)]
    ]
    entries = {h.rule: h.cidr for h in held if draw(st.booleans())}
    entries |= draw(st.dictionaries(st.sampled_from(rules), st.sampled_from(CIDRS), max_size=2))
    wanted = draw(st.lists(st.builds(Wanted, st.sampled_from(CIDRS), st.floats(0, 1e6)), max_size=8))
    return Case(rules, budget, entries, held, wanted)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_plans_never_exceed_the_budget_and_the_ops_reach_exactly_the_plan(case: Case) -> None:
    result = case.plan()
    state, _ = run(case.entries, result.ops, case.rules)
    assert state == dict(result.after)
    assert len(state) <= case.budget
    assert len(set(state.values())) == len(state)  # one entry per CIDR
    ledger = {h.rule: h.cidr for h in result.kept} | {p.rule: p.cidr for p in result.placed}
    assert len(ledger) == len(result.kept) + len(result.placed)  # never two denies on one rule number
    assert len(ledger) <= case.budget


@settings(max_examples=300, deadline=None)
@given(cases())
def test_plans_never_deny_a_protected_or_allowlisted_address(case: Case) -> None:
    result = case.plan()
    denied = {h.cidr for h in result.kept} | {p.cidr for p in result.placed} | set(result.after.values())
    assert not PROTECTED & denied


@settings(max_examples=200, deadline=None)
@given(cases(), st.randoms())
def test_plans_are_deterministic_whatever_the_input_order(case: Case, rng: random.Random) -> None:
    held, wanted = list(case.held), list(case.wanted)
    rng.shuffle(held)
    rng.shuffle(wanted)
    assert case.plan(held=held, wanted=wanted) == case.plan()


@settings(max_examples=300, deadline=None)
@given(cases())
def test_make_before_break_never_lets_the_entry_count_dip(case: Case) -> None:
    """At no point during the change are fewer entries in force than before it or after it; kept entries
    stay in force throughout, and a new entry, once in, stays."""
    result = case.plan()
    state, lowest = run(case.entries, result.ops, case.rules)
    assert lowest >= min(len(case.entries), len(state))
    protected = {(h.rule, h.cidr) for h in result.kept if case.entries.get(h.rule) == h.cidr}
    protected |= {(p.rule, p.cidr) for p in result.placed}
    current = dict(case.entries)
    for op in result.ops:
        assert (op.rule, current.get(op.rule)) not in protected
        if op.kind is OpKind.DELETE:
            del current[op.rule]
        else:
            current[op.rule] = op.cidr
