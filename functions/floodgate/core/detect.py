"""Detection: which few sources or prefixes carry a concentrated share of inbound traffic.

A source is abusive when its rate is high in absolute terms (min_pps, min_bps) *and* it carries a
concentrated share (min_share) of inbound packets. Levels are walked finest first (hierarchical heavy
hitters with conditioned counts): a prefix is chosen when the traffic it carries beyond its already-chosen
members is abusive by itself and the prefix is *dense* — most of the sources seen in it send at least the
member rate floor over the window, so the entry hits attackers and little else. A chosen prefix absorbs its
chosen members: a prefix and its own members are never both in a plan. If more entries qualify than the
budget holds, dense prefixes that cover several chosen entries replace them, then the heaviest entries win.
A key counted at no packet (seen only in records of zero packets, which flow logs can carry) is no evidence:
it is neither planned, however large the summary's error bound, nor used to replace entries.

Spoofing. UDP, ICMP and SYN-only records show a source the sender merely claims. The reason of an entry
says how much of its evidence is of that kind. A prefix whose evidence is *all* spoofable must earn its
deny twice over: SPOOFED_PREFIX_FACTOR times the rate floor, and SPOOFED_DENSE_RATIO of its sources hot
(a forger spraying a range must also hit it densely and hard). Whatever the evidence, a source or prefix
holding a dependency of the VPC (a remote its hosts open connections to: `TrafficSummary.dependencies`) is
never planned - NACLs are stateless, and denying it would cut the VPC off from its own DNS, APIs or
partners - it is listed in `DenyPlan.refused` instead.
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass

from floodgate.core.model import DenyPlan, PlannedDeny, Verdict
from floodgate.core.networks import DenyPolicy, Network
from floodgate.core.summary import (
    ADDRESS_BITS,
    ASSUMED_SPAN_S,
    Counter,
    MemberCounts,
    Members,
    TrafficSummary,
    key_network,
)

DEPENDENCY_REFUSAL = "spoofable source the VPC depends on"
SPOOFED_PREFIX_FACTOR = 2.0
SPOOFED_DENSE_RATIO = 0.9


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    policy: DenyPolicy
    min_pps: float = 5000.0
    min_bps: float = 0.0
    min_share: float = 0.01
    budget: int = 10
    member_floor_pps: float = 50.0  # a prefix member at or above this rate counts as hot
    dense_ratio: float = 0.5  # share of a prefix's sources that must be hot for the prefix to be denied
    window_s: float | None = None  # None: the records' own time span

    def __post_init__(self) -> None:
        if self.budget < 0:
            raise ValueError("budget must not be negative")
        if not 0 < self.min_share <= 1:
            raise ValueError("min_share must be in (0, 1]")
        if self.window_s is not None and self.window_s <= 0:
            raise ValueError("window must be positive")


@dataclass(slots=True)
class _Candidate:
    network: Network
    packets: int
    bytes: int
    members: int
    reason: str

    @property
    def order(self) -> tuple[int, int, int, int]:
        """Heaviest first; ties broken by address so that plans are deterministic."""
        net = self.network
        return (-self.packets, net.version, int(net.network_address), net.prefixlen)


class _Detector:
    def __init__(self, summary: TrafficSummary, config: DetectionConfig) -> None:
        self.summary = summary
        self.config = config
        self.window_s = float(config.window_s or summary.span_s or ASSUMED_SPAN_S)
        self.total = summary.total_packets
        hot_packets = config.member_floor_pps * self.window_s
        self.members = {version: MemberCounts(summary, version, hot_packets) for version in ADDRESS_BITS}
        self.dependencies = {
            version: sorted(value for v, value in summary.dependencies if v == version)
            for version in ADDRESS_BITS
        }
        self.refused: dict[Network, _Candidate] = {}

    def abusive(self, packets: int, octets: int, error: int, factor: float = 1.0) -> bool:
        """Rate and share tests on the count's upper bound, so no true heavy hitter is ever missed."""
        upper = packets + error
        config = self.config
        return (
            upper / self.window_s >= factor * config.min_pps
            and upper >= config.min_share * self.total
            and octets * 8 / self.window_s >= config.min_bps
        )

    def may_be_abusive(self, upper: int) -> bool:
        """`abusive`'s packet tests alone, at factor 1: false only where `abusive` is false for any count up
        to `upper`, so a key failing it can be passed over at once."""
        return upper / self.window_s >= self.config.min_pps and upper >= self.config.min_share * self.total

    def members_of(self, version: int, length: int, key: int) -> Members:
        if length == ADDRESS_BITS[version]:
            return Members(1, 1)
        return self.members[version].of(length, key)

    def dense(self, members: Members, ratio: float) -> bool:
        return members.hot >= 2 and members.hot >= ratio * members.seen

    def dependency_inside(self, network: Network) -> str | None:
        """The first address the VPC depends on inside `network`, or None."""
        values = self.dependencies[network.version]
        first = int(network.network_address)
        at = bisect.bisect_left(values, first)
        if at < len(values) and values[at] <= int(network.broadcast_address):
            return str(ipaddress.ip_address(values[at]))
        return None

    def candidates(self, version: int) -> list[_Candidate]:
        chosen: dict[Network, _Candidate] = {}
        policy = self.config.policy
        bits = ADDRESS_BITS[version]
        for length in self.summary.level_lengths(version):
            level = self.summary.levels[(version, length)]
            is_host = length == bits
            # Chosen finer entries grouped under their prefix at this level.
            members: dict[int, list[_Candidate]] = {}
            for candidate in chosen.values():
                parent = int(candidate.network.network_address) >> (bits - length)
                members.setdefault(parent, []).append(candidate)
            error, share_floor = level.error, self.config.min_share * self.total
            # Most keys fall short of the share (the second of `may_be_abusive`'s tests, as it computes it):
            # they are passed over before the sort, which then orders only the few left.
            judged = sorted(
                (key, counter)
                for key, counter in level.counters.items()
                if counter.packets + error >= share_floor
                # counted only in records of no packet: nothing to judge, whatever the error
                and counter.packets
                # below the rate or the share whatever is subtracted below: most keys
                and self.may_be_abusive(counter.packets + error)
            )
            for key, counter in judged:
                spoofed_only = not is_host and counter.spoofable >= counter.packets
                tally = self.members_of(version, length, key)
                ratio = max(self.config.dense_ratio, SPOOFED_DENSE_RATIO) if spoofed_only else None
                if not is_host and not self.dense(tally, ratio or self.config.dense_ratio):
                    continue
                inside = members.get(key, [])
                conditioned = counter.packets - sum(c.packets for c in inside)
                conditioned_bytes = max(0, counter.bytes - sum(c.bytes for c in inside))
                factor = SPOOFED_PREFIX_FACTOR if spoofed_only else 1.0
                if not self.abusive(max(0, conditioned), conditioned_bytes, level.error, factor):
                    continue
                network = key_network(version, length, key)
                if policy.refusal(network) is not None:
                    continue
                candidate = _Candidate(
                    network, counter.packets, counter.bytes, tally.seen, self.reason(network, counter, tally)
                )
                dependency = self.dependency_inside(network)
                if dependency is not None:
                    candidate.reason = f"{DEPENDENCY_REFUSAL} ({dependency}): {candidate.reason}"
                    self.refused[network] = candidate
                    continue
                for absorbed in inside:
                    del chosen[absorbed.network]
                chosen[network] = candidate
        return list(chosen.values())

    def reason(self, network: Network, counter: Counter, tally: Members) -> str:
        pps = counter.packets / self.window_s
        share = counter.packets / self.total
        rejected = counter.reject_packets / counter.packets  # callers pass counted keys only
        already = f"; {rejected:.0%} already rejected" if rejected >= 0.01 else ""
        spoofable = counter.spoofable / counter.packets
        if spoofable >= 0.01:
            already += (
                f"; {spoofable:.0%} of the evidence is UDP, ICMP or SYN-only, whose source may be spoofed"
            )
        if network.prefixlen == ADDRESS_BITS[network.version]:
            return f"single source at {pps:,.0f} pps, {share:.1%} of inbound packets{already}"
        return (
            f"{tally.hot} hot sources of {tally.seen} seen in this /{network.prefixlen}, "
            f"{pps / max(tally.seen, 1):,.0f} pps each on average; together {pps:,.0f} pps, "
            f"{share:.1%} of inbound packets{already}"
        )

    def fit_budget(self, chosen: list[_Candidate]) -> list[_Candidate]:
        """Replace groups of entries by a dense covering prefix while over budget, then keep the heaviest."""
        budget = self.config.budget
        policy = self.config.policy
        while len(chosen) > budget:
            best: tuple[tuple[int, int], _Candidate, list[_Candidate]] | None = None
            for (version, length), level in self.summary.levels.items():
                bits = ADDRESS_BITS[version]
                groups: dict[int, list[_Candidate]] = {}
                for candidate in chosen:
                    net = candidate.network
                    if net.version == version and net.prefixlen > length:
                        groups.setdefault(int(net.network_address) >> (bits - length), []).append(candidate)
                for key in sorted(groups):
                    inside, counter = groups[key], level.counters.get(key)
                    if len(inside) < 2 or counter is None or not counter.packets:
                        continue  # not counted, or only in records of no packet: nothing to plan it on
                    tally = self.members_of(version, length, key)
                    if not self.dense(tally, self.config.dense_ratio):
                        continue
                    network = key_network(version, length, key)
                    if policy.refusal(network) is not None or self.dependency_inside(network) is not None:
                        continue
                    merged = _Candidate(
                        network,
                        max(counter.packets, sum(c.packets for c in inside)),
                        max(counter.bytes, sum(c.bytes for c in inside)),
                        max(tally.seen, len(inside)),
                        f"covers {len(inside)} chosen entries in one slot; "
                        + self.reason(network, counter, tally),
                    )
                    score = (len(inside), merged.packets)
                    if best is None or score > best[0]:
                        best = (score, merged, inside)
            if best is None:
                break
            _, merged, inside = best
            chosen = [c for c in chosen if c not in inside] + [merged]
        return sorted(chosen, key=lambda c: c.order)[:budget]


