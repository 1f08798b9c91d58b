"""The enforcement decision, without an emulator: a NACL as read, the ledger, a request, and what follows.

Every expectation below is written out by hand from the rules (base ban 10 minutes, doubling, a week's
memory; two denies per pool; IPv4 pool on rules 100-102), not computed by the code under test.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from floodgate.core.bans import BanPolicy
from floodgate.core.decision import (
    Decision,
    DeleteEntry,
    DriftKind,
    EnforcementConfig,
    PutEntry,
    Request,
    Want,
    decide,
    settle_events,
)
from floodgate.core.nacl import NaclEntry, NaclSnapshot
from floodgate.core.networks import DenyPolicy
from floodgate.core.records import (
    AppendEvent,
    DenyRecord,
    DropDeny,
    DropMark,
    EntryMark,
    EventKind,
    Evidence,
    LogEvent,
    MarkKind,
    OffenceRecord,
    Origin,
    PutDeny,
    PutMark,
)
from floodgate.core.slots import PINNED, Direction
from floodgate.settings import Settings

NOW = 1_700_000_000.0
DAY = 86400.0
X, Y, Z = "203.0.113.9/32", "198.51.100.7/32", "192.0.2.0/24"
V6 = "2001:db8:bad::/48"
IN = Direction.INGRESS

CONFIG = EnforcementConfig(
    policy=DenyPolicy.build(vpc_cidrs=["10.0.0.0/16"]),
    bans=BanPolicy(base_ttl_s=600, max_ttl_s=86400, factor=2.0, offence_memory_s=7 * 86400),
    nacl_ids=("acl-1",),
    rule_start=100,
    budget=2,
    nacl_quota=20,
    evidence_threshold_pps=5000.0,
)


def deny_entry(rule: int, cidr: str, *, action: str = "deny", protocol: str = "-1") -> NaclEntry:
    ports = None if protocol == "-1" else (22, 22)
    return NaclEntry(rule=rule, direction=IN, action=action, protocol=protocol, cidr=cidr, ports=ports)


def owned(rule: int, cidr: str) -> EntryMark:
    """The ledger's mark of an entry Floodgate wrote whose deny has left (or moved)."""
    return EntryMark(MarkKind.OWNED, "acl-1", IN, rule, cidr)


def pending(rule: int, cidr: str) -> EntryMark:
    """The ledger's mark of a deny logged PENDING: its entry was not written."""
    return EntryMark(MarkKind.PENDING, "acl-1", IN, rule, cidr)


def reported(rule: int, cidr: str) -> EntryMark:
    """The ledger's mark of a foreign entry already logged."""
    return EntryMark(MarkKind.FOREIGN, "acl-1", IN, rule, cidr)


def held(
    rule: int,
    cidr: str,
    *,
    created: float = NOW - 300,
    expires: float = NOW + 300,
    offences: int = 1,
    origin: Origin | None = None,
) -> DenyRecord:
    return DenyRecord(
        nacl_id="acl-1",
        direction=IN,
        rule=rule,
        cidr=cidr,
        created=created,
        expires=expires,
        offences=offences,
        origin=origin or Origin.automatic(),
        reason="flood",
        evidence=Evidence(pps=9000.0),
        write_id=f"held-{rule}",
    )


def offence(cidr: str, count: int, ban_until: float) -> OffenceRecord:
    return OffenceRecord(cidr, count, ban_until - 600, ban_until, ban_until + 7 * DAY, write_id=f"off-{cidr}")


def flood(cidr: str, pps: float = 9000.0) -> Want:
    family = 6 if ":" in cidr else 4
    return Want(cidr, family, pps, Evidence(pps=pps), f"{pps:,.0f} pps", Origin.automatic())


def by_hand(cidr: str, *, ttl_s: int | None = None) -> Want:
    return Want(cidr, 4, PINNED, Evidence(), "incident 42", Origin.manual("ann"), ttl_s=ttl_s)


def wants(*items: Want) -> dict[str, Want]:
    return {w.cidr: w for w in items}


@dataclass(frozen=True)
class Case:
    """A NACL, the ledger and a request; and, by hand, the events, entry changes, drift and offences."""

    entries: tuple[NaclEntry, ...] = ()
    records: tuple[DenyRecord, ...] = ()
    offences: tuple[OffenceRecord, ...] = ()
    marks: tuple[EntryMark, ...] = ()
    request: Request = field(default_factory=lambda: Request("floodgate"))
    # (kind, cidr, rule, expires, offences) per log event, in order
    events: tuple[tuple[EventKind, str, int | None, float | None, int | None], ...] = ()
    reasons: tuple[str, ...] = ()  # each event's reason, as the deny log shows it, in order
    # ("create" | "replace" | "delete", rule, cidr) per entry change, in order
    changes: tuple[tuple[str, int, str], ...] = ()
    drift: tuple[tuple[DriftKind, int, str], ...] = ()
    # (cidr, count, ban_started, ban_until) per offence record written
    offences_written: tuple[tuple[str, int, float, float], ...] = ()


def foreign_detail(entry: str, rule: int) -> str:
    return (
        f"{entry} was not written by Floodgate (no ledger record): never touched, rule {rule} skipped; "
        "move it out of 100-102 or set ruleStart / FLOODGATE_RULE_START to a free block"
    )


