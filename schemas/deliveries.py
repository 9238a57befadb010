"""Records of `deliveries`, its retry tiers and `deliveries.dlq`: one task per
(event, matching webhook). The webhook itself is looked up at every attempt, so
a change to it applies to tasks already queued."""

from __future__ import annotations

from datetime import datetime

import msgspec


class DeliveryTask(msgspec.Struct, kw_only=True, omit_defaults=True):
    webhook_id: str
    app_id: str
    event_id: str
    event_type: str
    event_created_at: datetime
    # The envelope exactly as it is delivered and signed.
    body: msgspec.Raw
    attempt: int = 1
    # Whether a real HTTP attempt was made: until then an open circuit breaker
    # defers the task without using up its attempts.
    tried: bool = False
    # Set on the retry tiers: Unix time before which the task is not attempted.
    due_at: float | None = None
    last_error: str | None = None


delivery_task_decoder = msgspec.json.Decoder(DeliveryTask)
