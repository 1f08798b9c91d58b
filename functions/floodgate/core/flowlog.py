"""VPC Flow Log records → exact per-source inbound traffic of one batch.

Accepts the default version-2 format and any custom `${field}` format (v2–v8 fields). Every line lands in
exactly one bucket: used for detection (`parsed`) or skipped with a reason. Nothing raises on bad input.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from floodgate.core.model import ParseStats

DEFAULT_FORMAT = (
    "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} "
    "${packets} ${bytes} ${start} ${end} ${action} ${log-status}"
)

# The v5 custom format of the flow log the stack creates: the default fields, then what telling spoofable
# evidence, the VPC's own connections and AWS services apart needs.
STACK_FORMAT = DEFAULT_FORMAT + (
    " ${vpc-id} ${tcp-flags} ${type} ${pkt-srcaddr} ${pkt-dstaddr} ${pkt-src-aws-service} ${flow-direction}"
)

# Every field AWS documents, by the version that introduced it.
KNOWN_FIELDS: frozenset[str] = frozenset(
    (  # noqa: SIM905 - one line per version reads better than 40 quoted names
        # v2
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
        "action log-status "
        # v3
        "vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr "
        # v4
        "region az-id sublocation-type sublocation-id "
        # v5
        "pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path "
        # v7 (ECS)
        "ecs-cluster-arn ecs-cluster-name ecs-container-instance-arn ecs-container-instance-id "
        "ecs-container-id ecs-second-container-id ecs-service-name ecs-task-definition-arn ecs-task-arn "
        "ecs-task-id "
        # v8
        "reject-reason"
    ).split()
)

_FIELD_TOKEN = re.compile(r"\$\{([a-z0-9-]+)\}|([a-z0-9-]+)")

# Counters above these are not traffic, they are corruption: 100 Gbit/s for a 600 s interval is ~7.5e12 bytes.
MAX_PACKETS = 10**11
MAX_BYTES = 10**14
MIN_BYTES_PER_PACKET = 20  # no IP packet is smaller than its IPv4 header

# Skip reasons, as reported.
EMPTY = "empty_line"
FIELD_COUNT = "wrong_field_count"
NODATA = "nodata"
SKIPDATA = "skipdata"
NOT_A_NUMBER = "not_a_number"
NEGATIVE = "negative_counter"
ABSURD = "absurd_counter"
BAD_TIME = "bad_time"
BAD_VALUE = "bad_value"
BAD_ADDRESS = "bad_address"
NO_ADDRESS = "no_address"
NOT_IP = "not_ip_traffic"
NOT_INBOUND = "not_inbound"
AWS_SERVICE = "aws_service"  # pkt-src-aws-service names an AWS service: never a source to deny
TOO_OLD = "too_old"  # the record ended before the window the batch is judged in
FUTURE = "future"  # the record starts later than now plus the allowed clock skew

# Protocols whose packets can carry any source address: flow logs show what the sender claims.
SPOOFABLE_PROTOCOLS = frozenset({"1", "17", "58"})  # ICMP, UDP, ICMPv6
TCP = "6"
SYN, SYN_ACK = 2, 18
EPHEMERAL_PORT_FLOOR = 1024
# Dependencies one batch or summary remembers (numerically smallest kept: the set merges exactly).
MAX_DEPENDENCIES = 4096


@dataclass(frozen=True, slots=True)
class FlowLogFormat:
    """Field positions of one flow-log format."""

    fields: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> FlowLogFormat:
        """From a format string such as "${version} ${srcaddr} …" (plain space-separated names also work)."""
        names: list[str] = []
        for word in text.split():
            match = _FIELD_TOKEN.fullmatch(word)
            if match is None:
                raise ValueError(f"cannot read format token {word!r}: expected ${{field-name}}")
            name = match.group(1) or match.group(2)
            if name not in KNOWN_FIELDS:
                raise ValueError(f"unknown flow-log field {name!r}")
            if name in names:
                raise ValueError(f"field {name!r} appears twice")
            names.append(name)
        fmt = cls(tuple(names))
        missing = [need for need in ("packets", "bytes") if need not in names]
        if "srcaddr" not in names and "pkt-srcaddr" not in names:
            missing.append("srcaddr")
        if "dstaddr" not in names and "flow-direction" not in names:
            missing.append("dstaddr or flow-direction")
        if missing:
            raise ValueError(f"format lacks field(s) Floodgate needs: {', '.join(missing)}")
        return fmt

    def index(self, name: str) -> int | None:
        return self.fields.index(name) if name in self.fields else None

    @property
    def text(self) -> str:
        return " ".join(f"${{{name}}}" for name in self.fields)


def _address_value(text: str) -> tuple[int, int] | None:
    """(IP version, integer value) of a textual address, or None when it is not one."""
    try:
        if ":" in text:
            return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):
        return None


class InsideTest:
    """Is an address inside the protected network (the VPC CIDRs)? Intervals over integers, no ipaddress."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._ranges: dict[int, tuple[tuple[int, int], ...]] = {4: (), 6: ()}
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            self._ranges[net.version] += ((int(net.network_address), int(net.broadcast_address)),)

    def ranges(self, version: int) -> tuple[tuple[int, int], ...]:
        return self._ranges[version]

    def __call__(self, version: int, value: int) -> bool:
        return any(first <= value <= last for first, last in self._ranges[version])


