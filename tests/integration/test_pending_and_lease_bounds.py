"""Issue 11, leases and throttling, against the emulator: the deny log says BLOCK only for entries that went
in (an entry not written is PENDING, shown as such, and logged BLOCK by the run that writes it), no NACL call
starts or is retried with less of the lease left than one call may take, and one NACL's trouble never stops
the others.

EC2's throttling and refusals are simulated by answering the call with the error real EC2 gives; a slow EC2
moves the test clock (the engine's clock) by the time each call takes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from floodgate.core.model import PlannedDeny
from floodgate.core.records import EventKind, LogEvent
from floodgate.services.manual import run_manual

from .conftest import START, AwsClientFactory, Clock, EnforcerKit, Tables, VpcFixture
from .enforcement_checks import owned_entries
from .incident import stand_in

pytestmark = pytest.mark.integration

MakeEnforcer = Callable[..., EnforcerKit]
Rule = Callable[[str, dict[str, Any]], str | None]  # (operation, parameters) -> error code to answer, or None
LEASE_S = 60.0  # the engine's default lease
A, B, C = "203.0.113.7/32", "203.0.113.8/32", "198.51.100.0/24"


def flood(cidr: str, pps: float = 9000.0) -> PlannedDeny:
    return PlannedDeny(cidr, pps, pps * 8 * 600, 0.1, 1, f"{cidr} floods at {pps:,.0f} pps")


class WorkerKilled(BaseException):
    """The worker's process died: nothing after this point runs."""


@dataclass
class Call:
    operation: str
    started: float
    ended: float
    params: dict[str, Any]


@dataclass
class SlowEc2:
    """An EC2 client whose NACL entry calls each take `seconds` of `clock` and are answered with the error
    `rule` picks (EC2's own code), or carried out by the emulator. Every other call goes straight through."""

    client: Any
    clock: Clock
    rule: Rule
    seconds: float = 0.0
    calls: list[Call] = field(default_factory=list)
    dead: bool = False  # killed: see `Mortal`

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.client, name)
        if not name.endswith("network_acl_entry"):
            return real
        operation = "".join(part.title() for part in name.split("_"))

        def call(**params: Any) -> Any:
            started = self.clock()
            code = self.rule(operation, params)
            self.clock.advance(self.seconds)
            self.calls.append(Call(operation, started, self.clock(), params))
            if code == "kill":
                self.dead = True
                raise WorkerKilled
            if code is None:
                return real(**params)
            status = 503 if code == "RequestLimitExceeded" else 400
            raise ClientError(
                {
                    "Error": {"Code": code, "Message": f"simulated {code}"},
                    "ResponseMetadata": {"HTTPStatusCode": status},
                },
                operation,
            )

        return call


@dataclass
class Mortal:
    """A client of the same worker as `ec2`: once that worker is dead, it makes no more calls (not even the
    lease's release)."""

    client: Any
    ec2: SlowEc2

    def __getattr__(self, name: str) -> Any:
        if self.ec2.dead:
            raise WorkerKilled
        return getattr(self.client, name)


def throttled(operation: str, params: dict[str, Any]) -> str | None:
    return "RequestLimitExceeded" if operation == "CreateNetworkAclEntry" else None


def log_of(kit: EnforcerKit, clock: Clock, nacl_id: str | None = None) -> list[LogEvent]:
    events = kit.ledger.events(since=START - 60, until=clock() + 86400, now=clock(), nacl_id=nacl_id)
    return sorted(events, key=lambda e: e.sort_key)


def story(events: list[LogEvent], cidr: str) -> list[tuple[EventKind, EventKind | None]]:
    return [(e.kind, e.would) for e in events if e.cidr == cidr]


# -- no NACL call starts or is retried past the lease's safe margin --------------------------------------


