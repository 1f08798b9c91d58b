"""Chaos figures against a moto server this script starts: a bounded run of automatic, manual, expiry and
reconcile operations on three NACLs while EC2 and DynamoDB calls fail (throttling, 5xx, some after the call
was carried out), EC2 rejects one source's entry as invalid, workers are killed between their ledger write and
their NACL write, and people add their own entries inside the owned block. After one clean reconcile it counts
the violations: foreign entries deleted or changed (ownership), more Floodgate entries than the budget in a
pool, and NACL entries that disagree with the ledger. Prints JSON lines; a non-zero violation count fails.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.httpsession import URLLib3Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_enforcement import ROOT, client, emit, start_emulator, tables

sys.path.insert(0, str(ROOT / "functions"))
from floodgate.adapters.ledger import Ledger
from floodgate.adapters.nacl import NaclGateway
from floodgate.adapters.retry import Backoff, Retrier
from floodgate.core.bans import BanPolicy
from floodgate.core.decision import EnforcementConfig
from floodgate.core.model import PlannedDeny
from floodgate.core.networks import DenyPolicy
from floodgate.core.records import EventKind, MarkKind
from floodgate.core.slots import Direction
from floodgate.engine.enforcer import Enforcer
from floodgate.engine.results import EnforcementError, EnforcementResult

SEED = 20261130
OPERATIONS = 120
BUDGET = 4
NACLS = 3
FAILURE_RATE = 0.15
KILL_RATE = 0.08
POISON = "203.0.113.66/32"  # EC2 answers InvalidParameterValue for its entry (as for a zone id it would)
SOURCES = [f"198.51.100.{i}/32" for i in range(1, 13)] + ["2001:db8:7::/64", "192.0.2.128/25", POISON]
MUTATING = {"CreateNetworkAclEntry", "ReplaceNetworkAclEntry", "DeleteNetworkAclEntry"}
FAST = Backoff(attempts=6, base_s=0.001, cap_s=0.01)

EC2_ERRORS = {
    "throttle": (503, "RequestLimitExceeded"),
    "server": (500, "InternalError"),
    "invalid": (400, "InvalidParameterValue"),
}
DYNAMODB_ERRORS = {
    "throttle": (400, "com.amazonaws.dynamodb.v20120810#ThrottlingException"),
    "server": (500, "com.amazonaws.dynamodb.v20120810#InternalServerError"),
}


class WorkerKilled(BaseException):
    """The worker's process died mid-operation: nothing after this point runs."""


class _Body:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Any:
        yield self._content


