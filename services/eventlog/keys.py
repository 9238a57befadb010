"""Keys of the event log's table (issue 11; docs/design/event-log.md): bytes
whose byte order is the order the API lists in, so that a RocksDB scan from a
seek key answers a page. Pure.

    E | app | inv_time | event              an event: newest first within its app
    I | app | event                         an event by id: its E key
    D | app | event | webhook               one event's delivery to one webhook
    A | app | event | webhook | attempt(4) | seq(4)   an attempt row
    T | time | key                          the retention sweep's index

Each id is its UTF-8 bytes after their length (2 bytes, big-endian), so that a
key's prefix up to any id (`E|app`, `D|app|event`) is a prefix of exactly the
keys it should be, whatever bytes the ids hold. `inv_time` is the event's time
in milliseconds, shifted and inverted (8 bytes, big-endian), so that a forward
scan goes from newest to oldest over every time a datetime can hold. Faust
keeps its own offset key (`__faust…`) in each partition's store: every tag here
is one upper-case byte, so no scan meets it.

A page's cursor is the last key it returned, base64url: opaque to clients,
refused unless it is a key of the app and kind that is being listed.
"""

from __future__ import annotations

import base64
import binascii
import struct

from aiokafka.partitioner import murmur2

_SHIFT = 1 << 62           # ms of years 1..9999 are within ±2.6e14: far inside ±2**62
_TOP = (1 << 63) - 1
_LIMIT = 1 << 16


class BadKey(ValueError):
    """An id that cannot be part of a key, or a cursor that is not one of ours."""


def part(value: str, what: str) -> bytes:
    """An id as a key component: its length, then its UTF-8 bytes."""
    try:
        raw = value.encode()
    except UnicodeEncodeError:  # a lone surrogate (a header's undecodable byte)
        raise BadKey(f"{what} is not encodable as UTF-8") from None
    if not 0 < len(raw) < _LIMIT:
        raise BadKey(f"{what} must be 1 to {_LIMIT - 1} bytes")
    return struct.pack(">H", len(raw)) + raw


def _read_part(key: bytes, at: int) -> tuple[str, int]:
    """The id at `at` in `key`, and where what follows it starts."""
    if len(key) < at + 2:
        raise BadKey("a key ends inside an id")
    n = struct.unpack(">H", key[at:at + 2])[0]
    if len(key) < at + 2 + n:
        raise BadKey("a key ends inside an id")
    try:
        return key[at + 2:at + 2 + n].decode(), at + 2 + n
    except UnicodeDecodeError:  # a forged cursor's bytes
        raise BadKey("an id in a key is not UTF-8") from None


def inverted(ms: int) -> bytes:
    if not -_SHIFT <= ms < _SHIFT:
        raise BadKey(f"time out of range: {ms} ms")
    return struct.pack(">Q", _TOP - (ms + _SHIFT))


def time_of(inverted_bytes: bytes) -> int:
    return _TOP - struct.unpack(">Q", inverted_bytes)[0] - _SHIFT


def events_prefix(app_id: str) -> bytes:
    return b"E" + part(app_id, "app id")


def event_key(app_id: str, created_ms: int, event_id: str) -> bytes:
    return events_prefix(app_id) + inverted(created_ms) + part(event_id, "event id")


def split_event_key(key: bytes) -> tuple[str, int, str]:
    """(app id, created ms, event id) of an E key."""
    if key[:1] != b"E":
        raise BadKey("not an event key")
    app_id, at = _read_part(key, 1)
    if len(key) < at + 8:
        raise BadKey("not an event key")
    event_id, end = _read_part(key, at + 8)
    if end != len(key):
        raise BadKey("not an event key")
    return app_id, time_of(key[at:at + 8]), event_id


def id_key(app_id: str, event_id: str) -> bytes:
    return b"I" + part(app_id, "app id") + part(event_id, "event id")


def deliveries_prefix(app_id: str, event_id: str) -> bytes:
    return b"D" + part(app_id, "app id") + part(event_id, "event id")


def delivery_key(app_id: str, event_id: str, webhook_id: str) -> bytes:
    return deliveries_prefix(app_id, event_id) + part(webhook_id, "webhook id")


def attempts_prefix(app_id: str, event_id: str, webhook_id: str) -> bytes:
    return (b"A" + part(app_id, "app id") + part(event_id, "event id")
            + part(webhook_id, "webhook id"))


def attempt_key(app_id: str, event_id: str, webhook_id: str, attempt: int, seq: int) -> bytes:
    """`seq` orders records of one attempt number (its deferrals, then the attempt)."""
    if not (0 <= attempt < 1 << 32 and 0 <= seq < 1 << 32):
        raise BadKey("attempt and seq must fit in 4 bytes")
    return attempts_prefix(app_id, event_id, webhook_id) + struct.pack(">II", attempt, seq)