@pytest.mark.parametrize(
    ("read_timeout", "margin_s", "calls_made"),
    [
        # Budget 2 + 3 s, margin 6 s. Each call takes 4.9 s and is throttled. The first entry gets the
        # backoff's 8 attempts (0 .. 39.2 s); the second starts at 39.2 s and is retried at 44.1, 49.0 and
        # 53.9 s (6.1 s left); at 58.8 s only 1.2 s is left: no retry, and the third entry is not started.
        (3, 6.0, 12),
        # Budget 2 + 20 s, margin 23 s: attempts at 0, 4.9, ..., 34.3 s (25.7 s left); at 39.2 s 20.8 s is
        # left, under the margin: no 9th attempt would have been allowed anyway, and no second entry starts.
        (20, 23.0, 8),
    ],
)
def test_no_nacl_call_starts_or_is_retried_with_less_lease_left_than_one_call_may_take(
    *,
    make_enforcer: MakeEnforcer,
    aws_client: AwsClientFactory,
    vpc: VpcFixture,
    clock: Clock,
    read_timeout: int,
    margin_s: float,
    calls_made: int,
) -> None:
    nacl_id = vpc.nacl_ids[0]
    ec2 = SlowEc2(aws_client("ec2", connect_timeout=2, read_timeout=read_timeout), clock, throttled, 4.9)
    kit = make_enforcer(ec2=ec2, nacl_ids=(nacl_id,))
    assert kit.enforcer.leases.margin_s == margin_s
    lease_until = clock() + LEASE_S  # the clock moves only while EC2 is called

    result = kit.enforcer.apply([flood(A), flood(B), flood(C, 5000)])

    assert len(ec2.calls) == calls_made
    for call in ec2.calls:
        assert lease_until - call.started >= margin_s, f"{call.operation} started too late"
        assert call.ended <= lease_until, f"{call.operation} outlasted the lease"
    assert [nacl for nacl, _ in result.failures] == [nacl_id]
    assert owned_entries(kit, nacl_id, kit.config.directions[0]) == {}
    # Nothing went in, so nothing was logged as in force: all three are pending.
    log = log_of(kit, clock)
    assert {(e.kind, e.would) for e in log} == {(EventKind.PENDING, EventKind.BLOCK)}
    assert sorted(e.cidr for e in log) == sorted([A, B, C])
    (status,) = kit.enforcer.status().nacls
    assert sorted(status.pending) == sorted([A, B, C])


# -- the deny log tells the truth ------------------------------------------------------------------------


def test_an_automatic_deny_throttled_past_the_lease_is_pending_until_the_next_run_writes_it(
    make_enforcer: MakeEnforcer, aws_client: AwsClientFactory, vpc: VpcFixture, clock: Clock
) -> None:
    nacl_id = vpc.nacl_ids[0]
    slow = SlowEc2(aws_client("ec2", connect_timeout=2, read_timeout=3), clock, throttled, 4.9)
    kit = make_enforcer(ec2=slow, nacl_ids=(nacl_id,))
    result = kit.enforcer.apply([flood(A)])

    (pending,) = result.of_kind(EventKind.PENDING)
    assert (pending.cidr, pending.would, pending.rule) == (A, EventKind.BLOCK, 100)
    assert pending.reason.startswith("entry not written (EC2 kept failing (RequestLimitExceeded))")
    assert pending.expires is not None and pending.offences == 1  # the decided ban, kept for the reader
    assert result.of_kind(EventKind.BLOCK) == ()
    assert story(log_of(kit, clock), A) == [(EventKind.PENDING, EventKind.BLOCK)]

    clock.advance(60)  # EC2 is willing again: the expirer's run writes the entry, and only now says BLOCK
    expirer = make_enforcer(nacl_ids=(nacl_id,), actor="floodgate-expirer")
    written = expirer.enforcer.expire()
    assert [(e.kind, e.cidr) for e in written.events] == [(EventKind.BLOCK, A)]
    assert "pending since an earlier run, is written" in written.events[0].reason
    assert owned_entries(kit, nacl_id, kit.config.directions[0]) == {100: A}
    assert story(log_of(kit, clock), A) == [(EventKind.PENDING, EventKind.BLOCK), (EventKind.BLOCK, None)]
    assert kit.enforcer.status().nacls[0].pending == ()
    # Written and logged once: the runs after it have nothing to say.
    clock.advance(60)
    assert expirer.enforcer.expire().events == ()
    assert kit.ledger.marks(nacl_id) == frozenset()