class Chaos:
    """Fault injection for one worker's clients, and the tally across workers."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.faults: dict[str, int] = {"throttle": 0, "server": 0, "server_after_done": 0, "invalid": 0}
        self.kills = 0
        self._wire = URLLib3Session()
        self._dead = False

    def worker(self, *, kill_rate: float) -> None:
        self._dead = False
        self._kill_rate = kill_rate

    def attach(self, service_client: Any) -> Any:
        dynamodb = service_client.meta.service_model.service_name == "dynamodb"

        def before_send(request: Any, event_name: str, **_: Any) -> AWSResponse | None:
            operation = event_name.rsplit(".", 1)[-1]
            if self._dead:
                raise WorkerKilled
            if operation in MUTATING and self.rng.random() < self._kill_rate:
                self._dead = True  # the ledger already holds the decision; the NACL never hears of it
                self.kills += 1
                raise WorkerKilled
            body = request.body or b""
            body = body.encode() if isinstance(body, str) else bytes(body)
            if not dynamodb and b"203.0.113.66%2F32" in body and operation != "DeleteNetworkAclEntry":
                return self._answer(request, "invalid", dynamodb=False)
            roll = self.rng.random()
            if roll >= FAILURE_RATE:
                return None
            if roll < FAILURE_RATE / 3:
                self._wire.send(request)  # carried out, but the answer is lost on the way back
                self.faults["server_after_done"] += 1
                return self._answer(request, "server", dynamodb=dynamodb, count=False)
            return self._answer(
                request, "throttle" if self.rng.random() < 0.5 else "server", dynamodb=dynamodb
            )

        service_client.meta.events.register(
            f"before-send.{service_client.meta.service_model.service_name}", before_send
        )
        return service_client

    def _answer(self, request: Any, kind: str, *, dynamodb: bool, count: bool = True) -> AWSResponse:
        if count:
            self.faults[kind] += 1
        if dynamodb:
            status, code = DYNAMODB_ERRORS[kind]
            body = ('{"__type":"' + code + '","message":"injected"}').encode()
        else:
            status, code = EC2_ERRORS[kind]
            body = (
                f"<Response><Errors><Error><Code>{code}</Code><Message>injected</Message></Error></Errors>"
                "<RequestID>chaos</RequestID></Response>"
            ).encode()
        return AWSResponse(request.url, status, {}, _Body(body))


class Clock:
    def __init__(self) -> None:
        self.at = 1_764_000_000.0

    def __call__(self) -> float:
        return self.at


def build_nacls(ec2: Any) -> tuple[str, ...]:
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    nacl_ids = []
    for _ in range(NACLS):
        nacl_id = ec2.create_network_acl(VpcId=vpc_id)["NetworkAcl"]["NetworkAclId"]
        for egress in (False, True):
            ec2.create_network_acl_entry(
                NetworkAclId=nacl_id, RuleNumber=1000, Protocol="-1", RuleAction="allow", Egress=egress,
                CidrBlock="0.0.0.0/0",
            )  # fmt: skip
        nacl_ids.append(nacl_id)
    return tuple(nacl_ids)


def add_foreign_entry(
    ec2: Any, rng: random.Random, config: EnforcementConfig, nacl_id: str
) -> tuple[int, str] | None:
    """A person's entry inside the owned IPv4 block, at a free rule number: a deny of all, or of TCP/22."""
    pool = config.pools[0]
    entries = ec2.describe_network_acls(NetworkAclIds=[nacl_id])["NetworkAcls"][0]["Entries"]
    taken = {e["RuleNumber"] for e in entries if not e["Egress"]}
    free = [rule for rule in pool.rules if rule not in taken]
    if not free:
        return None
    rule = rng.choice(free)
    cidr = f"192.0.2.{rng.randrange(1, 100)}/32"
    shape: dict[str, Any] = {"Protocol": "-1"}
    if rng.random() < 0.5:
        shape = {"Protocol": "6", "PortRange": {"From": 22, "To": 22}}
    ec2.create_network_acl_entry(
        NetworkAclId=nacl_id, RuleNumber=rule, RuleAction="deny", Egress=False, CidrBlock=cidr, **shape
    )
    return rule, cidr


