"""Hostile input, pure half: each class of input from issue 11 is refused (or made harmless) before anything
could be written, with a short error that never echoes the input whole. The moto half is
tests/integration/test_hostile_inputs.py."""

from __future__ import annotations

import base64
import gzip
import ipaddress
import json
import re
import tracemalloc
from typing import Any, NoReturn

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.traffic import VPC_CIDR
from floodgate.cli.main import main
from floodgate.cli.render import table
from floodgate.cli.report_html import render
from floodgate.cli.timeline import Report
from floodgate.core.durations import parse_duration
from floodgate.core.networks import InvalidCidr, parse_network
from floodgate.core.records import EventKind, LogEvent
from floodgate.services.events import (
    MAX_LOG_EVENTS,
    AlarmStateChange,
    FlowLogDelivery,
    InvalidEvent,
    parse_detector_event,
)
from floodgate.services.manual import ManualError, parse_manual, run_manual
from floodgate.settings import ENV, ConfigError, Settings
from infra.manual import CIDR_PATTERN
from tests.events import load

SETTINGS = Settings.from_env(
    {
        ENV.NACL_IDS: "acl-0123456789abcdef0",
        ENV.VPC_CIDRS: "10.0.0.0/16",
        ENV.MAX_TTL: "24h",
        ENV.STATE_TABLE: "state",
        ENV.LOG_TABLE: "log",
    }
)
SHORT = 400  # characters: an error a person reads in one glance, whatever the size of the input
HUGE_NUMBER = 10**5000  # past Python's 4,300-digit limit for int <-> str
MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"x": value}
    return value


def awslogs(raw: bytes) -> dict[str, Any]:
    return {"awslogs": {"data": base64.b64encode(gzip.compress(raw, 9)).decode()}}


def document(**changes: Any) -> dict[str, Any]:
    """A well-formed DATA_MESSAGE with one flow-log record, with `changes` applied."""
    doc: dict[str, Any] = {
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": "/floodgate/vpc-flow-logs",
        "logStream": "eni-0a1b2c3d4e5f60718-all",
        "subscriptionFilters": ["Floodgate-ToDetector"],
        "logEvents": [
            {
                "id": "37851162512846012345678901234567890123456789012345678901",
                "timestamp": 1_764_000_060_000,
                "message": "2 123456789012 eni-0a1b2c3d4e5f60718 203.0.113.7 10.20.1.5 443 51234 6 10 840 "
                "1764000000 1764000060 ACCEPT OK",
            }
        ],
    }
    doc.update(changes)
    return doc


def refused(event: Any) -> str:
    with pytest.raises(InvalidEvent) as caught:
        parse_detector_event(event)
    message = str(caught.value)
    assert len(message) < SHORT, message
    return message


# -- what cannot be a NACL entry ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2a01:4f8::1%eth0", "fe80::1%1/128", "2001:db8::%25eth0/64"])
def test_an_ipv6_zone_id_is_refused_by_the_lambda_and_by_the_runbook(text: str) -> None:
    with pytest.raises(InvalidCidr, match="zone id"):
        parse_network(text)
    assert re.fullmatch(CIDR_PATTERN, text) is None


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("::ffff:203.0.113.7", "203.0.113.7/32"),
        ("::ffff:203.0.113.0/120", "203.0.113.0/24"),
        ("::FFFF:CB00:7107/128", "203.0.113.7/32"),
    ],
)
def test_ipv4_mapped_ipv6_is_the_ipv4_network_it_maps(text: str, network: str) -> None:
    assert str(parse_network(text)) == network


@pytest.mark.parametrize(
    "text", ["203.0.113.7", "198.51.100.0/24", "2001:db8::/48", "2001:db8::7/128", "::ffff:203.0.113.7"]
)
def test_the_runbook_pattern_lets_through_what_the_lambda_accepts(text: str) -> None:
    parse_network(text)
    assert re.fullmatch(CIDR_PATTERN, text) is not None


def test_the_longest_spelling_of_a_nacl_cidr_is_accepted() -> None:
    # Six groups written in full, then a dotted quad and /128: 49 characters, the most a CIDR can take.
    longest = "0000:0000:0000:0000:0000:0000:255.255.255.255/128"
    assert len(longest) == 49
    assert str(parse_network(longest)) == "::ffff:ffff/128"


@pytest.mark.parametrize(("value", "named"), [(None, "None"), (203, "203"), (b"203.0.113.7", "a bytes")])
def test_what_is_not_text_is_refused_as_no_address(value: object, named: str) -> None:
    with pytest.raises(InvalidCidr) as caught:
        parse_network(value)  # type: ignore[arg-type]
    assert str(caught.value) == f"invalid CIDR {named}: not an IPv4 or IPv6 address or prefix"


