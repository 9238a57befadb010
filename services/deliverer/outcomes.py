"""What one attempt came to, as data (contract §7). Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delivered:
    status: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The attempt did not succeed; `status` is None when no response came."""

    error: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Policy forbade the attempt (e.g. the target resolves to a private address)."""

    error: str


Outcome = Delivered | Failed | Refused


def of_status(status: int, reason: str = "") -> Outcome:
    """Success is a 2xx; anything else, 3xx included, is a failure."""
    if 200 <= status < 300:
        return Delivered(status)
    return Failed(f"HTTP {status}{' ' + reason if reason else ''}", status)