class ChaosRun:
    """The operations, the hand-made entries, and the violation count after the clean reconcile."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.rng = random.Random(SEED)
        self.chaos = Chaos(random.Random(SEED + 1))
        self.clock = Clock()
        self.clean_ec2 = client("ec2", endpoint)
        self.nacl_ids = build_nacls(self.clean_ec2)
        self.state_table, self.log_table = tables(client("dynamodb", endpoint))
        self.config = EnforcementConfig(
            policy=DenyPolicy.build(vpc_cidrs=["10.0.0.0/16"]),
            bans=BanPolicy(base_ttl_s=600, max_ttl_s=7200),
            nacl_ids=self.nacl_ids,
            budget=BUDGET,
            nacl_quota=20,
            evidence_threshold_pps=1000.0,
            lease_s=60.0,
        )
        self.foreign: dict[tuple[str, int], str] = {}  # (NACL, rule) -> CIDR of each hand-made entry
        self.counts = dict.fromkeys(
            ("operations", "refused", "unexpected_errors", "quarantines", "pending", "nacl_failures"), 0
        )
        self.counts["foreign_logged"] = 0

    def worker(self, *, faulty: bool, actor: str) -> Enforcer:
        self.chaos.worker(kill_rate=KILL_RATE if faulty else 0.0)
        ec2 = client("ec2", self.endpoint)
        dynamodb = client("dynamodb", self.endpoint)
        if faulty:
            self.chaos.attach(ec2)
            self.chaos.attach(dynamodb)
        retrier = Retrier(FAST)
        return Enforcer(
            self.config,
            NaclGateway(ec2, retrier=retrier),
            Ledger(self.state_table, self.log_table, dynamodb, retrier=retrier),
            now=self.clock,
            actor=actor,
        )

    def operate(self, number: int) -> None:
        rng = self.rng
        if rng.random() < 0.06 and len(self.foreign) < 6:
            nacl_id = rng.choice(self.nacl_ids)
            added = add_foreign_entry(self.clean_ec2, rng, self.config, nacl_id)
            if added is not None:
                self.foreign[(nacl_id, added[0])] = added[1]
        enforcer = self.worker(faulty=True, actor=f"worker-{number}")
        self.counts["operations"] += 1
        try:
            self._tally(self._one_operation(enforcer))
        except WorkerKilled:
            pass
        except (EnforcementError, LookupError):
            self.counts["refused"] += 1  # refused blocks, unblocks of what is not denied, busy NACLs
        except Exception as exc:  # anything else escaping the engine is a finding: counted and shown
            self.counts["unexpected_errors"] += 1
            print(f"unexpected: {exc!r}"[:300], file=sys.stderr)
        self.clock.at += rng.choice([61, 120, 300, 900])  # past any lease a killed worker left behind

    def _one_operation(self, enforcer: Enforcer) -> EnforcementResult:
        rng = self.rng
        action = rng.random()
        if action < 0.45:
            plan = [
                PlannedDeny(c, rng.uniform(2e3, 9e4), 1e7, 0.1, 1, "flood") for c in rng.sample(SOURCES, 4)
            ]
            return enforcer.apply(plan, reject_pps={rng.choice(SOURCES): 5e3})
        if action < 0.65:
            return enforcer.expire(reject_pps={rng.choice(SOURCES): 5e3})
        if action < 0.75:
            return enforcer.block(rng.choice(SOURCES), reason="chaos", actor="ann", ttl_s=900)
        if action < 0.85:
            return enforcer.unblock(rng.choice(SOURCES), reason="chaos", actor="ann")
        return enforcer.reconcile()

    def _tally(self, result: EnforcementResult) -> None:
        self.counts["quarantines"] += len(result.of_kind(EventKind.QUARANTINE))
        self.counts["pending"] += len(result.of_kind(EventKind.PENDING))
        self.counts["foreign_logged"] += len(result.of_kind(EventKind.FOREIGN))
        self.counts["nacl_failures"] += len(result.failures)

    def violations(self) -> dict[str, int]:
        """After one clean reconcile: hand-made entries deleted or changed, pools over budget, and NACL
        entries that disagree with the ledger (lost, orphaned, or an entry of ours left behind)."""
        final = self.worker(faulty=False, actor="final-reconcile").reconcile()
        checker = self.worker(faulty=False, actor="checker")
        found = {
            "final_reconcile_failures": len(final.failures),
            "ownership": 0,
            "budget": 0,
            "disagreements": 0,
        }
        for nacl_id in self.nacl_ids:
            snapshot = checker.gateway.describe([nacl_id])[nacl_id]
            hand_made = {rule: cidr for (where, rule), cidr in self.foreign.items() if where == nacl_id}
            for rule, cidr in hand_made.items():
                entry = snapshot.entry(Direction.INGRESS, rule)
                found["ownership"] += entry is None or entry.cidr != cidr
            records = checker.ledger.denies(nacl_id)
            for pool in self.config.pools:
                inside = snapshot.in_rules(pool.direction, pool.rules)
                ours = {
                    rule: e.cidr
                    for rule, e in inside.items()
                    if not (pool.direction is Direction.INGRESS and rule in hand_made)
                }
                ledger = {
                    r.rule: r.cidr for r in records if r.direction is pool.direction and r.rule in pool.rules
                }
                found["budget"] += len(ours) > self.config.budget
                found["disagreements"] += ours != ledger
            marks = checker.ledger.marks(nacl_id)
            found["disagreements"] += sum(1 for m in marks if m.kind is MarkKind.OWNED)
        return found


def main() -> None:
    started = time.perf_counter()
    logging.getLogger("floodgate").setLevel(logging.CRITICAL)  # thousands of retries and failures, by design
    server, endpoint = start_emulator()
    try:
        run = ChaosRun(endpoint)
        for number in range(OPERATIONS):
            run.operate(number)
        found = run.violations()
        emit(
            bench="chaos",
            seed=SEED,
            nacls=NACLS,
            budget=BUDGET,
            **run.counts,
            faults_injected=sum(run.chaos.faults.values()),
            faults=run.chaos.faults,
            kills=run.chaos.kills,
            foreign_entries_added=len(run.foreign),
            final_reconcile_failures=found["final_reconcile_failures"],
            ownership_violations=found["ownership"],
            budget_violations=found["budget"],
            ledger_nacl_disagreements=found["disagreements"],
            seconds=round(time.perf_counter() - started, 1),
        )
        if found["ownership"] or found["budget"] or found["disagreements"]:
            raise SystemExit("chaos: violations after reconcile")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
