"""The enforcement engine against the emulator over HTTP: rotation, escalation, expiry, reconcile, dry run,
preflight, quota, manual actions and the deny log."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from floodgate.adapters.nacl import UnknownNacl
from floodgate.core.decision import DriftKind, EnforcementConfig
from floodgate.core.model import PlannedDeny
from floodgate.core.networks import InvalidCidr, parse_network
from floodgate.core.records import EventKind, Origin, OriginKind
from floodgate.core.slots import Direction
from floodgate.engine.results import BlockRefused, NotBlocked, PreflightError
from floodgate.settings import ENV, Settings

from .conftest import Clock, EnforcerKit, VpcFixture

pytestmark = pytest.mark.integration

MakeEnforcer = Callable[..., EnforcerKit]


def flood(cidr: str, pps: float) -> PlannedDeny:
    return PlannedDeny(cidr, pps, pps * 8 * 600, 0.1, 1, f"{cidr} floods at {pps:,.0f} pps")


def owned(kit: EnforcerKit, nacl_id: str, direction: Direction = Direction.INGRESS) -> dict[int, str]:
    """The NACL's entries inside the owned block."""
    snapshot = kit.gateway.describe([nacl_id])[nacl_id]
    return {
        rule: e.cidr for rule, e in snapshot.in_rules(direction, range(100, kit.config.rule_end + 1)).items()
    }


def held(kit: EnforcerKit, nacl_id: str, direction: Direction = Direction.INGRESS) -> dict[int, str]:
    return {d.rule: d.cidr for d in kit.ledger.denies(nacl_id) if d.direction is direction}


def assert_agree(kit: EnforcerKit, vpc: VpcFixture) -> None:
    for nacl_id in vpc.nacl_ids:
        for direction in kit.config.directions:
            assert owned(kit, nacl_id, direction) == held(kit, nacl_id, direction)


def raw_entry(
    kit: EnforcerKit, nacl_id: str, rule: int, cidr: str, action: str = "deny", **extra: Any
) -> None:
    kit.ec2.create_network_acl_entry(
        NetworkAclId=nacl_id,
        RuleNumber=rule,
        Protocol="-1",
        RuleAction=action,
        Egress=False,
        CidrBlock=cidr,
        **extra,
    )


def test_apply_denies_each_planned_source_in_every_nacl_and_logs_it(
    enforcer: EnforcerKit, vpc: VpcFixture
) -> None:
    result = enforcer.enforcer.apply([flood("203.0.113.7/32", 9000), flood("2001:db8:1::/64", 7000)])

    assert result.counts == {EventKind.BLOCK: 4}
    for nacl_id in vpc.nacl_ids:
        assert owned(enforcer, nacl_id) == {
            100: "203.0.113.7/32",
            111: "2001:db8:1::/64",
        }  # IPv6 block from 111
        denies = enforcer.ledger.denies(nacl_id)
        assert {(d.cidr, d.offences, d.origin) for d in denies} == {
            ("203.0.113.7/32", 1, Origin.automatic()),
            ("2001:db8:1::/64", 1, Origin.automatic()),
        }
        assert all(d.expires - d.created == 1800 for d in denies)
    assert len(enforcer.calls) == 4  # one CreateNetworkAclEntry per new entry, nothing else


def test_an_unchanged_plan_costs_no_ec2_change(enforcer: EnforcerKit, clock: Clock) -> None:
    plan = [flood("203.0.113.7/32", 9000), flood("203.0.113.8/32", 8000)]
    enforcer.enforcer.apply(plan)
    enforcer.calls.clear()
    clock.advance(60)
    result = enforcer.enforcer.apply(plan)
    assert result.events == ()
    assert enforcer.calls == []