CASES = {
    "a new source is blocked: first offence, base ban": Case(
        request=Request("floodgate", wanted=wants(flood(X))),
        events=((EventKind.BLOCK, X, 100, NOW + 600, 1),),
        reasons=("9,000 pps; offence 1, denied for 10m",),
        changes=(("create", 100, X),),
        offences_written=((X, 1, NOW, NOW + 600),),
    ),
    "an IPv6 source goes to the IPv6 pool": Case(
        request=Request("floodgate", wanted=wants(flood(V6))),
        events=((EventKind.BLOCK, V6, 103, NOW + 600, 1),),
        reasons=("9,000 pps; offence 1, denied for 10m",),
        changes=(("create", 103, V6),),
        offences_written=((V6, 1, NOW, NOW + 600),),
    ),
    "escalation: a source remembered with two offences gets the third, 4 x base": Case(
        offences=(offence(X, 2, NOW - 3600),),
        request=Request("floodgate", wanted=wants(flood(X))),
        events=((EventKind.BLOCK, X, 100, NOW + 2400, 3),),
        reasons=("9,000 pps; offence 3, denied for 40m",),
        changes=(("create", 100, X),),
        offences_written=((X, 3, NOW, NOW + 2400),),
    ),
    "escalation forgotten: the last ban ended more than the memory ago": Case(
        offences=(offence(X, 5, NOW - 8 * DAY),),
        request=Request("floodgate", wanted=wants(flood(X))),
        events=((EventKind.BLOCK, X, 100, NOW + 600, 1),),
        reasons=("9,000 pps; offence 1, denied for 10m",),
        changes=(("create", 100, X),),
        offences_written=((X, 1, NOW, NOW + 600),),
    ),
    "a source whose ban still runs elsewhere joins that ban": Case(
        offences=(offence(X, 2, NOW + 300),),
        request=Request("floodgate", wanted=wants(flood(X))),
        events=((EventKind.BLOCK, X, 100, NOW + 300, 2),),
        reasons=("9,000 pps; offence 2, denied for 5m",),
        changes=(("create", 100, X),),
    ),
    "renew: seen again past half its ban, renewed to a full ban from now": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, created=NOW - 500, expires=NOW + 100),),
        request=Request("floodgate", wanted=wants(flood(X))),
        events=((EventKind.EXTEND, X, 100, NOW + 600, 1),),
        reasons=("seen again at 9,000 pps: ban renewed for 10m (offence 1)",),
        offences_written=((X, 1, NOW - 500, NOW + 600),),
    ),
    "renew: seen again with more than half its ban left, nothing is written": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, created=NOW - 100, expires=NOW + 500),),
        request=Request("floodgate", wanted=wants(flood(X))),
    ),
    "escalation: back after its ban ended, before the expirer came by: a new offence": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, created=NOW - 700, expires=NOW - 100),),
        offences=(offence(X, 1, NOW - 100),),
        request=Request("floodgate", wanted=wants(flood(X))),
        events=((EventKind.EXTEND, X, 100, NOW + 1200, 2),),
        reasons=("seen again at 9,000 pps after its ban ended: offence 2, denied for 20m",),
        offences_written=((X, 2, NOW, NOW + 1200),),
    ),
    "expire: the ban is over and no evidence says otherwise": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, created=NOW - 601, expires=NOW - 1),),
        request=Request("floodgate", expire_due=True),
        events=((EventKind.EXPIRE, X, 100, NOW - 1, 1),),
        reasons=("ban over",),
        changes=(("delete", 100, X),),
    ),
    "expire: a REJECT rate below the threshold does not keep the deny": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, created=NOW - 601, expires=NOW - 1),),
        request=Request("floodgate", reject_pps={X: 4999.0}, expire_due=True),
        events=((EventKind.EXPIRE, X, 100, NOW - 1, 1),),
        reasons=("ban over; REJECT rate 4,999 pps is below the 5,000 pps threshold",),
        changes=(("delete", 100, X),),
    ),
    "extend: the ban is over but the source still sends above the threshold": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, created=NOW - 1300, expires=NOW - 1, offences=2),),
        request=Request("floodgate", reject_pps={X: 6000.0}, expire_due=True),
        events=((EventKind.EXTEND, X, 100, NOW + 1200, 2),),
        reasons=(
            "ban over but the source still sends 6,000 pps, seen as REJECT (threshold 5,000 pps): "
            "extended by 20m",
        ),
        offences_written=((X, 2, NOW - 1300, NOW + 1200),),
    ),
    "expire is not due: a running ban is left alone": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X),),
        request=Request("floodgate", expire_due=True),
    ),
    "a lapsed deny whose entry is already gone is dropped as expired": Case(
        records=(held(100, X, created=NOW - 601, expires=NOW - 1),),
        events=((EventKind.EXPIRE, X, 100, NOW - 1, 1),),
        reasons=("ban over; its entry was already missing from the NACL",),
    ),
    "evict: a full pool gives the oldest of its lowest-valued denies up for a stronger source": Case(
        entries=(deny_entry(100, X), deny_entry(101, Y)),
        records=(held(100, X, created=NOW - 200), held(101, Y, created=NOW - 100)),
        request=Request("floodgate", wanted=wants(flood(Z))),
        events=((EventKind.EVICT, X, 100, NOW + 300, 1), (EventKind.BLOCK, Z, 102, NOW + 600, 1)),
        reasons=(
            f"budget of 2 full: lowest value ({X} at 0 pps) gave way to {Z} (9,000 pps)",
            "9,000 pps; offence 1, denied for 10m",
        ),
        changes=(("create", 102, Z), ("delete", 100, X)),  # make before break
        offences_written=((Z, 1, NOW, NOW + 600),),
    ),
    "refused: a full pool of manual denies takes no automatic one": Case(
        entries=(deny_entry(100, X), deny_entry(101, Y)),
        records=(held(100, X, origin=Origin.manual("ann")), held(101, Y, origin=Origin.manual("bob"))),
        request=Request("floodgate", wanted=wants(flood(Z))),
        events=((EventKind.REFUSED, Z, None, None, None),),
        reasons=(
            f"budget of 2 full with denies of equal or higher value than 9,000 pps; lowest held: {X} "
            "at manual",
        ),
    ),
    "a manual block with its own ban time": Case(
        request=Request("ann", wanted=wants(by_hand(X, ttl_s=3600))),
        events=((EventKind.BLOCK, X, 100, NOW + 3600, 1),),
        reasons=("incident 42; offence 1, denied for 1h",),
        changes=(("create", 100, X),),
        offences_written=((X, 1, NOW, NOW + 3600),),
    ),
    "a manual block of a held automatic deny lengthens and pins it": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, expires=NOW + 300),),
        request=Request("ann", wanted=wants(by_hand(X, ttl_s=3600))),
        events=((EventKind.EXTEND, X, 100, NOW + 3600, 1),),
        reasons=("incident 42 (manual:ann): ban until +1h",),
        offences_written=((X, 1, NOW - 300, NOW + 3600),),
    ),
    "unblock: the deny and its entry go, the ban ends now": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X),),
        offences=(offence(X, 1, NOW + 300),),
        request=Request("ann", remove={X: "unblocked by ann: false positive"}),
        events=((EventKind.UNBLOCK, X, 100, NOW + 300, 1),),
        reasons=("unblocked by ann: false positive",),
        changes=(("delete", 100, X),),
        offences_written=((X, 1, NOW - 300, NOW),),
    ),
    "drift, orphan: Floodgate's entry whose deny left the ledger (marked OWNED) is removed": Case(
        entries=(deny_entry(101, Y),),
        marks=(owned(101, Y),),
        events=((EventKind.REPAIR, Y, 101, None, None),),
        reasons=(
            f"Floodgate's entry {Y} outlived its deny (a worker stopped before deleting it): remove it",
        ),
        changes=(("delete", 101, Y),),
        drift=((DriftKind.ORPHAN, 101, Y),),
    ),
    "ownership: a deny-all entry with no ledger record and no mark is foreign, logged once, kept": Case(
        entries=(deny_entry(101, Y),),
        events=((EventKind.FOREIGN, Y, 101, None, None),),
        reasons=(foreign_detail(f"ingress rule 101 deny all {Y}", 101),),
        drift=((DriftKind.FOREIGN, 101, Y),),
    ),
    "ownership: a foreign entry already reported is not logged again": Case(
        entries=(deny_entry(101, Y),),
        marks=(reported(101, Y),),
        drift=((DriftKind.FOREIGN, 101, Y),),
    ),
    "ownership: a hand-made TCP/22 deny takes its rule; a new deny goes to the next free one": Case(
        entries=(deny_entry(100, Z, protocol="6"),),
        marks=(reported(100, Z),),
        request=Request("floodgate", wanted=wants(flood(X))),
        events=((EventKind.BLOCK, X, 101, NOW + 600, 1),),
        reasons=("9,000 pps; offence 1, denied for 10m",),
        changes=(("create", 101, X),),
        drift=((DriftKind.FOREIGN, 100, Z),),
        offences_written=((X, 1, NOW, NOW + 600),),
    ),
    "ownership: an unmarked entry on a ledger deny's rule is foreign: never replaced": Case(
        entries=(deny_entry(100, Y),),
        records=(held(100, X),),
        marks=(reported(100, Y),),
        drift=((DriftKind.FOREIGN, 100, Y), (DriftKind.MISSING, 100, X)),
    ),
    "ownership: an entry marked OWNED that is gone from the NACL is forgotten, nothing else": Case(
        marks=(owned(101, Y),),
    ),
    "drift, missing: a valid ledger deny without its entry is re-created": Case(
        records=(held(100, X),),
        events=((EventKind.REPAIR, X, 100, None, None),),
        reasons=("ledger deny missing from the NACL: re-create it",),
        changes=(("create", 100, X),),
        drift=((DriftKind.MISSING, 100, X),),
    ),
    "pending: a deny logged PENDING goes in now; its BLOCK is logged, not a repair": Case(
        records=(held(100, X),),
        marks=(pending(100, X),),
        events=((EventKind.BLOCK, X, 100, NOW + 300, 1),),
        # The deny's own reason ("flood"), then why the BLOCK line comes now.
        reasons=("flood; its entry, pending since an earlier run, is written",),
        changes=(("create", 100, X),),
        drift=((DriftKind.MISSING, 100, X),),
    ),
    "pending: a PENDING deny whose entry is found in place is logged BLOCK, nothing written": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X),),
        marks=(pending(100, X),),
        events=((EventKind.BLOCK, X, 100, NOW + 300, 1),),
        reasons=("flood; its entry, pending since an earlier run, was found in place",),
    ),
    "pending: a PENDING mark of a deny no longer held is forgotten, nothing logged": Case(
        marks=(pending(100, X),),
    ),
    "pending: a PENDING deny whose rule a foreign entry took stays pending, its mark kept": Case(
        entries=(deny_entry(100, Y),),
        records=(held(100, X),),
        marks=(pending(100, X), reported(100, Y)),
        drift=((DriftKind.FOREIGN, 100, Y), (DriftKind.MISSING, 100, X)),
    ),
    "pending: a PENDING deny whose ban ended before its entry was written expires": Case(
        records=(held(100, X, expires=NOW - 1),),
        marks=(pending(100, X),),
        events=((EventKind.EXPIRE, X, 100, NOW - 1, 1),),
        reasons=("ban over; its entry was already missing from the NACL",),
    ),
    "pending: a PENDING deny whose rule holds Floodgate's old entry of another source replaces it": Case(
        entries=(deny_entry(100, Y),),
        records=(held(100, X),),
        marks=(pending(100, X), owned(100, Y)),
        events=((EventKind.BLOCK, X, 100, NOW + 300, 1),),
        reasons=("flood; its entry, pending since an earlier run, is written",),
        changes=(("replace", 100, X),),
        drift=((DriftKind.MISMATCH, 100, X),),  # an entry is there, the wrong one: not MISSING
    ),
    "pending: two PENDING denies both go in now, each logged BLOCK": Case(
        records=(held(100, X), held(101, Y)),
        marks=(pending(100, X), pending(101, Y)),
        events=((EventKind.BLOCK, X, 100, NOW + 300, 1), (EventKind.BLOCK, Y, 101, NOW + 300, 1)),
        reasons=(
            "flood; its entry, pending since an earlier run, is written",
            "flood; its entry, pending since an earlier run, is written",
        ),
        changes=(("create", 100, X), ("create", 101, Y)),
        drift=((DriftKind.MISSING, 100, X), (DriftKind.MISSING, 101, Y)),
    ),
    "pending: one PENDING deny goes in now, the next one is found in place": Case(
        entries=(deny_entry(101, Y),),
        records=(held(100, X), held(101, Y)),
        marks=(pending(100, X), pending(101, Y)),
        events=((EventKind.BLOCK, X, 100, NOW + 300, 1), (EventKind.BLOCK, Y, 101, NOW + 300, 1)),
        reasons=(
            "flood; its entry, pending since an earlier run, is written",
            "flood; its entry, pending since an earlier run, was found in place",
        ),
        changes=(("create", 100, X),),
        drift=((DriftKind.MISSING, 100, X),),
    ),
    "pending: a PENDING deny found in place after an OWNED mark of a lower rule": Case(
        entries=(deny_entry(101, X),),
        records=(held(101, X),),
        marks=(owned(100, Y), pending(101, X)),
        events=((EventKind.BLOCK, X, 101, NOW + 300, 1),),
        reasons=("flood; its entry, pending since an earlier run, was found in place",),
    ),
    "pending: PENDING denies of both pools found in place are each logged BLOCK": Case(
        entries=(
            deny_entry(100, X),
            NaclEntry(rule=103, direction=IN, action="deny", protocol="-1", cidr=V6),
        ),
        records=(held(100, X), held(103, V6)),
        marks=(pending(100, X), pending(103, V6)),
        events=((EventKind.BLOCK, X, 100, NOW + 300, 1), (EventKind.BLOCK, V6, 103, NOW + 300, 1)),
        reasons=(
            "flood; its entry, pending since an earlier run, was found in place",
            "flood; its entry, pending since an earlier run, was found in place",
        ),
    ),
    "pending: a source blocked anew where its old PENDING deny was is logged once, a new BLOCK": Case(
        marks=(pending(100, X),),
        request=Request("floodgate", wanted=wants(flood(X))),
        events=((EventKind.BLOCK, X, 100, NOW + 600, 1),),
        reasons=("9,000 pps; offence 1, denied for 10m",),
        changes=(("create", 100, X),),
        offences_written=((X, 1, NOW, NOW + 600),),
    ),
    "drift, mismatch: Floodgate's old entry at a ledger deny's rule is replaced": Case(
        entries=(deny_entry(100, Y),),
        records=(held(100, X),),
        marks=(owned(100, Y),),
        events=((EventKind.REPAIR, X, 100, None, None),),
        reasons=(f"rule 100 denies {Y} instead of the ledger's {X}: replace it",),
        changes=(("replace", 100, X),),
        drift=((DriftKind.MISMATCH, 100, X),),
    ),
    "drift, foreign: an entry not of Floodgate's shape in the owned range is reported, never touched": Case(
        entries=(deny_entry(101, Y, action="allow"),),
        events=((EventKind.FOREIGN, Y, 101, None, None),),
        reasons=(foreign_detail(f"ingress rule 101 allow all {Y}", 101),),
        drift=((DriftKind.FOREIGN, 101, Y),),
    ),
    "drift, foreign on a ledger deny's rule: the deny is reported missing, the entry left alone": Case(
        entries=(deny_entry(100, Y, action="allow"),),
        records=(held(100, X),),
        marks=(reported(100, Y),),
        drift=((DriftKind.FOREIGN, 100, Y), (DriftKind.MISSING, 100, X)),
    ),
    "a foreign entry takes a slot: a new deny goes to the next free rule": Case(
        entries=(deny_entry(100, Y, action="allow"),),
        request=Request("floodgate", wanted=wants(flood(X))),
        events=((EventKind.FOREIGN, Y, 100, None, None), (EventKind.BLOCK, X, 101, NOW + 600, 1)),
        reasons=(
            foreign_detail(f"ingress rule 100 allow all {Y}", 100),
            "9,000 pps; offence 1, denied for 10m",
        ),
        changes=(("create", 101, X),),
        drift=((DriftKind.FOREIGN, 100, Y),),
        offences_written=((X, 1, NOW, NOW + 600),),
    ),
    "a manual block of a deny already pinned for longer changes nothing": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, expires=NOW + 3600, origin=Origin.manual("ann")),),
        request=Request("ann", wanted=wants(by_hand(X, ttl_s=600))),
    ),
    "a manual block joining a running ban lengthens it to the time asked": Case(
        offences=(offence(X, 2, NOW + 300),),
        request=Request("ann", wanted=wants(by_hand(X, ttl_s=3600))),
        events=((EventKind.BLOCK, X, 100, NOW + 3600, 2),),
        reasons=("incident 42; offence 2, denied for 1h",),
        changes=(("create", 100, X),),
        offences_written=((X, 2, NOW - 300, NOW + 3600),),
    ),
    "a manual block joining a longer running ban keeps the longer one": Case(
        offences=(offence(X, 2, NOW + 300),),
        request=Request("ann", wanted=wants(by_hand(X, ttl_s=60))),
        events=((EventKind.BLOCK, X, 100, NOW + 300, 2),),
        reasons=("incident 42; offence 2, denied for 5m",),
        changes=(("create", 100, X),),
    ),
    "unblock of a deny whose ban already ended leaves the offence record as it is": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, created=NOW - 601, expires=NOW - 1),),
        offences=(offence(X, 1, NOW - 1),),
        request=Request("ann", remove={X: "unblocked by ann: done"}),
        events=((EventKind.UNBLOCK, X, 100, NOW - 1, 1),),
        reasons=("unblocked by ann: done",),
        changes=(("delete", 100, X),),
    ),
    "a deny whose ban is over gives way first, before an older running one": Case(
        entries=(deny_entry(100, X), deny_entry(101, Y)),
        records=(held(100, X, created=NOW - 100, expires=NOW - 1), held(101, Y, created=NOW - 200)),
        request=Request("floodgate", wanted=wants(flood(Z))),
        events=((EventKind.EVICT, X, 100, NOW - 1, 1), (EventKind.BLOCK, Z, 102, NOW + 600, 1)),
        reasons=(
            f"budget of 2 full: lowest value ({X} at expired) gave way to {Z} (9,000 pps)",
            "9,000 pps; offence 1, denied for 10m",
        ),
        changes=(("create", 102, Z), ("delete", 100, X)),
        offences_written=((Z, 1, NOW, NOW + 600),),
    ),
    "a REJECT rate ranks a held deny: the one still hit stays, the quiet one gives way": Case(
        entries=(deny_entry(100, X), deny_entry(101, Y)),
        records=(held(100, X, created=NOW - 200), held(101, Y, created=NOW - 100)),
        request=Request("floodgate", wanted=wants(flood(Z, 3000.0)), reject_pps={X: 4000.0}),
        events=((EventKind.EVICT, Y, 101, NOW + 300, 1), (EventKind.BLOCK, Z, 102, NOW + 600, 1)),
        reasons=(
            f"budget of 2 full: lowest value ({Y} at 0 pps) gave way to {Z} (3,000 pps)",
            "3,000 pps; offence 1, denied for 10m",
        ),
        changes=(("create", 102, Z), ("delete", 101, Y)),
        offences_written=((Z, 1, NOW, NOW + 600),),
    ),
    "a manual block without a ban time joining a running ban gets its escalated ban from now": Case(
        offences=(offence(X, 2, NOW + 300),),
        request=Request("ann", wanted=wants(by_hand(X))),
        events=((EventKind.BLOCK, X, 100, NOW + 1200, 2),),
        reasons=("incident 42; offence 2, denied for 20m",),
        changes=(("create", 100, X),),
        offences_written=((X, 2, NOW - 300, NOW + 1200),),
    ),
    "a manual block asking for exactly the running ban's end leaves the offence record as it is": Case(
        offences=(offence(X, 2, NOW + 300),),
        request=Request("ann", wanted=wants(by_hand(X, ttl_s=300))),
        events=((EventKind.BLOCK, X, 100, NOW + 300, 2),),
        reasons=("incident 42; offence 2, denied for 5m",),
        changes=(("create", 100, X),),
    ),
    "unblock at the very second its ban ends leaves the offence record as it is": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, created=NOW - 600, expires=NOW),),
        offences=(offence(X, 1, NOW),),
        request=Request("ann", remove={X: "unblocked by ann: done"}),
        events=((EventKind.UNBLOCK, X, 100, NOW, 1),),
        reasons=("unblocked by ann: done",),
        changes=(("delete", 100, X),),
    ),
    "a manual block of a held deny whose entry is missing pins it and re-creates the entry": Case(
        records=(held(100, X),),
        request=Request("ann", wanted=wants(by_hand(X, ttl_s=3600))),
        events=((EventKind.EXTEND, X, 100, NOW + 3600, 1), (EventKind.REPAIR, X, 100, None, None)),
        reasons=(
            "incident 42 (manual:ann): ban until +1h",
            "ledger deny missing from the NACL: re-create it",
        ),
        changes=(("create", 100, X),),
        drift=((DriftKind.MISSING, 100, X),),
        offences_written=((X, 1, NOW - 300, NOW + 3600),),
    ),
    "a manual block without a ban time of a held automatic deny pins it for the ban its offence earns": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, expires=NOW + 300),),
        request=Request("ann", wanted=wants(by_hand(X))),
        events=((EventKind.EXTEND, X, 100, NOW + 600, 1),),
        reasons=("incident 42 (manual:ann): ban until +10m",),
        offences_written=((X, 1, NOW - 300, NOW + 600),),
    ),
    "a manual block lengthens a deny the same person pinned for less": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, expires=NOW + 600, origin=Origin.manual("ann")),),
        request=Request("ann", wanted=wants(by_hand(X, ttl_s=3600))),
        events=((EventKind.EXTEND, X, 100, NOW + 3600, 1),),
        reasons=("incident 42 (manual:ann): ban until +1h",),
        offences_written=((X, 1, NOW - 300, NOW + 3600),),
    ),
    "a manual block of a deny someone else pinned as long makes it theirs; the ban is unchanged": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X, expires=NOW + 3600, origin=Origin.manual("bob")),),
        request=Request("ann", wanted=wants(by_hand(X, ttl_s=3600))),
        events=((EventKind.EXTEND, X, 100, NOW + 3600, 1),),
        reasons=("incident 42 (manual:ann): ban until +1h",),
    ),
    "a new deny whose entry Floodgate already wrote (marked OWNED) adopts it: no entry change": Case(
        entries=(deny_entry(100, X),),
        marks=(owned(100, X),),
        request=Request("floodgate", wanted=wants(flood(X))),
        events=((EventKind.BLOCK, X, 100, NOW + 600, 1),),
        reasons=("9,000 pps; offence 1, denied for 10m; the entry was already in place",),
        offences_written=((X, 1, NOW, NOW + 600),),
    ),
    "an unblock and a renewal in one decision": Case(
        entries=(deny_entry(100, X), deny_entry(101, Y)),
        records=(held(100, X), held(101, Y, created=NOW - 500, expires=NOW + 100)),
        request=Request("ann", wanted=wants(flood(Y)), remove={X: "unblocked by ann: done"}),
        events=((EventKind.UNBLOCK, X, 100, NOW + 300, 1), (EventKind.EXTEND, Y, 101, NOW + 600, 1)),
        reasons=("unblocked by ann: done", "seen again at 9,000 pps: ban renewed for 10m (offence 1)"),
        changes=(("delete", 100, X),),
        offences_written=((Y, 1, NOW - 500, NOW + 600),),
    ),
    "a renewal and an expiry in one run": Case(
        entries=(deny_entry(100, X), deny_entry(101, Y)),
        records=(
            held(100, X, created=NOW - 500, expires=NOW + 100),
            held(101, Y, created=NOW - 601, expires=NOW - 1),
        ),
        request=Request("floodgate", wanted=wants(flood(X)), expire_due=True),
        events=((EventKind.EXTEND, X, 100, NOW + 600, 1), (EventKind.EXPIRE, Y, 101, NOW - 1, 1)),
        reasons=("seen again at 9,000 pps: ban renewed for 10m (offence 1)", "ban over"),
        changes=(("delete", 101, Y),),
        offences_written=((X, 1, NOW - 500, NOW + 600),),
    ),
    "an expiry, an extension on evidence and another expiry in one run": Case(
        entries=(deny_entry(100, X), deny_entry(101, Y), deny_entry(102, Z)),
        records=(
            held(100, X, created=NOW - 601, expires=NOW - 1),
            held(101, Y, created=NOW - 601, expires=NOW - 1),
            held(102, Z, created=NOW - 601, expires=NOW - 1),
        ),
        request=Request("floodgate", reject_pps={Y: 6000.0}, expire_due=True),
        events=(
            (EventKind.EXPIRE, X, 100, NOW - 1, 1),
            (EventKind.EXTEND, Y, 101, NOW + 600, 1),
            (EventKind.EXPIRE, Z, 102, NOW - 1, 1),
        ),
        reasons=(
            "ban over",
            "ban over but the source still sends 6,000 pps, seen as REJECT (threshold 5,000 pps): "
            "extended by 10m",
            "ban over",
        ),
        changes=(("delete", 100, X), ("delete", 102, Z)),
        offences_written=((Y, 1, NOW - 601, NOW + 600),),
    ),
    "two lapsed denies whose entries are gone are both dropped": Case(
        records=(
            held(100, X, created=NOW - 601, expires=NOW - 1),
            held(101, Y, created=NOW - 601, expires=NOW - 1),
        ),
        events=((EventKind.EXPIRE, X, 100, NOW - 1, 1), (EventKind.EXPIRE, Y, 101, NOW - 1, 1)),
        reasons=(
            "ban over; its entry was already missing from the NACL",
            "ban over; its entry was already missing from the NACL",
        ),
    ),
    "evict: the oldest of the lowest-valued denies gives way, even on a later rule": Case(
        entries=(deny_entry(100, Y), deny_entry(101, X)),
        records=(held(100, Y, created=NOW - 100), held(101, X, created=NOW - 200)),
        request=Request("floodgate", wanted=wants(flood(Z))),
        events=((EventKind.EVICT, X, 101, NOW + 300, 1), (EventKind.BLOCK, Z, 102, NOW + 600, 1)),
        reasons=(
            f"budget of 2 full: lowest value ({X} at 0 pps) gave way to {Z} (9,000 pps)",
            "9,000 pps; offence 1, denied for 10m",
        ),
        changes=(("create", 102, Z), ("delete", 101, X)),
        offences_written=((Z, 1, NOW, NOW + 600),),
    ),
    "a source in the VPC's private range is refused whatever its rate": Case(
        request=Request("floodgate", wanted=wants(flood("10.0.3.1/32", 90000.0))),
        events=((EventKind.REFUSED, "10.0.3.1/32", None, None, None),),
        reasons=("10.0.3.1/32 overlaps protected range 10.0.0.0/8",),
    ),
    "an unblock where Floodgate's old entry of another source sits removes that entry as an orphan": Case(
        entries=(deny_entry(100, Y),),
        records=(held(100, X),),
        marks=(owned(100, Y),),
        request=Request("ann", remove={X: "unblocked by ann: done"}),
        events=((EventKind.UNBLOCK, X, 100, NOW + 300, 1), (EventKind.REPAIR, Y, 100, None, None)),
        reasons=(
            "unblocked by ann: done",
            f"Floodgate's entry {Y} outlived its deny (a worker stopped before deleting it): remove it",
        ),
        changes=(("delete", 100, Y),),
        drift=((DriftKind.ORPHAN, 100, Y),),
    ),
    "nothing asked, nothing out of line: an empty decision": Case(
        entries=(deny_entry(100, X),),
        records=(held(100, X),),
    ),
}


