"""`Idempotency-Key` on publish: the same key from the same app within the TTL
answers the same event id and writes nothing more. Pure (the caller passes the
time).

The id is also derived from (app, key), so a retry that reaches another ingest
instance, or this one after a restart, still carries the same event id — the
receivers' deduplication key — even though this memory is per instance."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

DEFAULT_TTL = 24 * 3600.0
MAX_KEY_LENGTH = 255


def event_id_for(app_id: str, key: str) -> str:
    digest = hashlib.sha256(f"{app_id}\0{key}".encode()).hexdigest()[:32]
    return f"evt_{digest}"


class IdempotencyKeys:
    def __init__(self, ttl: float = DEFAULT_TTL, max_entries: int = 1_000_000) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        # (app id, key) -> (event id, expiry), oldest first.
        self._seen: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, app_id: str, key: str, now: float) -> str | None:
        """The event id already published under `key`, if within the TTL."""
        self._expire(now)
        entry = self._seen.get((app_id, key))
        return None if entry is None else entry[0]

    def remember(self, app_id: str, key: str, event_id: str, now: float) -> None:
        self._seen[(app_id, key)] = (event_id, now + self._ttl)
        self._seen.move_to_end((app_id, key))
        while len(self._seen) > self._max_entries:
            self._seen.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._seen:
            _, (_, expiry) = next(iter(self._seen.items()))
            if expiry > now:
                return
            self._seen.popitem(last=False)