def test_rotation_evicts_the_lowest_value_oldest_first_and_makes_before_it_breaks(
    make_enforcer: MakeEnforcer, vpc: VpcFixture, clock: Clock
) -> None:
    kit = make_enforcer(budget=3, nacl_ids=vpc.nacl_ids[:1])
    nacl_id = vpc.nacl_ids[0]
    kit.enforcer.apply([flood("203.0.113.1/32", 5000)])
    clock.advance(10)
    kit.enforcer.apply([flood("203.0.113.2/32", 5000), flood("203.0.113.3/32", 9000)])
    assert owned(kit, nacl_id) == {100: "203.0.113.1/32", 101: "203.0.113.3/32", 102: "203.0.113.2/32"}

    kit.calls.clear()
    clock.advance(10)
    evidence = {"203.0.113.1/32": 5000.0, "203.0.113.2/32": 5000.0, "203.0.113.3/32": 9000.0}
    result = kit.enforcer.apply(
        [flood("198.18.0.1/32", 1e6), flood("203.0.113.4/32", 6000)], reject_pps=evidence
    )

    # .1 and .2 carry equal evidence: the older (.1) gives way. The protected source is refused outright.
    assert [e.cidr for e in result.of_kind(EventKind.EVICT)] == ["203.0.113.1/32"]
    assert [e.cidr for e in result.of_kind(EventKind.BLOCK)] == ["203.0.113.4/32"]
    assert [e.cidr for e in result.of_kind(EventKind.REFUSED)] == ["198.18.0.1/32"]
    assert [(name, params["RuleNumber"]) for name, params in kit.calls] == [
        ("CreateNetworkAclEntry", 103),  # the new entry goes into the spare first...
        ("DeleteNetworkAclEntry", 100),  # ...and only then does the evicted one leave
    ]
    assert owned(kit, nacl_id) == {101: "203.0.113.3/32", 102: "203.0.113.2/32", 103: "203.0.113.4/32"}
    assert held(kit, nacl_id) == owned(kit, nacl_id)


def test_denies_without_current_evidence_give_way_to_a_new_flood(
    make_enforcer: MakeEnforcer, vpc: VpcFixture, clock: Clock
) -> None:
    kit = make_enforcer(budget=2, nacl_ids=vpc.nacl_ids[:1])
    kit.enforcer.apply([flood("203.0.113.1/32", 50_000), flood("203.0.113.2/32", 40_000)])
    clock.advance(60)
    result = kit.enforcer.apply([flood("203.0.113.3/32", 6000)])  # the first two went quiet
    assert [e.cidr for e in result.of_kind(EventKind.EVICT)] == ["203.0.113.1/32"]  # oldest of the quiet ones


def test_repeat_offenders_get_escalating_bans_and_reoffence_renews(
    make_enforcer: MakeEnforcer, vpc: VpcFixture, clock: Clock
) -> None:
    kit = make_enforcer(nacl_ids=vpc.nacl_ids[:1])
    nacl_id = vpc.nacl_ids[0]
    source = "203.0.113.50/32"
    kit.enforcer.apply([flood(source, 9000)])
    clock.advance(1000)  # more than half of the 30 min ban has run
    renewal = kit.enforcer.apply([flood(source, 12_000)])
    assert [e.kind for e in renewal.events] == [EventKind.EXTEND]
    assert kit.ledger.denies(nacl_id)[0].expires == clock() + 1800

    for offence, ban in ((2, 3600), (3, 7200)):
        clock.advance(4000)
        assert kit.enforcer.expire().counts == {EventKind.EXPIRE: 1}
        clock.advance(60)
        block = kit.enforcer.apply([flood(source, 9000)]).of_kind(EventKind.BLOCK)[0]
        assert (block.offences, block.expires) == (offence, clock() + ban)

    clock.advance(7200 + 7 * 86400 + 1)  # quiet for longer than the offence memory
    kit.enforcer.expire()
    block = kit.enforcer.apply([flood(source, 9000)]).of_kind(EventKind.BLOCK)[0]
    assert block.offences == 1


