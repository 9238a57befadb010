"""The events an actor has read and not yet routed, taken round-robin across
apps. No I/O.

Why: the router routes an event's whole fan-out at once, on one thread. An
app that publishes 200 events to eight webhooks puts 1,600 tasks ahead of
whatever is read after them; taken first come first served, another app's
event waited for all of them (its router hop p99 0.5-0.8 s beside such a
flood, 4 ms alone; `python -m bench.hops --flood 200`). Taken one per app in
turn, and routed in batches of bounded cost (app.py), it waits for at most
one batch of the flood's.

The key is the event record's key, which ingest sets to the app id; a record
written without one shares the key None with every other such record. Within
a key, events stay in the order read. Offsets are acknowledged in offset order
per partition regardless (in_order_acks.py), so an event taken out of turn is
committed only once those before it on its partition are finished too.

At most `bound` events are held in all: `put` waits for room. One reader puts
and one actor takes; neither is safe for more."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class FairInbox(Generic[T]):
    def __init__(self, bound: int) -> None:
        if bound < 1:
            raise ValueError("bound must be at least 1")
        self._bound = bound
        # Keys in turn order (a dict keeps insertion order): the first is next.
        self._queues: dict[Hashable, deque[T]] = {}
        self._size = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()

    def __len__(self) -> int:
        return self._size

    def empty(self) -> bool:
        return self._size == 0

    def full(self) -> bool:
        return self._size >= self._bound

    def peek(self) -> T:
        """The event `get_nowait` would return. IndexError when none is held."""
        if not self._size:
            raise IndexError("the inbox is empty")
        return self._queues[next(iter(self._queues))][0]

    def keys(self) -> int:
        """How many keys have events waiting."""
        return len(self._queues)

    async def put(self, key: Hashable, item: T) -> None:
        """Add `item` behind the others of `key`; waits while `bound` are held."""
        while self._size >= self._bound:
            self._room.clear()
            await self._room.wait()
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = queue = deque()
        queue.append(item)
        self._size += 1
        self._ready.set()

    async def get(self) -> T:
        """The next event in turn; waits while none is held."""
        while not self._size:
            self._ready.clear()
            await self._ready.wait()
        return self.get_nowait()

    def get_nowait(self) -> T:
        """The oldest event of the key whose turn it is; that key's turn then
        passes to the back. IndexError when none is held."""
        if not self._size:
            raise IndexError("the inbox is empty")
        key = next(iter(self._queues))
        queue = self._queues.pop(key)
        item = queue.popleft()
        if queue:
            self._queues[key] = queue  # to the back of the turn order
        self._size -= 1
        self._room.set()
        return item
