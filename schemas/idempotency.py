"""Records of the `idempotency` topic: what a request with an `Idempotency-Key`
wrote, keyed by a digest of (app, key), so that every ingest replica answers a
retry the same way (compacted, and deleted after twice the TTL)."""

from __future__ import annotations

from datetime import datetime

import msgspec


class IdempotencyRecord(msgspec.Struct, kw_only=True):
    """Written after the events it names are acknowledged (a batch: committed)."""

    # The id answered for a single event; a batch's first id.
    event_id: str
    # The key's TTL ends here (first use + HOOKBUS_IDEMPOTENCY_TTL).
    expires_at: datetime
    # floor(first use / TTL): the window the derived ids were made in.
    window: int = 0
    # How many events the request held (1 for a single event).
    count: int = 1


idempotency_decoder = msgspec.json.Decoder(IdempotencyRecord)