def test_expiry_removes_due_denies_and_extends_those_still_sending(
    enforcer: EnforcerKit, vpc: VpcFixture, clock: Clock
) -> None:
    enforcer.enforcer.apply([flood("203.0.113.1/32", 9000), flood("203.0.113.2/32", 9000)])
    clock.advance(600)
    assert enforcer.enforcer.expire().events == ()  # nothing due yet

    clock.advance(1200)
    result = enforcer.enforcer.expire(reject_pps={"203.0.113.2": 2500.0})

    assert {(e.kind, e.cidr) for e in result.events} == {
        (EventKind.EXPIRE, "203.0.113.1/32"),
        (EventKind.EXTEND, "203.0.113.2/32"),
    }
    extend = result.of_kind(EventKind.EXTEND)[0]
    assert "still sends 2,500 pps" in extend.reason and extend.expires == clock() + 1800
    for nacl_id in vpc.nacl_ids:
        assert owned(enforcer, nacl_id) == {101: "203.0.113.2/32"}
    assert_agree(enforcer, vpc)


def test_outbound_mirror_denies_the_same_cidrs_as_destinations(
    make_enforcer: MakeEnforcer, vpc: VpcFixture, clock: Clock
) -> None:
    kit = make_enforcer(outbound_mirror=True)
    result = kit.enforcer.apply([flood("203.0.113.9/32", 9000)])
    assert {(e.nacl_id, e.direction) for e in result.events} == {
        (nacl_id, direction) for nacl_id in vpc.nacl_ids for direction in Direction
    }
    assert owned(kit, vpc.nacl_ids[0], Direction.EGRESS) == {100: "203.0.113.9/32"}
    clock.advance(1801)
    kit.enforcer.expire()
    assert owned(kit, vpc.nacl_ids[0], Direction.EGRESS) == {}
    assert_agree(kit, vpc)


def test_dry_run_logs_the_same_decisions_and_touches_nothing(
    make_enforcer: MakeEnforcer, vpc: VpcFixture, clock: Clock
) -> None:
    kit = make_enforcer(dry_run=True)
    result = kit.enforcer.apply([flood("203.0.113.7/32", 9000), flood("10.20.0.5/32", 9000)])

    assert result.dry_run
    assert {e.kind for e in result.events} == {EventKind.DRYRUN}
    assert sorted(str(e.would) for e in result.events) == ["BLOCK", "BLOCK", "REFUSED"]
    assert kit.calls == []
    assert all(owned(kit, n) == {} and kit.ledger.denies(n) == [] for n in vpc.nacl_ids)
    logged = list(kit.ledger.events(since=clock() - 60, until=clock() + 60, now=clock()))
    assert sorted(e.would or e.kind for e in logged) == ["BLOCK", "BLOCK", "REFUSED"]


