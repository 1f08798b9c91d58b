"""DynamoDB adapter: the VPC's dependencies, remembered longer than the traffic window.

A dependency is a remote address the VPC's own hosts open connections to (its DNS resolvers, the APIs and
partners it calls), learned from egress records (`core.flowlog`). NACLs are stateless: denying such an
address inbound also drops the answers to the VPC's own calls, which is exactly what a spoofer forging that
address would want. The window only covers minutes; this memory covers `MEMORY_S`.

STATE table (key `pk` / `sk`):
  DEPENDS  /  <version>#<address as an integer>
    address     S  the address as text, for people reading the table
    seen        N  epoch seconds it was last seen (rewritten at most once per REFRESH_S per container)
    expires_at  N  seen + MEMORY_S: TTL removes it eventually, reads skip it from then on

Bounded: at most `MAX_DEPENDENCIES` are read back (the numerically smallest, as in `core.flowlog`).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from floodgate.adapters.retry import Retrier, default_client
from floodgate.core.detect import DEPENDENCY_REFUSAL
from floodgate.core.flowlog import keep_dependencies
from floodgate.core.records import EventKind, LogEvent, Origin
from floodgate.tables import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

DEPENDS_KEY = "DEPENDS"
MEMORY_S = 7 * 86400
REFRESH_S = 3600


class DependencyMemory:
    """Remembers and recalls the VPC's dependencies. Takes a low-level DynamoDB client (default: new)."""

    def __init__(self, table: str, client: Any = None, *, retrier: Retrier | None = None) -> None:
        self.table = table
        self._ddb = default_client("dynamodb", client)
        self._retry = retrier or Retrier()
        self._written: dict[tuple[int, int], float] = {}  # what this container wrote lately, and when

    def remember(self, found: Iterable[tuple[int, int]], *, now: float) -> int:
        """Store (or refresh) each dependency; returns how many items were written."""
        written = 0
        for version, value in sorted(found):
            if now - self._written.get((version, value), -math.inf) < REFRESH_S:
                continue
            item = {
                PARTITION_KEY: {"S": DEPENDS_KEY},
                SORT_KEY: {"S": f"{version}#{value}"},
                "address": {"S": str(ipaddress.ip_address(value))},
                "seen": {"N": str(math.floor(now))},
                TTL_ATTRIBUTE: {"N": str(math.ceil(now + MEMORY_S))},
            }
            self._retry.call(
                "PutItem dependency", partial(self._ddb.put_item, TableName=self.table, Item=item)
            )
            self._written[(version, value)] = now
            written += 1
        return written

    def recall(self, *, now: float) -> set[tuple[int, int]]:
        """The dependencies seen within MEMORY_S (items TTL has not yet removed are filtered out)."""
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "FilterExpression": "expires_at > :now",
            "ProjectionExpression": "sk",
            "ExpressionAttributeValues": {":pk": {"S": DEPENDS_KEY}, ":now": {"N": str(math.floor(now))}},
        }
        found: set[tuple[int, int]] = set()
        while True:
            page = self._retry.call("Query dependencies", partial(self._ddb.query, **params))
            for item in page.get("Items", []):
                version, _, value = item[SORT_KEY]["S"].partition("#")
                if version in ("4", "6") and value.isdigit():
                    found.add((int(version), int(value)))
            start = page.get("LastEvaluatedKey")
            if not start:
                return keep_dependencies(found)
            params["ExclusiveStartKey"] = start


class DependencyGuard:
    """A manual block's check: refused when the CIDR holds an address the VPC depends on."""

    def __init__(self, memory: DependencyMemory, clock: Callable[[], float]) -> None:
        self.memory = memory
        self._clock = clock

    def refusal(self, cidr: str, *, actor: str) -> LogEvent | None:
        """The REFUSED event for a block of `cidr` by `actor`, or None when it holds no dependency."""
        now = self._clock()
        network = ipaddress.ip_network(cidr, strict=False)
        first, last = int(network.network_address), int(network.broadcast_address)
        inside = sorted(value for version, value in self.memory.recall(now=now) if version == network.version)
        held = next((value for value in inside if first <= value <= last), None)
        if held is None:
            return None
        reason = f"{DEPENDENCY_REFUSAL} ({ipaddress.ip_address(held)}); block with force to deny it anyway"
        return LogEvent(EventKind.REFUSED, now, str(network), reason, actor, origin=Origin.manual(actor))