def counter() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"id-{next(numbers)}"


def run(case: Case) -> Decision:
    snapshot = NaclSnapshot("acl-1", "vpc-1", False, case.entries)
    offences = {o.cidr: o for o in case.offences}
    return decide(
        CONFIG, snapshot, case.records, offences, case.request, now=NOW, new_id=counter(), marks=case.marks
    )


def change_summary(decision: Decision) -> tuple[tuple[str, int, str], ...]:
    return tuple(
        ("delete" if isinstance(c, DeleteEntry) else "replace" if c.replace else "create", c.rule, c.cidr)
        for c in decision.changes
    )


@pytest.mark.parametrize("name", list(CASES))
def test_decision(name: str) -> None:
    case = CASES[name]
    decision = run(case)
    assert [(e.kind, e.cidr, e.rule, e.expires, e.offences) for e in decision.events] == list(case.events)
    assert [e.reason for e in decision.events] == list(case.reasons)
    assert change_summary(decision) == case.changes
    assert [(d.kind, d.rule, d.cidr) for d in decision.drift] == list(case.drift)
    written = [
        (w.record.cidr, w.record.count, w.record.ban_started, w.record.ban_until) for w in decision.offences
    ]
    assert written == list(case.offences_written)
    assert all(
        e.at >= NOW and e.actor == case.request.actor and e.nacl_id == "acl-1" and e.direction is IN
        for e in decision.events
    )
    assert decision.now == NOW
    assert all(c.direction is IN for c in decision.changes)
    assert all(w.record.write_id.startswith("id-") for w in decision.offences)  # each a new version
    # A week's memory from the end of each ban written.
    assert [w.record.remember_until for w in decision.offences] == [
        o[3] + 7 * DAY for o in case.offences_written
    ]
    # Drift is reported with the same words as the log line of its repair or foreign entry, if it has one.
    logged = {
        (e.rule, e.cidr): e.reason for e in decision.events if e.kind in (EventKind.REPAIR, EventKind.FOREIGN)
    }
    for drift in decision.drift:
        assert (drift.nacl_id, drift.direction) == ("acl-1", IN)
        assert drift.detail == logged.get((drift.rule, drift.cidr), drift.detail) and drift.detail
    # Every ledger version written is a new one, of this NACL; a new deny keeps what was asked.
    puts = [w for group in decision.groups for w in group if isinstance(w, PutDeny)]
    assert all(w.record.write_id.startswith("id-") and w.record.nacl_id == "acl-1" for w in puts)
    for put in puts:
        want = case.request.wanted.get(put.record.cidr)
        if put.replaces is None and want is not None:
            assert (put.record.origin, put.record.reason, put.record.evidence) == (
                want.origin,
                want.reason,
                want.evidence,
            )