def test_reconcile_repairs_each_kind_of_drift_and_only_reports_foreign_entries(
    enforcer: EnforcerKit, vpc: VpcFixture
) -> None:
    nacl_id, other_id = vpc.nacl_ids[:2]
    enforcer.enforcer.apply([flood("203.0.113.1/32", 9000), flood("203.0.113.2/32", 8000)])
    assert owned(enforcer, nacl_id) == {100: "203.0.113.1/32", 101: "203.0.113.2/32"}
    enforcer.ec2.delete_network_acl_entry(NetworkAclId=nacl_id, RuleNumber=100, Egress=False)  # missing
    enforcer.ec2.replace_network_acl_entry(  # replaced by hand: the entry is someone else's now
        NetworkAclId=nacl_id,
        RuleNumber=101,
        Protocol="-1",
        RuleAction="deny",
        Egress=False,
        CidrBlock="192.0.2.9/32",
    )
    raw_entry(enforcer, nacl_id, 104, "192.0.2.66/32")  # our shape, but no ledger record: foreign
    raw_entry(enforcer, nacl_id, 105, "192.0.2.0/24", action="allow")  # foreign, and not our shape

    inspection = enforcer.enforcer.reconcile(dry_run=True)
    assert inspection.events == ()
    assert {(d.kind, d.rule) for d in inspection.drift} == {
        (DriftKind.MISSING, 100),
        (DriftKind.FOREIGN, 101),
        (DriftKind.MISSING, 101),  # the ledger's deny is not in force: its rule is taken
        (DriftKind.FOREIGN, 104),
        (DriftKind.FOREIGN, 105),
    }
    assert any("rule 105 allow" in problem for problem in inspection.problems)

    repaired = enforcer.enforcer.reconcile()
    assert sorted((str(e.kind), e.rule) for e in repaired.events) == [
        ("FOREIGN", 101),
        ("FOREIGN", 104),
        ("FOREIGN", 105),
        ("REPAIR", 100),
    ]
    assert owned(enforcer, nacl_id) == {
        100: "203.0.113.1/32",
        101: "192.0.2.9/32",  # foreign entries left exactly as they were
        104: "192.0.2.66/32",
        105: "192.0.2.0/24",
    }
    assert enforcer.enforcer.reconcile().events == ()  # nothing to repair, foreign entries logged once
    # The allow inside the block defeats denies in that NACL only: the other NACLs keep working.
    result = enforcer.enforcer.apply([flood("203.0.113.3/32", 9000)])
    assert any(
        "rule 105 allow" in problem and "ruleStart / FLOODGATE_RULE_START" in problem
        for problem in result.problems
    )
    assert {e.nacl_id for e in result.of_kind(EventKind.BLOCK)} == {other_id}


def test_reconcile_recreates_only_valid_denies(enforcer: EnforcerKit, vpc: VpcFixture, clock: Clock) -> None:
    nacl_id = vpc.nacl_ids[0]
    enforcer.enforcer.apply([flood("203.0.113.1/32", 9000)])
    enforcer.ec2.delete_network_acl_entry(NetworkAclId=nacl_id, RuleNumber=100, Egress=False)
    clock.advance(1801)
    closed = enforcer.enforcer.reconcile()  # over, and its entry gone: closed, not re-created
    assert [(e.kind, e.nacl_id) for e in closed.events] == [(EventKind.EXPIRE, nacl_id)]
    assert enforcer.calls[-1][0] == "CreateNetworkAclEntry"  # no call since the apply
    assert [e.nacl_id for e in enforcer.enforcer.expire().events] == [vpc.nacl_ids[1]]
    assert_agree(enforcer, vpc)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([(50, "0.0.0.0/0", "allow")], r"allow rule 50 .* before"),
        ([(103, "192.0.2.0/24", "allow")], r"rule 103 allow"),
        (
            [(2000 + i, f"192.0.2.{i}/32", "deny") for i in range(9)],
            r"10 existing entries \+ 1 default rule \+ budget 10 \+ 1 spare = 22 rules, over the quota of 20",
        ),
    ],
    ids=["allow-below-the-block", "foreign-inside-the-block", "no-quota-headroom"],
)
def test_preflight_refuses_unfit_nacls_naming_the_nacl_and_the_fix(
    enforcer: EnforcerKit, vpc: VpcFixture, entries: list[tuple[int, str, str]], message: str
) -> None:
    nacl_id = vpc.nacl_ids[1]
    for rule, cidr, action in entries:
        raw_entry(enforcer, nacl_id, rule, cidr, action=action)
    # An unfit NACL is left out, never holding up the others.
    result = enforcer.enforcer.apply([flood("203.0.113.7/32", 9000)])
    assert any(nacl_id in problem and re.search(message, problem) for problem in result.problems)
    assert enforcer.ledger.denies(nacl_id) == []
    assert {e.nacl_id for e in result.of_kind(EventKind.BLOCK)} == set(vpc.nacl_ids) - {nacl_id}
    # Refused only when no target NACL is fit.
    enforcer.enforcer.unblock("203.0.113.7/32", reason="test", actor="ann")
    for other in set(vpc.nacl_ids) - {nacl_id}:
        for rule, cidr, action in entries:
            raw_entry(enforcer, other, rule, cidr, action=action)
    with pytest.raises(PreflightError, match=message) as refusal:
        enforcer.enforcer.apply([flood("203.0.113.8/32", 9000)])
    assert nacl_id in str(refusal.value)
    assert all(enforcer.ledger.denies(n) == [] for n in vpc.nacl_ids)


