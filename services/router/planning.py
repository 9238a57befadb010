"""What the router does with one `events` record, without doing it: either the
delivery tasks to write and the event log's `Routed` record (where the event
is, what it matched: written for every routed event, matched or not), or the
reason the record goes to `events.dlq`; and that dead letter, cut to fit its topic. Pure: nothing here imports faust or
aiokafka, and `plan` returns an outcome for every input instead of raising.

From AS_READ_FROM_BYTES up, `data` is passed on as written (`msgspec.Raw`):
the body's envelope is encoded around the record's own JSON text of it, which
is neither decoded nor encoded again, when that text is plainly what decoding
it would accept and route (`data_routable_as_read`: an object, UTF-8, no
number that might not fit a float, not too deep, all checked without building
it). Otherwise, and for smaller records (for which decoding and encoding again
costs less than those checks), the record is decoded whole, as before, and the
reasons to dead-letter it are the same; its depth is counted on its text
(`brackets_depth`), and walked in the decoded data only when the text cannot
rule it out. For what ingest writes (msgspec's own encoding) the body is the
same bytes either way; for a record written straight to Kafka and passed on
as read it keeps the writer's spelling (whitespace, escapes, `1.50`, a
repeated key) and the same meaning. Per record, decoding everything before
and this (`python -m bench.planning --against <the earlier checkout>`, the
least of 11 runs): 7.0-7.2 -> 7.4-7.7 us at make bench's 257 bytes of `data`,
27 -> 20-21 us at 16 kB of text, 94-95 -> 61-62 us at 64 kB, 723-751 ->
282-284 us for 200 nested items (13.7 kB), 3,389-3,915 -> 1,277-1,282 us for
1,000 (69.5 kB); the bodies byte-identical.

The limits it applies (the README's "router" section documents them):

- `data` may nest at most `MAX_DATA_DEPTH` objects or arrays deep. Deeper
  records are dead-lettered: the routing of every event must not depend on how
  much of the interpreter's recursion budget is left, and neither the
  deliverer's payload formats nor the customers' JSON parsers should meet a
  depth that makes them fail.
- A record takes at most `record_bytes(key, value)` bytes on the wire: its key
  and value plus `RECORD_OVERHEAD_BYTES`, the most that the header of a
  one-record, uncompressed batch (61 bytes) and the record's own framing
  (at most 32 bytes) add. The broker checks a topic's `max.message.bytes`
  against that batch, and the producer its `max_request_size` against the
  record. `Limits` holds the smaller of the two for each topic the router
  writes; a delivery task over it dead-letters its event, and a dead letter
  over it carries only the start of the record's value (the whole record stays
  in `events`, at the letter's partition and offset, for the topic's retention).
"""

from __future__ import annotations

import hashlib
import re
from itertools import accumulate
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.deliveries import DeliveryTask
from schemas.eventlog import Routed as RoutedUpdate
from schemas.eventlog import update_encoder
from schemas.events import MAX_EVENT_ID, EventDeadLetter, EventRecord
from services.common.triggers import CANONICAL_TYPES, RESERVED_TYPES
from services.router.matching import SubscriptionIndex

MAX_DATA_DEPTH = 256
BATCH_HEADER_BYTES = 61  # the v2 record batch header
RECORD_FRAMING_BYTES = 32  # length, attributes, deltas (<= 21), key and value lengths, headers
RECORD_OVERHEAD_BYTES = BATCH_HEADER_BYTES + RECORD_FRAMING_BYTES
# Kafka's default `max.message.bytes` and a Faust producer's request size cap.
DEFAULT_RECORD_LIMIT = 1_000_000
MAX_REASON_CHARS = 2_000

# Records at least this long pass their `data` on as read (see above); below,
# decoding it and encoding it again is cheaper than the checks.
AS_READ_FROM_BYTES = 16_384
_record_decoder = msgspec.json.Decoder(EventRecord)
_encoder = msgspec.json.Encoder()
_EMPTY_DATA = msgspec.Raw(b"{}")


class Envelope(msgspec.Struct, kw_only=True):
    """`schemas.events.Event` with `data` as JSON text, not decoded: encodes to
    the same envelope, field by field (the body every webhook receives)."""

    id: str
    type: str
    app_id: str
    created_at: datetime
    data: msgspec.Raw = _EMPTY_DATA


class _RecordAsRead(msgspec.Struct, kw_only=True):
    """`schemas.events.EventRecord` with `data` as read: msgspec checks its
    JSON syntax and builds nothing."""

    type: str
    app_id: str
    data: msgspec.Raw = _EMPTY_DATA
    id: str | None = None
    created_at: datetime | None = None


