"""What a Network ACL holds, as Floodgate reads it: entries and a snapshot of one NACL's entries."""

from __future__ import annotations

from dataclasses import dataclass

from floodgate.core.networks import address_family
from floodgate.core.slots import Direction

DEFAULT_RULE_NUMBER = 32767  # `*`: 32767 for IPv4, 32768 for IPv6; cannot be changed
ALL_PROTOCOLS = "-1"


@dataclass(frozen=True, slots=True)
class NaclEntry:
    rule: int
    direction: Direction
    action: str  # "allow" or "deny"
    protocol: str  # "-1" for all, else an IP protocol number
    cidr: str  # canonical IPv4 or IPv6 network
    ports: tuple[int, int] | None = None

    @property
    def family(self) -> int:
        return address_family(self.cidr)

    @property
    def is_default(self) -> bool:
        return self.rule >= DEFAULT_RULE_NUMBER

    def is_deny_all_from(self, family: int) -> bool:
        """The shape of every entry Floodgate writes: deny, all protocols, the given address family."""
        return self.action == "deny" and self.protocol == ALL_PROTOCOLS and self.family == family

    def is_deny_of(self, cidr: str) -> bool:
        """Exactly the entry Floodgate writes to deny `cidr`."""
        return self.action == "deny" and self.protocol == ALL_PROTOCOLS and self.cidr == cidr

    def describe(self) -> str:
        protocol = "all" if self.protocol == ALL_PROTOCOLS else f"protocol {self.protocol}"
        ports = f" ports {self.ports[0]}-{self.ports[1]}" if self.ports else ""
        return f"{self.direction} rule {self.rule} {self.action} {protocol} {self.cidr}{ports}"


@dataclass(frozen=True, slots=True)
class NaclSnapshot:
    nacl_id: str
    vpc_id: str
    is_default: bool
    entries: tuple[NaclEntry, ...]

    def in_rules(self, direction: Direction, rules: range) -> dict[int, NaclEntry]:
        return {e.rule: e for e in self.entries if e.direction is direction and e.rule in rules}

    def entry(self, direction: Direction, rule: int) -> NaclEntry | None:
        return next((e for e in self.entries if e.direction is direction and e.rule == rule), None)
