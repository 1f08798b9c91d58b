"""The stored and shown shapes of the records stay what is deployed: DynamoDB items attribute by attribute,
items written before a field existed still read, JSON answers key by key in the order people know."""

from __future__ import annotations

import json
import math
from typing import Any, cast

import pytest

from floodgate.adapters import dynamo
from floodgate.adapters.ledger import (
    Ledger,
    _deny_from,
    _deny_item,
    _event_from,
    _offence_from,
    _offence_item,
)
from floodgate.core.decision import Drift, DriftKind
from floodgate.core.records import DenyRecord, EventKind, Evidence, LogEvent, OffenceRecord, Origin
from floodgate.core.slots import Direction
from floodgate.services.records_json import deny_json, drift_json, event_json

DENY = DenyRecord(
    nacl_id="acl-1",
    direction=Direction.INGRESS,
    rule=101,
    cidr="203.0.113.0/24",
    created=1700000000.25,
    expires=1700000600.25,
    offences=2,
    origin=Origin.alarm("HighIn"),
    reason="flood",
    evidence=Evidence(pps=9000.0, bps=1.5e7, share=0.25, members=3),
    write_id="v1",
)
EVENT = LogEvent(
    EventKind.BLOCK,
    1700000000.5,
    "203.0.113.0/24",
    "flood",
    "floodgate",
    nacl_id="acl-1",
    direction=Direction.INGRESS,
    rule=101,
    origin=Origin.automatic(),
    evidence=Evidence(pps=9000.0, reject_pps=12.5),
    expires=1700000600.5,
    offences=1,
    event_id="e1",
)


def test_a_deny_item_keeps_its_attributes() -> None:
    assert _deny_item(DENY) == {
        "pk": {"S": "DENY#acl-1"},
        "sk": {"S": "ingress#00101"},
        "nacl_id": {"S": "acl-1"},
        "direction": {"S": "ingress"},
        "rule": {"N": "101"},
        "cidr": {"S": "203.0.113.0/24"},
        "family": {"N": "4"},
        "created": {"N": "1700000000.25"},
        "expires": {"N": "1700000600.25"},
        "offences": {"N": "2"},
        "origin": {"S": "alarm:HighIn"},
        "reason": {"S": "flood"},
        "evidence": {
            "M": {
                "pps": {"N": "9000.0"},
                "bps": {"N": "15000000.0"},
                "share": {"N": "0.25"},
                "members": {"N": "3"},
            }
        },
        "write_id": {"S": "v1"},
        "expires_at": {"N": str(1700000600 + 86400)},
    }
    assert _deny_from(_deny_item(DENY)) == DENY


def test_an_offence_item_keeps_its_attributes() -> None:
    record = OffenceRecord("203.0.113.0/24", 3, 1700000000.0, 1700002400.0, 1700607200.0, "v2")
    assert _offence_item(record) == {
        "pk": {"S": "OFFENCE#203.0.113.0/24"},
        "sk": {"S": "OFFENCE"},
        "cidr": {"S": "203.0.113.0/24"},
        "offences": {"N": "3"},
        "ban_started": {"N": "1700000000.0"},
        "ban_until": {"N": "1700002400.0"},
        "remember_until": {"N": "1700607200.0"},
        "write_id": {"S": "v2"},
        "expires_at": {"N": "1700607201"},
    }
    assert _offence_from(_offence_item(record)) == record


def test_a_log_item_keeps_its_attributes_and_leaves_out_what_an_event_lacks() -> None:
    item = Ledger("state", "log", client=cast(Any, object()), log_retention_days=90)._event_item(EVENT)
    assert item == {
        "pk": {"S": "LOG#2023-11-14"},
        "sk": {"S": "2023-11-14T22:13:20.500000Z#e1"},
        "event": {"S": "BLOCK"},
        "at": {"N": "1700000000.5"},
        "cidr": {"S": "203.0.113.0/24"},
        "reason": {"S": "flood"},
        "actor": {"S": "floodgate"},
        "nacl_id": {"S": "acl-1"},
        "direction": {"S": "ingress"},
        "rule": {"N": "101"},
        "origin": {"S": "automatic"},
        "evidence": {
            "M": {
                "pps": {"N": "9000.0"},
                "bps": {"N": "0.0"},
                "share": {"N": "0.0"},
                "members": {"N": "0"},
                "reject_pps": {"N": "12.5"},
            }
        },
        "expires": {"N": "1700000600.5"},
        "offences": {"N": "1"},
        "event_id": {"S": "e1"},
        "expires_at": {"N": str(1700000000 + 90 * 86400)},
    }
    assert _event_from(item) == EVENT


