"""When a task that was not delivered is tried again, and through which retry
tier it waits; or that it is given up. Pure; the schedule is contract §2's
`HOOKBUS_RETRY_SCHEDULE`, and there is one retry topic per distinct delay.

A record written to a tier is always due exactly the tier's delay after it is
written, so each tier partition comes due in offset order and pausing on its
head never holds back a record that is due earlier. A wait that is not one
tier's delay is made of hops: the task goes to the longest tier not longer than
the wait, with `not_before` set to the end of the wait; when it comes out before
then, it hops again (without using up an attempt). A remainder shorter than the
shortest tier rounds up to it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# A remainder this small is no reason for another hop (clocks, float sums).
_SLACK = 0.001


@dataclass(frozen=True, slots=True)
class Retry:
    attempt: int                      # the number the next real attempt carries
    tier: float                       # the delay naming the retry topic to write to
    due_at: float                     # when the tier record comes due: now + tier
    not_before: float | None = None   # the end of the wait, when later than due_at


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


def tiers_of(schedule: Sequence[float]) -> tuple[float, ...]:
    """The retry tiers: the schedule's distinct delays, shortest first."""
    return tuple(sorted(set(schedule)))


def hop(schedule: Sequence[float], attempt: int, now: float, wait: float) -> Retry | GiveUp:
    """The first hop of a wait of `wait` seconds from `now`; `attempt` is the
    number the task will carry."""
    tiers = tiers_of(schedule)
    if not tiers:
        return GiveUp("no retries configured")
    fitting = [t for t in tiers if t <= wait + _SLACK]
    tier = fitting[-1] if fitting else tiers[0]
    due_at = now + tier
    end = now + wait
    return Retry(attempt, tier, due_at, end if end > due_at + _SLACK else None)


def next_step(
    schedule: Sequence[float], attempt: int, now: float, *, retry_after: float | None = None,
) -> Retry | GiveUp:
    """After attempt number `attempt` (1-based) failed at `now`: the wait is the
    schedule's next delay, or the receiver's `Retry-After` if longer, capped at
    the schedule's longest delay."""
    if not schedule:
        return GiveUp("no retries configured")
    if not 1 <= attempt <= len(schedule):
        return GiveUp(f"gave up after {attempt} attempts")
    wait = schedule[attempt - 1]
    if retry_after is not None:
        wait = min(max(wait, retry_after), max(schedule))
    return hop(schedule, attempt + 1, now, wait)


def deferral(schedule: Sequence[float], attempt: int, now: float, wait: float) -> Retry | GiveUp:
    """A task that was not attempted waits `wait` seconds (at least the shortest
    tier) and keeps its attempt number."""
    return hop(schedule, attempt, now, max(0.0, wait))
