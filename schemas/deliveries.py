"""Records of `deliveries`, its retry tiers and `deliveries.dlq`: one task per
(event, matching webhook). The webhook itself is looked up at every attempt, so
a change to it applies to tasks already queued.

Evolution rules: new fields get defaults; a field's type never changes; unknown
fields are skipped when decoding."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec


class DeliveryTask(msgspec.Struct, kw_only=True, omit_defaults=True):
    webhook_id: str
    app_id: str
    event_id: str
    event_type: str
    event_created_at: datetime
    # The envelope exactly as it is delivered and signed.
    body: msgspec.Raw
    # The number the next real attempt carries: a deferral (breaker, full
    # queue, unknown webhook) keeps it. Below 1 the record is no task.
    attempt: Annotated[int, msgspec.Meta(ge=1)] = 1
    # Whether a real HTTP attempt was made.
    tried: bool = False
    # On a retry tier: when this record comes due, always the tier's delay after
    # it was written, so each tier partition comes due in offset order.
    due_at: float | None = None
    # Unix time before which the task is not attempted, when later than
    # `due_at`: a wait longer than one tier is made of hops through the tiers.
    not_before: float | None = None
    # Set once, when the deliverer first handles the task: that time plus the
    # schedule's total. Until then a circuit breaker may defer it; after it, a
    # task deferred for a full queue is dead-lettered.
    deadline: float | None = None
    # When the deliverer first found the task's webhook unknown to its view.
    unknown_since: float | None = None
    last_error: str | None = None
    # Which series of deliveries the task starts or continues: "" when the
    # router wrote it, "test" (POST …/test), "replay:<job id>" or "resend:<id>"
    # (the event log writes those). Retries and dead letters keep it; every
    # attempt record carries it.
    origin: str = ""


delivery_task_decoder = msgspec.json.Decoder(DeliveryTask)
