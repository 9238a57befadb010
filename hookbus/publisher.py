"""`KafkaPublisher`: events written straight to the `events` topic (contract
§3: "producers may write it directly"), exactly as ingest writes them, so that
the router cannot tell them apart:

- topic `<prefix>events`; key the app id (UTF-8); aiokafka's default
  partitioner (murmur2 of the key, as Java's), so an app's events share a
  partition with its API-published ones; no headers;
- value the `schemas.events.Event` envelope as msgspec's JSON (named fields:
  id, type, app_id, created_at, data), with an `evt_` id of 128 random bits and
  `created_at` now at millisecond precision when not given;
- an idempotent producer with acks=all: `publish` returns once Kafka has
  acknowledged the record, as ingest's 202 means.

Events are checked as ingest checks them (services.ingest.validation): an
unknown or reserved type, an id too long or holding '.', an envelope over
ingest's 256 KiB, raise ValueError here
rather than land in `events.dlq`. There is no `Idempotency-Key` on this path:
give each event its `id` to make a repeat the same event (same `webhook-id`).

    async with KafkaPublisher("127.0.0.1:9092") as publisher:
        event = await publisher.publish("app_1", "message.received", {"text": "hi"})"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from schemas.api import EventIn
from schemas.events import Event
from services.common.ids import new_id
from services.common.topics import Topics
from services.ingest.validation import event_problems

_encoder = msgspec.json.Encoder()
# The largest envelope written, as ingest's largest request body (its 413).
MAX_EVENT_BYTES = 256 * 1024


def envelope(app_id: str, type: str, data: Mapping[str, Any] | None = None, *,
             id: str | None = None, created_at: datetime | None = None) -> Event:
    """The envelope ingest would write for this event; ValueError if it would refuse it."""
    if not app_id:
        raise ValueError("app_id: must not be empty")
    body = EventIn(type=type, data=dict(data or {}), id=id, created_at=created_at)
    problems = event_problems(body, app_id)
    if problems:
        raise ValueError("; ".join(f"{p.field}: {p.reason}" for p in problems))
    if created_at is not None and created_at.tzinfo is None:
        raise ValueError("created_at: must carry a time zone")
    event = Event(id=id or new_id("evt"), type=type, app_id=app_id,
                  created_at=created_at or _now(), data=body.data)
    if (size := len(_encoder.encode(event))) > MAX_EVENT_BYTES:
        raise ValueError(f"the event is {size} bytes, over the {MAX_EVENT_BYTES} ingest takes")
    return event


def record(event: Event) -> tuple[bytes, bytes]:
    """The record's key and value."""
    return event.app_id.encode(), _encoder.encode(event)


def _now() -> datetime:
    at = datetime.now(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


class KafkaPublisher:
    """`bootstrap` and `topic_prefix` as the services' HOOKBUS_KAFKA_BOOTSTRAP and
    HOOKBUS_TOPIC_PREFIX; `**kafka_options` go to `AIOKafkaProducer` (SASL, TLS:
    a producer's principal may write `events` only, contract §9)."""

    def __init__(self, bootstrap: str = "127.0.0.1:9092", *, topic_prefix: str = "hookbus.",
                 **kafka_options: Any) -> None:
        self.topic = Topics(topic_prefix).events
        self._options = {"bootstrap_servers": bootstrap, **kafka_options,
                         "acks": "all", "enable_idempotence": True}
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(**{"linger_ms": 2, **self._options})
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def __aenter__(self) -> KafkaPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def publish(self, app_id: str, type: str, data: Mapping[str, Any] | None = None, *,
                      id: str | None = None, created_at: datetime | None = None) -> Event:
        """Write one event and wait for Kafka's acknowledgement; the envelope written."""
        return (await self.publish_events([envelope(app_id, type, data, id=id,
                                                    created_at=created_at)]))[0]

    async def publish_events(self, events: Sequence[Event]) -> list[Event]:
        """Write envelopes (made by `envelope`) and wait until Kafka acknowledged
        every one; raises the first failure (those before it may be written)."""
        if self._producer is None:
            raise RuntimeError("KafkaPublisher is not started (use `async with`)")
        sent = []
        for event in events:
            key, value = record(event)
            sent.append(await self._producer.send(self.topic, value, key=key))
        for future in sent:
            await future
        return list(events)
