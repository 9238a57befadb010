"""Composite keys of the event-log table: bytes whose byte order is the order we list in.

    E | len16(app) | app | inv_ms(8, big-endian) | event_id   -> event entry (newest first)
    I | len16(app) | app | event_id                          -> inv_ms (find an event by id)
    T | ms(8, big-endian) | <E or I key>                     -> b"" (time index for the sweep)

The 2-byte length prefix makes `E|len|app` a prefix of exactly one app's keys (no
app id is a prefix of another's encoded form, whatever bytes ids hold). The
inverted timestamp makes a forward RocksDB scan go newest -> oldest.
Faust stores its own `__faust\\0offset__` key in each partition's DB: every tag
here is one upper-case byte, so the scans never meet it.
"""

from __future__ import annotations

import struct

from aiokafka.partitioner import murmur2

MAX_MS = (1 << 63) - 1


def _app(app_id: str) -> bytes:
    raw = app_id.encode()
    return struct.pack(">H", len(raw)) + raw


def event_prefix(app_id: str) -> bytes:
    return b"E" + _app(app_id)


def event_key(app_id: str, created_ms: int, event_id: str) -> bytes:
    return event_prefix(app_id) + struct.pack(">Q", MAX_MS - created_ms) + event_id.encode()


def split_event_key(key: bytes) -> tuple[int, str]:
    n = struct.unpack(">H", key[1:3])[0]
    inv = struct.unpack(">Q", key[3 + n:11 + n])[0]
    return MAX_MS - inv, key[11 + n:].decode()


def id_key(app_id: str, event_id: str) -> bytes:
    return b"I" + _app(app_id) + event_id.encode()


def time_key(ms: int, key: bytes) -> bytes:
    return b"T" + struct.pack(">Q", ms) + key


def partition_of(app_id: str, partitions: int) -> int:
    """What aiokafka's DefaultPartitioner (Java's murmur2) gives the record key app_id."""
    return (murmur2(app_id.encode()) & 0x7FFFFFFF) % partitions


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with prefix."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    p[-1] += 1
    return bytes(p)