def test_an_evicted_deny_and_the_new_one_are_written_rule_by_rule_with_their_log_lines() -> None:
    decision = run(
        CASES["evict: a full pool gives the oldest of its lowest-valued denies up for a stronger source"]
    )
    (drop_x, still_ours, evicted), (put_z, blocked) = decision.groups
    assert drop_x == DropDeny(held(100, X, created=NOW - 200))
    assert still_ours == PutMark(owned(100, X))  # its entry stays until the delete: still Floodgate's
    assert isinstance(evicted, AppendEvent) and evicted.event.kind is EventKind.EVICT
    assert isinstance(put_z, PutDeny) and put_z.replaces is None
    assert (put_z.record.rule, put_z.record.cidr, put_z.record.created, put_z.record.expires) == (
        102,
        Z,
        NOW,
        NOW + 600,
    )
    assert isinstance(blocked, AppendEvent) and blocked.event.kind is EventKind.BLOCK
    assert blocked.event.reason == "9,000 pps; offence 1, denied for 10m"


def test_a_person_pinning_a_held_deny_becomes_its_origin_and_the_origin_of_its_repair() -> None:
    decision = run(
        CASES["a manual block of a held deny whose entry is missing pins it and re-creates the entry"]
    )
    assert [e.origin for e in decision.events] == [Origin.manual("ann"), Origin.manual("ann")]
    (put,) = [w for group in decision.groups for w in group if isinstance(w, PutDeny)]
    assert put.record.origin == Origin.manual("ann")


