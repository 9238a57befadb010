"""Which offsets may be committed while several records of one partition are in
flight at once: only up to the lowest unfinished one. Pure.

Each partition's entries belong to a generation: the span between it being
first seen and `forget` (its revocation). A record started in one generation
and finished after its partition was forgotten (an attempt that outlived the
revocation) is ignored: its partition's new owner repeats it."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterable


class Watermarks:
    def __init__(self) -> None:
        self._pending: dict[Hashable, list[int]] = {}   # heap of unfinished offsets
        self._finished: dict[Hashable, set[int]] = {}   # finished but not yet at the bottom
        self._next: dict[Hashable, int] = {}            # one past the highest offset seen
        self._committed: dict[Hashable, int] = {}
        self._generation: dict[Hashable, int] = {}
        self._generations = itertools.count(1)

    def started(self, partition: Hashable, offset: int) -> int:
        """Note `offset` as unfinished; returns the generation to finish it with."""
        generation = self._generation.get(partition)
        if generation is None:
            generation = self._generation[partition] = next(self._generations)
        heapq.heappush(self._pending.setdefault(partition, []), offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)
        return generation

    def is_current(self, partition: Hashable, generation: int) -> bool:
        """Whether work started in `generation` still counts (not revoked since)."""
        return self._generation.get(partition) == generation

    def finished(self, partition: Hashable, offset: int, generation: int) -> bool:
        """Note `offset` as finished; False (and nothing changes) when its
        partition was forgotten since it started."""
        if not self.is_current(partition, generation):
            return False
        self._finished.setdefault(partition, set()).add(offset)
        heap, done = self._pending[partition], self._finished[partition]
        while heap and heap[0] in done:
            done.discard(heapq.heappop(heap))
        return True

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

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Partitions revoked in a rebalance: their unfinished work is abandoned,
        and finishing it later changes nothing."""
        for partition in partitions:
            for table in (self._pending, self._finished, self._next, self._committed,
                          self._generation):
                table.pop(partition, None)
