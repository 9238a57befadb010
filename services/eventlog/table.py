"""One partition of the event log's Faust table as a `Store`: its RocksDB
(rocksdict, raw bytes keys) read and written directly, every write and delete
sent to the table's changelog first (Faust's recovery and standbys replay it).

Faust tables write only from inside an agent, to the partition of the record
being processed, and have no ordered scans (docs/design/event-log.md): this
facade writes to a partition it is given, from an agent, a timer or a
request, and scans. Callers write only to partitions this instance actively
owns, through an Overlay (store.py) that they commit: the changelog first,
acknowledged, then the database, so a crash in between leaves the database
without what the changelog may lack, and the records are filed again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from rocksdict import WriteBatch


# Sends one changelog record (partition, key, value); returns its future.
Send = Callable[[int, bytes, bytes | None], Awaitable[asyncio.Future]]
# A changelog write not acknowledged by then fails the commit (the file agent
# then ends the process, and the batch is filed again after the restart).
ACK_TIMEOUT = 60.0


class NotOpen(Exception):
    """The partition's database is not open here (revoked, or stopping)."""


class PartitionStore:
    def __init__(self, table: Any, partition: int, *, open_it: bool = False,
                 send: Send | None = None) -> None:
        """`open_it`: open the partition's database if it is not (as Faust does
        for the record an agent is processing); else NotOpen: Faust forgets a
        revoked partition's database without closing it, and opening it again
        would fail on its lock."""
        self._table = table
        self.partition = partition
        self._send = send
        if open_it:
            self._db = table.data._db_for_partition(partition)
        else:
            db = table.data._dbs.get(partition)
            if db is None:
                raise NotOpen(f"partition {partition} is not open here")
            self._db = db

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        raise TypeError("write through an Overlay and commit it")

    def delete(self, key: bytes) -> None:
        raise TypeError("write through an Overlay and commit it")

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        it.seek(max(prefix, start or prefix))
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                return
            yield key, it.value()
            it.next()

    async def commit(self, writes: dict[bytes, bytes | None]) -> None:
        """Send `writes` to the changelog, and once every one is acknowledged,
        write them to the database in one batch, with the changelog offset they
        reach. Raises the first failure, having written nothing locally:
        filing the same records again after a restart writes them all again.

        Through the service's own producer (`send`), not `table.send_changelog`:
        Faust buffers those sends, and its callback records the persisted
        offset (from which a restart replays the changelog) in the database as
        each send is acknowledged, before these keys are written there; a crash
        in between would leave the database past keys it lacks. Commits of one
        partition run one at a time, so the offset written never passes
        another commit's keys."""
        if not writes:
            return
        if self._send is None:
            raise TypeError("a store opened without a changelog sender is read-only")
        async with _lock(self._table, self.partition), asyncio.timeout(ACK_TIMEOUT):
            sent = [await self._send(self.partition, key, value)
                    for key, value in writes.items()]
            results = await asyncio.gather(*sent, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            batch = WriteBatch(raw_mode=True)
            for key, value in writes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            offsets = [getattr(r, "offset", None) for r in results]
            if offsets and all(isinstance(o, int) for o in offsets):
                batch.put(OFFSET_KEY, str(max(offsets)).encode())  # type: ignore[type-var]
            self._db.write(batch)


# Where Faust keeps a partition database's changelog offset (stores/rocksdb.py).
OFFSET_KEY = b"__faust\0offset__"
_locks: dict[tuple[int, int], asyncio.Lock] = {}


def _lock(table: Any, partition: int) -> asyncio.Lock:
    return _locks.setdefault((id(table), partition), asyncio.Lock())
