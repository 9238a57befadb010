"""Records of the `attempts` topic: one per delivery attempt, one per deferral
(`deferred`, with its reason in `error`), one per task dropped unsent because
its webhook was deleted or disabled (`dropped`), and one per task that went to
the dead letters (`dead`, the dead letter's reason in `error`: after the last
failed attempt, or with no attempt at all for a forged task, an unknown
webhook, a full queue or unopenable secrets at the deadline), keyed by webhook id.

Evolution rules: new fields get defaults; a field's type never changes. A reader
older than a result value skips that record (it does not decode)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

AttemptResult = Literal["success", "failure", "gone", "refused", "deferred", "dropped", "dead"]


class Attempt(msgspec.Struct, kw_only=True, omit_defaults=True):
    webhook_id: str
    event_id: str
    event_type: str
    # For a deferral: the number the next real attempt will carry.
    attempt: int
    at: datetime
    result: AttemptResult
    latency_ms: float = 0.0
    status_code: int | None = None
    # The failure, or why the attempt was deferred.
    error: str | None = None
    # At most 1 KiB of the response body.
    response: str | None = None
    # For a deferral: when the task is tried again, at the earliest.
    retry_at: datetime | None = None
    # The task's app and its event's time (empty / None in records written before
    # they were added): what the event log (issue 11) files an attempt under.
    app_id: str = ""
    event_created_at: datetime | None = None
    # The series the task belongs to, copied from it: "" (routed), "test",
    # "replay:<job id>", "resend:<id>" (DeliveryTask.origin).
    origin: str = ""


attempt_decoder = msgspec.json.Decoder(Attempt)