def test_every_nacl_of_a_vpc_can_be_the_target(make_enforcer: MakeEnforcer, vpc: VpcFixture) -> None:
    kit = make_enforcer(nacl_ids=(), vpc_id=vpc.vpc_id)
    left_out = kit.enforcer.apply([flood("203.0.113.9/32", 9000)])  # the default NACL allows all at 100
    assert any(f"{vpc.default_nacl_id}: ingress rule 100 allow" in problem for problem in left_out.problems)
    assert vpc.default_nacl_id not in {e.nacl_id for e in left_out.of_kind(EventKind.BLOCK)}
    for egress in (False, True):
        kit.ec2.delete_network_acl_entry(NetworkAclId=vpc.default_nacl_id, RuleNumber=100, Egress=egress)
    result = kit.enforcer.apply([flood("203.0.113.7/32", 9000)])
    assert set(result.nacl_ids) == {*vpc.nacl_ids, vpc.default_nacl_id}
    assert len(result.of_kind(EventKind.BLOCK)) == 3


def test_an_unknown_nacl_is_a_clear_error_and_nothing_is_written(
    make_enforcer: MakeEnforcer, vpc: VpcFixture, clock: Clock
) -> None:
    kit = make_enforcer(nacl_ids=(vpc.nacl_ids[0], "acl-0123456789abcdef0"))
    with pytest.raises(UnknownNacl, match="acl-0123456789abcdef0"):
        kit.enforcer.apply([flood("203.0.113.7/32", 9000)])
    with pytest.raises(UnknownNacl):
        kit.enforcer.block("203.0.113.8/32", reason="test", actor="alice")
    assert kit.calls == []
    assert list(kit.ledger.events(since=clock() - 60, until=clock() + 60, now=clock())) == []


def test_aws_refusing_an_entry_for_its_quota_withdraws_the_deny_and_logs_it(
    make_enforcer: MakeEnforcer, vpc: VpcFixture
) -> None:
    kit = make_enforcer(nacl_ids=vpc.nacl_ids[:1])

    def lower_real_quota(params: dict[str, Any], **_: Any) -> None:
        if params.get("CidrBlock") == "203.0.113.2/32":
            raise ClientError(
                {"Error": {"Code": "NetworkAclEntryLimitExceeded", "Message": "rule limit reached"}},
                "CreateNetworkAclEntry",
            )

    kit.engine_ec2.meta.events.register("provide-client-params.ec2.CreateNetworkAclEntry", lower_real_quota)
    result = kit.enforcer.apply([flood("203.0.113.1/32", 9000), flood("203.0.113.2/32", 8000)])

    refused = result.of_kind(EventKind.REFUSED)
    assert [e.cidr for e in refused] == ["203.0.113.2/32"]
    assert "quota" in refused[0].reason
    assert owned(kit, vpc.nacl_ids[0]) == held(kit, vpc.nacl_ids[0]) == {100: "203.0.113.1/32"}


