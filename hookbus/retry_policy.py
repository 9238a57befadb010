"""When the SDK retries a call, and after how long. Pure.

A 429 or a 503 is retried (ingest answers 503 while Kafka or the event log is
unavailable, with nothing written): up to `attempts` tries in all, waiting
`base * factor ** n` seconds (n from 0), capped at `cap`, each with "full
jitter" (a uniform fraction of it, so that many producers retrying at once
spread out). A `Retry-After` header (seconds or an HTTP date) is honoured
instead, up to `max_retry_after`. Every retry sends the same request again,
its `Idempotency-Key` included, so that a retried publish is one event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRIED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Backoff:
    attempts: int = 5            # tries in all, the first included
    base: float = 0.5            # seconds before the first retry (before jitter)
    factor: float = 2.0
    cap: float = 8.0             # longest computed wait
    max_retry_after: float = 60.0  # longest wait a Retry-After header may ask for

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base < 0 or self.cap < 0 or self.factor < 1 or self.max_retry_after < 0:
            raise ValueError("base, cap and max_retry_after must be >= 0, factor >= 1")

    def should_retry(self, status: int, attempt: int) -> bool:
        """Whether a call answered `status` at try `attempt` (from 1) is tried again."""
        return status in RETRIED_STATUSES and attempt < self.attempts

    def delay(self, attempt: int, retry_after: str | None = None, *,
              jitter: float = 1.0, now: datetime | None = None) -> float:
        """Seconds to wait after try `attempt` (from 1) failed. `jitter` is a
        uniform draw in [0, 1] (1: none); a valid `Retry-After` wins over it."""
        asked = retry_after_seconds(retry_after, now) if retry_after is not None else None
        if asked is not None:
            return min(asked, self.max_retry_after)
        computed = min(self.cap, self.base * self.factor ** (attempt - 1))
        return computed * min(max(jitter, 0.0), 1.0)

    def schedule(self) -> list[float]:
        """The waits between tries without jitter or Retry-After (for docs and tests)."""
        return [self.delay(n) for n in range(1, self.attempts)]


def retry_after_seconds(value: str, now: datetime | None = None) -> float | None:
    """A `Retry-After` value in seconds from `now` (never negative), or None
    when it is neither a number of seconds nor an HTTP date."""
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, (at - (now or datetime.now(UTC))).total_seconds())
