"""Records of the `attempts` topic: one per delivery attempt, and one per
deferral (`deferred`, with its reason in `error`), keyed by webhook id."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

AttemptResult = Literal["success", "failure", "gone", "refused", "deferred"]


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


attempt_decoder = msgspec.json.Decoder(Attempt)