@pytest.mark.parametrize(
    "record",
    [
        held(100, X, created=NOW - 500, expires=NOW + 100),  # renewed past half its ban
        held(100, X, created=NOW - 700, expires=NOW - 100),  # back after its ban ended
    ],
    ids=["renewed", "back after its ban"],
)
def test_a_renewed_deny_carries_the_rate_it_was_seen_at_now(record: DenyRecord) -> None:
    request = Request("floodgate", wanted=wants(flood(X, 12000.0)))
    decision = run(Case(entries=(deny_entry(100, X),), records=(record,), request=request))
    assert [(e.kind, e.evidence) for e in decision.events] == [(EventKind.EXTEND, Evidence(pps=12000.0))]
    (put,) = [w for group in decision.groups for w in group if isinstance(w, PutDeny)]
    assert put.record.evidence == Evidence(pps=12000.0)


def test_a_refusal_is_logged_with_the_evidence_and_origin_of_what_was_refused() -> None:
    (event,) = run(CASES["refused: a full pool of manual denies takes no automatic one"]).events
    assert (event.evidence, event.origin, event.direction) == (Evidence(pps=9000.0), Origin.automatic(), IN)


def test_a_renewal_replaces_the_version_it_read() -> None:
    decision = run(CASES["renew: seen again past half its ban, renewed to a full ban from now"])
    ((put, extended),) = decision.groups
    assert isinstance(put, PutDeny) and put.replaces == held(100, X, created=NOW - 500, expires=NOW + 100)
    assert put.record.write_id not in {"held-100", ""} and put.record.created == NOW - 500
    assert isinstance(extended, AppendEvent)
    assert extended.event.reason == "seen again at 9,000 pps: ban renewed for 10m (offence 1)"


