"""The on-call CLI against moto server over HTTP, after a scripted incident (tests/integration/incident.py):
27 events in two NACLs over three hours; 203.0.113.7/32 and 192.0.2.0/24 denied now."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import AwsClientFactory, Tables, VpcFixture
from tests.integration.incident import ALARM, BUDGET, Deployment, Run, floodgate, play_incident, stand_in

pytestmark = pytest.mark.integration

MOTO_CALLER = "arn:aws:sts::123456789012:user/moto"  # what moto's GetCallerIdentity answers


@pytest.fixture
def deployment(aws_client: AwsClientFactory, vpc: VpcFixture, tables: Tables) -> Deployment:
    return stand_in(aws_client, vpc, tables)


@pytest.fixture
def incident(deployment: Deployment) -> Deployment:
    return play_incident(deployment)


def one_line_error(run: Run, code: int, *fragments: str) -> None:
    assert run.code == code, (run.out, run.err)
    assert run.err.count("\n") == 1 and run.err.startswith("floodgate"), run.err
    for fragment in fragments:
        assert fragment in run.err


# -- status -------------------------------------------------------------------------------------------------


def test_status_shows_arming_budget_and_denies_per_nacl(incident: Deployment) -> None:
    report = incident.cli("status", "--json").json()
    assert report["armed"]["alarm"] == ALARM
    assert [n["nacl_id"] for n in report["nacls"]] == list(incident.vpc.nacl_ids)
    for nacl in report["nacls"]:
        assert {d["cidr"] for d in nacl["denies"]} == {"203.0.113.7/32", "192.0.2.0/24"}
        ipv4, ipv6 = nacl["pools"]
        assert (ipv4["first_rule"], ipv4["last_rule"], ipv4["denies"], ipv4["budget"]) == (
            100,
            103,
            2,
            BUDGET,
        )
        assert (ipv6["first_rule"], ipv6["last_rule"], ipv6["denies"]) == (104, 107, 0)
        assert ipv4["rules_used"] == 4 and ipv4["quota"] == 20  # 2 denies, the allow rule, the default rule
        for deny in nacl["denies"]:
            assert deny["origin"] == f"alarm:{ALARM}" and deny["offences"] == 2
            assert 3000 < deny["expires_in_s"] <= 3600
        assert nacl["drift"] == [] and nacl["problems"] == []

    text = incident.cli("status")
    assert text.code == 0, text.err
    assert f"armed by alarm {ALARM} until" in text.out
    assert "ingress IPv4  100-103         2/3        4/20" in text.out
    assert text.out.count("203.0.113.7/32") == 2


# -- log ----------------------------------------------------------------------------------------------------


def test_log_lists_newest_first_and_filters(incident: Deployment) -> None:
    def log(*argv: str) -> list[dict[str, Any]]:
        run = incident.cli("log", "--json", *argv)
        assert run.code == 0, run.err
        return run.lines()

    everything = log("--since", "4h", "--limit", "0")
    assert [e["at"] for e in everything] == sorted((e["at"] for e in everything), reverse=True)
    assert Counter(e["event"] for e in everything) == {
        "BLOCK": 14,
        "EXTEND": 2,
        "EVICT": 2,
        "EXPIRE": 6,
        "UNBLOCK": 2,
        "REPAIR": 1,
    }
    assert len(log("--since", "4h")) == 27  # under the default limit of 50
    assert len(log("--since", "4h", "--limit", "5")) == 5

    ended = log("--since", "4h", "--event", "expire,UNBLOCK")
    assert {e["event"] for e in ended} == {"EXPIRE", "UNBLOCK"} and len(ended) == 8
    one_source = log("--since", "4h", "--cidr", "203.0.113.7")
    assert {e["cidr"] for e in one_source} == {"203.0.113.7/32"} and len(one_source) == 9
    second = incident.vpc.nacl_ids[1]
    assert {e["nacl_id"] for e in log("--since", "4h", "--nacl", second)} == {second}
    assert len(log("--since", "4h", "--nacl", second)) == 13
    recent = log("--since", "30m")
    assert Counter(e["event"] for e in recent) == {"BLOCK": 4, "REPAIR": 1}
    early = log("--since", "4h", "--until", "2h")
    assert len(early) == 18 and "UNBLOCK" not in {e["event"] for e in early}
    first = incident.vpc.nacl_ids[0]
    (extend,) = log("--since", "4h", "--cidr", "203.0.113.7/32", "--event", "EXTEND", "--nacl", first)
    assert extend["origin"] == f"alarm:{ALARM}"
    assert extend["evidence"] == {
        "pps": 12000.0,
        "bps": 57600000.0,
        "share": 0.2,
        "members": 1,
        "reject_pps": None,
        "inbound_pps": None,
        "threshold_pps": None,  # a renewal on fresh evidence: no REJECT threshold was judged
    }


def test_log_table_says_when_more_is_left(incident: Deployment) -> None:
    run = incident.cli("log", "--since", "4h", "--limit", "3")
    lines = run.out.splitlines()
    assert lines[0].split()[:5] == ["TIME", "(UTC)", "EVENT", "CIDR", "NACL"]
    assert [line.split()[2] for line in lines[2:5]] == ["REPAIR", "BLOCK", "BLOCK"]
    assert lines[-1] == "newest 3 shown; --limit N for more (0: all), or narrow --since"
    nothing = incident.cli("log", "--since", "1h", "--cidr", "8.8.8.8")
    assert nothing.out.startswith("no events from ") and "matching cidr 8.8.8.8/32" in nothing.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--since", "yesterday"), "--since: not a time: 'yesterday'"),
        (("--since", "1h", "--until", "2h"), "--since ("),
        (("--event", "BLOCK,BOGUS"), "unknown event 'BOGUS'"),
        (("--cidr", "203.0.113.7/24"), "has host bits set"),
        (("--nacl", "sg-123"), "not a NACL id"),
        (("--limit", "-1"), "not a count"),
    ],
)
def test_log_usage_errors(deployment: Deployment, argv: tuple[str, ...], message: str) -> None:
    one_line_error(deployment.cli("log", *argv), 2, message)


# -- show ---------------------------------------------------------------------------------------------------


def test_show_tells_the_story_of_one_source(incident: Deployment) -> None:
    story = incident.cli("show", "203.0.113.7", "--json").json()
    assert story["cidr"] == "203.0.113.7/32"
    assert {d["nacl_id"] for d in story["denied"]} == set(incident.vpc.nacl_ids)
    assert story["offences"]["count"] == 2
    assert [e["event"] for e in story["events"]] == [
        "BLOCK", "BLOCK", "EXTEND", "EXTEND", "EXPIRE", "EXPIRE", "BLOCK", "BLOCK", "REPAIR",
    ]  # fmt: skip
    assert story["events"][0]["evidence"]["pps"] == 9000.0

    text = incident.cli("show", "203.0.113.7/32").out
    assert text.startswith("203.0.113.7/32: denied now in 2 NACLs; offence 2, remembered until ")
    assert "history (with covering prefixes), oldest first:" in text
    assert "9.00 kpps, 43.20 Mbps, 20.0% of inbound" in text

    prefix = incident.cli("show", "203.0.113.0/24", "--json").json()
    assert prefix["denied"] == [] and prefix["events"] == []
    assert {d["cidr"] for d in prefix["overlapping"]} == {"203.0.113.7/32"}
    stranger = incident.cli("show", "8.8.8.8").out
    assert stranger.strip() == "8.8.8.8/32: not denied now; nothing in the deny log"


def test_show_tells_the_effect_of_each_deny(incident: Deployment) -> None:
    story = incident.cli("show", "203.0.113.7", "--json").json()
    first, back = story["effects"]
    # T+0: denied at 9,000 pps, all ACCEPT; sampled at T+5m (8,800 REJECT), 15m, 25m, 35m (12,000), 45m
    # (3,000 REJECT, 0 ACCEPT); both NACLs' bans expired at T+55m. Back at now-5m: 15,000, sampled once.
    assert (first["accept_pps_before"], first["samples"], first["reject_pps_peak"]) == (9000.0, 5, 12000.0)
    assert (first["reject_pps_latest"], first["accept_pps_latest"]) == (3000.0, 0.0)
    assert first["ended_at"] is not None and first["still_sending"] and first["gone_by"] is None
    assert (back["accept_pps_before"], back["samples"], back["reject_pps_peak"]) == (15000.0, 1, 15000.0)
    assert back["ended_at"] is None and back["still_sending"]
    assert all(e["event"] != "EFFECT" for e in story["events"])  # the history lists actions

    stopped = incident.cli("show", "45.33.32.156", "--json").json()
    (effect,) = stopped["effects"]
    assert (effect["accept_pps_before"], effect["samples"], effect["reject_pps_peak"]) == (
        30000.0,
        3,
        30000.0,
    )
    assert effect["gone_by"] is not None and not effect["still_sending"]
    seen = datetime.fromisoformat(effect["last_seen"].replace("Z", "+00:00"))
    gone = datetime.fromisoformat(effect["gone_by"].replace("Z", "+00:00"))
    assert (gone - seen).total_seconds() == 600  # last seen at T+35m, gone by the sample at T+45m

    text = incident.cli("show", "45.33.32.156").out
    assert "effect of each deny (sampled by the expirer once per window" in text
    row = next(line for line in text.splitlines() if line.startswith("45.33.32.156/32  "))
    assert "30.00 kpps" in row and f"stopped: last seen {seen:%H:%M}, gone by {gone:%H:%M}" in row


# -- block and unblock -------------------------------------------------------------------------------------


def test_block_then_unblock_round_trip(incident: Deployment) -> None:
    nacls = incident.vpc.nacl_ids
    run = incident.cli("block", "203.0.113.99", "--ttl", "2h", "--reason", "scraper, ticket OPS-7")
    assert run.code == 0, run.err
    assert run.out.startswith(f"203.0.113.99/32 denied in {', '.join(sorted(nacls))} until ")
    assert all("203.0.113.99/32" in incident.entries(nacl_id).values() for nacl_id in nacls)
    denies = [d for n in incident.cli("status", "--json").json()["nacls"] for d in n["denies"]]
    manual = [d for d in denies if d["cidr"] == "203.0.113.99/32"]
    assert [d["origin"] for d in manual] == [f"manual:{MOTO_CALLER}"] * 2
    assert all(7100 < d["expires_in_s"] <= 7200 for d in manual)
    blocks = incident.cli("log", "--cidr", "203.0.113.99", "--event", "BLOCK", "--json").lines()
    assert [(e["actor"], e["reason"].split(";")[0]) for e in blocks] == [
        (MOTO_CALLER, "scraper, ticket OPS-7")
    ] * 2

    run = incident.cli("unblock", "203.0.113.99/32", "--reason", "a partner's crawler")
    assert run.code == 0, run.err
    assert run.out.startswith("lifted the deny of 203.0.113.99/32 in ")
    assert all("203.0.113.99/32" not in incident.entries(nacl_id).values() for nacl_id in nacls)
    unblocks = incident.cli("log", "--cidr", "203.0.113.99", "--event", "UNBLOCK", "--json").lines()
    assert {e["actor"] for e in unblocks} == {MOTO_CALLER} and len(unblocks) == 2
    assert "a partner's crawler" in unblocks[0]["reason"]
    one_line_error(
        incident.cli("unblock", "203.0.113.99", "--reason", "again"), 2, "203.0.113.99/32 is not denied"
    )


def test_block_dry_run_changes_nothing(deployment: Deployment) -> None:
    run = deployment.cli("block", "203.0.113.99", "--reason", "what if", "--dry-run", "--json")
    assert run.code == 0, run.err
    body = run.json()
    assert (
        body["ok"] is True
        and body["dry_run"] is True
        and body["message"].startswith("203.0.113.99/32 would deny")
    )
    assert [e["event"] for e in body["events"]] == ["DRYRUN", "DRYRUN"]
    assert all(deployment.entries(nacl_id) == {} for nacl_id in deployment.vpc.nacl_ids)


@pytest.mark.parametrize(
    ("cidr", "why"),
    [
        ("198.51.100.7", "198.51.100.7/32 overlaps protected range 198.51.100.0/24"),  # the allowlist
        ("10.20.1.5", "10.20.1.5/32 overlaps protected range"),  # the VPC itself
        ("203.0.0.0/8", "203.0.0.0/8 is wider than the /16 cap"),
    ],
)
def test_block_refused_by_policy_says_why(deployment: Deployment, cidr: str, why: str) -> None:
    one_line_error(deployment.cli("block", cidr, "--reason", "try it"), 2, "refused", why)
    (refused,) = deployment.cli("log", "--event", "REFUSED", "--json").lines()
    assert why in refused["reason"] and refused["actor"] == MOTO_CALLER
    assert all(deployment.entries(nacl_id) == {} for nacl_id in deployment.vpc.nacl_ids)


def test_block_refused_over_budget(incident: Deployment) -> None:
    # Manual denies outrank the incident's two automatic ones: the second and third evict them.
    for cidr in ("203.0.113.101", "203.0.113.102", "203.0.113.103"):
        run = incident.cli("block", cidr, "--reason", "by hand")
        assert run.code == 0, run.err
    assert "EVICT" in run.out
    one_line_error(
        incident.cli("block", "203.0.113.104", "--reason", "one too many"),
        2,
        "203.0.113.104/32 refused: budget of 3 full",
    )
    assert all(len(incident.entries(nacl_id)) == BUDGET for nacl_id in incident.vpc.nacl_ids)


def test_block_ttl_is_capped_by_the_deployment(deployment: Deployment) -> None:
    one_line_error(
        deployment.cli("block", "203.0.113.99", "--ttl", "2d", "--reason", "long one"), 2, "longest ban, 1d"
    )
    one_line_error(
        deployment.cli("block", "203.0.113.99"), 2, "the following arguments are required: --reason"
    )


# -- reconcile ----------------------------------------------------------------------------------------------


def test_reconcile_shows_then_repairs_injected_drift(incident: Deployment) -> None:
    nacl_id = incident.vpc.nacl_ids[1]
    before = incident.entries(nacl_id)
    rule_of_7 = next(rule for rule, cidr in before.items() if cidr == "203.0.113.7/32")
    free = next(rule for rule in range(100, 104) if rule not in before)
    incident.ec2.delete_network_acl_entry(NetworkAclId=nacl_id, RuleNumber=rule_of_7, Egress=False)
    incident.ec2.create_network_acl_entry(
        NetworkAclId=nacl_id, RuleNumber=free, Protocol="-1", RuleAction="deny", Egress=False,
        CidrBlock="8.8.8.8/32",
    )  # fmt: skip
    drifted = incident.entries(nacl_id)

    dry = incident.cli("reconcile", "--dry-run", "--json").json()
    assert dry["dry_run"] is True and dry["events"] == []
    assert {(d["kind"], d["nacl_id"], d["rule"], d["cidr"]) for d in dry["drift"]} == {
        ("missing", nacl_id, rule_of_7, "203.0.113.7/32"),
        ("foreign", nacl_id, free, "8.8.8.8/32"),  # added by hand: no ledger record, not Floodgate's
    }
    assert incident.entries(nacl_id) == drifted
    assert "dry run: 1 to repair in 2 NACLs, nothing changed" in incident.cli("reconcile", "--dry-run").out

    repaired = incident.cli("reconcile", "--json").json()
    assert sorted(e["event"] for e in repaired["events"]) == ["FOREIGN", "REPAIR"]
    assert {e["actor"] for e in repaired["events"]} == {MOTO_CALLER}  # who ran it, as AWS sees them
    assert incident.entries(nacl_id) == {**before, free: "8.8.8.8/32"}  # the hand-made deny is kept
    again = incident.cli("reconcile", "--json").json()
    assert again["events"] == []  # repaired, and the foreign entry was logged once
    out = incident.cli("reconcile").out
    assert "ledger and NACLs agree (2 NACLs)" in out
    assert "1 foreign entry in the owned rules: never touched" in out


def test_reconcile_never_touches_foreign_entries(incident: Deployment) -> None:
    nacl_id = incident.vpc.nacl_ids[0]
    incident.ec2.create_network_acl_entry(
        NetworkAclId=nacl_id, RuleNumber=103, Protocol="6", RuleAction="allow", Egress=False,
        CidrBlock="0.0.0.0/0", PortRange={"From": 443, "To": 443},
    )  # fmt: skip
    run = incident.cli("reconcile")
    assert run.code == 0, run.err
    assert "1 foreign entry in the owned rules: never touched" in run.out
    assert f"problem: {nacl_id}: ingress rule 103 allow protocol 6 0.0.0.0/0 ports 443-443" in run.out
    (acl,) = incident.ec2.describe_network_acls(NetworkAclIds=[nacl_id])["NetworkAcls"]
    assert any(e["RuleNumber"] == 103 and e["RuleAction"] == "allow" for e in acl["Entries"])


# -- report -------------------------------------------------------------------------------------------------


def test_report_writes_the_page_and_its_data(incident: Deployment, tmp_path: Path) -> None:
    page = tmp_path / "incident.html"
    data = incident.cli("report", "--since", "3h10m", "--html", str(page), "--json").json()
    assert len(data["events"]) == 27 and data["in_force"] == 4
    lanes = {(lane["nacl_id"], lane["cidr"]): lane["spans"] for lane in data["lanes"]}
    assert len(lanes) == 10
    first = incident.vpc.nacl_ids[0]
    returned, back = lanes[(first, "203.0.113.7/32")]
    assert (returned["ended_by"], [m["event"] for m in returned["marks"]]) == ("EXPIRE", ["EXTEND"])
    assert back["open_end"] is True and [m["event"] for m in back["marks"]] == ["REPAIR"]
    assert lanes[(first, "203.0.113.66/32")][0]["ended_by"] == "EVICT"
    assert lanes[(first, "2001:db8:bad::/48")][0]["ended_by"] == "UNBLOCK"
    top = data["top_sources"][0]
    assert (top["cidr"], top["peak_pps"], len(top["nacls"])) == ("45.33.32.156/32", 30000.0, 2)
    html = page.read_text(encoding="utf-8")
    assert '<svg id="timeline"' in html and '<table id="log">' in html and '<table id="sources">' in html

    text = incident.cli("report", "--since", "3h10m", "--html", str(page))
    assert text.out.strip() == f"wrote {page}: 27 events; timeline of 14 denies in 2 NACLs"


def test_report_draws_the_traffic_of_each_incident(incident: Deployment, tmp_path: Path) -> None:
    page = tmp_path / "incident.html"
    data = incident.cli("report", "--since", "3h10m", "--html", str(page), "--json").json()
    # Denies in force T+0..T+55m, T+1h30m..T+2h (the manual one), now-5m..now: three incidents.
    first, manual, back = data["incidents"]
    assert [len(i["traffic"]) for i in data["incidents"]] == [5, 1, 1]
    at_25m = first["traffic"][2]  # .7, 192.0.2.0/24 and 45.33.32.156, all REJECTed, of 70,000 pps
    assert (at_25m["inbound_pps"], at_25m["denied_accept_pps"], at_25m["denied_reject_pps"]) == (
        70000.0,
        0.0,
        60000.0,
    )
    assert at_25m["denied_share"] == pytest.approx(60000 / 70000)
    at_5m = first["traffic"][0]  # .7 at 9,000 of which 8,800 REJECT, .66 at 6,000 REJECT
    assert (at_5m["denied_accept_pps"], at_5m["denied_reject_pps"]) == (200.0, 14800.0)
    began = first["denies"][0]
    assert (began["began"], began["accept_pps_before"], began["inbound_pps"]) == (
        ["203.0.113.66/32", "203.0.113.7/32"],
        15000.0,
        45000.0,  # 9,000 pps at 20% of inbound
    )
    assert (back["traffic"][0]["denied_accept_pps"], back["traffic"][0]["denied_reject_pps"]) == (
        1000.0,
        32000.0,
    )
    assert manual["holds"] == [] and len(data["effects"]) == 7
    html = page.read_text(encoding="utf-8")
    assert html.count('<svg class="traffic"') == 3 and '<table id="effects">' in html


def test_report_of_a_quiet_window(deployment: Deployment, tmp_path: Path) -> None:
    deployment.cli("block", "203.0.113.99", "--reason", "what if", "--dry-run")
    page = tmp_path / "quiet.html"
    assert deployment.cli("report", "--since", "1h", "--html", str(page)).code == 0
    html = page.read_text(encoding="utf-8")
    assert "No denies in this window. The deny log below has 2 dry-run events" in html
    assert html.count('<span class="badge DRYRUN">DRYRUN:BLOCK</span>') == 2


def test_report_usage_errors(deployment: Deployment, tmp_path: Path) -> None:
    one_line_error(deployment.cli("report", "--since", "1h"), 2, "give --html FILE (or --json")
    one_line_error(
        deployment.cli("report", "--html", str(tmp_path / "no" / "such" / "dir.html")), 2, "cannot write"
    )


# -- finding the deployment, and failing clearly ------------------------------------------------------------


def test_stack_from_the_environment(incident: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODGATE_STACK", incident.stack)
    run = floodgate("status", "--json")
    assert run.code == 0 and run.json()["stack"] == incident.stack


def test_aws_failures_are_one_line_and_say_which(
    deployment: Deployment, aws_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    one_line_error(
        floodgate("status", "--stack", "nope"), 1, "stack nope not found in us-east-1", "--stack NAME"
    )
    one_line_error(
        deployment.cli("log", "--endpoint-url", "http://127.0.0.1:9"),
        1,
        "cannot reach the AWS endpoint http://127.0.0.1:9",
        "EndpointConnectionError",
    )
    one_line_error(deployment.cli("status", "--profile", "nobody"), 2, "AWS profile not found: nobody")
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    one_line_error(deployment.cli("status"), 1, "no AWS credentials (NoCredentialsError)")