def test_manual_block_and_unblock_record_who_and_why(
    enforcer: EnforcerKit, vpc: VpcFixture, clock: Clock
) -> None:
    blocked = enforcer.enforcer.block("203.0.113.66", reason="scraper, ticket 42", actor="alice", ttl_s=7200)
    assert len(blocked.of_kind(EventKind.BLOCK)) == 2
    deny = enforcer.ledger.denies(vpc.nacl_ids[0])[0]
    assert (deny.cidr, deny.origin, deny.expires - deny.created) == (
        "203.0.113.66/32",
        Origin(OriginKind.MANUAL, "alice"),
        7200,
    )

    clock.advance(30)
    unblocked = enforcer.enforcer.unblock("203.0.113.66/32", reason="false positive", actor="bob")
    events = unblocked.of_kind(EventKind.UNBLOCK)
    assert len(events) == 2 and all(e.actor == "bob" and "false positive" in e.reason for e in events)
    assert all(owned(enforcer, n) == {} for n in vpc.nacl_ids)
    with pytest.raises(NotBlocked, match=r"203\.0\.113\.66/32 is not denied"):
        enforcer.enforcer.unblock("203.0.113.66", reason="again", actor="bob")

    story = enforcer.ledger.history("203.0.113.66/32", now=clock())
    assert [e.kind for e in story] == [EventKind.BLOCK] * 2 + [EventKind.UNBLOCK] * 2


@pytest.mark.parametrize(
    ("cidr", "reason"),
    [
        ("10.20.3.4/32", "overlaps protected range 10.0.0.0/8"),  # inside the VPC
        ("203.0.0.0/8", "wider than the /16 cap"),
        ("192.168.1.1", "overlaps protected range 192.168.0.0/16"),
    ],
)
def test_manual_blocks_the_policy_forbids_are_refused_and_logged(
    enforcer: EnforcerKit, clock: Clock, cidr: str, reason: str
) -> None:
    with pytest.raises(BlockRefused, match=reason):
        enforcer.enforcer.block(cidr, reason="attempt", actor="mallory")
    assert enforcer.calls == []
    logged = list(enforcer.ledger.events(since=clock() - 1, until=clock() + 1, now=clock()))
    assert [(e.kind, e.actor) for e in logged] == [(EventKind.REFUSED, "mallory")]


def test_invalid_cidrs_are_a_clear_error_and_nothing_is_written(enforcer: EnforcerKit, clock: Clock) -> None:
    with pytest.raises(InvalidCidr, match="invalid CIDR"):
        enforcer.enforcer.block("203.0.113.1/33", reason="typo", actor="alice")
    with pytest.raises(InvalidCidr):
        enforcer.enforcer.apply([flood("not-an-address", 9000)])
    assert list(enforcer.ledger.events(since=clock() - 60, until=clock() + 60, now=clock())) == []


def test_manual_blocks_evict_automatic_ones_but_never_each_other(
    make_enforcer: MakeEnforcer, vpc: VpcFixture, clock: Clock
) -> None:
    kit = make_enforcer(budget=2, nacl_ids=vpc.nacl_ids[:1])
    kit.enforcer.apply([flood("203.0.113.1/32", 9000)])
    clock.advance(5)
    kit.enforcer.apply([flood("203.0.113.2/32", 99_000)])
    clock.advance(5)
    result = kit.enforcer.block("203.0.113.3/32", reason="by hand", actor="alice")
    assert [e.cidr for e in result.of_kind(EventKind.EVICT)] == ["203.0.113.1/32"]
    kit.enforcer.block("203.0.113.4/32", reason="by hand", actor="alice")
    with pytest.raises(BlockRefused, match="budget of 2 full"):
        kit.enforcer.block("203.0.113.5/32", reason="one too many", actor="alice")
    assert sorted(held(kit, vpc.nacl_ids[0]).values()) == ["203.0.113.3/32", "203.0.113.4/32"]


