"""Isolation, ownership and leases against the emulator (issue 11, engine half): one NACL's or one record's
trouble never stops the others, entries Floodgate did not write are never deleted or replaced, a write EC2
kept throttling is pending (and retried), and a worker whose lease lapsed never deletes a newer worker's deny.

EC2's refusals are simulated by answering the call with the error real EC2 gives (the emulator validates
nothing); `FaultyEc2` does that for chosen calls only, and passes everything else to the emulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from floodgate.core.decision import DriftKind
from floodgate.core.model import PlannedDeny
from floodgate.core.records import EventKind

from .conftest import START, AwsClientFactory, Clock, EnforcerKit, VpcFixture
from .enforcement_checks import owned_entries

pytestmark = pytest.mark.integration

MakeEnforcer = Callable[..., EnforcerKit]
Rule = Callable[[str, dict[str, Any]], str | None]  # (operation, parameters) -> error code to answer, or None


def flood(cidr: str, pps: float = 9000.0) -> PlannedDeny:
    return PlannedDeny(cidr, pps, pps * 8 * 600, 0.1, 1, f"{cidr} floods at {pps:,.0f} pps")


class FaultyEc2:
    """An EC2 client that answers the calls `rule` picks with an error, as EC2 would; the rest go through."""

    def __init__(self, client: Any, rule: Rule) -> None:
        self._client = client
        self._rule = rule
        self.refused: list[tuple[str, str]] = []  # (operation, code)

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if not name.endswith("network_acl_entry"):
            return real
        operation = "".join(part.title() for part in name.split("_"))

        def call(**params: Any) -> Any:
            code = self._rule(operation, params)
            if code is None:
                return real(**params)
            self.refused.append((operation, code))
            status = 503 if code == "RequestLimitExceeded" else 400
            raise ClientError(
                {
                    "Error": {"Code": code, "Message": f"simulated {code}"},
                    "ResponseMetadata": {"HTTPStatusCode": status},
                },
                operation,
            )

        return call


def log_of(kit: EnforcerKit, clock: Clock) -> list[Any]:
    events = kit.ledger.events(since=START - 60, until=clock() + 86400, now=clock())
    return sorted(events, key=lambda e: e.sort_key)


def hand_made(kit: EnforcerKit, nacl_id: str, rule: int, cidr: str, **shape: Any) -> None:
    """An entry a person adds with the AWS CLI."""
    params = {"Protocol": "-1", "RuleAction": "deny", **shape}
    kit.ec2.create_network_acl_entry(
        NetworkAclId=nacl_id, RuleNumber=rule, Egress=False, CidrBlock=cidr, **params
    )


# -- item 1: isolation per NACL, quarantine --------------------------------------------------------------


def test_a_poison_record_is_quarantined_and_the_other_nacls_keep_working(
    make_enforcer: MakeEnforcer, aws_client: AwsClientFactory, vpc: VpcFixture, clock: Clock
) -> None:
    poisoned, healthy = vpc.nacl_ids[:2]
    poison = "203.0.113.66/32"

    def rule(operation: str, params: dict[str, Any]) -> str | None:
        if params.get("NetworkAclId") == poisoned and params.get("CidrBlock") == poison:
            return "InvalidParameterValue"
        return None

    faulty = FaultyEc2(aws_client("ec2"), rule)
    kit = make_enforcer(ec2=faulty)
    result = kit.enforcer.apply([flood(poison), flood("203.0.113.7/32", 8000)])

    quarantined = result.of_kind(EventKind.QUARANTINE)
    assert [(e.nacl_id, e.cidr) for e in quarantined] == [(poisoned, poison)]
    assert "InvalidParameterValue" in quarantined[0].reason
    # The poisoned NACL still got the other deny; the healthy one got both.
    assert set(owned_entries(kit, poisoned, kit.config.directions[0]).values()) == {"203.0.113.7/32"}
    assert set(owned_entries(kit, healthy, kit.config.directions[0]).values()) == {poison, "203.0.113.7/32"}
    assert poison not in {d.cidr for d in kit.ledger.denies(poisoned)}  # no longer retried
    # No BLOCK: its entry never went in; the QUARANTINE line says why.
    assert [e.kind for e in log_of(kit, clock) if e.cidr == poison and e.nacl_id == poisoned] == [
        EventKind.QUARANTINE,
    ]

    refusals_before = len(faulty.refused)
    clock.advance(60)
    assert kit.enforcer.expire().failures == ()
    assert kit.enforcer.reconcile().events == ()
    assert len(faulty.refused) == refusals_before  # the quarantined deny is never tried again


def test_a_repair_ec2_refuses_fails_its_nacl_only_and_the_others_still_expire(
    make_enforcer: MakeEnforcer, aws_client: AwsClientFactory, vpc: VpcFixture, clock: Clock
) -> None:
    broken, healthy = vpc.nacl_ids[:2]
    kit = make_enforcer()
    kit.enforcer.apply([flood("203.0.113.7/32")])

    def rule(operation: str, params: dict[str, Any]) -> str | None:
        deleting = operation == "DeleteNetworkAclEntry"
        return "UnauthorizedOperation" if deleting and params.get("NetworkAclId") == broken else None

    faulty = make_enforcer(ec2=FaultyEc2(aws_client("ec2"), rule))
    clock.advance(1801)
    result = faulty.enforcer.expire()

    assert [nacl_id for nacl_id, _ in result.failures] == [broken]
    assert "UnauthorizedOperation" in result.failures[0][1]
    assert any(d.kind is DriftKind.FAILED and d.nacl_id == broken for d in result.drift)
    assert owned_entries(kit, healthy, kit.config.directions[0]) == {}  # expired there all the same
    # The entry left behind is still known to be Floodgate's: the next run (EC2 willing) removes it.
    assert kit.enforcer.reconcile().of_kind(EventKind.REPAIR)
    assert owned_entries(kit, broken, kit.config.directions[0]) == {}


# -- item 2: ownership ----------------------------------------------------------------------------------


def test_a_hand_made_deny_in_the_owned_block_is_never_deleted_and_is_logged_once(
    enforcer: EnforcerKit, vpc: VpcFixture, clock: Clock
) -> None:
    nacl_id = vpc.nacl_ids[0]
    enforcer.enforcer.apply([flood("203.0.113.7/32")])
    hand_made(enforcer, nacl_id, 103, "192.0.2.44/32")  # protocol -1 deny: Floodgate's shape, not its entry

    for _ in range(3):  # the expirer's minutes, and reconcile by hand
        clock.advance(60)
        enforcer.enforcer.expire()
        enforcer.enforcer.reconcile()
    clock.advance(1801)  # our deny expires; the hand-made one stays
    enforcer.enforcer.expire()
    enforcer.enforcer.reconcile()

    assert owned_entries(enforcer, nacl_id, enforcer.config.directions[0]) == {103: "192.0.2.44/32"}
    foreign = [e for e in log_of(enforcer, clock) if e.kind is EventKind.FOREIGN]
    assert [(e.nacl_id, e.rule, e.cidr) for e in foreign] == [(nacl_id, 103, "192.0.2.44/32")]
    assert "not written by Floodgate" in foreign[0].reason
    inspection = enforcer.enforcer.reconcile(dry_run=True)
    assert [(d.kind, d.rule) for d in inspection.drift] == [(DriftKind.FOREIGN, 103)]


def test_a_hand_made_tcp_22_deny_in_one_nacl_does_not_halt_denies_anywhere(
    enforcer: EnforcerKit, vpc: VpcFixture, clock: Clock
) -> None:
    nacl_id, other_id = vpc.nacl_ids[:2]
    hand_made(enforcer, nacl_id, 100, "192.0.2.0/24", Protocol="6", PortRange={"From": 22, "To": 22})

    result = enforcer.enforcer.apply([flood("203.0.113.7/32")])
    assert result.problems == ()
    blocks = {(e.nacl_id, e.rule) for e in result.of_kind(EventKind.BLOCK)}
    assert blocks == {(nacl_id, 101), (other_id, 100)}  # its rule number skipped, the rest of the block works
    manual = enforcer.enforcer.block("198.51.100.9/32", reason="incident 7", actor="ann", ttl_s=600)
    assert {e.nacl_id for e in manual.of_kind(EventKind.BLOCK)} == {nacl_id, other_id}
    entries = owned_entries(enforcer, nacl_id, enforcer.config.directions[0])
    assert entries[100] == "192.0.2.0/24"  # untouched
    status = next(n for n in enforcer.enforcer.status().nacls if n.nacl_id == nacl_id)
    assert [(d.kind, d.rule) for d in status.drift] == [(DriftKind.FOREIGN, 100)]
    assert status.problems == ()


# -- item 3: leases and throttling ------------------------------------------------------------------------


def test_a_throttled_write_is_pending_not_in_force_and_the_next_run_writes_it(
    make_enforcer: MakeEnforcer, aws_client: AwsClientFactory, vpc: VpcFixture, clock: Clock
) -> None:
    throttled, healthy = vpc.nacl_ids[:2]

    def rule(operation: str, params: dict[str, Any]) -> str | None:
        creating = operation == "CreateNetworkAclEntry"
        return "RequestLimitExceeded" if creating and params.get("NetworkAclId") == throttled else None

    faulty = FaultyEc2(aws_client("ec2"), rule)
    kit = make_enforcer(ec2=faulty)
    result = kit.enforcer.apply([flood("203.0.113.7/32")])

    pending = result.of_kind(EventKind.PENDING)
    assert [(e.nacl_id, e.cidr, e.would) for e in pending] == [(throttled, "203.0.113.7/32", EventKind.BLOCK)]
    assert [e.nacl_id for e in result.of_kind(EventKind.BLOCK)] == [healthy]
    assert [nacl_id for nacl_id, _ in result.failures] == [throttled]
    assert owned_entries(kit, throttled, kit.config.directions[0]) == {}
    assert owned_entries(kit, healthy, kit.config.directions[0]) == {100: "203.0.113.7/32"}
    by_nacl = {n.nacl_id: n for n in kit.enforcer.status().nacls}
    assert by_nacl[throttled].pending == ("203.0.113.7/32",)
    assert by_nacl[healthy].pending == ()

    clock.advance(60)  # EC2 is willing again: the expirer's drift check writes the pending entry
    retried = make_enforcer().enforcer.reconcile()
    assert [(e.kind, e.nacl_id) for e in retried.events] == [(EventKind.BLOCK, throttled)]
    assert owned_entries(kit, throttled, kit.config.directions[0]) == {100: "203.0.113.7/32"}
    assert all(n.pending == () for n in kit.enforcer.status().nacls)


def test_a_worker_whose_lease_lapsed_never_deletes_the_new_workers_deny(
    make_enforcer: MakeEnforcer, aws_client: AwsClientFactory, vpc: VpcFixture, clock: Clock
) -> None:
    nacl_id = vpc.nacl_ids[0]
    first = make_enforcer(actor="first", nacl_ids=(nacl_id,))
    first.enforcer.apply([flood("203.0.113.7/32")])
    clock.advance(1801)  # its ban is over: the stale worker will expire it
    newer = make_enforcer(actor="newer", nacl_ids=(nacl_id,))
    stalls = {"count": 0}

    def throttled_past_the_lease(operation: str, params: dict[str, Any]) -> str | None:
        # The stale worker's delete is throttled for longer than its lease; meanwhile the newer worker takes
        # the NACL over and puts a fresh deny at the very same rule number. A retry would delete that one.
        if operation == "DeleteNetworkAclEntry" and stalls["count"] == 0:
            stalls["count"] += 1
            clock.advance(61)
            newer.enforcer.reconcile()  # removes the expired deny's entry (Floodgate's, marked)
            newer.enforcer.apply([flood("198.51.100.9/32")])
            assert owned_entries(newer, nacl_id, newer.config.directions[0]) == {100: "198.51.100.9/32"}
            return "RequestLimitExceeded"
        return None

    stale = make_enforcer(
        actor="stale", nacl_ids=(nacl_id,), ec2=FaultyEc2(aws_client("ec2"), throttled_past_the_lease)
    )
    result = stale.enforcer.expire()

    assert stalls["count"] == 1
    assert [nacl for nacl, _ in result.failures] == [nacl_id]  # it noticed, and stopped
    assert owned_entries(newer, nacl_id, newer.config.directions[0]) == {100: "198.51.100.9/32"}
    assert {d.cidr for d in newer.ledger.denies(nacl_id)} == {"198.51.100.9/32"}
