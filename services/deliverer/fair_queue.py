"""Fair shares of the deliverer's attempt slots (contract §7). Pure: the caller
passes the time and does the I/O.

Attempt slots are the scarce thing, not tasks. At most `in_flight` attempts run
at once, at most `in_flight_per_target` to one endpoint URL and at most
`in_flight_per_app` for one app. Tasks beyond that wait here, in a FIFO queue
per (app, endpoint), holding no slot. A free slot goes round-robin over the apps
that have a runnable task (one whose endpoint and app are under their caps), and
within an app round-robin over its endpoints; so an app whose endpoints are slow
holds at most its own share of slots, and every other app's tasks keep starting.

The queues are bounded: `queued_per_target` per (app, endpoint), `queued_per_app`
per app and `queued` in all, sized so that a burst of thousands of events to one
healthy endpoint waits here whole. A task that finds its queue full is
deferred (`Defer`): the caller moves it to the retry tiers for about as long as
it would have waited (by the age of its queue's oldest task and the endpoint's
pace), without using up an attempt, and reads on, so no app's queue ever stops
the fetch for the others. When only the whole buffer is full, the app with the
most queued tasks gives up its newest one (`shed`) to make room for another
app's task."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

_EWMA = 0.2  # weight of the newest attempt in an endpoint's pace


@dataclass(frozen=True, slots=True)
class Limits:
    in_flight: int = 200
    in_flight_per_target: int = 20
    in_flight_per_app: int = 50
    queued: int = 20_000
    queued_per_target: int = 5_000
    queued_per_app: int = 10_000


@dataclass(frozen=True, slots=True)
class Queued:
    pass


@dataclass(frozen=True, slots=True)
class Defer:
    reason: str
    wait: float = 0.0  # how long the task would have waited: defer it that long


@dataclass(frozen=True, slots=True)
class Admission(Generic[T]):
    verdict: Queued | Defer
    shed: tuple[T, ...] = ()  # queued tasks pushed out to make room: defer them
    shed_wait: float = 0.0    # ... for this long


@dataclass(eq=False, slots=True)
class Slot(Generic[T]):
    """An attempt under way: give it back with `done`."""

    app: str
    target: str
    item: T
    started_at: float
    id: int


@dataclass(slots=True)
class _Pace:
    """Attempts under way (oldest first) and a moving average of their duration."""

    running: dict[int, float] = field(default_factory=dict)  # slot id -> started at
    latency: float | None = None
    queued: int = 0  # of an endpoint: its tasks queued, over every app

    def started(self, slot: Slot) -> None:
        self.running[slot.id] = slot.started_at

    def done(self, slot: Slot, now: float) -> None:
        del self.running[slot.id]
        took = max(0.0, now - slot.started_at)
        self.latency = took if self.latency is None else (1 - _EWMA) * self.latency + _EWMA * took

    def seconds_per_attempt(self, now: float) -> float:
        """At least the average attempt, and at least the age of the oldest one
        under way: a hanging endpoint shows before any of its attempts ends."""
        oldest = now - next(iter(self.running.values())) if self.running else 0.0
        return max(self.latency or 0.0, oldest)


@dataclass(slots=True)
class _App(Generic[T]):
    queues: dict[str, deque[tuple[T, float]]] = field(default_factory=dict)
    order: deque[str] = field(default_factory=deque)   # endpoints with queued tasks
    queued: int = 0
    pace: _Pace = field(default_factory=_Pace)


class FairQueue(Generic[T]):
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._apps: dict[str, _App[T]] = {}
        self._targets: dict[str, _Pace] = {}
        self._rotation: deque[str] = deque()  # apps with queued tasks
        self._ids = itertools.count()
        self.queued = 0
        self.running = 0

    # -- reading ---------------------------------------------------------------
    def queued_of(self, app: str, target: str | None = None) -> int:
        state = self._apps.get(app)
        if state is None:
            return 0
        if target is None:
            return state.queued
        return len(state.queues.get(target, ()))

    def running_of_app(self, app: str) -> int:
        state = self._apps.get(app)
        return len(state.pace.running) if state is not None else 0

    def running_of_target(self, target: str) -> int:
        pace = self._targets.get(target)
        return len(pace.running) if pace is not None else 0

    def items(self) -> Iterator[T]:
        """Every queued task, in no particular order."""
        for state in self._apps.values():
            for queue in state.queues.values():
                for item, _ in queue:
                    yield item

    # -- admitting -------------------------------------------------------------
    def offer(self, app: str, target: str, item: T, now: float) -> Admission[T]:
        """Queue `item` for (app, target), or say why not (see the module's text)."""
        limits = self.limits
        state = self._apps.get(app)
        queued_app = state.queued if state is not None else 0
        if self.queued_of(app, target) >= limits.queued_per_target:
            return Admission(Defer("the endpoint's queue is full",
                                   self._target_wait(app, target, now)))
        if queued_app >= limits.queued_per_app:
            return Admission(Defer("the app's queue is full", self._app_wait(app, now)))
        shed: tuple[T, ...] = ()
        shed_wait = 0.0
        if self.queued >= limits.queued:
            victim = max(self._rotation, key=lambda a: self._apps[a].queued)
            if victim == app or self._apps[victim].queued <= queued_app + 1:
                return Admission(Defer("the deliverer's buffer is full",
                                       self._app_wait(app, now)))
            shed_wait = self._app_wait(victim, now)
            shed = (self._pop_newest(victim),)
        self._push(app, target, item, now)
        return Admission(Queued(), shed, shed_wait)

    def _target_wait(self, app: str, target: str, now: float) -> float:
        """How long a task joining the (full) queue of (app, target) would wait:
        at least as long as its oldest task has, and by Little's law the queue
        over the endpoint's slots times its pace."""
        queue = self._apps[app].queues[target]
        pace = self._targets[target].seconds_per_attempt(now)
        ahead = len(queue) / self.limits.in_flight_per_target + 1
        return max(now - queue[0][1], ahead * pace)

    def _app_wait(self, app: str, now: float) -> float:
        state = self._apps.get(app)
        if state is None or not state.queued:
            return 0.0
        oldest = min(queue[0][1] for queue in state.queues.values())
        slots = min(self.limits.in_flight_per_app,
                    self.limits.in_flight_per_target * len(state.queues))
        ahead = state.queued / slots + 1
        return max(now - oldest, ahead * state.pace.seconds_per_attempt(now))

    def _push(self, app: str, target: str, item: T, now: float) -> None:
        state = self._apps.get(app)
        if state is None:
            state = self._apps[app] = _App()
        if not state.queued:
            self._rotation.append(app)
        queue = state.queues.get(target)
        if queue is None:
            queue = state.queues[target] = deque()
            state.order.append(target)
        queue.append((item, now))
        self._targets.setdefault(target, _Pace()).queued += 1
        state.queued += 1
        self.queued += 1

    def _pop_newest(self, app: str) -> T:
        """The newest task of `app`'s longest queue."""
        state = self._apps[app]
        target = max(state.queues, key=lambda t: len(state.queues[t]))
        item, _ = state.queues[target].pop()
        self._forget_queued(app, target, 1)
        return item

    # -- scheduling ------------------------------------------------------------
    def next(self, now: float) -> Slot[T] | None:
        """The next task to attempt, holding a slot; None when no queued task may
        start now. Round-robin over apps, then over the app's endpoints."""
        limits = self.limits
        if self.running >= limits.in_flight:
            return None
        for _ in range(len(self._rotation)):
            app = self._rotation[0]
            self._rotation.rotate(-1)  # visited: to the back of the round
            state = self._apps[app]
            if len(state.pace.running) >= limits.in_flight_per_app:
                continue
            for _ in range(len(state.order)):
                target = state.order[0]
                state.order.rotate(-1)
                pace = self._targets[target]
                if len(pace.running) >= limits.in_flight_per_target:
                    continue
                item, _ = state.queues[target].popleft()
                slot = Slot(app, target, item, now, next(self._ids))
                pace.started(slot)
                state.pace.started(slot)
                self.running += 1
                self._forget_queued(app, target, 1)
                return slot
        return None

    def done(self, slot: Slot[T], now: float) -> None:
        """The attempt of `slot` ended: its slot is free."""
        self.running -= 1
        pace = self._targets[slot.target]
        pace.done(slot, now)
        state = self._apps[slot.app]
        state.pace.done(slot, now)
        self._tidy(slot.app, slot.target)

    def remove(self, unwanted: Callable[[T], bool]) -> list[T]:
        """Take every queued task for which `unwanted(task)` out of the queues."""
        removed: list[T] = []
        for app, state in list(self._apps.items()):
            for target, queue in list(state.queues.items()):
                kept = deque(entry for entry in queue if not unwanted(entry[0]))
                gone = [item for item, _ in queue if unwanted(item)]
                if gone:
                    queue.clear()
                    queue.extend(kept)
                    removed += gone
                    self._forget_queued(app, target, len(gone))
        return removed

    def _forget_queued(self, app: str, target: str, count: int) -> None:
        state = self._apps[app]
        state.queued -= count
        self.queued -= count
        self._targets[target].queued -= count
        if not state.queues[target]:
            del state.queues[target]
            state.order.remove(target)
        if not state.queued:
            self._rotation.remove(app)
        self._tidy(app, target)

    def _tidy(self, app: str, target: str) -> None:
        """Drop what is kept of an app or an endpoint with nothing queued or under way."""
        state = self._apps.get(app)
        if state is not None and not state.queued and not state.pace.running:
            del self._apps[app]
        pace = self._targets.get(target)
        if pace is not None and not pace.running and not pace.queued:
            del self._targets[target]