def time_key(ms: int, key: bytes) -> bytes:
    """The sweep's index: oldest first (not inverted)."""
    return b"T" + struct.pack(">Q", ms + _SHIFT) + key


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with `prefix`."""
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        raise BadKey("no key follows an all-0xFF prefix")
    end[-1] += 1
    return bytes(end)


def partition_of(app_id: str, partitions: int) -> int:
    """The partition murmur2 puts the key `app_id` in, as Java's and aiokafka's
    default partitioners do (ingest's, the router's): the partition (of the table
    too) that owns it. Not librdkafka's default (CRC32), sarama's (FNV-1a) or
    kafka-go's (round-robin): events a producer writes directly with one of
    those land elsewhere, so the event log must re-key what it reads from
    `events` by this function, not trust the partition (docs/design/event-log.md)."""
    return (murmur2(app_id.encode()) & 0x7FFFFFFF) % partitions


def cursor_of(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def key_of_cursor(cursor: str, prefix: bytes) -> bytes:
    """The key a cursor stands for, if it is one under `prefix` (the app and
    kind being listed) and whole (an event key splits); else BadKey, which the
    API answers with a 400."""
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise BadKey("not a cursor this API gave") from None
    if not key.startswith(prefix) or len(key) == len(prefix):
        raise BadKey("not a cursor this API gave")
    if key[:1] == b"E":
        try:
            split_event_key(key)
        except BadKey:
            raise BadKey("not a cursor this API gave") from None
    return key


# -- the rest of the table (services/eventlog/fold.py) -------------------------
#     A | app | event | webhook | at(8) | src(12)   an attempt row of one delivery:
#                                                  its H key (oldest first)
#     H | app | webhook | inv_at(8) | inv_src(12)   a webhook's attempts, newest first:
#                                                  the attempt record
#     F | app | inv_time | event                    events with a delivery retrying or dead
#     O | app | event | webhook | src(12)           an attempt filed before its event was
#                                                  routed (adopted when it is)
#     W | app | webhook                             a webhook's last results and streak
#     M | app | webhook | minute(8)                 per-minute counters (the last hour)
#     S | app | webhook | hour(8)                   per-hour counters (day and week)
#     J | app | webhook | job                       replay jobs
# `src` is the `attempts` record's partition (4) and offset (8): an attempt's
# identity, so filing one twice writes the same keys.

def _src(partition: int, offset: int) -> bytes:
    if not (0 <= partition < 1 << 31 and 0 <= offset < 1 << 63):
        raise BadKey("partition or offset out of range")
    return struct.pack(">IQ", partition, offset)


def _ascending(ms: int) -> bytes:
    if not -_SHIFT <= ms < _SHIFT:
        raise BadKey(f"time out of range: {ms} ms")
    return struct.pack(">Q", ms + _SHIFT)


def attempt_row_key(app_id: str, event_id: str, webhook_id: str, at_ms: int,
                    partition: int, offset: int) -> bytes:
    return (attempts_prefix(app_id, event_id, webhook_id) + _ascending(at_ms)
            + _src(partition, offset))


def event_attempts_prefix(app_id: str, event_id: str) -> bytes:
    return b"A" + part(app_id, "app id") + part(event_id, "event id")


def history_prefix(app_id: str, webhook_id: str) -> bytes:
    return b"H" + part(app_id, "app id") + part(webhook_id, "webhook id")


def history_key(app_id: str, webhook_id: str, at_ms: int, partition: int, offset: int) -> bytes:
    """Newest first: records of one millisecond (an attempt and its dead letter)
    by offset, latest first (a webhook's records share one `attempts` partition)."""
    _src(partition, offset)  # checks the ranges
    return history_prefix(app_id, webhook_id) + inverted(at_ms) + struct.pack(
        ">IQ", (1 << 31) - 1 - partition, (1 << 63) - 1 - offset)


def failed_prefix(app_id: str) -> bytes:
    return b"F" + part(app_id, "app id")


def failed_key(app_id: str, created_ms: int, event_id: str) -> bytes:
    return failed_prefix(app_id) + inverted(created_ms) + part(event_id, "event id")


def event_key_of_failed(key: bytes) -> bytes:
    """The E key a F key stands for (same layout after the tag)."""
    if key[:1] != b"F":
        raise BadKey("not a failed-event key")
    return b"E" + key[1:]


def orphans_prefix(app_id: str, event_id: str) -> bytes:
    return b"O" + part(app_id, "app id") + part(event_id, "event id")


def orphan_key(app_id: str, event_id: str, webhook_id: str, partition: int,
               offset: int) -> bytes:
    return orphans_prefix(app_id, event_id) + part(webhook_id, "webhook id") + _src(
        partition, offset)


def webhook_key(app_id: str, webhook_id: str) -> bytes:
    return b"W" + part(app_id, "app id") + part(webhook_id, "webhook id")


def minute_key(app_id: str, webhook_id: str, minute: int) -> bytes:
    return b"M" + part(app_id, "app id") + part(webhook_id, "webhook id") + _ascending(minute)


def hour_key(app_id: str, webhook_id: str, hour: int) -> bytes:
    return b"S" + part(app_id, "app id") + part(webhook_id, "webhook id") + _ascending(hour)


def jobs_prefix(app_id: str, webhook_id: str) -> bytes:
    return b"J" + part(app_id, "app id") + part(webhook_id, "webhook id")


def job_key(app_id: str, webhook_id: str, job_id: str) -> bytes:
    return jobs_prefix(app_id, webhook_id) + part(job_id, "job id")


TIME_PREFIX = b"T"


def time_of_time_key(key: bytes) -> int:
    if key[:1] != b"T" or len(key) < 9:
        raise BadKey("not a time key")
    return struct.unpack(">Q", key[1:9])[0] - _SHIFT


def key_of_time_key(key: bytes) -> bytes:
    return key[9:]