def test_old_items_without_the_later_fields_still_read() -> None:
    old_deny = {
        "pk": {"S": "DENY#acl-1"},
        "sk": {"S": "egress#00102"},
        "nacl_id": {"S": "acl-1"},
        "direction": {"S": "egress"},
        "rule": {"N": "102"},
        "cidr": {"S": "2001:db8::/48"},
        "created": {"N": "1700000000"},
        "expires": {"N": "1700000600"},
        "offences": {"N": "1"},
        "origin": {"S": "manual:ann"},
        "reason": {"S": "by hand"},
        "write_id": {"S": "v0"},
    }
    deny = _deny_from(old_deny)
    assert deny.evidence == Evidence(0.0, 0.0, 0.0, 0, None)
    assert (deny.direction, deny.rule, deny.family, deny.origin) == (
        Direction.EGRESS,
        102,
        6,
        Origin.manual("ann"),
    )
    old_event = {
        "event": {"S": "EXPIRE"},
        "at": {"N": "1700000000"},
        "cidr": {"S": "203.0.113.9/32"},
        "reason": {"S": "ban over"},
        "actor": {"S": "floodgate"},
        "event_id": {"S": "e0"},
        "evidence": {"M": {"pps": {"N": "5"}}},
    }
    assert _event_from(old_event) == LogEvent(
        EventKind.EXPIRE,
        1700000000.0,
        "203.0.113.9/32",
        "ban over",
        "floodgate",
        evidence=Evidence(pps=5.0),
        event_id="e0",
    )


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_a_number_dynamodb_cannot_hold_is_refused_clearly(number: float) -> None:
    with pytest.raises(ValueError, match="DynamoDB cannot store"):
        dynamo.attribute(number)


def test_floats_are_stored_as_the_shortest_decimal_that_reads_back_the_same() -> None:
    assert dynamo.item({"a": 0.1, "b": 1e-7, "c": 7, "d": "x", "e": b"\x00"}) == {
        "a": {"N": "0.1"},
        "b": {"N": "1E-7"},
        "c": {"N": "7"},
        "d": {"S": "x"},
        "e": {"B": b"\x00"},
    }
    assert float(dynamo.plain(dynamo.item({"a": 0.1}))["a"]) == 0.1


def test_json_answers_keep_their_keys_and_order() -> None:
    assert json.dumps(event_json(EVENT)) == (
        '{"at": "2023-11-14T22:13:20.500000Z", "event": "BLOCK", "would": null, "cidr": "203.0.113.0/24", '
        '"nacl_id": "acl-1", "direction": "ingress", "rule": 101, "origin": "automatic", '
        '"actor": "floodgate", "reason": "flood", '
        '"evidence": {"pps": 9000.0, "bps": 0.0, "share": 0.0, "members": 0, "reject_pps": 12.5, '
        '"inbound_pps": null, "threshold_pps": null}, '
        '"expires": "2023-11-14T22:23:20.500000Z", "offences": 1, "event_id": "e1"}'
    )
    assert json.dumps(deny_json(DENY, now=1700000100.0)) == (
        '{"cidr": "203.0.113.0/24", "nacl_id": "acl-1", "direction": "ingress", "rule": 101, '
        '"created": "2023-11-14T22:13:20.250000Z", "expires": "2023-11-14T22:23:20.250000Z", '
        '"expires_in_s": 500.25, '
        '"offences": 2, "origin": "alarm:HighIn", "reason": "flood", '
        '"evidence": {"pps": 9000.0, "bps": 15000000.0, "share": 0.25, "members": 3, "reject_pps": null, '
        '"inbound_pps": null, "threshold_pps": null}}'
    )
    drift = Drift(DriftKind.ORPHAN, "acl-1", Direction.INGRESS, 100, "198.51.100.7/32", "no ledger record")
    assert drift_json(drift) == {
        "kind": "orphan",
        "nacl_id": "acl-1",
        "direction": "ingress",
        "rule": 100,
        "cidr": "198.51.100.7/32",
        "detail": "no ledger record",
    }
