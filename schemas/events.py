"""Records of the `events` topic (contract §4) and of its dead-letter topic."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

# An event id's length at most, in characters: it is every delivery's `webhook-id`
# header (ingest refuses longer ids; the router dead-letters them).
MAX_EVENT_ID = 128


class Event(msgspec.Struct, kw_only=True):
    """The envelope as ingest writes it and as every webhook receives it."""

    id: str
    type: str
    app_id: str
    created_at: datetime
    data: dict[str, Any] = {}


class EventRecord(msgspec.Struct, kw_only=True):
    """An `events` record as any producer may write it: `id` and `created_at`
    are optional, so the router fills them in (deterministically)."""

    type: str
    app_id: str
    data: dict[str, Any] = {}
    id: str | None = None
    created_at: datetime | None = None


class EventDeadLetter(msgspec.Struct, kw_only=True):
    """An `events.dlq` record: the bytes that could not be routed, and why."""

    reason: str
    topic: str
    partition: int
    offset: int
    value: bytes
    failed_at: datetime
    # The size of the record's whole value: `value` holds only its start when
    # the whole would not fit `events.dlq` (then `value_truncated`; the record
    # itself stays in `topic` at `partition` and `offset` for its retention).
    value_size: int | None = None
    value_truncated: bool = False
    # The size of the record's key (None: a null key). The letter's own key is
    # the record's, but for a key too large to leave room for the letter: then
    # only its start (`key_truncated`).
    key_size: int | None = None
    key_truncated: bool = False