def test_the_deny_log_reads_newest_first_with_filters_and_paging(
    enforcer: EnforcerKit, vpc: VpcFixture, clock: Clock
) -> None:
    start = clock()
    enforcer.enforcer.apply([flood("203.0.113.1/32", 9000)])
    clock.advance(86400)  # the next day: a new log bucket
    enforcer.enforcer.apply([flood("203.0.113.2/32", 9000)])
    clock.advance(2000)
    enforcer.enforcer.expire()
    ledger = enforcer.ledger
    until = clock() + 1  # one decision's events are stamped a microsecond apart, to keep their order

    everything = list(ledger.events(since=start, until=until, now=clock(), page_size=2))
    assert [e.at for e in everything] == sorted((e.at for e in everything), reverse=True)
    assert [(e.kind, e.cidr) for e in everything[::2]] == [
        (EventKind.EXPIRE, "203.0.113.2/32"),
        (EventKind.EXPIRE, "203.0.113.1/32"),
        (EventKind.BLOCK, "203.0.113.2/32"),
        (EventKind.BLOCK, "203.0.113.1/32"),
    ]
    only_blocks = list(ledger.events(since=start, until=until, kinds=[EventKind.BLOCK], now=clock()))
    assert len(only_blocks) == 4 and {e.kind for e in only_blocks} == {EventKind.BLOCK}
    one_nacl = list(ledger.events(since=start, until=until, nacl_id=vpc.nacl_ids[1], now=clock()))
    assert len(one_nacl) == 4 and {e.nacl_id for e in one_nacl} == {vpc.nacl_ids[1]}
    one_source = list(ledger.events(since=start, until=until, cidr="203.0.113.1/32", limit=3, now=clock()))
    assert len(one_source) == 3 and {e.cidr for e in one_source} == {"203.0.113.1/32"}
    first_day = list(ledger.events(since=start, until=start + 3600, now=clock()))
    assert {e.cidr for e in first_day} == {"203.0.113.1/32"}
    past_retention = list(ledger.events(since=start, until=until, now=clock() + 91 * 86400))
    assert past_retention == []  # TTL may not have run yet; reads skip expired lines themselves


def test_status_shows_pools_denies_and_drift(enforcer: EnforcerKit, vpc: VpcFixture) -> None:
    enforcer.enforcer.apply([flood("203.0.113.1/32", 9000)])
    raw_entry(enforcer, vpc.nacl_ids[0], 109, "192.0.2.1/32")
    status = enforcer.enforcer.status()
    first = status.nacls[0]
    assert first.nacl_id == vpc.nacl_ids[0]
    ipv4 = first.pools[0]
    assert (ipv4.held, ipv4.entries, ipv4.budget, ipv4.rules_used, ipv4.quota) == (1, 2, 10, 4, 20)
    assert [d.cidr for d in first.denies] == ["203.0.113.1/32"]
    assert [(d.kind, d.rule) for d in first.drift] == [(DriftKind.FOREIGN, 109)]  # hand-made: not ours
    assert first.problems == () and first.lease is None


def test_the_engine_configuration_follows_the_lambda_settings(vpc: VpcFixture) -> None:
    settings = Settings.from_env(
        {
            ENV.NACL_IDS: ",".join(vpc.nacl_ids),
            ENV.VPC_CIDRS: vpc.cidr,
            ENV.ALLOW_CIDRS: "198.51.100.0/24",
            ENV.RULE_START: "200",
            ENV.BUDGET: "5",
            ENV.MIN_PPS: "2500",
            ENV.BASE_TTL: "10m",
            ENV.MAX_TTL: "2h",
            ENV.TTL_FACTOR: "3",
            ENV.OUTBOUND_MIRROR: "true",
            ENV.STATE_TABLE: "state",
            ENV.LOG_TABLE: "log",
        }
    )
    config = EnforcementConfig.from_settings(settings)
    assert (config.nacl_ids, config.rule_start, config.budget, config.rule_end) == (vpc.nacl_ids, 200, 5, 211)
    assert config.rule_end == settings.rule_end
    assert config.directions == (Direction.INGRESS, Direction.EGRESS)
    assert (config.bans.base_ttl_s, config.bans.max_ttl_s, config.bans.factor) == (600, 7200, 3.0)
    assert config.evidence_threshold_pps == 2500.0
    assert config.policy.refusal(parse_network("198.51.100.7/32")) is not None