def test_the_errors_name_the_text_given_and_what_a_nacl_entry_takes() -> None:
    with pytest.raises(InvalidCidr) as zoned:
        parse_network(" fe80::1%eth0 ")
    assert str(zoned.value) == (
        "invalid CIDR ' fe80::1%eth0 ': an IPv6 zone id (%...) names an interface of one host; "
        "a NACL entry takes the address alone"
    )
    with pytest.raises(InvalidCidr) as blank:
        parse_network("   ")
    assert str(blank.value) == "invalid CIDR '   ': not an IPv4 or IPv6 address or prefix"


def test_an_address_out_of_range_is_refused_with_the_parsers_reason_alone() -> None:
    # No prefix hint: the text has no host bits to clear, it is no address at all.
    with pytest.raises(InvalidCidr) as caught:
        parse_network("203.0.113.300")
    assert str(caught.value) == (
        "invalid CIDR '203.0.113.300': '203.0.113.300' does not appear to be an IPv4 or IPv6 network"
    )


def test_host_bits_are_refused_with_the_prefix_meant() -> None:
    with pytest.raises(InvalidCidr, match=r"host bits set; the prefix is 203\.0\.113\.0/24"):
        parse_network("203.0.113.7/24")


@pytest.mark.parametrize("text", ["1" * 5000, "203.0.113.7\n", "٢٠٣.0.113.7", "203.0.113.7/2\u200b4", ""])
def test_text_that_is_no_address_gets_a_short_error(text: str) -> None:
    with pytest.raises(InvalidCidr) as caught:
        parse_network(text.rstrip("\n") + ("\x1b" if text.endswith("\n") else ""))
    assert len(str(caught.value)) < SHORT and "\x1b" not in str(caught.value)


# -- durations need a unit -------------------------------------------------------------------------------


def test_a_bare_number_is_not_a_duration() -> None:
    with pytest.raises(ValueError, match="has no unit: write 5s, 5m, 5h or 5d"):
        parse_duration("5")
    with pytest.raises(ManualError, match="ttl: duration '5' has no unit"):
        parse_manual({**load("manual-block"), "ttl": "5"}, SETTINGS)


def test_the_cli_refuses_a_ttl_without_unit_before_reaching_aws(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["block", "203.0.113.7", "--ttl", "5", "--reason", "test", "--stack", "none"])
    assert code == 2
    assert "has no unit" in capsys.readouterr().err


# -- malformed events: InvalidEvent with a short message ---------------------------------------------


def test_a_5000_digit_number_anywhere_is_refused_without_converting_it() -> None:
    alarm = load("alarm-action-alarm")
    alarm["alarmData"]["state"]["value"] = HUGE_NUMBER
    assert "an integer of" in refused(alarm)
    manual = {**load("manual-block"), "ttl": HUGE_NUMBER}
    with pytest.raises(ManualError, match="got an integer of 16610 bits"):
        parse_manual(manual, SETTINGS)
    raw = json.dumps(document()).replace("1764000060000", "9" * 5000).encode()
    assert refused(awslogs(raw)) == "awslogs.data does not hold a JSON document"


def test_json_nested_100k_deep_is_refused() -> None:
    raw = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    assert refused(awslogs(raw)) == "awslogs.data does not hold a JSON document"
    message = refused({"source": "aws.cloudwatch", "alarmData": {"alarmName": "x", "state": deep(100_000)}})
    assert "state.value" in message
    with pytest.raises(ManualError, match=r"cidr must be a string such as 203\.0\.113\.7/32, got a dict"):
        parse_manual({**load("manual-block"), "cidr": deep(100_000)}, SETTINGS)


@pytest.mark.parametrize("timestamp", [10**400, -1, 2**63])
def test_a_log_event_timestamp_beyond_any_date_is_refused(timestamp: int) -> None:
    events = [{**document()["logEvents"][0], "timestamp": timestamp}]
    raw = json.dumps(document(logEvents=events)).encode()
    assert "timestamp is missing or not epoch milliseconds" in refused(awslogs(raw))


def test_an_alarm_timestamp_beyond_any_date_is_unreadable_not_fatal() -> None:
    alarm = load("alarm-eventbridge-alarm")
    alarm["detail"]["state"]["timestamp"] = str(10**400)
    change = parse_detector_event(alarm)
    assert isinstance(change, AlarmStateChange) and change.changed_at is None


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("logGroup", "/floodgate/\ud800", "logGroup holds control characters or invalid Unicode"),
        ("logStream", "eni-\udfff-all", "logStream holds control characters or invalid Unicode"),
        ("logGroup", "/floodgate/\x1b[2J", "logGroup holds control characters or invalid Unicode"),
        ("logStream", "e" * 2048, "logStream is 2048 characters, more than the 512 AWS allows"),
    ],
)
def test_names_in_a_delivery_must_be_valid_unicode_without_controls(
    field: str, value: str, fragment: str
) -> None:
    raw = json.dumps(document(**{field: value})).encode()  # ensure_ascii: lone surrogates as \\ud800
    assert fragment in refused(awslogs(raw))