def plan_denies(summary: TrafficSummary, config: DetectionConfig) -> DenyPlan:
    """The deny plan for the traffic in `summary`: at most `budget` entries covering the most abuse."""
    detector = _Detector(summary, config)
    window_s = detector.window_s
    total_pps = summary.total_packets / window_s
    total_bps = summary.total_bytes * 8 / window_s
    chosen: list[_Candidate] = []
    if summary.total_packets:
        chosen = detector.candidates(4) + detector.candidates(6)
    chosen = detector.fit_budget(chosen)
    denies = tuple(_planned(c, window_s, summary.total_packets) for c in chosen)
    refused = tuple(
        _planned(c, window_s, summary.total_packets) for c in sorted(detector.refused.values(), key=_order)
    )
    if denies:
        verdict = Verdict.CONCENTRATED
    elif total_pps >= config.min_pps and total_bps >= config.min_bps:
        verdict = Verdict.DISTRIBUTED
    else:
        verdict = Verdict.QUIET
    return DenyPlan(verdict, window_s, denies, total_pps, total_bps, summary.stats, refused)


def _order(candidate: _Candidate) -> tuple[int, int, int, int]:
    return candidate.order


def _planned(candidate: _Candidate, window_s: float, total_packets: int) -> PlannedDeny:
    return PlannedDeny(
        cidr=str(candidate.network),
        pps=candidate.packets / window_s,
        bps=candidate.bytes * 8 / window_s,
        share=candidate.packets / total_packets,
        members=candidate.members,
        reason=candidate.reason,
    )
