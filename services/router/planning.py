"""What the router does with one `events` record, without doing it: either the
delivery tasks to write, or the reason the record goes to `events.dlq`. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from schemas.deliveries import DeliveryTask
from schemas.events import Event, EventRecord
from services.common.triggers import CANONICAL_TYPES, RESERVED_TYPES
from services.router.matching import SubscriptionIndex

_record_decoder = msgspec.json.Decoder(EventRecord)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Routed:
    event: Event
    # (webhook id, encoded DeliveryTask), one per matching webhook.
    tasks: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Unroutable:
    reason: str


def plan(
    value: bytes | None, *, partition: int, offset: int, timestamp_ms: int,
    index: SubscriptionIndex,
) -> Routed | Unroutable:
    if value is None:
        return Unroutable("empty record")
    try:
        record = _record_decoder.decode(value)
    except msgspec.DecodeError as exc:
        return Unroutable(f"not an event envelope: {exc}")
    if record.type not in CANONICAL_TYPES:
        return Unroutable(f"unknown event type {record.type!r}")
    if record.type in RESERVED_TYPES:
        return Unroutable(f"{record.type} may not be published")
    event = Event(
        # Derived, not random, so that routing the same record again after a
        # crash yields the same id (the receivers' deduplication key).
        id=record.id or "evt_" + hashlib.sha256(b"%d:%d:%s" % (partition, offset, value)).hexdigest()[:32],
        type=record.type,
        app_id=record.app_id,
        created_at=record.created_at or datetime.fromtimestamp(timestamp_ms / 1000, UTC),
        data=record.data,
    )
    webhook_ids = index.match(event.app_id, event.type)
    if not webhook_ids:
        return Routed(event, [])
    body = msgspec.Raw(_encoder.encode(event))
    tasks = [
        (webhook_id, _encoder.encode(DeliveryTask(
            webhook_id=webhook_id, app_id=event.app_id, event_id=event.id,
            event_type=event.type, event_created_at=event.created_at, body=body,
        )))
        for webhook_id in sorted(webhook_ids)
    ]
    return Routed(event, tasks)