def test_a_log_event_id_with_a_lone_surrogate_is_refused() -> None:
    events = [{**document()["logEvents"][0], "id": "3785\udc00"}]
    assert "logEvents[0].id is not an event id" in refused(
        awslogs(json.dumps(document(logEvents=events)).encode())
    )


def test_an_alarm_name_longer_than_cloudwatch_allows_is_refused() -> None:
    alarm = load("alarm-eventbridge-alarm")
    alarm["detail"]["alarmName"] = "A" * 2048
    assert refused(alarm) == "detail.alarmName is 2048 characters, more than the 255 AWS allows"
    alarm["detail"]["alarmName"] = "Floodgate-\ud800"
    assert "alarmName holds control characters or invalid Unicode" in refused(alarm)


def test_an_alarm_reason_is_kept_printable_and_bounded() -> None:
    alarm = load("alarm-eventbridge-alarm")
    alarm["detail"]["state"]["reason"] = "\x1b[31mThreshold\x1b[0m crossed\nFAKE LINE\ud800" + "x" * 10_000
    change = parse_detector_event(alarm)
    assert isinstance(change, AlarmStateChange)
    assert change.reason.startswith("[31mThreshold[0m crossed FAKE LINE")
    assert change.reason.isprintable() and 1000 < len(change.reason) <= 1023


def test_huge_unknown_keys_and_sources_are_not_echoed() -> None:
    assert len(refused({"k" * 2_000_000: 1})) < SHORT
    wrong = {**load("alarm-eventbridge-alarm"), "source": "s" * 2_000_000}
    assert len(refused(wrong)) < SHORT


# -- decompression bombs --------------------------------------------------------------------------------


def tiny_events(count: int) -> bytes:
    body = b",".join([b'{"id":"","timestamp":0,"message":""}'] * count)
    return b'{"messageType":"DATA_MESSAGE","logGroup":"g","logStream":"s","logEvents":[' + body + b"]}"


def test_a_quarter_megabyte_that_inflates_to_1_3_million_events_is_refused_cheaply() -> None:
    event = awslogs(tiny_events(1_300_000))
    assert len(event["awslogs"]["data"]) < 400_000  # ~0.25 MB compressed, as in the issue
    tracemalloc.start()
    try:
        message = refused(event)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "inflates past 6 MB" in message
    assert peak < 32 << 20  # the cap bounds the inflated bytes; no object per event is ever built


def test_more_log_events_than_a_delivery_holds_are_refused_before_parsing() -> None:
    message = refused(awslogs(tiny_events(MAX_LOG_EVENTS + 1)))
    assert message == f"awslogs.data holds more than {MAX_LOG_EVENTS} log events"
    delivery = parse_detector_event(awslogs(json.dumps(document()).encode()))
    assert isinstance(delivery, FlowLogDelivery) and len(delivery.messages) == 1


def test_a_base64_payload_larger_than_an_invocation_is_refused_undecoded() -> None:
    assert "more than an invocation holds" in refused({"awslogs": {"data": "A" * 2_000_000}})


# -- manual payloads: short errors, cleaned text, and the engine never reached ---------------------------


