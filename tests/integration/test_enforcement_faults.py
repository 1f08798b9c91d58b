"""Faults: a layer in front of the emulator fails about 20% of EC2 and DynamoDB calls (throttling and 5xx
before the request arrives, and 5xx after it was carried out, as if the response were lost), and workers are
killed at random between their ledger write and their NACL write. After one reconcile, NACL, ledger and log
agree: no deny lost, none orphaned."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.httpsession import URLLib3Session

from floodgate.core.model import PlannedDeny
from floodgate.engine.results import NotBlocked

from .conftest import AwsClientFactory, Clock, EnforcerKit, VpcFixture
from .enforcement_checks import assert_consistent

pytestmark = pytest.mark.integration

SOURCES = [f"203.0.113.{i}/32" for i in range(1, 10)] + ["2001:db8:7::/64", "198.51.100.0/24"]
MUTATING_EC2 = {"CreateNetworkAclEntry", "ReplaceNetworkAclEntry", "DeleteNetworkAclEntry"}

EC2_THROTTLE = (
    503,
    b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
    b"</Message></Error></Errors><RequestID>fault</RequestID></Response>",
)
EC2_SERVER_ERROR = (
    500,
    b"<Response><Errors><Error><Code>InternalError</Code><Message>An internal error has occurred"
    b"</Message></Error></Errors><RequestID>fault</RequestID></Response>",
)
DYNAMODB_THROTTLE = (
    400,
    b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}',
)
DYNAMODB_SERVER_ERROR = (
    500,
    b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal error"}',
)


class WorkerKilled(BaseException):
    """The worker's process died: nothing after this point runs, not even its clean-up calls."""


class _Body:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Any:
        yield self._content


class Faults:
    """Fails a share of one worker's calls, and may kill the worker just before a NACL write."""

    def __init__(self, rng: random.Random, *, failure_rate: float, kill_rate: float) -> None:
        self.rng = rng
        self.failure_rate = failure_rate
        self.kill_rate = kill_rate
        self.dead = False
        self.injected = 0
        self._wire = URLLib3Session()

    def attach(self, client: Any) -> Any:
        service = client.meta.service_model.service_name
        dynamodb = service == "dynamodb"
        throttle, server_error = (
            (DYNAMODB_THROTTLE, DYNAMODB_SERVER_ERROR) if dynamodb else (EC2_THROTTLE, EC2_SERVER_ERROR)
        )

        def before_send(request: Any, event_name: str, **_: Any) -> AWSResponse | None:
            self._maybe_kill(operation=event_name.rsplit(".", 1)[-1])
            roll = self.rng.random()
            if roll >= self.failure_rate:
                return None
            self.injected += 1
            if roll < self.failure_rate / 3:
                # Carried out, but the response is lost on the way back: the retry finds its own work done.
                self._wire.send(request)
                status, body = server_error
            else:
                status, body = throttle if self.rng.random() < 0.5 else server_error
            return AWSResponse(request.url, status, {}, _Body(body))

        client.meta.events.register(f"before-send.{service}", before_send)
        return client

    def _maybe_kill(self, *, operation: str) -> None:
        if self.dead:
            raise WorkerKilled
        if operation in MUTATING_EC2 and self.rng.random() < self.kill_rate:
            self.dead = True  # the ledger already holds the decision; the NACL never hears of it
            raise WorkerKilled


def test_faults_and_killed_workers_leave_nothing_lost_or_orphaned_after_one_reconcile(
    make_enforcer: Callable[..., EnforcerKit], aws_client: AwsClientFactory, vpc: VpcFixture, clock: Clock
) -> None:
    rng = random.Random(20251124)
    kills = injected = 0

    def faulty_worker(kill_rate: float) -> tuple[EnforcerKit, Faults]:
        faults = Faults(random.Random(rng.random()), failure_rate=0.2, kill_rate=kill_rate)
        kit = make_enforcer(
            ec2=faults.attach(aws_client("ec2")),
            dynamodb=faults.attach(aws_client("dynamodb")),
            budget=4,
            outbound_mirror=True,
            lease_s=60,
        )
        return kit, faults

    for _ in range(14):
        kit, faults = faulty_worker(kill_rate=0.15)
        action = rng.random()
        try:
            if action < 0.6:
                plan = [
                    PlannedDeny(c, rng.uniform(2e3, 9e4), 1e7, 0.1, 1, "flood")
                    for c in rng.sample(SOURCES, 4)
                ]
                kit.enforcer.apply(plan, reject_pps={rng.choice(SOURCES): 5e3})
            elif action < 0.8:
                kit.enforcer.expire(reject_pps={rng.choice(SOURCES): 5e3})
            else:
                kit.enforcer.unblock(rng.choice(SOURCES), reason="test", actor="alice")
        except WorkerKilled:
            kills += 1
        except NotBlocked:
            pass
        injected += faults.injected
        clock.advance(rng.choice([61, 300, 900]))  # past any lease a killed worker left behind

    assert kills >= 2, "the seed should kill some workers mid-change"
    assert injected >= 20, "the seed should inject plenty of faults"

    kit, _ = faulty_worker(kill_rate=0.0)  # still throttled and failed, never killed
    kit.enforcer.reconcile()
    assert_consistent(kit, vpc, now=clock())
