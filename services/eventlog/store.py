"""What the event log's logic needs of one partition's store: ordered bytes
keys. `MemoryStore` is the pure one (tests, properties); the service's is a
partition's RocksDB with its changelog (services/eventlog/table.py)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Protocol


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Keys that start with `prefix`, in byte order, from `start` (inclusive;
        the prefix itself when None). Callers do not write while iterating."""
        ...


class MemoryStore:
    """A sorted dict of bytes: the pure stand-in of one partition's RocksDB."""

    def __init__(self) -> None:
        self._keys: list[bytes] = []
        self._values: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._values.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self._values:
            bisect.insort(self._keys, key)
        self._values[key] = value

    def delete(self, key: bytes) -> None:
        if self._values.pop(key, None) is not None:
            del self._keys[bisect.bisect_left(self._keys, key)]

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        at = bisect.bisect_left(self._keys, max(prefix, start or prefix))
        for key in self._keys[at:]:
            if not key.startswith(prefix):
                return
            yield key, self._values[key]

    def __len__(self) -> int:
        return len(self._keys)

    def items(self) -> list[tuple[bytes, bytes]]:
        return [(k, self._values[k]) for k in self._keys]


_DELETED = None


class Overlay:
    """Writes held over a base store, read through: filing one record (or a
    batch, or a sweep step) in an overlay makes it all-or-nothing. `apply`
    puts the writes into the base; the service sends them to the changelog
    and awaits the acknowledgements before it writes its RocksDB
    (PartitionStore.commit), so that the database never holds what the
    changelog may not."""

    def __init__(self, base: Store) -> None:
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = _DELETED

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        low = max(prefix, start or prefix)
        mine = sorted((k, v) for k, v in self.writes.items() if k.startswith(prefix) and k >= low)
        if not mine:
            yield from self.base.scan(prefix, start)
            return
        overridden = {k for k, _ in mine}
        merged = [(k, v) for k, v in self.base.scan(prefix, start) if k not in overridden]
        merged += [(k, v) for k, v in mine if v is not _DELETED]
        yield from sorted(merged)

    def apply(self) -> None:
        for key, value in self.writes.items():
            if value is _DELETED:
                self.base.delete(key)
            else:
                self.base.put(key, value)
        self.writes = {}