def test_a_manual_block_lengthens_a_running_ban_to_the_time_asked(
    make_enforcer: MakeEnforcer, vpc: VpcFixture, clock: Clock
) -> None:
    kit = make_enforcer(budget=1, nacl_ids=vpc.nacl_ids[:1])
    kit.enforcer.apply([flood("203.0.113.1/32", 50_000)])
    clock.advance(60)
    kit.enforcer.apply([flood("203.0.113.2/32", 90_000)])  # .1 is evicted; its ban still runs
    clock.advance(60)
    kit.enforcer.block("203.0.113.1", reason="keeps coming back, OPS-7", actor="alice", ttl_s=86_400)
    (deny,) = kit.ledger.denies(vpc.nacl_ids[0])
    assert deny.cidr == "203.0.113.1/32"
    assert deny.expires == pytest.approx(clock() + 86_400)


def test_a_dry_run_deployment_repairs_in_dry_run_only(
    make_enforcer: MakeEnforcer, vpc: VpcFixture, clock: Clock
) -> None:
    live = make_enforcer(nacl_ids=vpc.nacl_ids[:1])
    live.enforcer.apply([flood("203.0.113.1/32", 50_000)])
    nacl_id = vpc.nacl_ids[0]
    (rule,) = owned(live, nacl_id)
    live.ec2.delete_network_acl_entry(NetworkAclId=nacl_id, RuleNumber=rule, Egress=False)  # a person's hand
    paused = make_enforcer(nacl_ids=vpc.nacl_ids[:1], dry_run=True)
    result = paused.enforcer.reconcile()
    assert result.dry_run
    assert [d.kind for d in result.drift] == [DriftKind.MISSING]
    assert owned(paused, nacl_id) == {}  # not put back while the deployment is paused
    assert [e.kind for e in result.events] == [EventKind.DRYRUN]


def test_a_foreign_entry_on_a_held_rule_is_reported_as_a_deny_not_in_force(
    enforcer: EnforcerKit, vpc: VpcFixture
) -> None:
    enforcer.enforcer.apply([flood("203.0.113.1/32", 50_000)])
    nacl_id = vpc.nacl_ids[0]
    (rule,) = owned(enforcer, nacl_id)
    enforcer.ec2.replace_network_acl_entry(
        NetworkAclId=nacl_id,
        RuleNumber=rule,
        Protocol="6",
        RuleAction="deny",
        Egress=False,
        CidrBlock="198.51.100.0/24",
        PortRange={"From": 22, "To": 22},
    )
    drift = enforcer.enforcer.reconcile(dry_run=True).drift
    kinds = {(d.kind, d.rule) for d in drift if d.nacl_id == nacl_id}
    assert kinds == {(DriftKind.FOREIGN, rule), (DriftKind.MISSING, rule)}
    missing = next(d for d in drift if d.kind is DriftKind.MISSING and d.nacl_id == nacl_id)
    assert "203.0.113.1/32 is not in force" in missing.detail


def test_a_source_back_before_the_expirer_came_by_escalates_all_the_same(
    make_enforcer: MakeEnforcer, vpc: VpcFixture, clock: Clock
) -> None:
    kit = make_enforcer(nacl_ids=vpc.nacl_ids)
    source = "203.0.113.60/32"
    kit.enforcer.apply([flood(source, 9000)])
    clock.advance(1801)  # the 30 min ban is over, the expirer has not run yet
    result = kit.enforcer.apply([flood(source, 9000)])
    extended = result.of_kind(EventKind.EXTEND)
    assert len(extended) == len(vpc.nacl_ids)  # every NACL: one second offence, not one per NACL
    assert {(e.offences, e.expires) for e in extended} == {(2, clock() + 3600)}
    assert all("offence 2" in e.reason for e in extended)
    assert {d.offences for n in vpc.nacl_ids for d in kit.ledger.denies(n)} == {2}
