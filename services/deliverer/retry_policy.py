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
    schedule: Sequence[float], attempt: int, now: float, *, retry_after: float | None = None,
) -> Retry | GiveUp:
    """After attempt number `attempt` (1-based) failed at `now`.

    The wait is the schedule's next delay, or the receiver's `Retry-After` if
    longer, capped at the schedule's longest delay; the task goes to the
    shortest tier at least as long as the wait, so each tier's records come
    due in about the order they were written."""
    if not schedule:
        return GiveUp("no retries configured")
    tiers = sorted(set(schedule))
    if attempt > len(schedule):
        return GiveUp(f"gave up after {attempt} attempts")
    wait = schedule[attempt - 1]
    if retry_after is not None:
        wait = min(max(wait, retry_after), tiers[-1])
    tier = next(t for t in tiers if t >= wait)
    return Retry(attempt + 1, tier, now + wait)


def deferral(schedule: Sequence[float], attempt: int, now: float, wait: float) -> Retry | GiveUp:
    """A task that was not attempted: it keeps its attempt number and waits at
    least the shortest delay, or `wait` (capped at the longest)."""
    if not schedule:
        return GiveUp("no retries configured")
    tiers = sorted(set(schedule))
    wait = min(max(wait, tiers[0]), tiers[-1])
    return Retry(attempt, next(t for t in tiers if t >= wait), now + wait)