def test_a_manual_block_throttled_in_one_nacl_says_pending_there_and_status_and_log_show_it(
    make_enforcer: MakeEnforcer, aws_client: AwsClientFactory, vpc: VpcFixture, tables: Tables
) -> None:
    deployment = stand_in(aws_client, vpc, tables)
    slow_nacl, fine_nacl = vpc.nacl_ids[:2]
    wall = Clock(time.time() - 30)  # the CLI reads the wall clock: these runs are its recent past

    def rule(operation: str, params: dict[str, Any]) -> str | None:
        return throttled(operation, params) if params["NetworkAclId"] == slow_nacl else None

    kit = make_enforcer(ec2=SlowEc2(aws_client("ec2"), wall, rule), now=wall, actor="manual")
    payload = {"action": "block", "cidr": A, "reason": "incident 12", "actor": "ann", "ttl": "1h"}
    response = run_manual(payload, settings=deployment.settings, enforcer=kit.enforcer)

    assert response.ok, response.body
    message = response.body["message"]
    assert f"denied in {fine_nacl} until" in message
    assert f"pending in {slow_nacl} (entry not written yet; the next run writes it)" in message
    assert response.metric_values() == {"Blocks": 1, "PendingDenies": 1}

    status = deployment.cli("status", "--json").json()
    pending = {n["nacl_id"]: n["pending"] for n in status["nacls"]}
    assert pending == {slow_nacl: [A], fine_nacl: []}
    assert "pending, not in force yet" in deployment.cli("status").out
    lines = deployment.cli("log", "--json", "--cidr", A).lines()
    assert sorted((e["event"], e["nacl_id"], e.get("would")) for e in lines) == sorted(
        [("BLOCK", fine_nacl, None), ("PENDING", slow_nacl, "BLOCK")]
    )
    table = deployment.cli("log", "--cidr", A).out
    assert "PENDING:BLOCK" in table
    shown = deployment.cli("show", A).out.splitlines()[0]
    assert shown.startswith(f"{A}: denied now in 1 NACL; pending in {slow_nacl} (entry not written yet")

    # The next run (EC2 willing) writes it and logs BLOCK; status shows nothing pending any more.
    wall.advance(10)
    make_enforcer(now=wall, actor="floodgate-expirer").enforcer.expire()
    lines = deployment.cli("log", "--json", "--cidr", A, "--nacl", slow_nacl).lines()
    assert [e["event"] for e in lines] == ["BLOCK", "PENDING"]  # newest first
    status = deployment.cli("status", "--json").json()
    assert all(n["pending"] == [] for n in status["nacls"])


def test_a_worker_killed_before_its_nacl_write_leaves_a_pending_line_not_a_block(
    make_enforcer: MakeEnforcer, aws_client: AwsClientFactory, vpc: VpcFixture, clock: Clock
) -> None:
    nacl_id = vpc.nacl_ids[0]

    def killed_at_the_nacl(operation: str, params: dict[str, Any]) -> str | None:
        return "kill" if operation == "CreateNetworkAclEntry" else None

    ec2 = SlowEc2(aws_client("ec2"), clock, killed_at_the_nacl)
    dynamodb = Mortal(aws_client("dynamodb"), ec2)
    dying = make_enforcer(ec2=ec2, dynamodb=dynamodb, nacl_ids=(nacl_id,))
    with pytest.raises(WorkerKilled):
        dying.enforcer.apply([flood(A)])
    next_run = make_enforcer(nacl_ids=(nacl_id,))
    assert {d.cidr for d in next_run.ledger.denies(nacl_id)} == {A}  # the ledger first, always
    assert log_of(next_run, clock) == []  # its log lines wait in the journal
    assert next_run.ledger.journals(nacl_id, now=clock()) == []  # its lease still runs: not ours to deliver

    clock.advance(61)  # its lease lapsed
    assert len(next_run.ledger.journals(nacl_id, now=clock())) == 1
    next_run.enforcer.reconcile()

    log = log_of(next_run, clock)
    assert story(log, A) == [(EventKind.PENDING, EventKind.BLOCK), (EventKind.BLOCK, None)]
    assert "the worker stopped before writing it" in log[0].reason
    assert owned_entries(next_run, nacl_id, next_run.config.directions[0]) == {100: A}