def test_a_re_created_entry_carries_the_ledger_deny_it_stands_for() -> None:
    decision = run(CASES["drift, missing: a valid ledger deny without its entry is re-created"])
    assert decision.changes == (PutEntry(held(100, X), replace=False),)
    assert decision.groups == ((AppendEvent(decision.events[0]),),)  # a repair changes no ledger record
    assert decision.events[0].origin == Origin.automatic()


def test_a_foreign_entry_on_a_ledger_rule_is_explained() -> None:
    decision = run(
        CASES["drift, foreign on a ledger deny's rule: the deny is reported missing, the entry left alone"]
    )
    assert decision.drift[0].detail == (
        f"ingress rule 100 allow all {Y} was not written by Floodgate (no ledger record): never touched, "
        "rule 100 skipped; move it out of 100-102 or set ruleStart / FLOODGATE_RULE_START to a free block"
    )
    assert decision.drift[1].detail == (
        f"rule 100 is taken by a foreign entry (ingress rule 100 allow all {Y}): "
        f"the ledger's deny of {X} is not in force"
    )
    assert not decision.changes_anything


def test_an_unblock_leaves_the_offence_count_remembered_for_a_week() -> None:
    decision = run(CASES["unblock: the deny and its entry go, the ban ends now"])
    (ended,) = decision.offences
    assert ended.replaces == offence(X, 1, NOW + 300)
    assert (ended.record.count, ended.record.ban_until, ended.record.remember_until) == (
        1,
        NOW,
        NOW + 7 * DAY,
    )


def test_events_of_one_decision_keep_their_order_in_time() -> None:
    decision = run(
        CASES["evict: a full pool gives the oldest of its lowest-valued denies up for a stronger source"]
    )
    assert [e.at for e in decision.events] == [NOW + 1e-6, NOW + 2e-6]


def test_the_decision_reads_nothing_it_was_not_given() -> None:
    request = Request("floodgate", wanted=wants(flood(X)), remove={Y: "unblocked"}, expire_due=True)
    records = [held(100, Z, expires=NOW - 1), held(101, "198.51.100.8/32")]
    assert request.offence_cidrs(records, NOW) == sorted([X, Y, Z])
    assert Request("floodgate", wanted=wants(flood(X))).offence_cidrs(records, NOW) == [X]


MIRRORED = dataclasses.replace(CONFIG, outbound_mirror=True)
OUT = Direction.EGRESS


def test_with_the_outbound_mirror_a_new_source_is_denied_both_ways_under_one_offence() -> None:
    snapshot = NaclSnapshot("acl-1", "vpc-1", False, ())
    request = Request("floodgate", wanted=wants(flood(X)))
    decision = decide(MIRRORED, snapshot, [], {}, request, now=NOW, new_id=counter())
    assert [(e.kind, e.direction, e.rule, e.expires, e.offences) for e in decision.events] == [
        (EventKind.BLOCK, IN, 100, NOW + 600, 1),
        (EventKind.BLOCK, OUT, 100, NOW + 600, 1),
    ]
    assert [(c.direction, c.rule, c.cidr) for c in decision.changes] == [(IN, 100, X), (OUT, 100, X)]
    assert [(w.record.cidr, w.record.count) for w in decision.offences] == [(X, 1)]


def test_with_the_outbound_mirror_the_missing_direction_joins_the_running_ban() -> None:
    snapshot = NaclSnapshot("acl-1", "vpc-1", False, (deny_entry(100, X),))
    running = held(100, X, created=NOW - 200, expires=NOW + 1000, offences=2)
    request = Request("floodgate", wanted=wants(flood(X)))
    decision = decide(MIRRORED, snapshot, [running], {}, request, now=NOW, new_id=counter())
    assert [(e.kind, e.direction, e.rule, e.expires, e.offences) for e in decision.events] == [
        (EventKind.BLOCK, OUT, 100, NOW + 1000, 2),
    ]
    assert [(c.direction, c.rule, c.cidr) for c in decision.changes] == [(OUT, 100, X)]
    assert decision.offences == ()


ROOM = "must be at least 1 and leave room for the default rule and one spare under the quota of 20"


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"nacl_ids": (), "vpc_id": None}, "no target: give NACL ids or a VPC id"),
        ({"budget": 0}, f"budget 0 {ROOM}"),
        ({"budget": 19}, f"budget 19 {ROOM}"),
        ({"rule_start": 0}, "owned rules 0-5 must lie in 1-32766"),
        ({"rule_start": 32762}, "owned rules 32762-32767 must lie in 1-32766"),
    ],
)
def test_a_config_that_cannot_work_is_refused(changes: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(complaint)}$"):
        dataclasses.replace(CONFIG, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"budget": 1},  # the smallest budget
        {"budget": 18},  # 18 denies, the default rule and one spare: exactly the quota of 20
        {"rule_start": 1},  # the first rule number there is
        {"rule_start": 32761},  # ingress IPv4 32761-32763, IPv6 32764-32766: the last rule below the default
        {"rule_start": 32761, "outbound_mirror": True},  # egress rules are numbered apart from ingress ones
    ],
)
def test_a_config_at_the_limits_is_accepted(changes: dict[str, Any]) -> None:
    config = dataclasses.replace(CONFIG, **changes)
    assert (config.budget, config.rule_start) == (changes.get("budget", 2), changes.get("rule_start", 100))


def test_the_owned_block_may_end_just_below_the_default_rule() -> None:
    config = dataclasses.replace(CONFIG, rule_start=32760, budget=2, vpc_id="vpc-1", nacl_ids=())
    assert [(p.family, p.first_rule, p.last_rule) for p in config.pools] == [
        (4, 32760, 32762),
        (6, 32763, 32765),
    ]
    assert config.rule_end == 32765


