"""Slot planning details that the mutation run showed no test pinned down: ranking order, every refusal and
eviction says why, denies after a refused or adopted one still go in, and the owned rule block."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floodgate.core.networks import DenyPolicy
from floodgate.core.slots import (
    EXPIRED,
    PINNED,
    Direction,
    Held,
    OpKind,
    Placement,
    PoolPlan,
    SlotOp,
    Wanted,
    describe_value,
    owned_pools,
    plan_pool,
)
from tests.safety_oracle import PARTNER_ALLOW, VPC_CIDRS

RULES = [100, 101, 102, 103]
POLICY = DenyPolicy.build(vpc_cidrs=VPC_CIDRS, allow=PARTNER_ALLOW)


def plan(
    held: list[Held], wanted: list[Wanted], *, budget: int = 3, entries: dict[int, str] | None = None
) -> PoolPlan:
    physical = {h.rule: h.cidr for h in held} if entries is None else entries
    return plan_pool(rules=RULES, budget=budget, entries=physical, held=held, wanted=wanted, policy=POLICY)


def test_new_denies_are_ranked_by_value_not_by_address() -> None:
    result = plan([], [Wanted("203.0.113.1/32", 10.0), Wanted("203.0.113.2/32", 30.0)], budget=1)
    assert result.placed == (Placement("203.0.113.2/32", 100, 30.0),)
    assert [r.cidr for r in result.refused] == ["203.0.113.1/32"]


def test_a_refused_deny_does_not_stop_the_ones_after_it() -> None:
    wanted = [Wanted("198.51.100.9/32", 99_000.0), Wanted("203.0.113.5/32", 10.0)]  # allowlisted first
    result = plan([], wanted)
    assert result.refused[0].cidr == "198.51.100.9/32"
    assert result.refused[0].reason == "198.51.100.9/32 overlaps protected range 198.51.100.0/24"
    assert result.placed == (Placement("203.0.113.5/32", 100, 10.0),)


def test_every_deny_a_full_budget_turns_away_is_refused_with_the_lowest_held_named() -> None:
    held = [Held(100 + i, f"203.0.113.{i}/32", PINNED, float(i)) for i in range(3)]
    result = plan(held, [Wanted("203.0.113.8/32", 500.0), Wanted("203.0.113.9/32", 400.0)])
    assert [(r.cidr, r.reason) for r in result.refused] == [
        (
            cidr,
            f"budget of 3 full with denies of equal or higher value than {pps}; "
            "lowest held: 203.0.113.0/32 at manual",
        )
        for cidr, pps in (("203.0.113.8/32", "500 pps"), ("203.0.113.9/32", "400 pps"))
    ]


def test_a_budget_filled_by_new_denies_alone_refuses_without_naming_a_held_one() -> None:
    result = plan([], [Wanted("203.0.113.1/32", 20.0), Wanted("203.0.113.2/32", 10.0)], budget=1)
    assert [(r.cidr, r.reason) for r in result.refused] == [
        ("203.0.113.2/32", "budget of 1 full with denies of equal or higher value than 10 pps")
    ]


def test_a_replacement_carries_its_evidence() -> None:
    held = [Held(100 + i, f"203.0.113.{i}/32", 5.0, float(i)) for i in range(3)]
    result = plan(held, [Wanted("203.0.113.9/32", 7_500.0)])
    assert result.placed == (Placement("203.0.113.9/32", 103, 7_500.0),)
    assert result.evicted[0].reason == (
        "budget of 3 full: lowest value (203.0.113.0/32 at 5 pps) gave way to 203.0.113.9/32 (7,500 pps)"
    )


def test_a_shrunk_budget_evicts_the_lowest_and_says_so() -> None:
    held = [Held(100 + i, f"203.0.113.{i}/32", 10.0 * (i + 1), float(i)) for i in range(3)]
    result = plan(held, [], budget=2)
    assert [(e.held.cidr, e.reason) for e in result.evicted] == [
        ("203.0.113.0/32", "over the budget of 2: lowest value (203.0.113.0/32 at 10 pps)")
    ]
    assert result.ops == (SlotOp(OpKind.DELETE, 100, "203.0.113.0/32"),)


def test_a_duplicate_held_deny_gives_way_and_the_ones_after_it_are_kept() -> None:
    held = [
        Held(100, "203.0.113.1/32", 10.0, 1.0),
        Held(101, "203.0.113.1/32", 10.0, 2.0),
        Held(102, "203.0.113.2/32", 10.0, 3.0),
    ]
    result = plan(held, [])
    assert [(e.held.rule, e.reason) for e in result.evicted] == [
        (101, "203.0.113.1/32 is held twice in this pool; the copy gives way")
    ]
    assert [h.rule for h in result.kept] == [100, 102]


def test_a_held_deny_wanted_again_keeps_its_age_and_restore_flag() -> None:
    expired = Held(100, "203.0.113.1/32", EXPIRED, 42.0, restore=False)
    result = plan([expired], [Wanted("203.0.113.1/32", 900.0)], entries={})
    assert result.kept == (Held(100, "203.0.113.1/32", 900.0, 42.0, restore=False),)
    assert result.ops == ()  # not restored: the entry is gone and the ledger says not to bring it back


def test_after_an_adopted_entry_the_next_new_deny_still_goes_in() -> None:
    entries = {102: "203.0.113.5/32"}  # left behind by an interrupted run
    result = plan([], [Wanted("203.0.113.5/32", 90.0), Wanted("203.0.113.6/32", 10.0)], entries=entries)
    assert result.placed == (
        Placement("203.0.113.6/32", 100, 10.0),
        Placement("203.0.113.5/32", 102, 90.0, adopted=True),
    )
    assert result.ops == (SlotOp(OpKind.CREATE, 100, "203.0.113.6/32"),)


def test_a_foreign_entry_on_a_held_rule_that_must_not_be_restored_leaves_first() -> None:
    held = [Held(101, "203.0.113.1/32", EXPIRED, 1.0, restore=False)]
    entries = {100: "203.0.113.50/32", 101: "203.0.113.66/32"}  # 100: no ledger record; 101: not ours
    result = plan(held, [], entries=entries)
    assert result.ops == (
        SlotOp(OpKind.DELETE, 101, "203.0.113.66/32"),
        SlotOp(OpKind.DELETE, 100, "203.0.113.50/32"),
    )


def test_without_a_policy_nothing_is_refused() -> None:
    result = plan_pool(
        rules=RULES, budget=3, entries={}, held=[], wanted=[Wanted("10.0.0.1/32", 1.0)], policy=None
    )
    assert result.placed == (Placement("10.0.0.1/32", 100, 1.0),)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 0}, "budget must be at least 1, got 0"),
        ({"held": [Held(99, "203.0.113.1/32", 1.0, 1.0)]}, r"held rules \[99\] lie outside the pool 100-103"),
        (
            {"held": [Held(104, "203.0.113.1/32", 1.0, 1.0)]},
            r"held rules \[104\] lie outside the pool 100-103",
        ),
    ],
)
def test_impossible_inputs_are_refused_with_the_numbers(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"rules": RULES, "budget": 3, "entries": {}, "held": [], "wanted": []}
    with pytest.raises(ValueError, match=f"^{message}$"):
        plan_pool(**(arguments | kwargs))  # type: ignore[arg-type]


def test_values_are_described_for_people() -> None:
    assert describe_value(PINNED) == "manual"
    assert describe_value(EXPIRED) == "expired"
    assert describe_value(-5.0) == "expired"
    assert describe_value(0.0) == "0 pps"
    assert describe_value(12_345.6) == "12,346 pps"


@given(
    rule_start=st.integers(1, 32_000),
    budget=st.integers(1, 20),
    directions=st.lists(st.sampled_from(list(Direction)), min_size=1, max_size=2, unique=True),
)
def test_the_owned_block_is_budget_plus_one_per_family_from_rule_start(
    rule_start: int, budget: int, directions: list[Direction]
) -> None:
    pools = owned_pools(rule_start, budget, directions)
    expected = {
        (direction, 4): list(range(rule_start, rule_start + budget + 1)) for direction in directions
    } | {
        (direction, 6): list(range(rule_start + budget + 1, rule_start + 2 * budget + 2))
        for direction in directions
    }
    assert {(p.direction, p.family): list(p.rules) for p in pools} == expected
    assert len(pools) == 2 * len(directions)
    for pool in pools:
        assert pool.label == (f"{pool.direction} IPv{pool.family} rules {pool.first_rule}-{pool.last_rule}")
        assert pool.direction.egress is (pool.direction is Direction.EGRESS)
