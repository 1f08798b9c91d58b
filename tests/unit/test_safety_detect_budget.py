"""Detection thresholds and reasons at their exact boundaries, on hand-written records whose rates are known
to the packet: 60 s records, so packets / 60 is the rate."""

from __future__ import annotations

import pytest

from floodgate.core.detect import DetectionConfig, plan_denies
from floodgate.core.flowlog import DEFAULT_FORMAT, FlowLogFormat, FlowLogParser
from floodgate.core.model import DenyPlan, Verdict
from floodgate.core.networks import DenyPolicy
from floodgate.core.summary import TrafficSummary

V2 = FlowLogFormat.parse(DEFAULT_FORMAT)


def record(source: str, packets: int, bytes_per_packet: int = 100, action: str = "ACCEPT") -> str:
    return (
        f"2 123456789012 eni-0abc {source} 10.0.1.10 1024 443 6 {packets} {packets * bytes_per_packet} "
        f"1700000000 1700000060 {action} OK"
    )


def plan(lines: list[str], **knobs: float) -> DenyPlan:
    config = DetectionConfig(policy=DenyPolicy.build(vpc_cidrs=["10.0.0.0/16"]), **knobs)  # type: ignore[arg-type]
    summary = TrafficSummary.for_share(config.min_share)
    summary.add(FlowLogParser(V2, ["10.0.0.0/16"]).parse(lines))
    return plan_denies(summary, config)


def test_the_bit_rate_floor_is_inclusive() -> None:
    flood = [record("45.33.12.9", 600_000)]  # 10,000 pps, 60,000,000 bytes: 8,000,000 bit/s
    (deny,) = plan(flood, min_bps=8_000_000).denies
    assert (deny.cidr, deny.pps, deny.bps, deny.share) == ("45.33.12.9/32", 10_000, 8_000_000, 1.0)
    below = plan(flood, min_bps=8_000_001)
    assert below.denies == () and below.verdict is Verdict.QUIET


def test_the_packet_rate_floor_is_inclusive() -> None:
    assert [d.cidr for d in plan([record("45.33.12.9", 300_000)], min_pps=5000).denies] == ["45.33.12.9/32"]
    assert plan([record("45.33.12.9", 300_000)], min_pps=5001).denies == ()


def test_two_hot_sources_make_a_dense_prefix() -> None:
    bots = [record("45.33.200.1", 180_000), record("45.33.200.2", 180_000)]  # 3,000 pps each, 6,000 together
    (deny,) = plan(bots).denies
    assert deny.cidr == "45.33.200.0/24"
    assert deny.reason == (
        "2 hot sources of 2 seen in this /24, 3,000 pps each on average; together 6,000 pps, "
        "100.0% of inbound packets"
    )