def test_a_foreign_entry_is_logged_with_a_mark_that_remembers_it() -> None:
    decision = run(
        CASES["ownership: a deny-all entry with no ledger record and no mark is foreign, logged once, kept"]
    )
    ((mark, logged),) = decision.groups
    assert mark == PutMark(reported(101, Y))
    assert isinstance(logged, AppendEvent) and logged.event.kind is EventKind.FOREIGN
    assert decision.changes == ()


def test_a_foreign_entry_that_left_is_forgotten_so_it_is_reported_again_if_it_returns() -> None:
    snapshot = NaclSnapshot("acl-1", "vpc-1", False, ())
    decision = decide(CONFIG, snapshot, [], {}, Request("floodgate"), now=NOW, marks=[reported(101, Y)])
    assert decision.groups == ((DropMark(reported(101, Y)),),)
    assert decision.events == () and decision.changes == ()


def test_an_owned_mark_of_an_entry_already_gone_is_dropped() -> None:
    decision = run(
        CASES["ownership: an entry marked OWNED that is gone from the NACL is forgotten, nothing else"]
    )
    assert decision.groups == ((DropMark(owned(101, Y)),),)


def test_an_unblock_marks_the_entry_it_leaves_behind_as_floodgates_until_it_is_deleted() -> None:
    decision = run(CASES["unblock: the deny and its entry go, the ban ends now"])
    ((drop, mark, _event),) = decision.groups
    assert drop == DropDeny(held(100, X)) and mark == PutMark(owned(100, X))


def test_a_lapsed_deny_whose_entry_is_gone_needs_no_mark() -> None:
    decision = run(CASES["a lapsed deny whose entry is already gone is dropped as expired"])
    ((drop, _event),) = decision.groups
    assert isinstance(drop, DropDeny)


@pytest.mark.parametrize(
    ("name", "evidence"),
    [
        (
            "expire: the ban is over and no evidence says otherwise",
            Evidence(reject_pps=None, threshold_pps=5000.0),
        ),
        (
            "expire: a REJECT rate below the threshold does not keep the deny",
            Evidence(reject_pps=4999.0, threshold_pps=5000.0),
        ),
    ],
)
def test_an_expire_row_carries_the_evidence_it_was_judged_on_not_the_blocks_old_rate(
    name: str, evidence: Evidence
) -> None:
    (expired,) = run(CASES[name]).events
    assert expired.evidence == evidence  # the held deny was blocked at 9,000 pps: not shown as current


def test_an_extension_on_evidence_carries_the_rate_and_threshold_it_was_judged_on() -> None:
    (extended,) = run(CASES["extend: the ban is over but the source still sends above the threshold"]).events
    assert extended.evidence is not None
    assert (extended.evidence.reject_pps, extended.evidence.threshold_pps) == (6000.0, 5000.0)


def test_a_pending_deny_written_now_drops_its_mark_with_its_block_line() -> None:
    decision = run(CASES["pending: a deny logged PENDING goes in now; its BLOCK is logged, not a repair"])
    ((dropped, logged),) = decision.groups
    assert dropped == DropMark(pending(100, X))
    assert isinstance(logged, AppendEvent) and logged.event.kind is EventKind.BLOCK
    assert "pending since an earlier run" in logged.event.reason


def test_a_forgotten_pending_mark_is_dropped_alone() -> None:
    decision = run(CASES["pending: a PENDING mark of a deny no longer held is forgotten, nothing logged"])
    assert decision.groups == ((DropMark(pending(100, X)),),)


def _line(kind: EventKind, cidr: str, rule: int | None, reason: str = "why") -> LogEvent:
    return LogEvent(kind, NOW, cidr, reason, "floodgate", nacl_id="acl-1", direction=IN, rule=rule)


def test_settling_turns_the_lines_of_unwritten_entries_into_pending_and_keeps_the_rest() -> None:
    block_x = _line(EventKind.BLOCK, X, 100, "9,000 pps")
    extend_y = _line(EventKind.EXTEND, Y, 101)
    repair_z = _line(EventKind.REPAIR, Z, 102)
    evict = _line(EventKind.EVICT, Y, 100)
    refused = _line(EventKind.REFUSED, V6, None)
    block_v6 = _line(EventKind.BLOCK, V6, 103)
    events = [evict, block_x, extend_y, repair_z, refused, block_v6]
    unwritten = {(IN, 100, X): "EC2 kept failing", (IN, 102, Z): "the lease ran short"}

    settled = settle_events(events, unwritten, dropped={(IN, 103, V6)})

    assert [(e.kind, e.would, e.cidr) for e in settled] == [
        (EventKind.EVICT, None, Y),  # not about an entry going in
        (EventKind.PENDING, EventKind.BLOCK, X),
        (EventKind.EXTEND, None, Y),  # its entry was written (or needed no writing)
        (EventKind.PENDING, EventKind.REPAIR, Z),
        (EventKind.REFUSED, None, V6),
        # the BLOCK of V6 is left out: its deny was dropped, its own QUARANTINE/REFUSED line says why
    ]
    assert settled[1].reason == "entry not written (EC2 kept failing); the next run writes it. 9,000 pps"
    # Same time and id: delivered again, it lands on the same log line.
    assert (settled[1].at, settled[1].event_id) == (block_x.at, block_x.event_id)


def test_settling_matches_the_cidr_as_well_as_the_rule() -> None:
    # An entry unwritten at rule 100 for X says nothing of a line about Y at the same rule.
    settled = settle_events([_line(EventKind.BLOCK, Y, 100)], {(IN, 100, X): "why"})
    assert [e.kind for e in settled] == [EventKind.BLOCK]


def test_settling_leaves_every_line_that_does_not_say_an_entry_went_in_as_it_is() -> None:
    # The eviction of X at rule 100 and the refusal line of V6 at rule 103 name entries that were not
    # written or whose deny was dropped; neither says an entry went in, so neither is settled.
    evict_x = _line(EventKind.EVICT, X, 100)
    quarantined = _line(EventKind.QUARANTINE, V6, 103)
    settled = settle_events([evict_x, quarantined], {(IN, 100, X): "why"}, dropped={(IN, 103, V6)})
    assert settled == [evict_x, quarantined]


def test_settling_goes_on_past_a_line_left_out() -> None:
    block_v6, block_x = _line(EventKind.BLOCK, V6, 103), _line(EventKind.BLOCK, X, 100)
    settled = settle_events([block_v6, block_x], {}, dropped={(IN, 103, V6)})
    assert settled == [block_x]


def test_a_pending_deny_written_now_is_reported_as_such() -> None:
    (drift,) = run(
        CASES["pending: a deny logged PENDING goes in now; its BLOCK is logged, not a repair"]
    ).drift
    assert drift.detail == "pending deny (an earlier run could not write its entry): write it"


def test_a_pending_deny_found_in_place_drops_its_mark_with_its_block_line() -> None:
    decision = run(
        CASES["pending: a PENDING deny whose entry is found in place is logged BLOCK, nothing written"]
    )
    ((dropped, logged),) = decision.groups
    assert dropped == DropMark(pending(100, X))
    assert isinstance(logged, AppendEvent) and logged.event.kind is EventKind.BLOCK


def test_a_new_block_at_the_rule_of_an_old_pending_deny_drops_the_old_mark() -> None:
    # Left behind, the mark would log the new deny's entry as going in a second time in a later run.
    decision = run(
        CASES["pending: a source blocked anew where its old PENDING deny was is logged once, a new BLOCK"]
    )
    ((put, dropped, logged),) = decision.groups
    assert isinstance(put, PutDeny) and (put.record.rule, put.record.cidr) == (100, X)
    assert dropped == DropMark(pending(100, X))
    assert isinstance(logged, AppendEvent) and logged.event.kind is EventKind.BLOCK


