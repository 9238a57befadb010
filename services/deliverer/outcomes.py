"""What one attempt came to, as data (contract §7). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class Delivered:
    status: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The attempt did not succeed; `status` is None when no response came.
    `retry_after` is the receiver's own wish (429/503 `Retry-After`), in seconds."""

    error: str
    status: int | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Gone:
    """410: the receiver asks never to be called again."""

    error: str


@dataclass(frozen=True, slots=True)
class Refused:
    """Policy forbade the attempt (e.g. the target resolves to a private address)."""

    error: str


Outcome = Delivered | Failed | Gone | Refused


@dataclass(frozen=True, slots=True)
class Report:
    """An attempt as the attempts log shows it: its outcome, how long it took,
    the status code and the first KiB of the response, when there was one."""

    outcome: Outcome
    latency: float
    status_code: int | None = None
    excerpt: str | None = None


def of_response(status: int, reason: str, retry_after: str | None, now: datetime) -> Outcome:
    """Success is a 2xx; anything else, 3xx included, is a failure."""
    if 200 <= status < 300:
        return Delivered(status)
    error = f"HTTP {status}{' ' + reason if reason else ''}"
    if status == 410:
        return Gone(error)
    wait = parse_retry_after(retry_after, now) if status in (429, 503) else None
    return Failed(error, status, wait)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # `isdigit` alone takes '²', which float refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
