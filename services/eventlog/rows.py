"""Values of the event log's table (keys: services/eventlog/keys.py), msgpack
arrays: small, and new fields only at the end with defaults."""

from __future__ import annotations

from datetime import datetime

import msgspec

from schemas.eventlog_api import DeliveryCounts

# Latency histogram bounds in ms (the last bucket is everything above).
LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 15000, 30000)


class EventRow(msgspec.Struct, array_like=True):
    """An E value: where the envelope is (never the envelope), and its
    deliveries by status."""

    source: str          # "events" or "deliveries" (a test event's task)
    partition: int
    offset: int
    type: str
    created_at: datetime
    filed_ms: int        # when the log learned of it: its retention runs from here
    pending: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    dropped: int = 0

    def counts(self) -> DeliveryCounts:
        return DeliveryCounts(pending=self.pending, delivered=self.delivered,
                              retrying=self.retrying, dead=self.dead, dropped=self.dropped)

    def add(self, status: str, n: int) -> None:
        setattr(self, status, max(0, getattr(self, status) + n))

    @property
    def failed(self) -> bool:
        return self.retrying > 0 or self.dead > 0


class DeliveryRow(msgspec.Struct, array_like=True):
    """A D value: one event's delivery to one webhook."""

    status: str = "pending"
    last_ms: int = -(1 << 62)  # the time of the record that set `status`
    origin: str = ""           # the series (routed, test, resend:…, replay:…)
    tried: bool = False        # a real attempt was made in this series


class WebhookRow(msgspec.Struct, array_like=True):
    """A W value."""

    last_success_ms: int | None = None
    last_failure_ms: int | None = None
    last_failure: str | None = None
    streak: int = 0            # failed attempts since the last success
    dead_letters: int = 0      # deliveries now dead (not replayed or resent since)
    breaker_until_ms: int | None = None
    touched_ms: int = 0        # when it last changed (the sweep renews or deletes it)


class Bucket(msgspec.Struct, array_like=True):
    """An M (minute) or S (hour) value."""

    delivered: int = 0
    failed: int = 0
    dead: int = 0
    latency: list[int] = msgspec.field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))


encode = msgspec.msgpack.Encoder().encode
event_row = msgspec.msgpack.Decoder(EventRow).decode
delivery_row = msgspec.msgpack.Decoder(DeliveryRow).decode
webhook_row = msgspec.msgpack.Decoder(WebhookRow).decode
bucket = msgspec.msgpack.Decoder(Bucket).decode
