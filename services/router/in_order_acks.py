"""Which finished events may be acknowledged to Faust: an event only once every
event taken before it from its partition is finished too. Pure.

Why: Faust commits, per partition, the end of the first run of consecutive
acknowledged offsets, and accepts a run that starts one past the last commit
(`Consumer._new_offset` in faust/transport/consumer.py). With 16 actors on a
partition, committed offset 10, event 10 still being routed and event 11
finished, it commits 12: a crash then loses event 10. Acknowledging in offset
order means the committed offset never passes an event that is not finished.

Offsets the stream never yields (transaction markers, aborted records) are
never taken, so they hold nothing up; Faust fills those gaps itself."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Partition(Generic[T]):
    __slots__ = ("heap", "items", "unfinished")

    def __init__(self) -> None:
        self.heap: list[int] = []  # offsets taken and not yet released, lowest first
        self.items: dict[int, list[T]] = {}
        self.unfinished: dict[int, int] = {}  # offset -> how many takers are still at it


class InOrderAcks(Generic[T]):
    """`taken` when an actor gets an event, `finished` when its work is
    acknowledged by Kafka; `finished` returns what may be acked now, in offset
    order. A partition is any hashable key: the router uses (topic, partition,
    consumer generation), so that an event of a previous assignment never
    releases one of the current."""

    def __init__(self) -> None:
        self._partitions: dict[Hashable, _Partition[T]] = {}

    def taken(self, partition: Hashable, offset: int, item: T) -> None:
        state = self._partitions.setdefault(partition, _Partition())
        if offset not in state.items:
            heapq.heappush(state.heap, offset)
            state.items[offset] = []
            state.unfinished[offset] = 0
        state.items[offset].append(item)
        state.unfinished[offset] += 1

    def finished(self, partition: Hashable, offset: int) -> list[T]:
        """The items that may be acknowledged now, lowest offset first: none
        while an event taken before this one is unfinished, or when this one
        is unknown (its partition forgotten)."""
        state = self._partitions.get(partition)
        if state is None or state.unfinished.get(offset, 0) == 0:
            return []
        state.unfinished[offset] -= 1
        released: list[T] = []
        while state.heap and state.unfinished[state.heap[0]] == 0:
            lowest = heapq.heappop(state.heap)
            del state.unfinished[lowest]
            released += state.items.pop(lowest)
        if not state.heap:
            del self._partitions[partition]
        return released

    def pending(self, partition: Hashable) -> int:
        """Events of `partition` taken and not yet released."""
        state = self._partitions.get(partition)
        return len(state.heap) if state is not None else 0

    def forget(self, keep: Callable[[Hashable], bool]) -> None:
        """Drop every partition for which `keep(partition)` is false (after a
        rebalance): their events are never acknowledged here, so whoever owns
        the partition now reads them again from its committed offset."""
        for partition in [p for p in self._partitions if not keep(p)]:
            del self._partitions[partition]
