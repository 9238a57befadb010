"""Bodies of the event log's routes (contract §6, issue 11): produced by the
event log service (services/eventlog), relayed by ingest, described in its
OpenAPI. Request bodies forbid unknown fields."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from schemas.attempts import Attempt

DeliveryStatus = Literal["pending", "delivered", "retrying", "dead", "dropped"]
# `failed`: any delivery retrying or dead.
StatusFilter = Literal["pending", "delivered", "retrying", "dead", "dropped", "failed"]
ReplayState = Literal["running", "done", "failed"]


class DeliveryCounts(msgspec.Struct, kw_only=True):
    """An event's deliveries (one per matching webhook) by status."""

    pending: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    dropped: int = 0


class EventSummary(msgspec.Struct, kw_only=True):
    id: str
    type: str
    created_at: datetime
    deliveries: DeliveryCounts


class EventPage(msgspec.Struct, kw_only=True):
    events: list[EventSummary]
    # Pass as `cursor` for the next page; null at the end. A page may hold fewer
    # than `limit` events (filters are applied to a bounded scan) and still have
    # a next one.
    next: str | None = None


class WebhookDelivery(msgspec.Struct, kw_only=True):
    webhook_id: str
    status: DeliveryStatus
    # Oldest first: every attempt, deferral, drop and dead letter, resends and
    # replays included (`origin` says which series a row belongs to).
    attempts: list[Attempt]


class EventDetail(msgspec.Struct, kw_only=True):
    # The envelope as delivered (contract §4).
    event: msgspec.Raw
    deliveries: list[WebhookDelivery]


class ResendRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # One of the event's webhooks; all of them when absent.
    webhook_id: str | None = None


class Resent(msgspec.Struct, kw_only=True):
    event_id: str
    webhook_ids: list[str]


class Window(msgspec.Struct, kw_only=True):
    delivered: int = 0
    failed: int = 0       # attempts that failed (retried or not)
    dead: int = 0         # deliveries that went to the dead letters
    # delivered / (delivered + failed); null without attempts.
    success_rate: float | None = None


class Latency(msgspec.Struct, kw_only=True):
    # Over the attempts of the last day that got an answer; null without any.
    p50_ms: float | None = None
    p95_ms: float | None = None


class Breaker(msgspec.Struct, kw_only=True):
    # As the deliverer last reported it: `open` while it defers attempts to a
    # failing endpoint (until `until`), else `closed`.
    state: Literal["closed", "open"] = "closed"
    until: datetime | None = None


class WebhookStats(msgspec.Struct, kw_only=True):
    webhook_id: str
    hour: Window
    day: Window
    week: Window
    latency: Latency
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_failure: str | None = None
    # Consecutive failed attempts since the last success.
    failure_streak: int = 0
    # Deliveries of this webhook in the dead letters, not replayed or resent since.
    dead_letters: int = 0
    breaker: Breaker


class ReplayJob(msgspec.Struct, kw_only=True):
    id: str
    webhook_id: str
    state: ReplayState
    since: datetime | None = None
    until: datetime | None = None
    created_at: datetime
    finished_at: datetime | None = None
    # Dead letters read so far, of `total` to read (the webhook's partition of
    # `deliveries.dlq` from `since` to its end when the job began).
    scanned: int = 0
    total: int = 0
    replayed: int = 0
    error: str | None = None
