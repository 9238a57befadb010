"""What happens after an attempt that did not deliver: retry on which tier and
when, or give up. Pure; the schedule is contract §2's `HOOKBUS_RETRY_SCHEDULE`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Retry:
    attempt: int      # the number the next attempt will carry
    tier: float       # the delay naming the retry topic to write to
    due_at: float     # Unix time before which it is not attempted


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


def next_step(
    schedule: Sequence[float], attempt: int, now: float, *,
    retry_after: float | None = None, consumes_attempt: bool = True,
) -> Retry | GiveUp:
    """After attempt number `attempt` (1-based) failed at `now`.

    The wait is the schedule's next delay, or the receiver's `Retry-After` if
    longer, capped at the schedule's longest delay; the task goes to the
    shortest tier at least as long as the wait, so each tier's records come
    due in about the order they were written. A deferral that consumes no
    attempt waits the shortest delay and keeps its number."""
    if not schedule:
        return GiveUp("no retries configured")
    tiers = sorted(set(schedule))
    if not consumes_attempt:
        return Retry(attempt, tiers[0], now + tiers[0])
    if attempt > len(schedule):
        return GiveUp(f"gave up after {attempt} attempts")
    wait = schedule[attempt - 1]
    if retry_after is not None:
        wait = min(max(wait, retry_after), tiers[-1])
    tier = next(t for t in tiers if t >= wait)
    return Retry(attempt + 1, tier, now + wait)
