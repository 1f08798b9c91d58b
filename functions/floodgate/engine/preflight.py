"""Preflight: whether a NACL is fit for Floodgate's entries, and how full its pools are. Pure checks of a
snapshot against the configuration; the engine reads the snapshot."""

from __future__ import annotations

from collections.abc import Sequence

from floodgate.core.decision import EnforcementConfig
from floodgate.core.nacl import NaclEntry, NaclSnapshot
from floodgate.core.records import DenyRecord
from floodgate.core.slots import Pool
from floodgate.engine.results import PoolStatus


def problems_of(config: EnforcementConfig, snapshot: NaclSnapshot) -> list[str]:
    """Why Floodgate cannot add entries to this NACL, each with the fix (CDK context key and variable).

    Only what truly cannot work: allow rules evaluated before (or among) the owned rules, whose traffic the
    denies would never stop, or no room under the quota. Other entries inside the owned block that Floodgate
    did not write (a hand-made deny) are no problem: the decision reports them as foreign and skips their
    rule numbers.
    """
    found: list[str] = []
    move = (
        f"or set ruleStart / FLOODGATE_RULE_START to a free block of {2 * (config.budget + 1)} rule numbers"
    )
    for pool in config.pools:
        where = f"{snapshot.nacl_id} {pool.direction} IPv{pool.family}"
        inside = snapshot.in_rules(pool.direction, pool.rules)
        for entry in inside.values():
            if entry.action == "allow":
                found.append(
                    f"{snapshot.nacl_id}: {entry.describe()} sits inside Floodgate's {pool.label}, before "
                    f"denies it would let through; move it out {move}"
                )
        same_kind = _counted_entries(snapshot, pool)
        allows = [e for e in same_kind if e.action == "allow" and e.rule not in inside]
        first_allow = min(allows, key=lambda e: e.rule, default=None)
        if first_allow is not None and first_allow.rule < pool.first_rule:
            found.append(
                f"{where}: allow rule {first_allow.rule} ({first_allow.cidr}) is evaluated before "
                f"Floodgate's rules {pool.first_rule}-{pool.last_rule}, so its denies would never "
                f"match; renumber the allow rules above {config.rule_end} {move} below "
                f"{first_allow.rule}"
            )
        others = sum(1 for e in same_kind if e.rule not in pool.rules)
        needed = others + 1 + config.budget + 1
        if needed > config.nacl_quota:
            found.append(
                f"{where}: {others} existing entries + 1 default rule + budget {config.budget} + "
                f"1 spare = {needed} rules, over the quota of {config.nacl_quota}; lower budget / "
                f"FLOODGATE_BUDGET to {max(0, config.nacl_quota - others - 2)} or remove entries "
                "(or raise the AWS quota, at most 40, and naclQuota / FLOODGATE_NACL_QUOTA with it)"
            )
    return found


def pool_status(
    config: EnforcementConfig, snapshot: NaclSnapshot, pool: Pool, records: Sequence[DenyRecord]
) -> PoolStatus:
    """One pool against its budget and the NACL's quota."""
    inside = snapshot.in_rules(pool.direction, pool.rules)
    return PoolStatus(
        pool=pool,
        budget=config.budget,
        held=sum(1 for r in records if r.direction is pool.direction and r.rule in pool.rules),
        entries=sum(1 for e in inside.values() if e.is_deny_all_from(pool.family)),
        rules_used=len(_counted_entries(snapshot, pool)) + 1,
        quota=config.nacl_quota,
    )


def _counted_entries(snapshot: NaclSnapshot, pool: Pool) -> list[NaclEntry]:
    """The NACL's entries that count against the quota alongside the pool's: same direction and address
    family, the unchangeable default rule aside."""
    return [
        e
        for e in snapshot.entries
        if e.direction is pool.direction and e.family == pool.family and not e.is_default
    ]