def test_a_worker_killed_after_its_nacl_write_leaves_a_block_line(
    make_enforcer: MakeEnforcer, aws_client: AwsClientFactory, vpc: VpcFixture, clock: Clock
) -> None:
    nacl_id = vpc.nacl_ids[0]
    dynamodb = aws_client("dynamodb")

    def killed_at_delivery(**_: Any) -> Any:
        raise WorkerKilled

    class DiesDelivering:
        def __getattr__(self, name: str) -> Any:
            return killed_at_delivery if name == "batch_write_item" else getattr(dynamodb, name)

    dying = make_enforcer(dynamodb=DiesDelivering(), nacl_ids=(nacl_id,))
    with pytest.raises(WorkerKilled):
        dying.enforcer.apply([flood(A)])
    assert owned_entries(dying, nacl_id, dying.config.directions[0]) == {100: A}

    clock.advance(61)
    make_enforcer(nacl_ids=(nacl_id,)).enforcer.reconcile()
    assert story(log_of(dying, clock), A) == [(EventKind.BLOCK, None)]  # in force, and said once


# -- isolation per NACL ---------------------------------------------------------------------------------


def test_an_unfit_nacl_and_a_failing_nacl_never_stop_the_third(
    make_enforcer: MakeEnforcer,
    make_vpc: Callable[..., VpcFixture],
    aws_client: AwsClientFactory,
    clock: Clock,
) -> None:
    three = make_vpc(nacls=3, cidr="10.30.0.0/16")
    unfit, failing, healthy = three.nacl_ids  # processed in this order: the healthy one comes last
    setup = aws_client("ec2")
    # An allow rule among the owned rules: preflight leaves this NACL out, and only this one.
    setup.create_network_acl_entry(
        NetworkAclId=unfit, RuleNumber=102, Protocol="6", RuleAction="allow", Egress=False,
        CidrBlock="0.0.0.0/0", PortRange={"From": 443, "To": 443},
    )  # fmt: skip

    def rule(operation: str, params: dict[str, Any]) -> str | None:
        return "UnauthorizedOperation" if params["NetworkAclId"] == failing else None

    ec2 = SlowEc2(aws_client("ec2"), clock, rule)
    kit = make_enforcer(ec2=ec2, nacl_ids=three.nacl_ids)
    direction = kit.config.directions[0]

    applied = kit.enforcer.apply([flood(A)])
    blocked = kit.enforcer.block(B, reason="incident 12", actor="ann", ttl_s=600)

    for result in (applied, blocked):
        assert [nacl for nacl, _ in result.failures] == [failing]
        assert "UnauthorizedOperation" in result.failures[0][1]
        assert len(result.problems) == 1 and unfit in result.problems[0]
        assert {e.nacl_id for e in result.of_kind(EventKind.BLOCK)} == {healthy}
        assert {e.nacl_id for e in result.of_kind(EventKind.PENDING)} == {failing}
    assert owned_entries(kit, healthy, direction) == {100: A, 101: B}
    assert owned_entries(kit, failing, direction) == {}
    assert owned_entries(kit, unfit, direction) == {102: "0.0.0.0/0"}  # its allow rule, untouched

    # The failing NACL keeps failing; the healthy one still expires on time.
    clock.advance(601)
    expired = kit.enforcer.expire()
    assert {(e.kind, e.nacl_id, e.cidr) for e in expired.of_kind(EventKind.EXPIRE)} >= {
        (EventKind.EXPIRE, healthy, B)
    }
    assert owned_entries(kit, healthy, direction) == {100: A}
    assert [nacl for nacl, _ in expired.failures] == [failing]
