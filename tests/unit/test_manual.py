"""The manual-action contract: what a payload must look like, and the error a person gets when it does not."""

from __future__ import annotations

import re
from typing import Any

import pytest

from floodgate.services.manual import Analyze, Block, ManualError, StatusRequest, Unblock, parse_manual
from floodgate.settings import ENV, Settings
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


def test_the_documented_payloads_parse() -> None:
    assert parse_manual(load("manual-block"), SETTINGS) == Block(
        "203.0.113.7/32", "credential stuffing against /login", "alice@example.com", ttl_s=1800
    )
    assert parse_manual(load("manual-unblock"), SETTINGS) == Unblock(
        "203.0.113.7/32", "customer NAT gateway, false positive", "alice@example.com"
    )
    assert parse_manual(load("manual-analyze"), SETTINGS) == Analyze(dry_run=True, actor="console")
    assert parse_manual(load("manual-analyze-enforce"), SETTINGS) == Analyze(
        dry_run=False, actor="alice@example.com"
    )
    assert parse_manual(load("manual-status"), SETTINGS) == StatusRequest()


def test_defaults_are_the_safe_ones() -> None:
    assert parse_manual({"action": "analyze"}, SETTINGS) == Analyze(dry_run=True)
    block = parse_manual({**load("manual-block"), "cidr": "203.0.113.7"}, SETTINGS)
    assert isinstance(block, Block) and block.cidr == "203.0.113.7/32"
    without_ttl = {k: v for k, v in load("manual-block").items() if k != "ttl"}
    assert parse_manual(without_ttl, SETTINGS) == Block(
        "203.0.113.7/32", "credential stuffing against /login", "alice@example.com", ttl_s=None
    )


BLOCK: dict[str, Any] = load("manual-block")


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({}, "action must be one of block, unblock, analyze, status, release; got None"),
        ({"action": 3}, "action must be one of"),
        ({"action": "block", "cidr": "203.0.113.7/32"}, "block needs reason"),
        (
            {"action": ["block"]},
            "action must be one of block, unblock, analyze, status, release; got a list",
        ),
        (
            {**BLOCK, "tll": "30m"},
            "block does not take tll (it takes actor, cidr, dry_run, force, reason, ttl)",
        ),
        ({"action": "status", "verbose": True}, "status does not take verbose (it takes actor)"),
        ({**BLOCK, "cidr": "203.0.113.7/24"}, "cidr: invalid CIDR '203.0.113.7/24'"),
        ({**BLOCK, "cidr": "example.com"}, "cidr: invalid CIDR 'example.com'"),
        ({**BLOCK, "cidr": 203}, "cidr must be a string"),
        ({**BLOCK, "ttl": "forever"}, "ttl: not a duration: 'forever'"),
        ({**BLOCK, "ttl": 1800}, "ttl must be a duration such as 30m"),
        ({**BLOCK, "ttl": "2d"}, "ttl 2d is longer than the longest ban, 1d (FLOODGATE_MAX_TTL)"),
        ({**BLOCK, "reason": "  "}, "reason must be text of 3 to 256 characters"),
        ({**BLOCK, "reason": "x" * 257}, "reason must be text of 3 to 256 characters"),
        ({**BLOCK, "actor": ""}, "actor must be text of 1 to 128 characters"),
        ({**BLOCK, "dry_run": "yes"}, "dry_run must be true or false, got 'yes'"),
        ({"action": "analyze", "dry_run": 0}, "dry_run must be true or false, got 0"),
    ],
)
def test_a_payload_that_breaks_the_contract_is_refused_with_how(payload: dict[str, Any], error: str) -> None:
    with pytest.raises(ManualError, match=f"^{re.escape(error)}"):
        parse_manual(payload, SETTINGS)
