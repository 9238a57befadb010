"""Which offsets may be committed while several records of one partition are in
flight at once: only up to the lowest unfinished one. Pure."""

from __future__ import annotations

import heapq
from collections.abc import Hashable


class Watermarks:
    def __init__(self) -> None:
        self._pending: dict[Hashable, list[int]] = {}   # heap of unfinished offsets
        self._finished: dict[Hashable, set[int]] = {}   # finished but not yet at the bottom
        self._next: dict[Hashable, int] = {}            # one past the highest offset seen
        self._committed: dict[Hashable, int] = {}

    def started(self, partition: Hashable, offset: int) -> None:
        heapq.heappush(self._pending.setdefault(partition, []), offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def finished(self, partition: Hashable, offset: int) -> None:
        self._finished.setdefault(partition, set()).add(offset)
        heap, done = self._pending[partition], self._finished[partition]
        while heap and heap[0] in done:
            done.discard(heapq.heappop(heap))

    def in_flight(self, partition: Hashable | None = None) -> int:
        if partition is not None:
            return len(self._pending.get(partition, ()))
        return sum(len(h) for h in self._pending.values())

    def committable(self) -> dict[Hashable, int]:
        """Offsets to commit now (the next offset to read), for the partitions
        whose watermark moved past what was last `committed`."""
        moved = {}
        for partition, end in self._next.items():
            heap = self._pending.get(partition)
            mark = heap[0] if heap else end
            if mark > self._committed.get(partition, -1):
                moved[partition] = mark
        return moved

    def committed_offset(self, partition: Hashable) -> int | None:
        return self._committed.get(partition)

    def committed(self, offsets: dict[Hashable, int]) -> None:
        """Record offsets the broker acknowledged as committed."""
        self._committed.update(offsets)

    def forget(self, partitions: list[Hashable]) -> None:
        """Partitions revoked in a rebalance: their in-flight work is abandoned."""
        for partition in partitions:
            for table in (self._pending, self._finished, self._next, self._committed):
                table.pop(partition, None)
