"""DynamoDB adapter: the deny ledger, offence history, per-NACL leases and the append-only deny log.

STATE table (key `pk` / `sk`):
  DENY#<nacl-id>    / <direction>#<rule:05d>        one deny entry Floodgate holds in that NACL
  OFFENCE#<cidr>    / OFFENCE                       what is remembered about one source (escalation)
  LOCK#<nacl-id>    / LOCK                          the lease of the one worker changing that NACL
  JOURNAL#<nacl-id> / <time>#<id>                   log events committed with a change, until delivered
  MARK#<nacl-id>    / <kind>#<direction>#<rule:05d>#<cidr>   an entry known to be Floodgate's (OWNED) or
                                                    already reported as not (FOREIGN)
LOG table:
  LOG#<YYYY-MM-DD>  / <YYYY-MM-DDTHH:MM:SS.ffffff>Z#<id>   one event; `cidr` feeds the by-cidr index

Ledger changes go through `commit`: transactions that carry the writer's lease as a condition (a worker whose
lease ran out changes nothing), make every item change conditional on the version the writer read
(`write_id`), and carry the change's log events in a journal item, delivered to the log table afterwards
(a transactional outbox: the log table, which grows for months, never takes part in a transaction). The
engine holds a journal back until its NACL writes are done, so the log says what they achieved.
DynamoDB's TTL deletes late and the emulator never does: whoever reads a record checks its expiry.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from floodgate.adapters import dynamo
from floodgate.adapters.dynamo import attribute
from floodgate.adapters.retry import Retrier, default_client, error_code, is_transient
from floodgate.core.records import (
    AppendEvent,
    DenyRecord,
    DropDeny,
    DropMark,
    EntryMark,
    EventKind,
    LedgerWrite,
    LogEvent,
    MarkKind,
    OffenceRecord,
    PutDeny,
    PutMark,
    PutOffence,
    from_plain,
    plain_values,
    time_key,
)
from floodgate.core.slots import Direction
from floodgate.tables import (
    LOG_BY_CIDR_INDEX,
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import PutTypeDef, TransactWriteItemTypeDef


_log = logging.getLogger(__name__)

DENY_PREFIX = "DENY#"
OFFENCE_PREFIX = "OFFENCE#"
LOCK_PREFIX = "LOCK#"
JOURNAL_PREFIX = "JOURNAL#"
MARK_PREFIX = "MARK#"
LOG_PREFIX = "LOG#"
DENY_TTL_GRACE_S = 86400  # a deny item outlives its ban by a day, so a stalled expirer still finds it
MAX_TRANSACTION_ITEMS = 100  # DynamoDB's limit per TransactWriteItems


class LedgerError(Exception):
    """The ledger refused a change."""


class LedgerConflict(LedgerError):
    """An item changed since it was read: read again and decide again."""


class LeaseLost(LedgerError):
    """The writer's lease ran out (or was taken over) before its change landed; nothing was written."""


