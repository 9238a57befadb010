"""Records of the `attempts` topic: one per delivery attempt, keyed by webhook id."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

AttemptResult = Literal["success", "failure", "gone", "refused"]


class Attempt(msgspec.Struct, kw_only=True, omit_defaults=True):
    webhook_id: str
    event_id: str
    event_type: str
    attempt: int
    at: datetime
    result: AttemptResult
    latency_ms: float = 0.0
    status_code: int | None = None
    error: str | None = None
    # At most 1 KiB of the response body.
    response: str | None = None


attempt_decoder = msgspec.json.Decoder(Attempt)