def test_a_pending_deny_blocked_by_a_foreign_entry_keeps_its_mark() -> None:
    decision = run(
        CASES["pending: a PENDING deny whose rule a foreign entry took stays pending, its mark kept"]
    )
    assert decision.groups == ()


def test_the_deployed_settings_become_the_enforcement_config_knob_for_knob() -> None:
    settings = Settings.from_env(
        {
            "FLOODGATE_NACL_IDS": "acl-0a1b2c3d4e5f60718",
            "FLOODGATE_VPC_ID": "vpc-0123456789abcdef0",
            "FLOODGATE_VPC_CIDRS": "10.0.0.0/16,2600:1f18:abcd:1200::/56",
            "FLOODGATE_ALLOW_CIDRS": "198.51.100.0/24",
            "FLOODGATE_STATE_TABLE": "state",
            "FLOODGATE_LOG_TABLE": "log",
            "FLOODGATE_RULE_START": "200",
            "FLOODGATE_BUDGET": "5",
            "FLOODGATE_NACL_QUOTA": "12",
            "FLOODGATE_MIN_PPS": "7000",
            "FLOODGATE_MAX_PREFIX_V4": "20",
            "FLOODGATE_MAX_PREFIX_V6": "56",
            "FLOODGATE_BASE_TTL": "15m",
            "FLOODGATE_MAX_TTL": "6h",
            "FLOODGATE_TTL_FACTOR": "3",
            "FLOODGATE_OFFENCE_MEMORY": "2d",
            "FLOODGATE_EXTEND_ON_EVIDENCE": "false",
            "FLOODGATE_OUTBOUND_MIRROR": "true",
            "FLOODGATE_DRY_RUN": "true",
        }
    )
    config = EnforcementConfig.from_settings(settings)
    assert (config.nacl_ids, config.vpc_id) == (("acl-0a1b2c3d4e5f60718",), "vpc-0123456789abcdef0")
    assert (config.rule_start, config.budget, config.nacl_quota) == (200, 5, 12)
    assert (config.evidence_threshold_pps, config.extend_on_evidence) == (7000.0, False)
    assert (config.outbound_mirror, config.dry_run) == (True, True)
    assert config.bans == BanPolicy(
        base_ttl_s=900, max_ttl_s=6 * 3600, factor=3.0, offence_memory_s=2 * 86400
    )
    # The policy protects the allowlist and both VPC ranges, and caps prefixes at /20 and /56.
    refused = {
        cidr: config.policy.refusal(ipaddress.ip_network(cidr))
        for cidr in ("198.51.100.7/32", "2600:1f18:abcd:1234::1/128", "10.0.3.1/32")
    }
    assert all(refused.values()), refused
    assert config.policy.refusal(ipaddress.ip_network("45.32.0.0/20")) is None
    assert config.policy.refusal(ipaddress.ip_network("45.0.0.0/19")) is not None
    assert config.policy.refusal(ipaddress.ip_network("2a05:d000::/56")) is None
    assert config.policy.refusal(ipaddress.ip_network("2a05:d000::/55")) is not None
    # Both directions (outbound mirror), each with its own rule numbers: an IPv4 and an IPv6 pool from 200 on.
    assert config.directions == (Direction.INGRESS, Direction.EGRESS)
    assert [(p.direction, p.family, p.first_rule, p.last_rule) for p in config.pools] == [
        (Direction.INGRESS, 4, 200, 205),
        (Direction.INGRESS, 6, 206, 211),
        (Direction.EGRESS, 4, 200, 205),
        (Direction.EGRESS, 6, 206, 211),
    ]


def test_marks_of_entries_gone_are_all_dropped_whatever_their_kind_and_order() -> None:
    snapshot = NaclSnapshot("acl-1", "vpc-1", False, ())
    marks = [reported(100, Z), owned(101, Y), reported(102, "198.51.100.0/24")]
    decision = decide(CONFIG, snapshot, [], {}, Request("floodgate"), now=NOW, new_id=counter(), marks=marks)
    assert decision.groups == tuple((DropMark(mark),) for mark in marks)


@pytest.mark.parametrize("mark", [owned(100, Y), reported(100, Y)], ids=["owned", "foreign"])
def test_a_new_deny_on_a_rule_whose_old_entry_left_drops_its_mark_in_the_same_write(mark: EntryMark) -> None:
    snapshot = NaclSnapshot("acl-1", "vpc-1", False, ())
    request = Request("floodgate", wanted=wants(flood(X)))
    decision = decide(CONFIG, snapshot, [], {}, request, now=NOW, new_id=counter(), marks=[mark])
    ((put, drop, logged),) = decision.groups
    assert isinstance(put, PutDeny) and put.record.rule == 100
    assert drop == DropMark(mark)
    assert isinstance(logged, AppendEvent) and logged.event.kind is EventKind.BLOCK


def test_an_orphan_keeps_its_owned_mark_until_its_entry_is_gone() -> None:
    decision = run(
        CASES["drift, orphan: Floodgate's entry whose deny left the ledger (marked OWNED) is removed"]
    )
    ((logged,),) = decision.groups
    assert isinstance(logged, AppendEvent) and logged.event.kind is EventKind.REPAIR


def test_a_refusal_is_written_as_a_log_line_of_its_own() -> None:
    decision = run(CASES["refused: a full pool of manual denies takes no automatic one"])
    assert decision.groups == ((AppendEvent(decision.events[0]),),)


def test_with_the_outbound_mirror_the_missing_direction_joins_the_ban_as_renewed_just_now() -> None:
    snapshot = NaclSnapshot("acl-1", "vpc-1", False, (deny_entry(100, X),))
    running = held(100, X, created=NOW - 500, expires=NOW + 100)
    request = Request("floodgate", wanted=wants(flood(X)))
    decision = decide(MIRRORED, snapshot, [running], {}, request, now=NOW, new_id=counter())
    assert [(e.kind, e.direction, e.rule, e.expires, e.offences) for e in decision.events] == [
        (EventKind.EXTEND, IN, 100, NOW + 600, 1),
        (EventKind.BLOCK, OUT, 100, NOW + 600, 1),
    ]


def test_an_expiry_with_evidence_switched_off_shows_no_threshold() -> None:
    config = dataclasses.replace(CONFIG, extend_on_evidence=False)
    snapshot = NaclSnapshot("acl-1", "vpc-1", False, (deny_entry(100, X),))
    lapsed = held(100, X, created=NOW - 601, expires=NOW - 1)
    request = Request("floodgate", reject_pps={X: 6000.0}, expire_due=True)
    (expired,) = decide(config, snapshot, [lapsed], {}, request, now=NOW, new_id=counter()).events
    assert (expired.kind, expired.reason) == (EventKind.EXPIRE, "ban over")
    assert expired.evidence == Evidence(reject_pps=6000.0, threshold_pps=None)


def test_without_an_id_maker_each_version_gets_a_random_id_of_its_own() -> None:
    snapshot = NaclSnapshot("acl-1", "vpc-1", False, ())
    request = Request("floodgate", wanted=wants(flood(X), flood(Y)))
    decision = decide(CONFIG, snapshot, [], {}, request, now=NOW)
    ids = [w.record.write_id for group in decision.groups for w in group if isinstance(w, PutDeny)]
    ids += [w.record.write_id for w in decision.offences]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