def test_a_single_source_reason_gives_rate_share_and_what_is_already_rejected() -> None:
    lines = [record("45.33.12.9", 450_000), record("45.33.12.9", 150_000, action="REJECT")]
    lines.append(record("45.33.99.1", 60_000))  # 1,000 pps elsewhere: the flood is 10/11 of the packets
    (deny,) = plan(lines).denies
    assert deny.reason == "single source at 10,000 pps, 90.9% of inbound packets; 25% already rejected"
    assert deny.pps == 10_000 and deny.members == 1


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"budget": -1}, "budget must not be negative"),
        ({"min_share": 0.0}, r"min_share must be in \(0, 1\]"),
        ({"min_share": 1.5}, r"min_share must be in \(0, 1\]"),
        ({"window_s": 0.0}, "window must be positive"),
    ],
)
def test_nonsense_detection_knobs_are_refused(knobs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        DetectionConfig(policy=DenyPolicy.build(), **knobs)  # type: ignore[arg-type]


def test_a_budget_of_zero_plans_nothing() -> None:
    assert plan([record("45.33.12.9", 600_000)], budget=0).denies == ()


def test_the_share_floor_is_inclusive() -> None:
    halves = [record("45.33.12.9", 300_000), record("81.2.69.1", 300_000)]  # exactly 50% each
    assert sorted(d.cidr for d in plan(halves, min_share=0.5).denies) == ["45.33.12.9/32", "81.2.69.1/32"]
    assert plan(halves, min_share=0.6).denies == ()


def test_a_prefix_needs_two_hot_sources_and_half_of_its_sources_hot() -> None:
    # One hot source (4,000 pps) and one below the member floor (40 pps): 4,040 pps, but only one hot.
    lone = [record("45.33.200.1", 240_000), record("45.33.200.2", 2_400)]
    assert plan(lone, min_pps=4020).denies == ()
    # Two hot sources and two cold ones: exactly half are hot, which is enough.
    half = [record("45.33.200.1", 180_000), record("45.33.200.2", 180_000)]
    half += [record("45.33.200.3", 600), record("45.33.200.4", 600)]
    assert [d.cidr for d in plan(half).denies] == ["45.33.200.0/24"]


def test_exactly_one_percent_rejected_is_mentioned() -> None:
    lines = [record("45.33.12.9", 594_000), record("45.33.12.9", 6_000, action="REJECT")]
    (deny,) = plan(lines).denies
    assert deny.reason.endswith("; 1% already rejected")


def compacted_plan(lines: list[str], **knobs: float) -> DenyPlan:
    """A plan from a summary of two counters per level, so four sources overflow it and it keeps an error
    bound: the two lighter sources' 60,000 packets are cut from every counter and added to the error."""
    config = DetectionConfig(policy=DenyPolicy.build(vpc_cidrs=["10.0.0.0/16"]), **knobs)  # type: ignore[arg-type]
    summary = TrafficSummary(capacity=2)
    summary.add(FlowLogParser(V2, ["10.0.0.0/16"]).parse(lines))
    return plan_denies(summary, config)


def test_a_compacted_count_is_judged_on_its_upper_bound_so_no_true_heavy_hitter_is_missed() -> None:
    # 45.33.12.9 truly sends 300,000 packets (5,000 pps); the summary keeps 240,000 of them and an error of
    # 60,000, so only the bound 240,000 + 60,000 shows it reaches the 5,000 pps floor.
    lines = [record("45.33.12.9", 300_000)]
    lines += [record(source, 60_000) for source in ("81.2.69.1", "81.2.70.1", "81.2.71.1")]
    assert [d.cidr for d in compacted_plan(lines, min_pps=5000).denies] == ["45.33.12.9/32"]
    assert compacted_plan(lines, min_pps=5001).denies == ()


def outbound(remote: str, packets: int = 10) -> str:
    """A connection the VPC opened (ephemeral port to 443): `remote` is a dependency of the VPC."""
    return (
        f"2 123456789012 eni-0abc 10.0.1.10 {remote} 49152 443 6 {packets} {packets * 100} "
        f"1700000000 1700000060 ACCEPT OK"
    )


def test_a_source_the_vpc_depends_on_is_refused_and_said_why_never_denied() -> None:
    result = plan([record("45.33.12.9", 600_000), outbound("45.33.12.9")])
    assert result.denies == ()
    (refused,) = result.refused
    assert refused.cidr == "45.33.12.9/32"
    assert refused.reason == (
        "spoofable source the VPC depends on (45.33.12.9): "
        "single source at 10,000 pps, 100.0% of inbound packets"
    )


def test_a_prefix_is_refused_when_the_vpc_depends_on_its_very_last_address() -> None:
    bots = [record("45.33.200.1", 180_000), record("45.33.200.2", 180_000)]  # the /24 alone is abusive
    assert [d.cidr for d in plan(bots).denies] == ["45.33.200.0/24"]
    result = plan([*bots, outbound("45.33.200.255")])
    assert result.denies == ()
    # The /24 and the /16 above it (as dense, as abusive) both hold it: both refused, widest first.
    assert [(r.cidr, r.reason.split(":")[0]) for r in result.refused] == [
        ("45.33.0.0/16", "spoofable source the VPC depends on (45.33.200.255)"),
        ("45.33.200.0/24", "spoofable source the VPC depends on (45.33.200.255)"),
    ]
    assert plan([*bots, outbound("45.33.201.0")]).denies == plan(bots).denies  # just outside: no effect


def test_a_reason_says_how_much_of_the_evidence_could_be_spoofed_from_one_percent_on() -> None:
    udp = record("45.33.12.9", 6_000).replace(" 1024 443 6 ", " 1024 443 17 ")  # 1% of the source's packets
    lines = [record("45.33.12.9", 444_000), record("45.33.12.9", 150_000, action="REJECT"), udp]
    (deny,) = plan(lines).denies
    assert deny.reason == (
        "single source at 10,000 pps, 100.0% of inbound packets; 25% already rejected; "
        "1% of the evidence is UDP, ICMP or SYN-only, whose source may be spoofed"
    )
    tcp_only = [record("45.33.12.9", 450_000), record("45.33.12.9", 150_000, action="REJECT")]
    (deny,) = plan(tcp_only).denies
    assert deny.reason == "single source at 10,000 pps, 100.0% of inbound packets; 25% already rejected"


def test_a_prefix_needs_the_dense_ratio_of_its_sources_hot_not_just_two() -> None:
    # Two hot sources and three cold ones: 2 of 5 hot is below half, so no prefix, whatever its rate.
    bots = [record("45.33.200.1", 180_000), record("45.33.200.2", 180_000)]
    cold = [record(f"45.33.200.{host}", 600) for host in (3, 4, 5)]
    assert plan(bots + cold).denies == ()


def test_what_a_prefix_carries_beyond_its_chosen_members_must_reach_the_share_by_itself() -> None:
    # 45.33.200.1 (10,000 pps, 21.7%) is chosen; its /24 carries 34.8% in all but only 13.0% beyond it, below
    # the 20% share, so the /24 is not chosen for its two other (hot) sources.
    lines = [record("45.33.200.1", 600_000), record("45.33.200.2", 180_000), record("45.33.200.3", 180_000)]
    lines.append(record("81.2.69.1", 1_800_000))
    assert sorted(d.cidr for d in plan(lines, min_share=0.2).denies) == ["45.33.200.1/32", "81.2.69.1/32"]


def test_the_rate_floor_holds_for_a_window_shorter_than_a_second() -> None:
    # 2,500 packets in a half-second window: exactly 5,000 pps.
    assert [d.cidr for d in plan([record("45.33.12.9", 2_500)], window_s=0.5).denies] == ["45.33.12.9/32"]


def udp(line: str) -> str:
    return line.replace(" 1024 443 6 ", " 1024 443 17 ")


def test_a_prefix_seen_only_through_spoofable_traffic_must_earn_its_deny_twice_over() -> None:
    # Two sources at 3,000 pps: 6,000 pps for their /24, enough over TCP, not over UDP only (twice 5,000).
    bots = [record("45.33.200.1", 180_000), record("45.33.200.2", 180_000)]
    assert [d.cidr for d in plan(bots).denies] == ["45.33.200.0/24"]
    assert plan([udp(line) for line in bots]).denies == ()
    # Three at 4,000 pps each (12,000 for the /24), all hot: the UDP-only /24 is denied.
    strong = [udp(record(f"45.33.200.{host}", 240_000)) for host in (1, 2, 3)]
    assert [d.cidr for d in plan(strong).denies] == ["45.33.200.0/24"]
    # A fourth, cold source: 3 of 4 hot, enough for the usual half, not for the 90% asked of spoofables.
    cold = record("45.33.200.4", 600)
    assert [d.cidr for d in plan([*strong[:2], record("45.33.200.3", 240_000), cold]).denies] == [
        "45.33.200.0/24"
    ]
    assert plan([*strong, udp(cold)]).denies == ()


def test_a_refused_dependency_does_not_stop_the_sources_after_it() -> None:
    lines = [record("45.33.12.9", 300_000), record("81.2.69.1", 300_000), outbound("45.33.12.9")]
    result = plan(lines)
    assert ([d.cidr for d in result.denies], [r.cidr for r in result.refused]) == (
        ["81.2.69.1/32"],
        ["45.33.12.9/32"],
    )


def test_a_source_below_the_bit_rate_floor_does_not_stop_the_sources_after_it() -> None:
    # Both at 10,000 pps; 45.33.12.9 at 40 bytes a packet is 3.2 Mbit/s, 81.2.69.1 at 100 is 8 Mbit/s.
    lines = [record("45.33.12.9", 600_000, bytes_per_packet=40), record("81.2.69.1", 600_000)]
    assert [d.cidr for d in plan(lines, min_bps=8_000_000).denies] == ["81.2.69.1/32"]


def test_over_budget_two_hosts_of_a_dense_prefix_become_the_prefix_and_only_then() -> None:
    pair = [record("45.33.200.1", 600_000), record("45.33.200.2", 600_000)]  # 10,000 pps each
    assert [d.cidr for d in plan(pair, budget=2).denies] == ["45.33.200.1/32", "45.33.200.2/32"]
    (merged,) = plan(pair, budget=1).denies
    assert merged.cidr == "45.33.200.0/24" and merged.reason.startswith(
        "covers 2 chosen entries in one slot; "
    )
    # Among many cold sources the /24 is not dense: over budget, the heavier host is kept instead.
    crowd = [record("45.33.200.1", 660_000), record("45.33.200.2", 600_000)]
    crowd += [record(f"45.33.200.{host}", 60) for host in range(10, 20)]
    assert [d.cidr for d in plan(crowd, budget=1).denies] == ["45.33.200.1/32"]


def test_a_flood_spread_thin_over_many_sources_is_distributed_from_the_rate_floor_on() -> None:
    # 200 sources at 25 pps (0.5% each, below the 1% share): 5,000 pps in all, 4,000,000 bit/s.
    lines = [record(f"45.33.{n // 250}.{n % 250 + 1}", 1_500) for n in range(200)]
    spread = plan(lines, member_floor_pps=1_000)  # no prefix of them is dense either
    assert (spread.verdict, spread.denies, spread.total_pps, spread.total_bps) == (
        Verdict.DISTRIBUTED,
        (),
        5_000,
        4_000_000,
    )
    assert plan(lines, member_floor_pps=1_000, min_pps=5_001).verdict is Verdict.QUIET


def test_over_budget_a_merged_prefix_replaces_exactly_the_entries_it_covers() -> None:
    pair = [record("45.33.200.1", 600_000), record("45.33.200.2", 600_000)]  # 10,000 pps each
    other = record("81.2.69.1", 900_000)  # 15,000 pps, in a /24 of its own
    result = plan([*pair, other], budget=2)
    assert [(d.cidr, d.members) for d in result.denies] == [("45.33.200.0/24", 2), ("81.2.69.1/32", 1)]


def test_over_budget_with_no_two_entries_under_one_dense_prefix_the_heaviest_are_kept_as_they_are() -> None:
    # Each heavy host shares its /24 with one light hot source (100 pps): both /24s are dense, but each
    # covers a single chosen entry, so replacing it would free no slot; over a budget of 1 the heavier host
    # is kept, as a host.
    lines = [record("45.33.200.1", 600_000), record("45.33.200.2", 6_000)]
    lines += [record("81.2.69.1", 660_000), record("81.2.69.2", 6_000)]
    assert [d.cidr for d in plan(lines, budget=2).denies] == ["81.2.69.1/32", "45.33.200.1/32"]
    assert [d.cidr for d in plan(lines, budget=1).denies] == ["81.2.69.1/32"]


def test_over_budget_a_lone_entry_before_a_dense_pair_does_not_stop_the_pair_from_merging() -> None:
    # 45.33.1.1 (5,500 pps) is alone in its /24, which comes first; the pair in 45.33.2.0/24 merges. Ten cold
    # sources keep the /16 from being dense (3 hot of 13), so only the /24 can free the slot.
    lines = [record("45.33.1.1", 330_000), record("45.33.2.1", 600_000), record("45.33.2.2", 600_000)]
    lines += [record(f"45.33.9.{host}", 60) for host in range(1, 11)]
    assert [d.cidr for d in plan(lines, budget=2).denies] == ["45.33.2.0/24", "45.33.1.1/32"]


def test_over_budget_a_prefix_holding_a_dependency_does_not_stop_the_next_one_from_merging() -> None:
    # The VPC depends on 45.33.1.99: 45.33.1.0/24 (and the /16) may not replace their hosts, the pair in
    # 45.33.2.0/24 may, which brings four entries within a budget of three.
    pair_one = [record("45.33.1.1", 600_000), record("45.33.1.2", 600_000)]
    pair_two = [record("45.33.2.1", 500_000), record("45.33.2.2", 500_000)]
    result = plan([*pair_one, *pair_two, outbound("45.33.1.99")], budget=3)
    assert [d.cidr for d in result.denies] == ["45.33.2.0/24", "45.33.1.1/32", "45.33.1.2/32"]


def test_over_budget_an_ipv6_source_is_never_merged_into_an_ipv4_prefix() -> None:
    # ::2d21:c803 is the IPv4-compatible form of 45.33.200.3: the same 32 low bits as an address of
    # 45.33.200.0/24, but another address family, which an IPv4 entry does not cover.
    pair = [record("45.33.200.1", 600_000), record("45.33.200.2", 600_000)]
    result = plan([*pair, record("::2d21:c803", 900_000)], budget=2)
    assert [d.cidr for d in result.denies] == ["45.33.200.0/24", "::2d21:c803/128"]


def test_a_prefix_is_judged_on_the_bytes_beyond_its_chosen_members_too() -> None:
    # 45.33.200.1 (10,000 pps at 100 bytes: 8 Mbit/s) is chosen. Its /24 carries 6,000 pps beyond it (two hot
    # sources at 40 bytes a packet: 1.92 Mbit/s), enough packets but below the 5 Mbit/s floor by itself.
    lines = [record("45.33.200.1", 600_000)]
    lines += [record(f"45.33.200.{host}", 180_000, bytes_per_packet=40) for host in (2, 3)]
    assert [d.cidr for d in plan(lines, min_bps=5_000_000).denies] == ["45.33.200.1/32"]


def test_a_prefix_carrying_nothing_beyond_its_chosen_members_is_not_chosen_even_at_tiny_floors() -> None:
    # Floors so low that a single packet a minute would pass them: the /24 carries nothing beyond its two
    # chosen hosts, so it is not chosen, and the hosts stay as they are.
    pair = [record("45.33.200.1", 40), record("45.33.200.2", 40)]
    result = plan(pair, min_pps=0.01, member_floor_pps=0.1)
    assert [d.cidr for d in result.denies] == ["45.33.200.1/32", "45.33.200.2/32"]


def test_a_share_floor_of_one_is_allowed_and_means_all_inbound_packets() -> None:
    assert [d.cidr for d in plan([record("45.33.12.9", 600_000)], min_share=1.0).denies] == ["45.33.12.9/32"]
    halves = [record("45.33.12.9", 300_000), record("81.2.69.1", 300_000)]
    assert plan(halves, min_share=1.0).denies == ()


def test_a_window_of_a_second_or_less_is_allowed_and_reported() -> None:
    for window_s in (0.5, 1.0):
        result = plan([record("45.33.12.9", 600_000)], window_s=window_s)
        assert result.window_s == window_s
        assert result.denies[0].pps == 600_000 / window_s
    assert plan([record("45.33.12.9", 600_000)]).window_s == 60  # the records' own span


def test_a_distributed_flood_is_recognised_from_the_bit_rate_floor_on() -> None:
    # As above: 200 sources, 5,000 pps and 4,000,000 bit/s in all, none of them or their prefixes deniable.
    lines = [record(f"45.33.{n // 250}.{n % 250 + 1}", 1_500) for n in range(200)]
    at_floor = plan(lines, member_floor_pps=1_000, min_bps=4_000_000)
    assert (at_floor.verdict, at_floor.denies) == (Verdict.DISTRIBUTED, ())
    assert plan(lines, member_floor_pps=1_000, min_bps=4_000_001).verdict is Verdict.QUIET


def zero_packet_plan(first: list[str], then: list[str], **knobs: float) -> DenyPlan:
    """A plan from a summary of two counters per level that compacted the `first` records (so it keeps an
    error bound), then took the `then` records."""
    config = DetectionConfig(policy=DenyPolicy.build(vpc_cidrs=["10.0.0.0/16"]), **knobs)  # type: ignore[arg-type]
    summary = TrafficSummary(capacity=2)
    parser = FlowLogParser(V2, ["10.0.0.0/16"])
    summary.add(parser.parse(first))
    summary.add(parser.parse(then))
    return plan_denies(summary, config)


def test_a_source_seen_only_in_records_of_zero_packets_is_never_denied_on_the_error_bound() -> None:
    # The first batch overflows the two counters: 81.2.69.1 is kept at 40,000 with an error of 60,000 (the
    # two at 60,000 tie at the cut). 45.33.12.9 then shows up in a record of no packets: it sent nothing.
    first = [record("81.2.69.1", 100_000), record("81.2.70.1", 60_000), record("81.2.71.1", 60_000)]
    result = zero_packet_plan(first, [record("45.33.12.9", 0)], min_pps=1000)
    assert [d.cidr for d in result.denies] == ["81.2.69.1/32"]


def test_a_prefix_seen_only_in_records_of_zero_packets_replaces_no_entries_over_budget() -> None:
    # 45.33.200.1 and .2 (201,000 packets together) stay in the host counters, but their /24 and /16 are cut
    # from their levels: a heavier prefix of many light sources and one tied with them. A record of no
    # packets from 45.33.200.9 then brings both back with a count of 0: nothing to plan them on, so over a
    # budget of 1 the heavier host is kept.
    first = [record("45.33.200.1", 101_000), record("45.33.200.2", 100_000)]
    first += [record(f"81.2.69.{host}", 10_000) for host in range(1, 51)]
    first += [record(f"91.2.70.{host}", 10_050) for host in range(1, 21)]
    result = zero_packet_plan(first, [record("45.33.200.9", 0)], min_pps=1000, budget=1)
    assert [d.cidr for d in result.denies] == ["45.33.200.1/32"]


def test_a_prefix_with_no_bytes_counted_beyond_its_chosen_members_fails_any_positive_bit_rate_floor() -> None:
    # Two counters per level: 45.33.200.0/24 keeps 50,000 of its 200,000 packets (error 150,000) and
    # 45.33.200.1 and .2 keep 90,000 each, so nothing is counted beyond them, bytes included; the error bound
    # alone passes the packet tests, but no bit rate of 0 reaches even 0.1 bit/s.
    lines = [record("45.33.200.1", 100_000), record("45.33.200.2", 100_000)]
    lines += [record(f"81.2.69.{host}", 10_000) for host in range(1, 51)]
    lines += [record(f"91.2.70.{host}", 10_000) for host in range(1, 16)]
    result = compacted_plan(lines, min_pps=1000, min_bps=0.1)
    assert [d.cidr for d in result.denies] == ["45.33.200.1/32", "45.33.200.2/32"]


def test_over_budget_a_sparse_pair_before_a_dense_pair_does_not_stop_the_dense_pair_from_merging() -> None:
    # 45.33.1.0/24 holds two chosen hosts among ten cold sources (not dense), 45.33.2.0/24 two chosen hosts
    # alone (dense); the /16 (4 hot of 14) is not dense either. Four entries, a budget of three.
    sparse = [record("45.33.1.1", 600_000), record("45.33.1.2", 600_000)]
    sparse += [record(f"45.33.1.{host}", 60) for host in range(10, 20)]
    dense = [record("45.33.2.1", 500_000), record("45.33.2.2", 500_000)]
    result = plan([*sparse, *dense], budget=3)
    assert [d.cidr for d in result.denies] == ["45.33.2.0/24", "45.33.1.1/32", "45.33.1.2/32"]