_as_read_decoder = msgspec.json.Decoder(_RecordAsRead)


@dataclass(frozen=True, slots=True)
class Limits:
    """The largest record, in `record_bytes`, each topic the router writes takes."""

    deliveries: int = DEFAULT_RECORD_LIMIT
    dead_letters: int = DEFAULT_RECORD_LIMIT

    @classmethod
    def of_topics(cls, *, deliveries_max_message_bytes: int, dead_letters_max_message_bytes: int,
                  max_request_size: int) -> Limits:
        return cls(
            deliveries=min(deliveries_max_message_bytes, max_request_size),
            dead_letters=min(dead_letters_max_message_bytes, max_request_size),
        )


@dataclass(frozen=True, slots=True)
class Routed:
    event: Envelope
    # (webhook id, encoded DeliveryTask), one per matching webhook.
    tasks: list[tuple[str, bytes]]
    # The `eventlog.updates` record (schemas.eventlog.Routed): its key, the
    # event's app id (so the event log's partition that owns the app files
    # it, whatever partition of `events` the event came from), and its value.
    update_key: bytes
    update: bytes


@dataclass(frozen=True, slots=True)
class Unroutable:
    reason: str


def record_bytes(key: bytes | None, value: bytes | None) -> int:
    """An upper bound of the bytes a record takes in a batch of its own."""
    return len(key or b"") + len(value or b"") + RECORD_OVERHEAD_BYTES


def task_key(webhook_id: str) -> bytes:
    return webhook_id.encode()


# Standard Webhooks signs "{id}.{timestamp}.{body}": an id holding a "." would
# split two ways (id "evt_1.1900000000" signs id "evt_1" at time 1900000000 too).
ID_WITH_A_DOT = "an event id may not hold '.' (it is signed as '{id}.{timestamp}.{body}')"


def plan(
    value: bytes | None, *, partition: int, offset: int, timestamp_ms: int,
    index: SubscriptionIndex, limits: Limits = Limits(), as_read_from: int = AS_READ_FROM_BYTES,
) -> Routed | Unroutable:
    """The tasks to write for one `events` record, or why it is dead-lettered.

    Never raises (but for MemoryError): planning is a function of the record
    alone, so whatever fails here would fail again on every try."""
    try:
        return _plan(value, partition=partition, offset=offset, timestamp_ms=timestamp_ms,
                     index=index, limits=limits, as_read_from=as_read_from)
    except MemoryError:
        raise
    except Exception as exc:  # any failure here is this record's
        return Unroutable(_clip(f"could not be planned: {type(exc).__name__}: {exc}"))


def _plan(
    value: bytes | None, *, partition: int, offset: int, timestamp_ms: int,
    index: SubscriptionIndex, limits: Limits, as_read_from: int,
) -> Routed | Unroutable:
    if value is None:
        return Unroutable("empty record: a null value (tombstone) is not an event")
    record: _RecordAsRead | EventRecord | None = \
        _as_read(value) if len(value) >= as_read_from else None
    if record is None:  # small, unsure or unroutable: decoded whole
        try:
            record = _record_decoder.decode(value)
        except RecursionError:
            return Unroutable(f"data is nested too deeply to decode (recursion limit; at most "
                              f"{MAX_DATA_DEPTH} levels are routed)")
        except msgspec.DecodeError as exc:
            return Unroutable(_clip(f"not an event envelope: {exc}"))
    if record.id is not None and not 0 < len(record.id) <= MAX_EVENT_ID:
        return Unroutable(f"an event id must be 1 to {MAX_EVENT_ID} characters "
                          f"(as ingest requires), not {len(record.id)}")
    if record.id is not None and "." in record.id:
        return Unroutable(ID_WITH_A_DOT)
    if record.type not in CANONICAL_TYPES:
        return Unroutable(_clip(f"unknown event type {record.type!r}"))
    if record.type in RESERVED_TYPES:
        return Unroutable(f"{record.type} may not be published")
    if isinstance(record, EventRecord):
        # `data` is one level below the envelope: the text's depth bounds its.
        if _may_nest_deeper_than(value, MAX_DATA_DEPTH) and \
                brackets_depth(without_strings(value), most=MAX_DATA_DEPTH + 1) > \
                MAX_DATA_DEPTH + 1 and (depth := nesting_depth(record.data)) > MAX_DATA_DEPTH:
            return Unroutable(f"data is nested {depth} levels deep, deeper than the "
                              f"{MAX_DATA_DEPTH} levels routed")
        data = msgspec.Raw(_encoder.encode(record.data))
    else:
        data = record.data
    created_at = record.created_at or datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    if created_at.tzinfo is None:
        # RFC 3339 without an offset ("2026-11-22T18:15:00") decodes naive: read
        # as UTC, so that every task's time compares with an aware one.
        created_at = created_at.replace(tzinfo=UTC)
    created_at.astimezone(UTC)  # OverflowError (dead-lettered) past year 1 or 9999 in UTC
    event = Envelope(
        # Derived, not random, so that routing the same record again after a
        # crash yields the same id (the receivers' deduplication key).
        id=record.id or "evt_" + hashlib.sha256(b"%d:%d:%s" % (partition, offset, value)).hexdigest()[:32],
        type=record.type,
        app_id=record.app_id,
        created_at=created_at,
        data=data,
    )
    webhook_ids = sorted(index.match(event.app_id, event.type))
    update_key, update = routed_update(event, webhook_ids, partition=partition, offset=offset)
    if not webhook_ids:
        return Routed(event, [], update_key, update)
    body = msgspec.Raw(_encoder.encode(event))
    tasks = [
        (webhook_id, _encoder.encode(DeliveryTask(
            webhook_id=webhook_id, app_id=event.app_id, event_id=event.id,
            event_type=event.type, event_created_at=event.created_at, body=body,
        )))
        for webhook_id in webhook_ids
    ]
    largest = max(record_bytes(task_key(w), task) for w, task in tasks)
    if largest > limits.deliveries:
        return Unroutable(too_large_reason(largest, limits.deliveries))
    return Routed(event, tasks, update_key, update)


