"""Eight workers applying overlapping plans and expiries to the same NACLs at once."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from floodgate.core.bans import BanPolicy
from floodgate.core.model import PlannedDeny
from floodgate.core.slots import Direction

from .conftest import EnforcerKit, VpcFixture
from .enforcement_checks import assert_consistent

pytestmark = pytest.mark.integration

WORKERS = 8
ROUNDS = 5
SOURCES = [f"203.0.113.{i}/32" for i in range(1, 13)] + [f"2001:db8:{i}::/64" for i in range(1, 5)]


def test_concurrent_workers_never_share_a_rule_number_nor_exceed_the_budget(
    make_enforcer: Callable[..., EnforcerKit], vpc: VpcFixture
) -> None:
    started = time.monotonic()

    def real_clock() -> float:
        return 1_764_000_000.0 + (time.monotonic() - started)

    short_bans = BanPolicy(base_ttl_s=1, max_ttl_s=4, factor=2.0, offence_memory_s=60)
    kits = [
        make_enforcer(actor=f"worker-{n}", now=real_clock, budget=4, bans=short_bans, lease_wait_s=60)
        for n in range(WORKERS)
    ]
    failures: list[BaseException] = []
    barrier = threading.Barrier(WORKERS)

    def work(kit: EnforcerKit, seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(ROUNDS):
                if rng.random() < 0.3:
                    kit.enforcer.expire(reject_pps={rng.choice(SOURCES): 5000.0})
                else:
                    plan = [
                        PlannedDeny(cidr, rng.uniform(1000, 100_000), 1e6, 0.1, 1, "test flood")
                        for cidr in rng.sample(SOURCES, rng.randint(1, 7))
                    ]
                    kit.enforcer.apply(plan)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(kit, n)) for n, kit in enumerate(kits)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures

    checker = kits[0]
    for nacl_id in vpc.nacl_ids:
        denies = checker.ledger.denies(nacl_id)
        assert denies, "the workers should have left some denies behind"
        for family in (4, 6):
            pool = [d for d in denies if d.family == family and d.direction is Direction.INGRESS]
            assert len(pool) <= 4
            assert len({d.cidr for d in pool}) == len(pool)
    assert_consistent(checker, vpc, now=real_clock() + 1)