@dataclass(frozen=True, slots=True)
class Journal:
    """Log events committed with a ledger change, not yet in the log (`Ledger.deliver` puts them there)."""

    nacl_id: str
    sort_key: str
    holder: str | None  # the lease holder that committed it (None: written before journals named it)
    events: tuple[LogEvent, ...]


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to change one NACL until `until` (epoch seconds)."""

    nacl_id: str
    holder: str  # unique per acquisition
    actor: str
    until: float


class Ledger:
    """The STATE and LOG tables. Takes a low-level DynamoDB client (default: a new one)."""

    def __init__(
        self,
        state_table: str,
        log_table: str,
        client: DynamoDBClient | None = None,
        *,
        log_retention_days: int = 90,
        retrier: Retrier | None = None,
    ) -> None:
        self.state_table = state_table
        self.log_table = log_table
        self.log_retention_s = log_retention_days * 86400
        self._ddb: DynamoDBClient = default_client("dynamodb", client)
        self._retry = retrier or Retrier()

    # -- leases ------------------------------------------------------------------------------------------

    def try_acquire(self, nacl_id: str, *, actor: str, now: float, lease_s: float) -> Lease | None:
        """Take the NACL's lease, or None while another worker holds an unexpired one."""
        lease = Lease(nacl_id, uuid.uuid4().hex, actor, now + lease_s)
        item = {
            **_key(LOCK_PREFIX + nacl_id, "LOCK"),
            "holder": attribute(lease.holder),
            "actor": attribute(actor),
            "acquired": attribute(now),
            "lease_until": attribute(lease.until),
            TTL_ATTRIBUTE: attribute(int(lease.until) + 3600),
        }
        taken = self._retry.call_if(
            "PutItem lease",
            lambda: self._ddb.put_item(
                TableName=self.state_table,
                Item=item,
                # A retry of our own put (first response lost) finds our own holder token: still ours.
                ConditionExpression="attribute_not_exists(pk) OR lease_until < :now OR holder = :holder",
                ExpressionAttributeValues={":now": attribute(now), ":holder": attribute(lease.holder)},
            ),
        )
        return lease if taken is not None else None

    def release(self, lease: Lease) -> None:
        """Give the lease back; a lease already taken over by someone else is left alone."""
        released = self._retry.call_if(
            "DeleteItem lease",
            lambda: self._ddb.delete_item(
                TableName=self.state_table,
                Key=_key(LOCK_PREFIX + lease.nacl_id, "LOCK"),
                ConditionExpression="holder = :holder",
                ExpressionAttributeValues={":holder": attribute(lease.holder)},
            ),
        )
        if released is None:
            _log.warning("lease on %s was taken over before release", lease.nacl_id)

    def lease_of(self, nacl_id: str, now: float) -> Lease | None:
        """The unexpired lease on the NACL, if any."""
        reply = self._retry.call(
            "GetItem lease",
            lambda: self._ddb.get_item(
                TableName=self.state_table, Key=_key(LOCK_PREFIX + nacl_id, "LOCK"), ConsistentRead=True
            ),
        )
        item = reply.get("Item")
        if not item or float(item["lease_until"]["N"]) <= now:
            return None
        return Lease(nacl_id, item["holder"]["S"], item["actor"]["S"], float(item["lease_until"]["N"]))

    # -- reads -------------------------------------------------------------------------------------------

    def denies(self, nacl_id: str) -> list[DenyRecord]:
        """Every deny the ledger holds for the NACL, expired ones included (the caller decides)."""
        items = self._query(
            TableName=self.state_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": attribute(DENY_PREFIX + nacl_id)},
            ConsistentRead=True,
        )
        return sorted((_deny_from(item) for item in items), key=lambda d: (d.direction, d.rule))

    def marks(self, nacl_id: str) -> frozenset[EntryMark]:
        """The entry marks of the NACL (see `EntryMark`)."""
        items = self._query(
            TableName=self.state_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": attribute(MARK_PREFIX + nacl_id)},
            ConsistentRead=True,
        )
        return frozenset(_mark_from(nacl_id, item) for item in items)

    def offences(self, cidrs: Sequence[str]) -> dict[str, OffenceRecord]:
        """Offence records of the given sources, by CIDR; absent when there is none."""
        keys = [_key(OFFENCE_PREFIX + cidr, "OFFENCE") for cidr in dict.fromkeys(cidrs)]
        try:
            items = dynamo.batch_get(self._retry, self._ddb, self.state_table, keys)
        except dynamo.Unprocessed as exc:
            raise LedgerError(f"offence records unread: {exc}") from exc
        records = map(_offence_from, items)
        return {record.cidr: record for record in records}

    def _until_processed(
        self, what: str, pending: list[Any], send: Callable[[list[Any]], list[Any]], left: str
    ) -> None:
        """Send a batch again until DynamoDB has processed all of it (`send` returns what it left over)."""
        for attempt in range(self._retry.backoff.attempts):
            pending = send(pending)
            if not pending:
                return
            self._retry.pause(attempt, f"{what} left {len(pending)} unprocessed")
        raise LedgerError(f"DynamoDB left {len(pending)} {left} after retries")

    # -- writes ------------------------------------------------------------------------------------------

    def commit(
        self, groups: Sequence[Sequence[LedgerWrite]], *, lease: Lease, now: float, deliver: bool = True
    ) -> list[Journal]:
        """Write the groups, each group atomically and only while `lease` is still held.

        Each transaction carries its groups' ledger changes and one journal item holding their log events;
        once it lands, the events go to the log table and the journal item is deleted — at once, or, with
        `deliver` false, when the caller passes the returned journals to `deliver`. A worker that dies in
        between leaves the journal behind, and the next run on that NACL delivers it (`journals`): the log
        never misses a committed change, and never shows one that did not commit.

        Raises LeaseLost when the lease check failed and LedgerConflict when an item is not in the version it
        was read in; either way that transaction wrote nothing (earlier ones stay: each group stands alone).
        """
        held: list[Journal] = []
        for chunk in _pack(groups, room=MAX_TRANSACTION_ITEMS - 2):  # the lease check and the journal
            changes = [write for write in chunk if not isinstance(write, AppendEvent)]
            events = tuple(write.event for write in chunk if isinstance(write, AppendEvent))
            items: list[TransactWriteItemTypeDef] = [self._lease_check(lease, now)]
            items += [self._transact_item(write) for write in changes]
            journal = Journal(lease.nacl_id, f"{time_key(now)}#{uuid.uuid4().hex[:12]}", lease.holder, events)
            if events:
                item = {
                    **_key(JOURNAL_PREFIX + journal.nacl_id, journal.sort_key),
                    "holder": attribute(lease.holder),
                    "events": {"L": [{"M": self._event_item(event)} for event in events]},
                }
                items.append({"Put": {"TableName": self.state_table, "Item": item}})
            self._transact(items)
            if events and deliver:
                self.deliver(journal, events)
            elif events:
                held.append(journal)
        return held

    def put_offences(self, writes: Sequence[PutOffence]) -> None:
        """Record offences, each conditional on the version read. Written ahead of the ledger change they
        go with: if that change then fails, the next decision finds the ban "running" and joins it, so an
        offence is never counted twice (nor lost)."""
        for write in writes:
            put = _conditional_put(self.state_table, _offence_item(write.record), _version(write.replaces))
            if self._retry.call_if("PutItem offence", partial(self._ddb.put_item, **put)) is None:
                raise LedgerConflict(f"offence record of {write.record.cidr} changed meanwhile")

    def journals(self, nacl_id: str, *, now: float) -> list[Journal]:
        """Journals of the NACL left undelivered by workers that no longer hold its lease (they died, or their
        lease ran out): the caller delivers them. A live holder's journals are its own to deliver."""
        items = self._query(
            TableName=self.state_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": attribute(JOURNAL_PREFIX + nacl_id)},
            ConsistentRead=True,
        )
        if not items:
            return []
        lease = self.lease_of(nacl_id, now)
        live = lease.holder if lease is not None else None
        found = [
            Journal(
                nacl_id,
                str(item[SORT_KEY]["S"]),
                item["holder"]["S"] if "holder" in item else None,
                tuple(_event_from(entry["M"]) for entry in item["events"]["L"]),
            )
            for item in items
        ]
        return [journal for journal in found if journal.holder is None or journal.holder != live]

    def deliver(self, journal: Journal, events: Sequence[LogEvent]) -> None:
        """Put `events` (the journal's, as they turned out) in the log, then delete the journal. Delivered
        twice, the same events land on the same log lines."""
        self._write_log([self._event_item(event) for event in events])
        self._retry.call(
            "DeleteItem journal",
            lambda: self._ddb.delete_item(
                TableName=self.state_table, Key=_key(JOURNAL_PREFIX + journal.nacl_id, journal.sort_key)
            ),
        )

    def put_marks(self, marks: Sequence[EntryMark]) -> None:
        """Write entry marks outside a commit: only for PENDING marks, which no decision depends on for
        safety (they only choose the word the log uses once the entry goes in)."""
        for mark in marks:
            self._retry.call(
                "PutItem mark",
                partial(self._ddb.put_item, TableName=self.state_table, Item=_mark_item(mark)),
            )

    def append(self, events: Sequence[LogEvent]) -> None:
        """Log events that go with no ledger change (dry runs, refusals)."""
        self._write_log([self._event_item(event) for event in events])

    # -- the deny log ------------------------------------------------------------------------------------

    def events(
        self,
        *,
        since: float,
        until: float,
        cidr: str | None = None,
        kinds: Sequence[EventKind] = (),
        nacl_id: str | None = None,
        limit: int | None = None,
        now: float | None = None,
        page_size: int = 200,
    ) -> Iterator[LogEvent]:
        """Log events newest first, page by page; never reads the whole table.

        With `cidr`, one query of the by-cidr index; otherwise one query per day bucket, newest day first.
        Events past their retention (`now` - retention) are skipped even if TTL has not removed them yet.
        """
        horizon = (time.time() if now is None else now) - self.log_retention_s
        low, high = time_key(max(since, horizon)), time_key(until) + "#~"
        filters, names, values = _log_filters(kinds, nacl_id)
        queries: list[tuple[str, dict[str, Any], str | None]]
        if cidr is not None:
            queries = [
                ("cidr = :key AND sk BETWEEN :low AND :high", {":key": attribute(cidr)}, LOG_BY_CIDR_INDEX)
            ]
        else:
            queries = [
                ("pk = :key AND sk BETWEEN :low AND :high", {":key": attribute(LOG_PREFIX + day)}, None)
                for day in _days_newest_first(max(since, horizon), until)
            ]
        yielded = 0
        for condition, key_values, index in queries:
            params: dict[str, Any] = {
                "TableName": self.log_table,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": {
                    **key_values,
                    ":low": attribute(low),
                    ":high": attribute(high),
                    **values,
                },
                "ScanIndexForward": False,
                "Limit": page_size,
            }
            if index:
                params["IndexName"] = index
            if filters:
                params["FilterExpression"] = filters
            if names:
                params["ExpressionAttributeNames"] = names
            for item in self._pages(params):
                yield _event_from(item)
                yielded += 1
                if limit is not None and yielded >= limit:
                    return

    def history(self, cidr: str, *, now: float | None = None) -> list[LogEvent]:
        """Every retained event of one source, oldest first (the by-cidr index)."""
        horizon = (time.time() if now is None else now) - self.log_retention_s
        return list(
            _event_from(item)
            for item in self._pages(
                {
                    "TableName": self.log_table,
                    "IndexName": LOG_BY_CIDR_INDEX,
                    "KeyConditionExpression": "cidr = :cidr AND sk >= :low",
                    "ExpressionAttributeValues": {
                        ":cidr": attribute(cidr),
                        ":low": attribute(time_key(horizon)),
                    },
                    "ScanIndexForward": True,
                }
            )
        )

    # -- internals ---------------------------------------------------------------------------------------

    def _transact(self, items: list[TransactWriteItemTypeDef]) -> None:
        # One client token for the whole retry loop: DynamoDB then treats a retry of a transaction that did
        # commit (its response was lost) as the same transaction and does not apply it twice.
        token = uuid.uuid4().hex
        try:
            self._retry.call(
                "TransactWriteItems",
                lambda: self._ddb.transact_write_items(TransactItems=items, ClientRequestToken=token),
                transient=_transient_transaction,
            )
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [str(r.get("Code")) for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":  # the first item is the lease check
                raise LeaseLost("the lease ran out before the change was written") from None
            raise LedgerConflict(f"ledger changed meanwhile ({', '.join(reasons)})") from None

    def _write_log(self, log_items: list[dict[str, Any]]) -> None:
        """Put log items in batches of 25. A retry rewrites an item with the same key and content."""
        for start in range(0, len(log_items), 25):
            pending = [{"PutRequest": {"Item": item}} for item in log_items[start : start + 25]]

            def write(pending: list[Any]) -> list[Any]:
                request = {self.log_table: pending}
                reply = self._retry.call(
                    "BatchWriteItem", partial(self._ddb.batch_write_item, RequestItems=request)
                )
                unwritten: list[Any] = reply.get("UnprocessedItems", {}).get(self.log_table, [])
                return unwritten

            self._until_processed("BatchWriteItem", pending, write, "log events unwritten")

    def _lease_check(self, lease: Lease, now: float) -> TransactWriteItemTypeDef:
        return {
            "ConditionCheck": {
                "TableName": self.state_table,
                "Key": _key(LOCK_PREFIX + lease.nacl_id, "LOCK"),
                "ConditionExpression": "holder = :holder AND lease_until > :now",
                "ExpressionAttributeValues": {":holder": attribute(lease.holder), ":now": attribute(now)},
            }
        }

    def _transact_item(self, write: LedgerWrite) -> TransactWriteItemTypeDef:
        match write:
            case PutDeny(record, replaces):
                return {"Put": _conditional_put(self.state_table, _deny_item(record), _version(replaces))}
            case DropDeny(record):
                return {
                    "Delete": {
                        "TableName": self.state_table,
                        "Key": _key(
                            DENY_PREFIX + record.nacl_id, _deny_sort_key(record.direction, record.rule)
                        ),
                        "ConditionExpression": "write_id = :version",
                        "ExpressionAttributeValues": {":version": attribute(record.write_id)},
                    }
                }
            case PutMark(mark):
                return {"Put": {"TableName": self.state_table, "Item": _mark_item(mark)}}
            case DropMark(mark):
                return {"Delete": {"TableName": self.state_table, "Key": _mark_key(mark)}}
        raise TypeError(f"not a ledger change: {write!r}")

    def _event_item(self, event: LogEvent) -> dict[str, Any]:
        return {
            **_key(LOG_PREFIX + _day(event.at), event.sort_key),
            **dynamo.item(plain_values(event)),
            TTL_ATTRIBUTE: attribute(int(event.at + self.log_retention_s)),
        }

    def _query(self, **params: Any) -> list[dict[str, Any]]:
        return list(self._pages(params))

    def _pages(self, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        return dynamo.pages(self._retry, "Query", self._ddb.query, params)


# -- item layouts --------------------------------------------------------------------------------------


def _deny_sort_key(direction: Direction, rule: int) -> str:
    return f"{direction}#{rule:05d}"


def _deny_item(record: DenyRecord) -> dict[str, Any]:
    return {
        **_key(DENY_PREFIX + record.nacl_id, _deny_sort_key(record.direction, record.rule)),
        **dynamo.item(plain_values(record)),
        "family": attribute(record.family),
        TTL_ATTRIBUTE: attribute(int(record.expires) + DENY_TTL_GRACE_S),
    }


def _deny_from(item: Mapping[str, Any]) -> DenyRecord:
    return from_plain(DenyRecord, dynamo.plain(item))


def _mark_key(mark: EntryMark) -> dict[str, Any]:
    sort_key = f"{mark.kind}#{_deny_sort_key(mark.direction, mark.rule)}#{mark.cidr}"
    return _key(MARK_PREFIX + mark.nacl_id, sort_key)


def _mark_item(mark: EntryMark) -> dict[str, Any]:
    return {**_mark_key(mark), "cidr": attribute(mark.cidr)}


def _mark_from(nacl_id: str, item: Mapping[str, Any]) -> EntryMark:
    kind, direction, rule, cidr = str(item[SORT_KEY]["S"]).split("#", 3)
    return EntryMark(MarkKind(kind), nacl_id, Direction(direction), int(rule), cidr)


def _offence_item(record: OffenceRecord) -> dict[str, Any]:
    return {
        **_key(OFFENCE_PREFIX + record.cidr, "OFFENCE"),
        **dynamo.item(plain_values(record)),
        TTL_ATTRIBUTE: attribute(int(record.remember_until) + 1),
    }


def _offence_from(item: Mapping[str, Any]) -> OffenceRecord:
    return from_plain(OffenceRecord, dynamo.plain(item))


def _event_from(item: Mapping[str, Any]) -> LogEvent:
    return from_plain(LogEvent, dynamo.plain(item))


# -- helpers -------------------------------------------------------------------------------------------


def _version(record: DenyRecord | OffenceRecord | None) -> str | None:
    return None if record is None else record.write_id


def _conditional_put(table: str, item: dict[str, Any], expected_version: str | None) -> PutTypeDef:
    """PutItem parameters that succeed only over the version read (`None`: only where nothing is)."""
    if expected_version is None:
        return {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}
    return {
        "TableName": table,
        "Item": item,
        "ConditionExpression": "write_id = :version",
        "ExpressionAttributeValues": {":version": attribute(expected_version)},
    }


def _transient_transaction(exc: BaseException) -> bool:
    """Throttling and 5xx, and a cancellation caused only by contention (never by a failed condition)."""
    if error_code(exc) == "TransactionCanceledException" and isinstance(exc, ClientError):
        reasons = {str(r.get("Code")) for r in exc.response.get("CancellationReasons", [])}
        return "ConditionalCheckFailed" not in reasons and bool(
            reasons & {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
        )
    return is_transient(exc)


def _pack(groups: Sequence[Sequence[LedgerWrite]], *, room: int) -> Iterator[list[LedgerWrite]]:
    """Whole groups into chunks of at most `room` ledger changes (log events ride in the journal)."""
    chunk: list[LedgerWrite] = []
    used = 0
    for group in groups:
        size = sum(1 for write in group if not isinstance(write, AppendEvent))
        if size > room:
            raise LedgerError(f"a group of {size} changes does not fit one transaction ({room})")
        if chunk and used + size > room:
            yield chunk
            chunk, used = [], 0
        chunk.extend(group)
        used += size
    if chunk:
        yield chunk


def _log_filters(
    kinds: Sequence[EventKind], nacl_id: str | None
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """FilterExpression, ExpressionAttributeNames and values for the log's event and NACL filters."""
    clauses: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    if kinds:
        placeholders = [f":kind{i}" for i in range(len(kinds))]
        clauses.append(f"#event IN ({', '.join(placeholders)})")
        names["#event"] = "event"
        values.update({p: attribute(kind) for p, kind in zip(placeholders, kinds, strict=True)})
    if nacl_id is not None:
        clauses.append("nacl_id = :nacl")
        values[":nacl"] = attribute(nacl_id)
    return " AND ".join(clauses), names, values


def _days_newest_first(since: float, until: float) -> list[str]:
    first = datetime.fromtimestamp(since, UTC).date()
    day = datetime.fromtimestamp(until, UTC).date()
    days: list[str] = []
    while day >= first:
        days.append(day.isoformat())
        day -= timedelta(days=1)
    return days


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def _key(pk: str, sk: str) -> dict[str, Any]:
    return dynamo.item({PARTITION_KEY: pk, SORT_KEY: sk})