# Per-source tally of one batch: [packets, bytes, reject_packets, records, spoofable packets]. Spoofable
# packets are those of UDP, ICMP and SYN-only TCP records, whose claimed source proves nothing.
Tally = list[int]
PACKETS, BYTES, REJECT_PACKETS, RECORDS, SPOOFABLE = range(5)
TALLY_WIDTH = 5


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """The record times a batch accepts: a record ending before `oldest_end` or starting after
    `newest_start` is skipped (TOO_OLD / FUTURE), whatever the delivery's own timestamp."""

    oldest_end: int
    newest_start: int


def keep_dependencies(found: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """At most MAX_DEPENDENCIES of them, the numerically smallest: the same set whatever the split."""
    distinct = set(found)
    if len(distinct) <= MAX_DEPENDENCIES:
        return distinct
    return set(sorted(distinct)[:MAX_DEPENDENCIES])


@dataclass(slots=True)
class SourceBatch:
    """Exact inbound traffic per source of one batch of records, keyed by (IP version, address value)."""

    sources: dict[tuple[int, int], Tally] = field(default_factory=dict)
    # Remote addresses the VPC's own hosts opened connections to (egress records): never to be denied.
    dependencies: set[tuple[int, int]] = field(default_factory=set)
    first_start: int | None = None
    last_end: int | None = None
    stats: ParseStats = field(default_factory=ParseStats)

    @property
    def span_s(self) -> int:
        if self.first_start is None or self.last_end is None:
            return 0
        return self.last_end - self.first_start

    def cover(self, first: int, last: int) -> None:
        """Widen the batch's time span to include records from `first` (start) to `last` (end)."""
        self.first_start = first if self.first_start is None else min(first, self.first_start)
        self.last_end = last if self.last_end is None else max(last, self.last_end)


@dataclass(slots=True)
class PendingBatch:
    """Traffic gathered per source as written, before each distinct source is validated once (`finish`)."""

    by_text: dict[str, Tally] = field(default_factory=dict)
    batch: SourceBatch = field(default_factory=SourceBatch)


# Private and link-local destinations stand for "the VPC" when no VPC CIDRs are configured.
PRIVATE_CIDRS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")


class FlowLogParser:
    """Turns flow-log lines into a SourceBatch of inbound traffic.

    A record is inbound when it enters the protected network — its `flow-direction` is ingress when the
    format has that field, otherwise its destination lies inside the VPC CIDRs — from a source outside them.
    The source is `pkt-srcaddr` when present (the original client behind NAT or a load balancer).
    A record whose `pkt-src-aws-service` names an AWS service is skipped (AWS_SERVICE): never denied.

    Outbound records are not traffic to judge, but those of connections the VPC opened itself (a SYN
    without SYN-ACK, or from an ephemeral port to a lower service port) name a remote the VPC depends on:
    its destination lands in `SourceBatch.dependencies`.
    """

    def __init__(self, fmt: FlowLogFormat, vpc_cidrs: Sequence[str] = ()) -> None:
        self.format = fmt
        self._inside = InsideTest(vpc_cidrs or PRIVATE_CIDRS)
        self._nf = len(fmt.fields)
        ix = fmt.index
        self._src = ix("srcaddr")
        self._pkt_src = ix("pkt-srcaddr")
        self._dst = ix("dstaddr")
        self._pkt_dst = ix("pkt-dstaddr")
        self._packets = ix("packets")
        self._bytes = ix("bytes")
        self._start = ix("start")
        self._end = ix("end")
        self._action = ix("action")
        self._status = ix("log-status")
        self._direction = ix("flow-direction")
        self._type = ix("type")
        self._tcp_flags = ix("tcp-flags")
        self._protocol = ix("protocol")
        self._src_port = ix("srcport")
        self._dst_port = ix("dstport")
        self._aws_service = ix("pkt-src-aws-service")
        self._bounds: TimeBounds | None = None
        self._dst_inside: dict[str, bool | None] = {}
        # Optional fields whose plain values are a known few (status and action are tested inline).
        plain_words = (
            (self._type, frozenset({"IPv4", "IPv6", "-"})),
            (self._direction, frozenset({"ingress", "-"})),
        )
        self._word_checks = tuple((index, allowed) for index, allowed in plain_words if index is not None)

    def parse(self, lines: Iterable[str | bytes], bounds: TimeBounds | None = None) -> SourceBatch:
        """Aggregate one batch. Lines may be str or bytes (undecodable bytes count as bad values).
        With `bounds`, records outside them are skipped by reason (TOO_OLD, FUTURE)."""
        pending = PendingBatch()
        self.accumulate(lines, pending, bounds)
        return self.finish(pending)

    def accumulate(
        self, lines: Iterable[str | bytes], pending: PendingBatch, bounds: TimeBounds | None = None
    ) -> None:
        """Add each line's traffic to `pending`: per source as written, and the records' time span.
        With `bounds`, records outside them are skipped by reason (TOO_OLD, FUTURE)."""
        self._bounds = bounds
        try:
            self._accumulate(lines, pending)
        finally:
            self._bounds = None

    def _accumulate(  # noqa: PLR0912, PLR0915 - the hot loop stays inline on purpose
        self, lines: Iterable[str | bytes], pending: PendingBatch
    ) -> None:
        """The loop tests the plain case inline (this is the detector's hot path); a record failing any of
        those tests goes to `_record_problem`, the one place that names what is wrong with it.
        """
        batch, by_text = pending.batch, pending.by_text
        stats = batch.stats
        first_start, last_end = batch.first_start, batch.last_end
        nf, i_packets, i_bytes = self._nf, self._packets, self._bytes
        i_start, i_end, i_action, i_flags = self._start, self._end, self._action, self._tcp_flags
        i_direction, i_status = self._direction, self._status
        i_dst = self._dst if self._dst is not None else self._pkt_dst
        word_checks = self._word_checks
        i_src, i_pkt_src = self._src, self._pkt_src
        i_protocol, i_aws = self._protocol, self._aws_service
        bounds = self._bounds
        dst_inside, known_inside, problem = self.destination_inside, self._dst_inside, self._record_problem
        for raw in lines:
            line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            fields = line.split()
            if len(fields) != nf:
                stats.skip(EMPTY if not fields else FIELD_COUNT)
                continue
            packets_text, bytes_text = fields[i_packets], fields[i_bytes]  # type: ignore[index]
            plain = (
                (i_status is None or fields[i_status] == "OK")
                and (i_action is None or fields[i_action] in ("ACCEPT", "REJECT"))
                and (not word_checks or all(fields[index] in allowed for index, allowed in word_checks))
                and packets_text.isdigit()
                and bytes_text.isdigit()
                and packets_text.isascii()
                and bytes_text.isascii()
            )
            if plain:
                packets, octets = int(packets_text), int(bytes_text)
                plain = packets <= MAX_PACKETS and MIN_BYTES_PER_PACKET * packets <= octets <= MAX_BYTES
            if plain and i_start is not None and i_end is not None:
                start_text, end_text = fields[i_start], fields[i_end]
                plain = (
                    start_text.isdigit()
                    and end_text.isdigit()
                    and start_text.isascii()
                    and end_text.isascii()
                )
                if plain:
                    start, end = int(start_text), int(end_text)
                    plain = end >= start and (
                        bounds is None or (end >= bounds.oldest_end and start <= bounds.newest_start)
                    )
            flags_value = -1
            if plain and i_flags is not None:
                flags = fields[i_flags]
                plain = flags == "-" or (flags.isdigit() and flags.isascii() and int(flags) < 512)
                if plain and flags != "-":
                    flags_value = int(flags)
            if plain and i_aws is not None:
                plain = fields[i_aws] == "-"
            if i_pkt_src is not None and (i_src is None or fields[i_pkt_src] != "-"):
                src = fields[i_pkt_src]
            else:
                src = fields[i_src]  # type: ignore[index]
            plain = plain and src != "-"
            if plain and (i_direction is None or fields[i_direction] == "-"):
                dst = fields[i_dst] if i_dst is not None else "-"
                plain = known_inside.get(dst) is True or (i_dst is not None and dst_inside(dst) is True)
            if not plain:
                reason = problem(fields)
                if reason is not None:
                    stats.skip(reason)
                    if reason == NOT_INBOUND:
                        self._note_dependency(fields, batch)
                    continue
                packets, octets = int(packets_text), int(bytes_text)
                if i_start is not None and i_end is not None:
                    start, end = int(fields[i_start]), int(fields[i_end])
                if i_flags is not None and fields[i_flags] != "-":
                    flags_value = int(fields[i_flags])
            if i_start is not None and i_end is not None:
                first_start = start if first_start is None or start < first_start else first_start
                last_end = end if last_end is None or end > last_end else last_end
            rejected = i_action is not None and fields[i_action] == "REJECT"
            protocol = fields[i_protocol] if i_protocol is not None else "-"
            spoofable = protocol in SPOOFABLE_PROTOCOLS or (protocol == TCP and flags_value == SYN)
            tally = by_text.get(src)
            if tally is None:
                by_text[src] = [packets, octets, packets if rejected else 0, 1, packets if spoofable else 0]
            else:
                tally[PACKETS] += packets
                tally[BYTES] += octets
                tally[RECORDS] += 1
                if rejected:
                    tally[REJECT_PACKETS] += packets
                if spoofable:
                    tally[SPOOFABLE] += packets
        batch.first_start, batch.last_end = first_start, last_end

    def _source_text(self, fields: list[str]) -> str:
        if self._pkt_src is not None and (self._src is None or fields[self._pkt_src] != "-"):
            return fields[self._pkt_src]
        return fields[self._src]  # type: ignore[index]

    def _record_problem(  # noqa: PLR0911, PLR0912 - one check per reason, in the documented order
        self, fields: list[str]
    ) -> str | None:
        """Why this record is not usable inbound traffic, or None when it is."""
        if self._status is not None:
            status = fields[self._status]
            if status != "OK":
                return {"NODATA": NODATA, "SKIPDATA": SKIPDATA}.get(status, BAD_VALUE)
        for index, limit in ((self._packets, MAX_PACKETS), (self._bytes, MAX_BYTES)):
            text = fields[index]  # type: ignore[index]
            if not text.isdigit() or not text.isascii():
                if text == "-":
                    return NO_ADDRESS if self._source_text(fields) == "-" else NOT_A_NUMBER
                return NEGATIVE if text[:1] == "-" and text[1:].isdigit() else NOT_A_NUMBER
            if int(text) > limit:
                return ABSURD
        if int(fields[self._bytes]) < MIN_BYTES_PER_PACKET * int(fields[self._packets]):  # type: ignore[index]
            return ABSURD
        if self._start is not None and self._end is not None:
            start, end = fields[self._start], fields[self._end]
            if not (start.isdigit() and end.isdigit() and start.isascii() and end.isascii()):
                return BAD_TIME
            if int(end) < int(start):
                return BAD_TIME
            if self._bounds is not None:
                if int(end) < self._bounds.oldest_end:
                    return TOO_OLD
                if int(start) > self._bounds.newest_start:
                    return FUTURE
        if self._action is not None and fields[self._action] not in ("ACCEPT", "REJECT"):
            return BAD_VALUE
        if self._type is not None and fields[self._type] not in ("IPv4", "IPv6", "-"):
            return NOT_IP
        if self._tcp_flags is not None:
            flags = fields[self._tcp_flags]
            if flags != "-" and not (flags.isdigit() and flags.isascii() and int(flags) < 512):
                return BAD_VALUE
        if self._source_text(fields) == "-":
            return NO_ADDRESS
        problem = self._direction_problem(fields)
        if problem is None and self._aws_service is not None and fields[self._aws_service] != "-":
            return AWS_SERVICE
        return problem

    def opened_by_vpc(self, fields: list[str]) -> bool:
        """Is this outbound record one of a connection the VPC opened (not an answer to a client)?

        TCP with its flags known: a SYN without SYN-ACK (the server's answer carries SYN-ACK). Otherwise,
        by the ports: from an ephemeral local port to a lower remote one (DNS, HTTPS, a partner's API).
        """
        if self._action is not None and fields[self._action] != "ACCEPT":
            return False
        if self._tcp_flags is not None and self._protocol is not None and fields[self._protocol] == TCP:
            flags = fields[self._tcp_flags]
            if flags.isdigit() and flags.isascii():
                value = int(flags)
                if value & SYN_ACK == SYN_ACK:
                    return False
                if value & SYN:
                    return True
        if self._src_port is None or self._dst_port is None:
            return False
        src_port, dst_port = fields[self._src_port], fields[self._dst_port]
        if not (src_port.isdigit() and dst_port.isdigit() and src_port.isascii() and dst_port.isascii()):
            return False
        return int(src_port) >= EPHEMERAL_PORT_FLOOR and int(dst_port) < int(src_port)

    def _note_dependency(self, fields: list[str], batch: SourceBatch) -> None:
        """Remember the remote end of an outbound connection the VPC opened."""
        dst_index = self._dst if self._dst is not None else self._pkt_dst
        if dst_index is None or not self.opened_by_vpc(fields):
            return
        remote = _address_value(fields[dst_index])
        local = _address_value(fields[self._src]) if self._src is not None else None
        if remote is None or self._inside(*remote) or (local is not None and not self._inside(*local)):
            return
        if len(batch.dependencies) < MAX_DEPENDENCIES or remote in batch.dependencies:
            batch.dependencies.add(remote)
        else:
            batch.dependencies = keep_dependencies((*batch.dependencies, remote))

    def _direction_problem(self, fields: list[str]) -> str | None:
        if self._direction is not None:
            direction = fields[self._direction]
            if direction == "ingress":
                return None
            if direction == "egress":
                return NOT_INBOUND
            if direction != "-":
                return BAD_VALUE
        dst_index = self._dst if self._dst is not None else self._pkt_dst
        if dst_index is None:
            return BAD_VALUE  # no direction and no destination: cannot tell
        dst = fields[dst_index]
        inside = self.destination_inside(dst)
        if inside is None:
            return NO_ADDRESS if dst == "-" else BAD_ADDRESS
        return None if inside else NOT_INBOUND

    def inside_ranges(self, version: int) -> tuple[tuple[int, int], ...]:
        """The protected network as inclusive integer intervals of one IP version."""
        return self._inside.ranges(version)

    def destination_inside(self, text: str) -> bool | None:
        """Whether a destination lies inside the protected network; None when it is not an address."""
        cached = self._dst_inside.get(text, self)
        if cached is not self:
            return cached  # type: ignore[return-value]
        value = _address_value(text)
        inside = None if value is None else self._inside(*value)
        if len(self._dst_inside) > 65536:  # destinations are our own interfaces; bound it anyway
            self._dst_inside.clear()
        self._dst_inside[text] = inside
        return inside

    def finish(self, pending: PendingBatch) -> SourceBatch:
        """Validate each distinct source once; drop internal ones and move their records to `skipped`.

        Consumes `pending`: its per-text tallies move into the returned batch.
        """
        batch, by_text = pending.batch, pending.by_text
        stats = batch.stats
        sources = batch.sources
        inside = self._inside
        for text, tally in by_text.items():
            key = _address_value(text)
            if key is None:
                stats.skip(BAD_ADDRESS, tally[RECORDS])
                continue
            if inside(*key):
                stats.skip(NOT_INBOUND, tally[RECORDS])
                continue
            existing = sources.get(key)  # two spellings of one IPv6 address
            if existing is None:
                sources[key] = tally
            else:
                for i in range(TALLY_WIDTH):
                    existing[i] += tally[i]
            stats.parsed += tally[RECORDS]
        by_text.clear()
        return batch