class Untouchable:
    """An engine that fails the test if a refused payload reaches it."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"the engine was called ({name}) for a payload that should have been refused")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"reason": "r" * (10 << 20)}, "reason must be text of 3 to 256 characters, got 10485760 characters"),
        ({"reason": "fine \ud800 reason"}, "reason is not valid Unicode text (it holds a lone surrogate)"),
        ({"actor": "a" * 5000}, "actor must be text of 1 to 128 characters, got 5000 characters"),
        (
            {"reason": "\x1b\x1b\n\n"},
            "reason must be text of 3 to 256 characters (control characters removed)",
        ),
        ({"cidr": "2a01:4f8::1%eth0"}, "zone id"),
        ({"cidr": "1" * 100_000}, "not an IPv4 or IPv6 address or prefix"),
        ({"ttl": "5"}, "has no unit"),
        ({"dry_run": HUGE_NUMBER}, "dry_run must be true or false, got an integer of"),
        ({"action": HUGE_NUMBER}, "action must be one of"),
        ({"action": ["block"] * 100_000}, "got a list"),
    ],
)
def test_a_bad_manual_payload_gets_a_short_error_and_never_reaches_the_engine(
    changes: dict[str, Any], fragment: str
) -> None:
    payload = {**load("manual-block"), **changes}
    response = run_manual(payload, settings=SETTINGS, enforcer=Untouchable())  # type: ignore[arg-type]
    body = response.as_dict()
    assert body["ok"] is False and fragment in body["error"], body["error"][:SHORT]
    assert len(json.dumps(body)) < SHORT + 100 and response.events == ()


def test_control_characters_are_removed_from_reason_and_actor() -> None:
    payload = {
        **load("manual-block"),
        "reason": "credential \x1b[2Jstuffing\r\nFAKE 12:00 UNBLOCK\u202e",
        "actor": "alice\x07@example.com",
    }
    block = parse_manual(payload, SETTINGS)
    assert block.reason == "credential [2Jstuffing  FAKE 12:00 UNBLOCK"  # type: ignore[union-attr]
    assert block.actor == "alice@example.com"


def test_the_alarm_names_setting_is_a_json_list_of_names() -> None:
    environ = {ENV.NACL_IDS: "acl-0123456789abcdef0", ENV.VPC_CIDRS: "10.0.0.0/16", ENV.STATE_TABLE: "s"}
    environ[ENV.LOG_TABLE] = "l"
    names = json.dumps(["Floodgate-early-warning", "web, 5xx"])
    assert Settings.from_env({**environ, ENV.ALARM_NAMES: names}).alarm_names == {
        "Floodgate-early-warning",
        "web, 5xx",
    }
    assert Settings.from_env(environ).alarm_names == frozenset()
    for bad in ("Floodgate-early-warning", '["a", 1]', json.dumps(["x" * 256])):
        with pytest.raises(ConfigError, match=ENV.ALARM_NAMES):
            Settings.from_env({**environ, ENV.ALARM_NAMES: bad})


# -- output: stored text cannot repaint the terminal ------------------------------------------------------


def test_tables_escape_what_a_terminal_would_obey() -> None:
    text = table(("TIME", "REASON"), [("12:00", "\x1b[2J\x1b[Hall clear\nFAKE ROW")])
    assert "\x1b" not in text and "\\x1b[2J" in text
    assert len(text.splitlines()) == 3  # header, rule, one row: no forged line


# -- analyze: no verdict on nothing -----------------------------------------------------------------------


def test_analyze_with_the_wrong_format_exits_non_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    capture = tmp_path / "capture.log"
    capture.write_text(
        "2 123456789012 eni-0a1b2c3d4e5f60718 203.0.113.7 10.0.1.5 443 51234 6 10 840 1764000000 1764000060 "
        "ACCEPT OK\n"
    )
    fmt = "${version} ${srcaddr} ${dstaddr} ${packets} ${bytes} ${start} ${end}"
    code = main(["analyze", str(capture), "--vpc-cidr", VPC_CIDR, "--format", fmt])
    err = capsys.readouterr().err
    assert code == 2 and "no usable flow-log records in the input" in err and "--format" in err
    assert main(["analyze", str(tmp_path / "capture.log"), "--vpc-cidr", VPC_CIDR]) == 0


# -- the report's header and timeline count the same sources ----------------------------------------------


def test_the_report_counts_the_sources_its_timeline_draws() -> None:
    since, until = 1_764_000_000.0, 1_764_003_600.0
    events = [
        # denied before the window: only its expiry is in it, yet the timeline draws its bar
        LogEvent(EventKind.EXPIRE, since + 60, "198.51.100.0/24", "ban over", "expirer", "acl-1", rule=100),
        LogEvent(EventKind.BLOCK, since + 120, "203.0.113.7/32", "flood", "detector", "acl-1", rule=101),
        LogEvent(EventKind.REFUSED, since + 130, "10.0.0.9/32", "protected", "detector"),
    ]
    report = Report.build(stack="s", events=events, active=[], since=since, until=until, generated=until)
    assert {lane.cidr for lane in report.lanes} == {"198.51.100.0/24", "203.0.113.7/32"}
    assert report.denied_sources == 2
    assert '<div class="card"><b>2</b><span>sources denied</span></div>' in render(report)


# -- one CIDR grammar for the Lambda and the runbooks -----------------------------------------------------


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_every_ipv4_network_and_its_mapped_form_parse_alike_and_pass_the_runbook(
    address: int, length: int
) -> None:
    network = ipaddress.IPv4Network((address, length), strict=False)
    mapped = f"::ffff:{network.network_address}/{network.prefixlen + 96}"
    assert parse_network(str(network)) == parse_network(mapped) == network
    assert re.fullmatch(CIDR_PATTERN, str(network)) and re.fullmatch(CIDR_PATTERN, mapped)


@given(st.text(max_size=60))
def test_whatever_the_text_parsing_answers_a_network_or_a_short_invalid_cidr(text: str) -> None:
    try:
        network = parse_network(text)
    except InvalidCidr as exc:
        assert len(str(exc)) < SHORT and str(exc).isascii()
    else:
        assert str(network) == str(parse_network(str(network)))  # canonical: what EC2 gets parses back
        assert "%" not in str(network) and not (network.version == 6 and network.subnet_of(MAPPED))
