"""DynamoDB's attribute values and paged queries, one way for every table Floodgate keeps.

`item` and `attribute` encode plain values (text, numbers, bytes, nested dicts and lists) with boto3's
TypeSerializer; `plain` decodes with its TypeDeserializer (numbers come back as Decimal). A float is stored
as the shortest decimal that reads back as the same float, and a number that is not finite is refused with
a clear error here rather than deep inside botocore. boto3 loads on first use, as in `retry.default_client`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    from floodgate.adapters.retry import Retrier


def item(values: Mapping[str, Any]) -> dict[str, Any]:
    """An item (or a map's members) from plain values."""
    return {name: attribute(value) for name, value in values.items()}


def attribute(value: Any) -> dict[str, Any]:
    """One attribute value, e.g. {"S": "text"} or {"N": "1.5"}."""
    encoded: dict[str, Any] = _serializer().serialize(_storable(value))
    return encoded


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values of an item (or a map's members); numbers as Decimal."""
    deserializer = _deserializer()
    return {name: deserializer.deserialize(value) for name, value in values.items()}


def pages(retrier: Retrier, what: str, query: Callable[..., Any], params: Mapping[str, Any]) -> Iterator[Any]:
    """Every item a Query returns, page after page; `what` names the call in retries and logs."""
    start: Any = None
    while True:
        request = dict(params, ExclusiveStartKey=start) if start else dict(params)
        page = retrier.call(what, partial(query, **request))
        yield from page.get("Items", [])
        start = page.get("LastEvaluatedKey")
        if not start:
            return


def put_new(
    retrier: Retrier, what: str, put_item: Callable[..., Any], table: str, item: Mapping[str, Any]
) -> bool:
    """Write `item` unless an item with its key is already there (a retry of the same write, or another
    worker's): True when this call wrote it."""
    written = retrier.call_if(
        what, partial(put_item, TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    )
    return written is not None


_BATCH_GET_KEYS = 100  # BatchGetItem's limit per call


class Unprocessed(RuntimeError):
    """DynamoDB kept leaving part of a batch unprocessed (throttling) after every retry."""


def batch_get(
    retrier: Retrier,
    client: Any,
    table: str,
    keys: Sequence[Mapping[str, Any]],
    *,
    projection: str | None = None,
) -> list[dict[str, Any]]:
    """The items under `keys` that exist (strongly consistent), in BatchGetItem calls of at most 100 keys;
    keys DynamoDB leaves unprocessed are asked again after a pause, until every one was answered."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), _BATCH_GET_KEYS):
        waiting: list[Any] = list(keys[start : start + _BATCH_GET_KEYS])
        for attempt in range(retrier.backoff.attempts + 1):
            request: dict[str, Any] = {"Keys": waiting, "ConsistentRead": True}
            if projection:
                request["ProjectionExpression"] = projection
            get = partial(client.batch_get_item, RequestItems={table: request})
            reply = retrier.call("BatchGetItem", get)
            found.extend(reply.get("Responses", {}).get(table, []))
            waiting = list(reply.get("UnprocessedKeys", {}).get(table, {}).get("Keys", []))
            if not waiting:
                break
            if attempt == retrier.backoff.attempts:
                raise Unprocessed(f"DynamoDB left {len(waiting)} keys of {table} unread after retries")
            retrier.pause(attempt, f"BatchGetItem left {len(waiting)} unprocessed")
    return found


def _storable(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"DynamoDB cannot store {value}")
        return Decimal(repr(value))
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, Mapping):
        return {name: _storable(member) for name, member in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(member) for member in value]
    return value


@functools.cache
def _serializer() -> TypeSerializer:
    from boto3.dynamodb.types import TypeSerializer  # noqa: PLC0415 - lazy on purpose

    return TypeSerializer()


@functools.cache
def _deserializer() -> TypeDeserializer:
    from boto3.dynamodb.types import TypeDeserializer  # noqa: PLC0415 - lazy on purpose

    return TypeDeserializer()