def routed_update(event: Envelope, webhook_ids: list[str], *, partition: int,
                  offset: int) -> tuple[bytes, bytes]:
    """The key and value of the `eventlog.updates` record of an event read from
    `events` at (`partition`, `offset`) and matched to `webhook_ids` (sorted;
    none: unmatched, which the event log lists too)."""
    update = RoutedUpdate(
        app_id=event.app_id, event_id=event.id, event_type=event.type,
        created_at=event.created_at, source="events", partition=partition, offset=offset,
        webhook_ids=webhook_ids,
    )
    return event.app_id.encode(), update_encoder.encode(update)


def after_refusal_as_too_large(tasks: list[tuple[str, bytes]], *,
                               producer_batch_size: int) -> Unroutable | None:
    """What to do when the broker refused one of these tasks as too large:
    dead-letter the event when its largest task went alone in its batch (the
    producer puts nothing beside a record larger than its batch size), so the
    refusal was surely about it; otherwise None, an unknown failure (the batch
    may have held other events' tasks, and the topic takes less than a batch)."""
    if not refusal_may_dead_letter(tasks, producer_batch_size=producer_batch_size):
        return None
    return Unroutable(too_large_reason(_largest(tasks)))


def refusal_may_dead_letter(tasks: list[tuple[str, bytes]], *, producer_batch_size: int) -> bool:
    """Whether a refusal of these tasks as too large would dead-letter their
    event (`after_refusal_as_too_large`): then the event's `Routed` record is
    written only once the tasks are in, since a dead-lettered event has none."""
    return _largest(tasks) > producer_batch_size


def _largest(tasks: list[tuple[str, bytes]]) -> int:
    return max((record_bytes(task_key(w), task) for w, task in tasks), default=0)


def too_large_reason(size: int, limit: int | None = None) -> str:
    if limit is None:
        return (f"delivery task too large: the broker refused a task of {size} bytes "
                f"(MessageSizeTooLargeError; see the deliveries topic's max.message.bytes)")
    return (f"delivery task too large: {size} bytes, over the {limit} bytes the "
            f"deliveries topic takes (its max.message.bytes, or the producer's max request size)")


def nesting_depth(data: Any) -> int:
    """How many objects or arrays deep `data` nests (`{}` is 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _as_read(value: bytes) -> _RecordAsRead | None:
    """The record with its `data` as read, when the whole decode would surely
    accept it and route it alike (`data_routable_as_read`); None when unsure,
    or when the record cannot be routed at all (the whole decode says why)."""
    try:
        record = _as_read_decoder.decode(value)
    except (msgspec.DecodeError, RecursionError):
        return None
    return record if data_routable_as_read(bytes(record.data)) else None


_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# +1 for an opening bracket, -1 for a closing one (indexed by byte).
_BRACKET_STEP = [1 if b in b"[{" else -1 for b in range(256)]
_LONG_DIGITS = re.compile(rb"[0-9]{300}")


def data_routable_as_read(data: bytes) -> bool:
    """Whether `data`, a JSON value whose syntax msgspec has checked without
    decoding it, is what decoding it as `EventRecord.data` would accept and
    route: an object, UTF-8, no number out of a float's range, nested at most
    MAX_DATA_DEPTH deep. Fast, and False when unsure: an exponent or a run of
    300 digits outside strings (the only ways to a float out of range) is
    left to the decode."""
    if data[:1] != b"{":
        return False
    if not data.isascii():
        try:
            data.decode()
        except UnicodeDecodeError:
            return False
    outside = without_strings(data)
    if b"E" in outside or (b"e" in outside and b"e" in outside.replace(b"true", b"").replace(
            b"false", b"")) or _LONG_DIGITS.search(outside) is not None:
        return False
    return (outside.count(b"{") + outside.count(b"[") <= MAX_DATA_DEPTH
            or brackets_depth(outside) <= MAX_DATA_DEPTH)


def without_strings(json_text: bytes) -> bytes:
    """Valid JSON text without its strings (whose quotes, escaped or not,
    brackets and letters are not the text's own)."""
    if b"\\" in json_text:  # only inside strings: escaped backslashes, then quotes
        json_text = json_text.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(json_text.split(b'"')[::2])


def brackets_depth(json_text: bytes, most: int = MAX_DATA_DEPTH) -> int:
    """How deep the brackets of `json_text` (valid JSON without its strings)
    nest, as `nesting_depth` counts (`{}` is 1); `most + 1` when deeper than
    `most`. The deepest running count of open brackets: one pass, not one per
    level (which took 2.8 s for 1 MB of arrays 255 deep)."""
    brackets = json_text.translate(None, _NOT_A_BRACKET)
    return min(max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0), most + 1)


def _may_nest_deeper_than(value: bytes, depth: int) -> bool:
    # Each level opens a bracket, so fewer brackets (strings included) than
    # levels rule the walk out; most events are far below.
    return value.count(b"{") + value.count(b"[") > depth


def dead_letter(
    *, reason: str, topic: str, partition: int, offset: int, key: bytes | None,
    value: bytes | None, failed_at: datetime, limit: int,
) -> bytes:
    """The encoded `events.dlq` record, at most `limit` in `record_bytes` with
    the key `dead_letter_record` gives it: the value is cut (and marked so)
    when the whole would not fit."""
    return dead_letter_record(reason=reason, topic=topic, partition=partition, offset=offset,
                              key=key, value=value, failed_at=failed_at, limit=limit)[1]


def dead_letter_record(
    *, reason: str, topic: str, partition: int, offset: int, key: bytes | None,
    value: bytes | None, failed_at: datetime, limit: int,
) -> tuple[bytes | None, bytes]:
    """The key and encoded value of the `events.dlq` record, together at most
    `limit` in `record_bytes`. The key is the record's own, but for a key so
    large that not even a letter without value fits beside it (`events` may
    take larger records than the router can write): then only its start,
    marked `key_truncated` (`key_size` is the whole key's)."""
    raw = value or b""
    letter = EventDeadLetter(
        reason=_clip(reason), topic=topic, partition=partition, offset=offset, value=raw,
        failed_at=failed_at, value_size=len(raw), value_truncated=False,
        key_size=None if key is None else len(key),
    )
    encoded = _encoder.encode(letter)
    if record_bytes(key, encoded) <= limit:
        return key, encoded
    letter.value, letter.value_truncated = b"", True
    # A reason too long for even an empty value is cut too (halved at a time).
    while record_bytes(key, _encoder.encode(letter)) > limit and len(letter.reason) > 80:
        letter.reason = letter.reason[: len(letter.reason) // 2] + "…"
    if key is not None and record_bytes(key, _encoder.encode(letter)) > limit:
        letter.key_truncated = True
        over = record_bytes(key, _encoder.encode(letter)) - limit
        key = key[: max(0, len(key) - over)]
    # msgspec writes bytes as base64: 4 characters per 3 bytes, padded.
    room = limit - record_bytes(key, _encoder.encode(letter))
    letter.value = raw[: max(0, room // 4 * 3)]
    return key, _encoder.encode(letter)


def _clip(reason: str) -> str:
    if len(reason) <= MAX_REASON_CHARS:
        return reason
    return reason[: MAX_REASON_CHARS - 1] + "…"
